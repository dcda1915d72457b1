"""Two ``webinar serve`` nodes behind nginx, as docs/DEPLOYMENT.md describes.

Real components only: one PostgreSQL, one redis-server, two server processes
on loopback ports (node A with the RTMP listener, node B without), and
Debian's nginx running ``docs/nginx-webinar.conf`` itself (addresses, port and
cache folder replaced). ffmpeg publishes to node A; room clients and HLS
requests go through nginx and land on both nodes (``X-Webinar-Node``); chat
crosses nodes through Redis; node B is stopped mid-live (SIGTERM, or SIGKILL)
and its viewers reconnect through nginx to node A, resuming from their last
event id with every acknowledged message and no duplicate.

Webcam rooms (node B runs with ``WEBINAR_ENABLE_WEBCAM=0``): through nginx the
speaker page, its connection check, its room socket ``/ws/speak/{id}`` and the
shared content land on node A, and an aiortc speaker goes live there with its
program's LL-HLS reachable through nginx; node B refuses a speaker who comes to
it directly with the ``media_node`` reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
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
import websockets
from websockets.typing import Origin

from benchmarks.harness import _Nginx
from server.webinars import rotate_stream_key
from tests.conftest import Browser
from tests.integration.test_rooms_cluster import guest_token, prepared_room
from tests.support import content_files as cf
from tests.support.ffmpeg import publisher
from tests.support.net import free_port
from tests.support.postgres import PostgresForTests
from tests.support.redis_server import RedisServer
from tests.support.room_client import RoomClient
from tests.support.server_process import ServerProcess
from tests.support.webrtc import solid_video_track
from tests.world import PASSWORD

NGINX_SNIPPET = Path(__file__).resolve().parents[2] / "docs" / "nginx-webinar.conf"
VIEWERS_PER_NODE = 2
MAX_CONNECT_TRIES = 12
"""Round-robin sends alternate connections to A and B; this bounds the tries to get both."""
CHAT_INTERVAL_S = 0.3
START_TIMEOUT_S = 180
"""Seconds a node may take to answer /healthz after its start."""
MAX_MESSAGES = 200
"""Per viewer: bound of the chat loop (it normally stops when its node goes away)."""
SPEAKER_SOCKETS = 4
"""Speaker sockets opened through nginx: round robin would put every other one on node B."""
PROGRAM_TIMEOUT_S = 90
"""Longest wait for the webcam program's first segments (a loaded 2-core machine encodes it)."""


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
                          env={"WEBINAR_NODE_NAME": "node-b", "WEBINAR_ENABLE_RTMP": "0", "WEBINAR_ENABLE_SRT": "0",
                               "WEBINAR_ENABLE_WEBCAM": "0"})
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


