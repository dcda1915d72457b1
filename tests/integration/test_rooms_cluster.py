"""Rooms across processes: two nodes through a real Redis, and a kill -9 mid-conversation."""

from __future__ import annotations

import asyncio
import shutil
import uuid

import asyncpg
import httpx

from server.webinars import set_state
from tests.support.postgres import PostgresForTests
from tests.support.redis_server import RedisServer
from tests.support.room_client import RoomClient
from tests.support.server_process import ServerProcess
from tests.world import PASSWORD, make_world


class _Db:
    """The few pool methods tests/world.py needs, over one connection."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    def __getattr__(self, name: str) -> object:
        return getattr(self.conn, name)

    def acquire(self) -> object:
        conn = self.conn

        class _Ctx:
            async def __aenter__(self) -> asyncpg.Connection:
                return conn

            async def __aexit__(self, *exc: object) -> None:
                return None

        return _Ctx()


async def prepared_room(dsn: str) -> tuple[object, uuid.UUID]:
    conn = await asyncpg.connect(dsn)
    try:
        world = await make_world(_Db(conn))  # type: ignore[arg-type]
        await set_state(conn, world.a.webinar.id, "announced")
        return world, world.a.webinar.id
    finally:
        await conn.close()


async def guest_token(base_url: str, webinar_id: uuid.UUID, name: str) -> str:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        await client.get("/login")
        r = await client.post(f"/w/{webinar_id}/join", data={"name": name, "csrf_token": client.cookies["wb_csrf"]})
        r.raise_for_status()
        return str(r.json()["token"])


async def moderator_cookie(base_url: str, email: str) -> str:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        await client.get("/login")
        r = await client.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": client.cookies["wb_csrf"]})
        assert r.status_code == 303
        return f"wb_session={client.cookies['wb_session']}"


def ws_url(node: ServerProcess, webinar_id: uuid.UUID) -> str:
    return f"ws://127.0.0.1:{node.port}/ws/rooms/{webinar_id}"


async def test_two_nodes_share_rooms_through_redis(pg: PostgresForTests) -> None:
    dsn = await pg.new_database()
    world, wid = await prepared_room(dsn)
    with RedisServer() as redis:
        nodes = [ServerProcess(dsn, redis_url=redis.url), ServerProcess(dsn, redis_url=redis.url)]
        try:
            await asyncio.gather(*(n.astart() for n in nodes))
            one = RoomClient(ws_url(nodes[0], wid), token=await guest_token(nodes[0].url, wid, "On node one"))
            two = RoomClient(ws_url(nodes[1], wid), token=await guest_token(nodes[1].url, wid, "On node two"))
            mod = RoomClient(ws_url(nodes[1], wid), cookie=await moderator_cookie(nodes[1].url, world.a.moderator.email),
                             origin=nodes[1].url)
            for c in (one, two, mod):
                await c.connect()
            a = await one.send("chat.send", text="from one")
            b = await two.send("chat.send", text="from two")
            await two.event("chat.message", lambda e: e["id"] == a["event_id"])
            await one.event("chat.message", lambda e: e["id"] == b["event_id"])
            # Concurrent chat from both nodes arrives everywhere in the same id order.
            acks = await asyncio.gather(*(c.send("chat.send", text=f"burst {i}") for i in range(3) for c in (one, two)))
            last = max(x["event_id"] for x in acks)
            await one.event("chat.message", lambda e: e["id"] == last)
            await two.event("chat.message", lambda e: e["id"] == last)
            ids_one = [e["id"] for e in one.events]
            ids_two = [e["id"] for e in two.events]
            assert ids_one == sorted(ids_one) and ids_two == sorted(ids_two)
            assert [i for i in ids_one if i <= last] == [i for i in ids_two if i <= last]
            await mod.send("chat.delete", message_id=a["message_id"])
            await one.event("chat.deleted", lambda e: e["data"]["message_id"] == a["message_id"])
            for c in (one, two, mod):
                await c.close()
        finally:
            for n in nodes:
                n.stop()
                shutil.rmtree(n.data_dir, ignore_errors=True)


async def test_kill_9_loses_nothing_acknowledged(pg: PostgresForTests) -> None:
    dsn = await pg.new_database()
    world, wid = await prepared_room(dsn)
    node = ServerProcess(dsn)
    try:
        await node.astart()
        mod = RoomClient(ws_url(node, wid), cookie=await moderator_cookie(node.url, world.a.moderator.email), origin=node.url)
        await mod.connect()
        poll_id = (await mod.send("poll.create", question="Kill?", options=["yes", "no"]))["poll_id"]
        await mod.send("poll.open", poll_id=poll_id)
        conn = await asyncpg.connect(dsn)
        cta_id = await conn.fetchval("INSERT INTO ctas (webinar_id, label, url) VALUES ($1, 'Go', 'https://e.x') RETURNING id", wid)
        await conn.close()
        await mod.send("cta.push", cta_id=cta_id)
        tokens = [await guest_token(node.url, wid, f"Viewer {i}") for i in range(3)]
        viewers = [RoomClient(ws_url(node, wid), token=t) for t in tokens]
        for v in viewers:
            await v.connect()
        acked: dict[str, list[int]] = {"chat": [], "question": [], "vote": [], "click": []}

        async def talk(i: int, v: RoomClient) -> None:
            for n in range(1000):
                try:
                    r = await v.send("chat.send", text=f"v{i} m{n}")
                    if r.get("type") == "ack":
                        acked["chat"].append(r["message_id"])
                    if n == 1:
                        q = await v.send("qa.ask", text=f"question from {i}")
                        if q.get("type") == "ack":
                            acked["question"].append(q["question_id"])
                        vo = await v.send("poll.vote", poll_id=poll_id, choices=[i % 2])
                        if vo.get("type") == "ack":
                            acked["vote"].append(i)
                        c = await v.send("cta.click", cta_id=cta_id)
                        if c.get("type") == "ack":
                            acked["click"].append(c["recorded"])
                    if r.get("type") == "closed" or v.closed_code is not None:
                        return
                    await asyncio.sleep(0.3)
                except Exception:
                    return

        talkers = [asyncio.create_task(talk(i, v)) for i, v in enumerate(viewers)]
        await asyncio.sleep(2.5)
        node.kill()
        await asyncio.wait(talkers, timeout=15)
        assert acked["chat"] and len(acked["question"]) == 3 and len(acked["vote"]) == 3 and len(acked["click"]) == 3
        # Everything acknowledged is in the database.
        conn = await asyncpg.connect(dsn)
        try:
            stored = {r["event_id"] for r in await conn.fetch("SELECT event_id FROM chat_messages WHERE webinar_id=$1", wid)}
            assert set(acked["chat"]) <= stored
            assert set(acked["question"]) <= {r["id"] for r in await conn.fetch("SELECT id FROM questions")}
            assert await conn.fetchval("SELECT count(*) FROM poll_votes WHERE poll_id=$1", poll_id) == 3
            assert set(acked["click"]) <= {r["id"] for r in await conn.fetch("SELECT id FROM cta_interactions")}
        finally:
            await conn.close()
        # Restart; clients resume from their last event id without duplicates.
        await node.astart()
        for i, old in enumerate(viewers):
            fresh = RoomClient(ws_url(node, wid), token=tokens[i])
            await fresh.connect(last_event_id=old.last_event_id)
            await fresh.send("chat.send", text=f"back {i}")
            await fresh.event("chat.message", lambda e: e["data"]["text"] == f"back {i}")
            combined = [e["id"] for e in old.events] + [e["id"] for e in fresh.events]
            assert len(combined) == len(set(combined)), "no event delivered twice across the restart"
            seen_chat = {e["id"] for e in old.events + fresh.events if e["kind"] == "chat.message"}
            assert set(acked["chat"]) <= seen_chat, "every acknowledged message reached every viewer"
            await fresh.close()
        await mod.close()
    finally:
        node.stop()
        shutil.rmtree(node.data_dir, ignore_errors=True)


