"""Studio rooms end to end: the ffmpeg command line publishes over RTMP or SRT,
the server packages LL-HLS, a client reads playlists and parts, the replay
appears when the live ends."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import uuid

import av
import httpx
import m3u8
import pytest

from server.webinars import create_webinar, get_webinar, rotate_stream_key, set_state
from tests.conftest import LiveServer
from tests.support.ffmpeg import finish, publisher
from tests.world import make_world


async def studio_webinar(live: LiveServer, room_type: str = "studio", announce: bool = True) -> tuple[uuid.UUID, str]:
    db = live.services.db
    world = await make_world(db)
    webinar = world.a.webinar
    if room_type != "studio":
        webinar = await create_webinar(db, world.a.account_id, title="Webcam", room_type="webcam",
                                       starts_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=30), duration_minutes=30)
    if announce:
        await set_state(db, webinar.id, "announced")
    return webinar.id, await rotate_stream_key(db, webinar.id)


def rtmp_url(live: LiveServer, key: str) -> str:
    return f"rtmp://127.0.0.1:{live.settings.rtmp_port}/live/{key}"


def srt_url(live: LiveServer, key: str) -> str:
    return f"srt://127.0.0.1:{live.settings.srt_port}?streamid={key}&pkt_size=1316&latency=120000"


async def wait_playlist(client: httpx.AsyncClient, url: str, predicate: object, timeout: float = 20) -> m3u8.M3U8:
    async with asyncio.timeout(timeout):
        while True:
            r = await client.get(url)
            if r.status_code == 200:
                parsed = m3u8.loads(r.text)
                if predicate(parsed):  # type: ignore[operator]
                    return parsed
            await asyncio.sleep(0.2)


async def wait_state(live: LiveServer, webinar_id: uuid.UUID, state: str, timeout: float = 5) -> None:
    """The webinar's state moves (ended, then replay) just after the VOD playlist appears."""
    async with asyncio.timeout(timeout):
        while (await get_webinar(live.services.db, webinar_id)).state != state:
            await asyncio.sleep(0.1)


def finished(playlist: m3u8.M3U8) -> list[m3u8.Segment]:
    """Whole segments (m3u8 lists the parts of the segment in progress as a segment without URI)."""
    return [s for s in playlist.segments if s.uri]


def decode(data: bytes) -> tuple[int, int]:
    """(video frames, audio frames) decoded from an fMP4 byte string."""
    video = audio = 0
    with av.open(io.BytesIO(data), format="mp4") as container:
        for packet in container.demux():
            for frame in packet.decode():
                if isinstance(frame, av.VideoFrame):
                    video += 1
                else:
                    audio += 1
    return video, audio


