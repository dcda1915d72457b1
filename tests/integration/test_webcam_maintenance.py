"""Maintenance mode (R-OPS-3) in webcam rooms: going on stage would start a new live, so it is
refused (code ``maintenance``, the same reason as RTMP and SRT publishers get) and nothing goes
live; a webcam live already running goes on when the mode is turned on, people may still come
on and off its stage, and its playlist keeps growing.

The speaker is an aiortc peer on the real room WebSocket (no browser: the page's side of the
refusal is the generic command error path, covered by the speaker page tests)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from server.maintenance import REFUSAL, set_maintenance, watch_of
from tests.conftest import LiveServer
from tests.integration.test_rooms_ws import staff_cookie
from tests.integration.test_webcam_room import (
    _SolidCamera,
    latest_program,
    until_live,
    webcam_world,
)
from tests.support.room_client import RoomClient
from tests.world import PASSWORD

pytestmark = [pytest.mark.integration]


async def switch(live: LiveServer, enabled: bool) -> None:
    """Turn maintenance on or off and make this node's watch see it now (no polling wait)."""
    await set_maintenance(live.services.db, enabled, "upgrade" if enabled else "", changed_by="test",
                          broker=live.services.broker)
    watch = watch_of(live.services)
    assert watch is not None, "the app's lifespan starts the maintenance watch"
    await watch.refresh()
    assert watch.current.enabled is enabled


@contextlib.asynccontextmanager
async def aiortc_speaker(live: LiveServer, wid: uuid.UUID, email: str, screen: Any = None) -> AsyncIterator[RoomClient]:
    """A logged-in speaker whose connection check passed, backstage with an aiortc camera (and
    ``screen``, a video track, on a second video section as the speaker page's screen share)."""
    from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription

    async with live.client() as http:
        await http.login(email, PASSWORD)
        await http.get(f"/w/{wid}/speak")
        check = await http.post(f"/w/{wid}/speak/preflight", content=os.urandom(512 * 1024),
                                headers={"x-csrf-token": http.csrf})
        assert check.status_code == 200, check.text
        client = RoomClient(f"ws://127.0.0.1:{live.settings.port}/ws/rooms/{wid}",
                            cookie=f"wb_session={http.cookies['wb_session']}", origin=live.url)
        await client.connect()
        pc = RTCPeerConnection()
        video = pc.addTransceiver(_SolidCamera(), direction="sendrecv")
        video.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/H264"])
        pc.addTransceiver("audio", direction="sendrecv")
        if screen is not None:
            pc.addTransceiver(screen, direction="sendonly")
        try:
            await pc.setLocalDescription(await pc.createOffer())
            reply = await client.send("rtc.offer", sdp=pc.localDescription.sdp)
            assert reply["type"] == "ack", reply
            await pc.setRemoteDescription(RTCSessionDescription(**reply["answer"]))
            yield client
        finally:
            await pc.close()
            await client.close()


@pytest.mark.settings(live_grace_s=5.0)
async def test_new_webcam_live_refused_in_maintenance_running_one_goes_on(live: LiveServer) -> None:
    world, _ = await webcam_world(live)
    wid = world.a.webinar.id
    db = live.services.db
    moderator = RoomClient(f"ws://127.0.0.1:{live.settings.port}/ws/rooms/{wid}",
                           cookie=await staff_cookie(live, world.a.moderator.email), origin=live.url)
    await moderator.connect()
    try:
        await switch(live, True)
        async with aiortc_speaker(live, wid, world.a.speaker.email) as speaker:
            assert speaker.welcome is not None
            me = speaker.welcome["participant"]["id"]
            refused = await speaker.send("stage.join")
            assert refused["type"] == "error" and refused["code"] == "maintenance", refused
            assert refused["message"] == REFUSAL
            room = live.services.extras["webcam"].room(wid)
            assert room.stage.on_stage == []
            # A moderator bringing them on is refused the same way.
            brought = await moderator.send("stage.join", participant_id=me)
            assert brought["code"] == "maintenance", brought
            await asyncio.sleep(1)  # nothing starts behind the refusal
            assert live.services.extras["live"].publication(wid) is None
            assert await db.fetchval("SELECT state FROM webinars WHERE id = $1", wid) == "announced"
            assert await db.fetchval("SELECT count(*) FROM room_events WHERE webinar_id = $1 AND kind = 'stage.state'",
                                     wid) == 0

            # Off: the same speaker goes on stage and the live starts.
            await switch(live, False)
            joined = await speaker.send("stage.join")
            assert joined["type"] == "ack", joined
            await until_live(live, wid)
            await latest_program(live, wid, after_segments=1)

            # On again while the live runs: it goes on (new segments), and the stage still works.
            await switch(live, True)
            segments_before = await _segment_count(live, wid)
            await latest_program(live, wid, after_segments=2)
            assert await _segment_count(live, wid) >= segments_before + 2
            left = await speaker.send("stage.leave")
            assert left["type"] == "ack" and left["stage"]["on_stage"] == [], left
            back = await speaker.send("stage.join")  # the live is still running: not a new one
            assert back["type"] == "ack" and [p["id"] for p in back["stage"]["on_stage"]] == [me], back
            await latest_program(live, wid, after_segments=1)
            assert await db.fetchval("SELECT state FROM webinars WHERE id = $1", wid) == "live"
            assert live.services.extras["webcam"].room(wid).live_refused is None
    finally:
        await moderator.close()
        with contextlib.suppress(Exception):
            await switch(live, False)


async def _segment_count(live: LiveServer, wid: uuid.UUID) -> int:
    import httpx
    import m3u8

    async with httpx.AsyncClient(timeout=20) as http:
        response = await http.get(f"{live.url}/hls/{wid}/index.m3u8")
    assert response.status_code == 200, response.status_code
    parsed: Any = m3u8.loads(response.text)
    return len([seg for seg in parsed.segments if seg.uri])