async def webcam_room(dsn: str) -> tuple[Any, uuid.UUID]:
    """Account A's webinar as an announced webcam room (its speaker: ``world.a.speaker``)."""
    world, wid = await prepared_room(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("UPDATE webinars SET room_type = 'webcam' WHERE id = $1", wid)
    finally:
        await conn.close()
    return world, wid


async def aiortc_offer() -> Any:
    """A speaker's browser stand-in: an aiortc peer (H.264 camera, audio) with its offer set."""
    from aiortc import RTCPeerConnection, RTCRtpSender

    pc = RTCPeerConnection()
    video = pc.addTransceiver(solid_video_track((145, 54, 34), 640, 360, 30), direction="sendrecv")
    video.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/H264"])
    pc.addTransceiver("audio", direction="sendrecv")
    await pc.setLocalDescription(await pc.createOffer())
    return pc


async def refused_speaker_socket(url: str, cookie: str, origin: str) -> tuple[dict[str, Any], int | None, str | None]:
    """Open a speaker socket that the node refuses: its first frame, close code and reason."""
    async with websockets.connect(url, additional_headers={"Cookie": cookie}, origin=Origin(origin),
                                  open_timeout=10) as ws:
        with contextlib.suppress(websockets.ConnectionClosed):  # the node may have closed already
            await ws.send(json.dumps({"type": "hello", "v": 1, "last_event_id": 0}))
        async with asyncio.timeout(10):
            first = json.loads(await ws.recv())
            with pytest.raises(websockets.ConnectionClosed):
                await ws.recv()
        return first, ws.close_code, ws.close_reason


async def test_webcam_speakers_go_to_the_media_node(pg: PostgresForTests, tmp_path: Path) -> None:
    """docs/DEPLOYMENT.md, "Webcam rooms": what a webcam room's media needs is pinned to node A."""
    from aiortc import RTCSessionDescription

    async with cluster(pg) as (dsn, _node_a, node_b, front):
        world, wid = await webcam_room(dsn)
        email = world.a.speaker.email  # type: ignore[attr-defined]
        async with Browser(front.url) as http:
            await http.login(email, PASSWORD)
            cookie = f"wb_session={http.cookies['wb_session']}"
            # Pages still go to both nodes: landing on node A below is the routing, not chance.
            seen = {(await http.get("/healthz")).headers["x-webinar-node"] for _ in range(4)}
            assert seen == {"node-a", "node-b"}
            for _ in range(2):
                page = await http.get(f"/w/{wid}/speak")
                assert page.status_code == 200 and "speak-config" in page.text
                assert page.headers["x-webinar-node"] == "node-a", "the speaker page goes to the media node"
            contents = await http.get(f"/webinars/{wid}/content")
            assert contents.status_code == 200 and contents.headers["x-webinar-node"] == "node-a"

            # The speaker sockets (what speak.js opens) all land on node A, and are the room's socket.
            speakers: list[RoomClient] = []
            pc = await aiortc_offer()
            try:
                for _ in range(SPEAKER_SOCKETS):
                    client = RoomClient(f"ws://127.0.0.1:{front.port}/ws/speak/{wid}", cookie=cookie, origin=front.url)
                    speakers.append(client)
                    welcome = await client.connect()
                    assert welcome["role"] == "speaker"
                    assert node_of(client) == "node-a", "a speaker socket went to another node than the media node"
                speaker = speakers[-1]
                # An aiortc speaker through nginx: offer, connection check, on stage, live; its program's
                # LL-HLS is reachable through nginx. The check's result is kept by node A, which lets
                # the speaker on stage: it would be unknown there had the check gone to node B.
                reply = await speaker.send("rtc.offer", sdp=pc.localDescription.sdp)
                assert reply["type"] == "ack", reply
                await pc.setRemoteDescription(RTCSessionDescription(**reply["answer"]))
                for _ in range(2):
                    check = await http.post(f"/w/{wid}/speak/preflight", content=os.urandom(512 * 1024),
                                            headers={"x-csrf-token": http.csrf})
                    assert check.status_code == 200 and check.headers["x-webinar-node"] == "node-a", check.text
                joined = await speaker.send("stage.join")
                assert joined["type"] == "ack", joined
                program = await wait_segments(http, f"{front.url}/hls/{wid}/index.m3u8", 1, PROGRAM_TIMEOUT_S)
                assert finished(program)
                # Shared content: a 3 MB PDF (over the server-wide 2m body limit) is stored on node A,
                # its pages are served from there, and showing it is a command on the speaker socket.
                deck = cf.heavy_pdf(tmp_path / "deck.pdf", 3)
                upload = await http.post(f"/webinars/{wid}/content?name=deck.pdf", content=deck.read_bytes(),
                                         headers={"x-csrf-token": http.csrf})
                assert upload.status_code == 201 and upload.headers["x-webinar-node"] == "node-a", upload.text
                item = upload.json()["item"]
                for _ in range(2):
                    picture = await http.get(f"/webinars/{wid}/content/{item['id']}/pages/0")
                    assert picture.status_code == 200 and picture.headers["x-webinar-node"] == "node-a"
                shown = await speaker.send("content.show", item_id=item["id"], index=0)
                assert shown["type"] == "ack" and shown["content"]["item_id"] == item["id"], shown
                hangup = await speaker.send("rtc.hangup")
                assert hangup["type"] == "ack", hangup
            finally:
                await pc.close()
                for client in speakers:
                    await client.close()

        # Node B, asked directly, takes no speaker: a clear reason, not a second program.
        async with Browser(node_b.url) as direct:
            await direct.login(email, PASSWORD)
            cookie_b = f"wb_session={direct.cookies['wb_session']}"
            first, code, reason = await refused_speaker_socket(
                f"ws://127.0.0.1:{node_b.port}/ws/speak/{wid}", cookie_b, node_b.url)
            assert first["type"] == "error" and first["code"] == "media_node", first
            assert "node-b" in first["message"] and "WEBINAR_ENABLE_WEBCAM=0" in first["message"], first
            assert (code, reason) == (4403, "media_node")
            # On the ordinary room socket the speaker is welcome (chat, Q&A...), but nothing that acts on
            # the room's media is taken there.
            room = RoomClient(f"ws://127.0.0.1:{node_b.port}/ws/rooms/{wid}", cookie=cookie_b, origin=node_b.url)
            pc = await aiortc_offer()
            try:
                assert (await room.connect())["role"] == "speaker" and node_of(room) == "node-b"
                for kind, fields in (("rtc.offer", {"sdp": pc.localDescription.sdp}), ("stage.join", {}),
                                     ("content.clear", {})):
                    reply = await room.send(kind, **fields)
                    assert reply["type"] == "error" and reply["code"] == "media_node", (kind, reply)
                chat = await room.send("chat.send", text="from node B")
                assert chat["type"] == "ack", chat
            finally:
                await pc.close()
                await room.close()
            check = await direct.post(f"/w/{wid}/speak/preflight", content=os.urandom(128 * 1024),
                                      headers={"x-csrf-token": direct.csrf})
            assert check.status_code == 421 and check.json()["error"] == "media_node", check.text
            upload = await direct.post(f"/webinars/{wid}/content?name=deck.pdf", content=b"%PDF-1.4 not stored",
                                       headers={"x-csrf-token": direct.csrf})
            assert upload.status_code == 421 and upload.json()["error"] == "media_node", upload.text
        conn = await asyncpg.connect(dsn)
        try:
            # Only the upload that went to node A was stored; node B's was refused.
            assert await conn.fetchval("SELECT count(*) FROM webcam_content WHERE webinar_id = $1", wid) == 1
        finally:
            await conn.close()