@pytest.mark.settings(live_grace_s=1.0)
@pytest.mark.parametrize("protocol", ["rtmp", "srt"])
async def test_publish_package_play_and_replay(live: LiveServer, protocol: str) -> None:
    webinar_id, key = await studio_webinar(live)
    base = f"{live.url}/hls/{webinar_id}"
    url = rtmp_url(live, key) if protocol == "rtmp" else srt_url(live, key)
    async with httpx.AsyncClient(timeout=20) as client, publisher(url, 9, fmt="flv" if protocol == "rtmp" else "mpegts") as proc:
        playlist = await wait_playlist(client, f"{base}/index.m3u8", lambda p: len(finished(p)) >= 2)
        assert (await get_webinar(live.services.db, webinar_id)).state == "live"
        raw = (await client.get(f"{base}/index.m3u8")).text
        assert "#EXT-X-PART-INF:PART-TARGET=" in raw and "#EXT-X-PRELOAD-HINT:TYPE=PART" in raw
        assert "CAN-BLOCK-RELOAD=YES" in raw and "#EXT-X-PROGRAM-DATE-TIME" in raw
        assert playlist.server_control.can_block_reload and playlist.part_inf.part_target > 0
        init_uri = playlist.segment_map[0].uri
        init = (await client.get(f"{base}/{init_uri}")).content
        # Parts are listed and each decodes after the init section.
        parts = [p for seg in playlist.segments for p in seg.parts]
        assert parts, "the playlist advertises parts"
        first_part = await client.get(f"{base}/{parts[0].uri}")
        assert first_part.status_code == 200 and "immutable" in first_part.headers["cache-control"]
        segment = await client.get(f"{base}/{playlist.segments[0].uri}")
        video, audio = decode(init + segment.content)
        assert video >= 25 and audio >= 30
        # Blocking reload: ask for the next segment, get it when it exists; too far ahead is a 400.
        next_msn = playlist.media_sequence + len(finished(playlist)) + 1
        assert (await client.get(f"{base}/index.m3u8", params={"_HLS_msn": next_msn + 50})).status_code == 400
        assert (await client.get(f"{base}/index.m3u8", params={"_HLS_part": 1})).status_code == 400
        blocked = await client.get(f"{base}/index.m3u8", params={"_HLS_msn": next_msn, "_HLS_part": 0})
        assert blocked.status_code == 200
        answer = m3u8.loads(blocked.text)
        assert answer.media_sequence + len(finished(answer)) >= next_msn
        # The preload hint's part is held until it exists, then served.
        hint = m3u8.loads((await client.get(f"{base}/index.m3u8")).text).preload_hint
        assert hint is not None
        hinted = await client.get(f"{base}/{hint.uri}")
        assert hinted.status_code == 200 and len(hinted.content) > 0
        status, err = await finish(proc, 30)
        assert status == 0, err
    # The live ends after the grace window: ENDLIST, VOD, state replay, MP4.
    async with httpx.AsyncClient(timeout=20) as client:
        vod = await wait_playlist(client, f"{base}/index.m3u8", lambda p: p.is_endlist)
        assert vod.playlist_type == "vod" and 8.0 <= sum(s.duration for s in vod.segments) <= 10.5
        await wait_state(live, webinar_id, "replay")
        async with asyncio.timeout(30):
            while (r := await client.get(f"{base}/replay.mp4")).status_code != 200:
                await asyncio.sleep(0.2)
        with av.open(io.BytesIO(r.content)) as mp4:
            assert {s.type for s in mp4.streams} >= {"video", "audio"}
            duration = float(mp4.duration or 0) / av.time_base
            assert 8.0 <= duration <= 10.5
            frames = sum(1 for _ in mp4.decode(video=0))
            assert frames >= 240


@pytest.mark.settings(live_grace_s=1.0)
async def test_refusals_leave_other_lives_running(live: LiveServer) -> None:
    webinar_id, key = await studio_webinar(live)
    webcam_id, webcam_key = await studio_webinar(live, room_type="webcam")
    base = f"{live.url}/hls/{webinar_id}"
    async with httpx.AsyncClient(timeout=20) as client, publisher(rtmp_url(live, key), 8) as good:
        await wait_playlist(client, f"{base}/index.m3u8", lambda p: len(finished(p)) >= 1)
        # A wrong key, a webcam webinar's key and a second publisher are refused.
        for bad_url in (rtmp_url(live, "wbk_not_a_key"), rtmp_url(live, webcam_key), rtmp_url(live, key),
                        srt_url(live, "wbk_not_a_key")):
            fmt = "mpegts" if bad_url.startswith("srt") else "flv"
            async with publisher(bad_url, 2, fmt=fmt) as bad:
                status, _ = await finish(bad, 20)
                assert status != 0, bad_url
        # Garbage and a truncated handshake on the RTMP port.
        for payload in (b"GET / HTTP/1.1\r\n\r\n" * 50, b"\x03" + b"\x00" * 100):
            reader, writer = await asyncio.open_connection("127.0.0.1", live.settings.rtmp_port)
            writer.write(payload)
            await writer.drain()
            writer.close()
        before = len(finished(m3u8.loads((await client.get(f"{base}/index.m3u8")).text)))
        await wait_playlist(client, f"{base}/index.m3u8", lambda p: len(finished(p)) > before + 1)
        status, err = await finish(good, 30)
        assert status == 0, err
    assert live.services.extras["live"].publication(webcam_id) is None
    assert (await get_webinar(live.services.db, webcam_id)).state == "announced"


