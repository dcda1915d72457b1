"""Two ``webinar serve`` nodes behind nginx, as docs/DEPLOYMENT.md describes.

Real components only: one PostgreSQL, one redis-server, two server processes
on loopback ports (node A with the RTMP listener, node B without), and
Debian's nginx running ``docs/nginx-webinar.conf`` itself (addresses, port and
cache folder replaced). ffmpeg publishes to node A; room clients and HLS
requests go through nginx and land on both nodes (``X-Webinar-Node``); chat
crosses nodes through Redis; node B is stopped mid-live (SIGTERM, or SIGKILL)
and its viewers reconnect through nginx to node A, resuming from their last
event id with every acknowledged message and no duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import m3u8
import pytest

from benchmarks.harness import _Nginx
from server.webinars import rotate_stream_key
from tests.integration.test_rooms_cluster import guest_token, prepared_room
from tests.support.ffmpeg import publisher
from tests.support.net import free_port
from tests.support.postgres import PostgresForTests
from tests.support.redis_server import RedisServer
from tests.support.room_client import RoomClient
from tests.support.server_process import ServerProcess

NGINX_SNIPPET = Path(__file__).resolve().parents[2] / "docs" / "nginx-webinar.conf"
VIEWERS_PER_NODE = 2
MAX_CONNECT_TRIES = 12
"""Round-robin sends alternate connections to A and B; this bounds the tries to get both."""
CHAT_INTERVAL_S = 0.3
START_TIMEOUT_S = 180
"""Seconds a node may take to answer /healthz after its start."""
MAX_MESSAGES = 200
"""Per viewer: bound of the chat loop (it normally stops when its node goes away)."""


class NginxFront(_Nginx):
    """Debian's nginx running the documented snippet in a throw-away prefix."""

    def __init__(self, root: Path, node_a: int, node_b: int) -> None:
        super().__init__(root)
        self.port = free_port()
        self.node_a = node_a
        self.node_b = node_b

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def conf(self) -> str:
        snippet = NGINX_SNIPPET.read_text()
        cache = self.root / "cache"
        for old, new in (("127.0.0.1:8001", f"127.0.0.1:{self.node_a}"), ("127.0.0.1:8002", f"127.0.0.1:{self.node_b}"),
                         ("listen 80;", f"listen 127.0.0.1:{self.port};"), ("/var/cache/nginx/webinar", str(cache))):
            assert old in snippet, f"docs/nginx-webinar.conf no longer contains {old!r}"
            snippet = snippet.replace(old, new)
        tmp = self.root / "tmp"
        user = "user root;\n" if os.geteuid() == 0 else ""  # as root, workers must still write the cache
        return f"""{user}daemon off;
master_process on;
worker_processes 1;
pid {self.root}/nginx.pid;
error_log {self.root}/logs/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {self.root}/logs/access.log;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
{snippet}
}}
"""


@contextlib.asynccontextmanager
async def cluster(pg: PostgresForTests) -> AsyncIterator[tuple[str, ServerProcess, ServerProcess, NginxFront]]:
    dsn = await pg.new_database()
    root = Path(tempfile.mkdtemp(prefix="webinar-two-nodes-"))
    with RedisServer() as redis:
        a = ServerProcess(dsn, redis_url=redis.url, data_dir=root / "node-a",
                          env={"WEBINAR_NODE_NAME": "node-a", "WEBINAR_LIVE_GRACE_S": "2"})
        b = ServerProcess(dsn, redis_url=redis.url, data_dir=root / "node-b",
                          env={"WEBINAR_NODE_NAME": "node-b", "WEBINAR_ENABLE_RTMP": "0"})
        front = NginxFront(root / "nginx", a.port, b.port)
        try:
            # Generous: on a loaded machine importing the app alone can take most of a minute.
            await asyncio.gather(asyncio.to_thread(a.start, START_TIMEOUT_S), asyncio.to_thread(b.start, START_TIMEOUT_S))
            async with front:
                yield dsn, a, b, front
        finally:
            await asyncio.gather(asyncio.to_thread(a.stop), asyncio.to_thread(b.stop))
            shutil.rmtree(root, ignore_errors=True)


def node_of(client: RoomClient) -> str:
    return str(client.ws.response.headers.get("x-webinar-node"))