@pytest.mark.settings(live_grace_s=8.0)
async def test_publisher_reconnect_continues_the_live(live: LiveServer) -> None:
    webinar_id, key = await studio_webinar(live)
    base = f"{live.url}/hls/{webinar_id}"
    async with httpx.AsyncClient(timeout=20) as client:
        async with publisher(rtmp_url(live, key), 30) as first:
            # A drop (kill -9: no FCUnpublish), not a clean end, which would end the live.
            await wait_playlist(client, f"{base}/index.m3u8", lambda p: len(finished(p)) >= 1)
            await asyncio.sleep(2.0)
            first.kill()
            await first.wait()
        await asyncio.sleep(1.0)
        assert live.services.extras["live"].publication(webinar_id) is not None, "still live during the grace window"
        async with publisher(rtmp_url(live, key), 4) as second:
            playlist = await wait_playlist(client, f"{base}/index.m3u8", lambda p: any(s.discontinuity for s in p.segments))
            assert playlist.segments
            await finish(second, 30)
        await live.services.extras["live"].end_live(webinar_id, "test over")
        vod = m3u8.loads((await client.get(f"{base}/index.m3u8")).text)
        assert vod.is_endlist
        assert any(s.discontinuity for s in vod.segments)
        assert 5.0 <= sum(s.duration for s in vod.segments) <= 12.0


@pytest.mark.settings(live_grace_s=30.0)  # the production default, stated: a drop waits 30 s
async def test_clean_end_ends_the_live_at_once_a_drop_waits(live: LiveServer) -> None:
    """A drop (ffmpeg killed with SIGKILL: no FCUnpublish) keeps the live for the grace
    window; a clean end (ffmpeg stopping normally sends FCUnpublish + deleteStream) ends
    it at once: VOD playlist and replay MP4 within seconds, not after the 30 s window."""
    webinar_id, key = await studio_webinar(live)
    base = f"{live.url}/hls/{webinar_id}"
    manager = live.services.extras["live"]
    broker = live.services.broker
    async with broker.subscribe(f"live:{webinar_id}") as events, httpx.AsyncClient(timeout=20) as client:
        async with publisher(rtmp_url(live, key), 60) as dropped:
            await wait_playlist(client, f"{base}/index.m3u8", lambda p: len(finished(p)) >= 1)
            dropped.kill()
            await dropped.wait()
        await asyncio.sleep(3.0)
        assert manager.publication(webinar_id) is not None and not manager.is_on_air(webinar_id)
        assert not m3u8.loads((await client.get(f"{base}/index.m3u8")).text).is_endlist, "a drop waits"
        assert (await get_webinar(live.services.db, webinar_id)).state == "live"

        async with publisher(rtmp_url(live, key), 5) as clean:  # back within the window, then ends cleanly
            await wait_playlist(client, f"{base}/index.m3u8", lambda p: any(s.discontinuity for s in p.segments))
            status, err = await finish(clean, 30)
            assert status == 0, err
        loop = asyncio.get_running_loop()
        ended_at = loop.time()
        vod = await wait_playlist(client, f"{base}/index.m3u8", lambda p: p.is_endlist, timeout=10)
        vod_ready = loop.time() - ended_at
        assert vod.playlist_type == "vod" and any(s.discontinuity for s in vod.segments)
        async with asyncio.timeout(15):
            while (await client.get(f"{base}/replay.mp4")).status_code != 200:
                await asyncio.sleep(0.2)
        mp4_ready = loop.time() - ended_at
        assert vod_ready < 5.0 and mp4_ready < 15.0, (vod_ready, mp4_ready)  # far inside the 30 s window
        await wait_state(live, webinar_id, "replay")
        received: list[bytes] = []
        async with asyncio.timeout(5):
            async for message in events:
                received.append(message)
                if b"live.ended" in message:
                    break
    kinds = [json.loads(m)["type"] for m in received if b'"live.health"' not in m]
    assert kinds == ["live.started", "live.interrupted", "live.resumed", "live.ended"], kinds
    assert b"the publisher ended the stream" in received[-1]


@pytest.mark.settings(live_max_s=4.0, live_grace_s=30.0)
async def test_four_hour_limit_cuts_the_publisher(live: LiveServer) -> None:
    """R-ROOM-2 with the limit scaled down to 4 s: the live ends and the encoder is cut."""
    webinar_id, key = await studio_webinar(live)
    broker = live.services.broker
    async with broker.subscribe(f"live:{webinar_id}") as events:
        async with publisher(rtmp_url(live, key), 30) as proc:
            status, _ = await finish(proc, 25)
        assert status != 0, "ffmpeg was cut before its 30 s"
        received = []
        async with asyncio.timeout(5):
            async for message in events:
                received.append(message)
                if b"live.ended" in message:
                    break
    assert any(b"live.started" in m for m in received) and any(b"4-hour limit" in m for m in received)
    assert (await get_webinar(live.services.db, webinar_id)).state == "replay"