async def viewers_on_both_nodes(front: NginxFront, wid: uuid.UUID) -> dict[str, list[tuple[RoomClient, str]]]:
    """Guests connected through nginx until each node has VIEWERS_PER_NODE; extra ones are closed."""
    placed: dict[str, list[tuple[RoomClient, str]]] = {"node-a": [], "node-b": []}
    for i in range(MAX_CONNECT_TRIES):
        if all(len(v) >= VIEWERS_PER_NODE for v in placed.values()):
            break
        token = await guest_token(front.url, wid, f"Viewer {i}")
        client = RoomClient(f"ws://127.0.0.1:{front.port}/ws/rooms/{wid}", token=token)
        await client.connect()
        node = node_of(client)
        assert node in placed, f"unexpected node header {node!r}"
        if len(placed[node]) < VIEWERS_PER_NODE:
            placed[node].append((client, token))
        else:
            await client.close()
    assert all(len(v) == VIEWERS_PER_NODE for v in placed.values()), f"nginx did not spread viewers: {placed}"
    return placed


async def wait_segments(client: httpx.AsyncClient, url: str, count: int, timeout: float = 30) -> m3u8.M3U8:
    async with asyncio.timeout(timeout):
        while True:
            r = await client.get(url)
            if r.status_code == 200:
                playlist = m3u8.loads(r.text)
                if len(finished(playlist)) >= count:
                    assert r.headers["x-webinar-node"] == "node-a", "HLS is routed to the ingest node"
                    return playlist
            await asyncio.sleep(0.2)


async def check_cached_part(client: httpx.AsyncClient, base: str, playlist: m3u8.M3U8) -> None:
    """A part through the documented cache: MISS from the origin, then HIT from nginx."""
    part_uri = next(p.uri for s in playlist.segments for p in (s.parts or []))
    first = await client.get(f"{base}/{part_uri}")
    assert first.status_code == 200 and first.headers["x-cache-status"] in ("MISS", "EXPIRED")
    assert first.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert "set-cookie" not in first.headers
    second = await client.get(f"{base}/{part_uri}")
    assert second.headers["x-cache-status"] == "HIT"
    assert second.content == first.content and len(second.content) > 0
    segment = finished(playlist)[0]
    for expected in (("MISS", "EXPIRED"), ("HIT",)):
        r = await client.get(f"{base}/{segment}")
        assert r.status_code == 200 and r.headers["x-cache-status"] in expected
    # A blocking playlist request is cached under its own query string.
    msn = playlist.media_sequence + len(finished(playlist)) - 1
    blocking = f"{base}/index.m3u8?_HLS_msn={msn}&_HLS_part=0"
    one, two = await client.get(blocking), await client.get(blocking)
    assert one.status_code == 200 and two.headers["x-cache-status"] == "HIT" and one.text == two.text


async def chat_loop(client: RoomClient, label: str, acked: list[int], stop: asyncio.Event) -> None:
    """Send chat until told to stop or the connection goes; record acknowledged event ids."""
    for n in range(MAX_MESSAGES):
        if stop.is_set() or client.closed_code is not None:
            return
        try:
            reply = await client.send("chat.send", text=f"{label} m{n}")
        except Exception:  # noqa: BLE001 -- the connection went away mid-send
            return
        if reply.get("type") == "ack":
            acked.append(int(reply["event_id"]))
        elif reply.get("type") == "closed":
            return
        await asyncio.sleep(CHAT_INTERVAL_S)


def finished(playlist: m3u8.M3U8) -> list[str]:
    """URIs of the whole segments (the one in progress is listed without a URI)."""
    return [s.uri for s in playlist.segments if s.uri]


def is_closed(client: RoomClient) -> bool:
    return client.closed_code is not None


def has_event(client: RoomClient, event_id: int) -> bool:
    return any(int(e["id"]) >= event_id for e in client.events)


def chat_ids(events: list[dict[str, Any]]) -> list[int]:
    return [int(e["id"]) for e in events if e["kind"] == "chat.message"]


@pytest.mark.parametrize("stop_mode", ["sigterm", "sigkill"])
async def test_two_nodes_behind_nginx(pg: PostgresForTests, stop_mode: str) -> None:
    async with cluster(pg) as (dsn, node_a, node_b, front):
        _world, wid = await prepared_room(dsn)
        conn = await asyncpg.connect(dsn)
        try:
            key = await rotate_stream_key(conn, wid)  # type: ignore[arg-type]
        finally:
            await conn.close()
        base = f"{front.url}/hls/{wid}"
        async with httpx.AsyncClient(timeout=20) as http, \
                publisher(f"rtmp://127.0.0.1:{node_a.rtmp_port}/live/{key}", 90):
            # Pages are served by both nodes; the live playlist is reachable through nginx.
            seen = {(await http.get(f"{front.url}/healthz")).headers["x-webinar-node"] for _ in range(4)}
            assert seen == {"node-a", "node-b"}
            playlist = await wait_segments(http, f"{base}/index.m3u8", 2)
            direct_b = await http.get(f"http://127.0.0.1:{node_b.port}/hls/{wid}/index.m3u8")
            assert direct_b.status_code == 404, "node B has no live: why nginx sends /hls/ to node A"
            await check_cached_part(http, base, playlist)

            placed = await viewers_on_both_nodes(front, wid)
            on_a = [c for c, _ in placed["node-a"]]
            on_b = [c for c, _ in placed["node-b"]]
            # Chat from A is seen on B and the other way round.
            from_a = await on_a[0].send("chat.send", text="hello from A")
            from_b = await on_b[0].send("chat.send", text="hello from B")
            assert from_a["type"] == "ack" and from_b["type"] == "ack"
            await on_b[1].event("chat.message", lambda e: e["id"] == from_a["event_id"])
            await on_a[1].event("chat.message", lambda e: e["id"] == from_b["event_id"])

            # Everyone chats; node B goes away mid-live.
            acked: list[int] = [from_a["event_id"], from_b["event_id"]]
            stop = asyncio.Event()
            everyone = on_a + on_b
            talkers = [asyncio.create_task(chat_loop(c, f"v{i}", acked, stop)) for i, c in enumerate(everyone)]
            await asyncio.sleep(2)
            if stop_mode == "sigterm":
                await asyncio.to_thread(node_b.stop)
            else:
                await asyncio.to_thread(node_b.kill)
            for c in on_b:
                await c.wait(functools.partial(is_closed, c), 35)
                if stop_mode == "sigterm":  # a clean close through nginx: "service restart"
                    assert c.closed_code == 1012, c.closed_code

            # B's viewers reconnect through nginx, land on A and resume from their last event id.
            resumed: list[tuple[RoomClient, RoomClient]] = []
            for old, token in placed["node-b"]:
                fresh = RoomClient(f"ws://127.0.0.1:{front.port}/ws/rooms/{wid}", token=token)
                await fresh.connect(last_event_id=old.last_event_id)
                assert node_of(fresh) == "node-a"
                resumed.append((old, fresh))
            talkers += [asyncio.create_task(chat_loop(f, f"r{i}", acked, stop)) for i, (_, f) in enumerate(resumed)]
            await asyncio.sleep(2)
            stop.set()
            await asyncio.wait(talkers, timeout=30)
            last = max(acked)

            # Nothing acknowledged is lost, nothing is delivered twice, on either side of the failover.
            for old, fresh in resumed:
                await fresh.wait(functools.partial(has_event, fresh, last), 15)
                combined = [int(e["id"]) for e in old.events + fresh.events]
                assert len(combined) == len(set(combined)), "an event delivered twice across the failover"
                assert combined == sorted(combined)
                assert set(acked) <= set(chat_ids(old.events + fresh.events)), "an acknowledged message was lost"
            for client in on_a:
                await client.wait(functools.partial(has_event, client, last), 15)
                assert client.closed_code is None, "viewers on node A were not disturbed"
                ids = [int(e["id"]) for e in client.events]
                assert len(ids) == len(set(ids)) and set(acked) <= set(chat_ids(client.events))

            # The live went on through all of it, still reachable through nginx.
            later = await wait_segments(http, f"{base}/index.m3u8", len(finished(playlist)) + 2)
            assert finished(later)[-1] not in finished(playlist)
            for old, fresh in resumed:
                await fresh.close()
            for client in on_a:
                await client.close()
