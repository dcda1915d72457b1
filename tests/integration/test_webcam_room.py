"""Webcam rooms end to end: speakers in Chromium (fake camera and microphone) on the speaker
page ``/w/{id}/speak``, WebRTC to aiortc, the stage, the composed program through the LL-HLS
packager, and the viewer page playing it.

Every speaker's fake camera shows the same solid colour (a y4m file made by ffmpeg, given to
Chromium with ``--use-file-for-fake-video-capture``), so the tiles of the program can be checked
exactly: decoded program frames must show that colour in each expected tile and video black
elsewhere. The fake microphone is Chromium's beep: the program's AAC must not be silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

import av
import httpx
import m3u8
import numpy as np
import pytest
from playwright.async_api import Page

from rooms.webcam.compositor import BACKGROUND, CONTENT_BACKGROUND, Rect, layout_regions
from server.users import create_user
from server.webinars import set_state
from tests.conftest import LiveServer
from tests.support.browser import (
    Chromium,
    PageErrors,
    chromium_available,
    failed_resource,
    watch_errors,
)
from tests.support.ffmpeg import FFMPEG
from tests.support.webrtc import solid_video_track
from tests.world import PASSWORD, World, make_world

pytestmark = [pytest.mark.integration, pytest.mark.browser,
              pytest.mark.skipif(not chromium_available(), reason="Debian's chromium is needed")]

CAMERA_YUV = (145, 54, 34)
"""Y, U, V of the fake camera's picture (a saturated green)."""
_Y4M_DIR = Path(tempfile.mkdtemp(prefix="webinar-fake-camera-"))
CAMERA_FILE = _Y4M_DIR / "camera.y4m"
CHROMIUM_FAKE_MEDIA = True
CHROMIUM_EXTRA_ARGS = (f"--use-file-for-fake-video-capture={CAMERA_FILE}",)
WAIT_MS = 60_000
"""Longest wait for something to show up in a page (milliseconds): five browsers, the server and
its program encode share a 2-core machine (with other people's tests on it, here)."""
NO_FAVICON = failed_resource("/favicon.ico")


@pytest.fixture(scope="module", autouse=True)
def fake_camera_file() -> Path:
    """A 1 s 320x180 15 fps y4m of one solid colour (Chromium loops it); made before Chromium starts.
    Small on purpose: five browsers encode it at once on a shared 2-core machine."""
    if not CAMERA_FILE.exists():
        y, u, v = CAMERA_YUV
        plane = bytes([y]) * (320 * 180) + bytes([u]) * (160 * 90) + bytes([v]) * (160 * 90)
        raw = _Y4M_DIR / "camera.yuv"
        raw.write_bytes(plane * 15)
        subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "yuv420p",
                        "-s", "320x180", "-r", "15", "-i", str(raw), "-pix_fmt", "yuv420p", str(CAMERA_FILE)],
                       check=True, timeout=60)
    return CAMERA_FILE


async def webcam_world(live: LiveServer, extra_speakers: int = 0) -> tuple[World, list[Any]]:
    """Account A's webinar as an announced webcam room; its speaker, plus ``extra_speakers`` more."""
    db = live.services.db
    world = await make_world(db)
    wid = world.a.webinar.id
    await db.execute("UPDATE webinars SET room_type = 'webcam' WHERE id = $1", wid)
    await set_state(db, wid, "announced")
    speakers = [world.a.speaker]
    for i in range(extra_speakers):
        user = await create_user(db, f"speaker{i}-{uuid.uuid4().hex[:6]}@example.com", name=f"Speaker {i + 2}",
                                 password=PASSWORD)
        await db.execute("INSERT INTO webinar_members (webinar_id, user_id, role) VALUES ($1, $2, 'speaker')",
                         wid, user.id)
        speakers.append(user)
    return world, speakers


async def open_speak_page(chromium: Chromium, live: LiveServer, wid: uuid.UUID, user: Any) -> tuple[Page, PageErrors]:
    """Log in on the speaker page and wait for its camera preview."""
    page = await chromium.new_page()
    page.set_default_timeout(WAIT_MS)
    errors = watch_errors(page)
    await page.goto(f"{live.url}/w/{wid}/speak?lang=en")
    assert "/login" in page.url
    await page.locator("input[name=email]").fill(user.email)
    await page.locator("input[name=password]").fill(PASSWORD)
    await page.locator("form.card button[type=submit]").click()
    await page.wait_for_url(f"**/w/{wid}/speak", timeout=WAIT_MS)
    await page.wait_for_function("window.webinarSpeak && window.webinarSpeak.stream !== null", timeout=WAIT_MS)
    return page, errors


async def run_connection_check(page: Page) -> dict[str, Any]:
    """Press the speaker page's connection check; its result once it has a verdict."""
    await page.locator("#speak-check").click()
    await page.wait_for_function("window.webinarSpeak.preflight && window.webinarSpeak.preflight.verdict",
                                 timeout=WAIT_MS)
    return dict(await page.evaluate("window.webinarSpeak.preflight"))


async def speaker_page(chromium: Chromium, live: LiveServer, wid: uuid.UUID, user: Any) -> tuple[Page, PageErrors]:
    """Log in on the speaker page, run the connection check, join backstage."""
    page, errors = await open_speak_page(chromium, live, wid, user)
    preflight = await run_connection_check(page)
    # Loopback is far above 3.5 Mbps, but a busy shared machine can make the timed POST slow: not refused.
    assert preflight["verdict"] in ("ok", "warn"), preflight
    await page.locator("#speak-join").click()
    await page.wait_for_function("window.webinarSpeak.status === 'backstage'", timeout=WAIT_MS)
    return page, errors


async def go_on_stage(page: Page) -> None:
    await page.locator("#speak-on-stage").click()
    await page.wait_for_function("window.webinarSpeak.status === 'on_stage'", timeout=WAIT_MS)


async def until_live(live: LiveServer, wid: uuid.UUID, timeout: float = 20) -> None:
    """The first person on stage started the live (bounded wait)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while await live.services.db.fetchval("SELECT state FROM webinars WHERE id = $1", wid) != "live":
        room = live.services.extras["webcam"].room(wid)
        assert asyncio.get_running_loop().time() < deadline, f"not live: {room.live_refused}"
        await asyncio.sleep(0.2)


async def program_plays(page: Page) -> None:
    """The speaker's page receives the program over WebRTC: its <video> advances and has 1280x720."""
    deadline = asyncio.get_running_loop().time() + WAIT_MS / 1000
    while True:
        seen = await page.evaluate(
            """async () => {
                const v = document.getElementById('speak-program');
                const s = window.webinarSpeak;
                const found = {width: v.videoWidth, height: v.videoHeight, time: v.currentTime, status: s.status,
                               error: s.error, pc: s.pc && s.pc.connectionState};
                if (s.pc) (await s.pc.getStats()).forEach((r) => {
                    if (r.type === 'inbound-rtp' && r.kind === 'video') Object.assign(found, {
                        packets: r.packetsReceived, decoded: r.framesDecoded, codec: r.codecId, keyframes: r.keyFramesDecoded});
                });
                return found;
            }""")
        if seen["width"] == 1280 and seen["height"] == 720 and seen["time"] > 1:
            return
        assert asyncio.get_running_loop().time() < deadline, f"the program does not play in the speaker page: {seen}"
        await asyncio.sleep(0.5)


async def latest_program(live: LiveServer, wid: uuid.UUID, *, after_segments: int) -> tuple[list[av.VideoFrame], np.ndarray]:
    """Decode the newest complete HLS segment once the playlist has ``after_segments`` more than
    now: (video frames, audio samples as float)."""
    base = f"{live.url}/hls/{wid}/"
    async with httpx.AsyncClient(base_url=base, timeout=20) as http:
        async def playlist() -> m3u8.M3U8:
            response = await http.get("index.m3u8")
            if response.status_code == 404:  # no part yet
                return m3u8.loads("#EXTM3U\n")
            assert response.status_code == 200, response.status_code
            return m3u8.loads(response.text)

        deadline = asyncio.get_running_loop().time() + 40
        start = len([seg for seg in (await playlist()).segments if seg.uri])
        while True:
            parsed = await playlist()
            if len([seg for seg in parsed.segments if seg.uri]) >= start + after_segments:
                break
            assert asyncio.get_running_loop().time() < deadline, "the program's playlist did not grow"
            await asyncio.sleep(0.5)
        segment = [seg for seg in parsed.segments if seg.uri][-1]  # the last whole segment (not trailing parts)
        init_uri = segment.init_section.uri if segment.init_section else parsed.segment_map[0].uri
        init = (await http.get(init_uri)).content
        body = (await http.get(segment.uri)).content
    with av.open(io.BytesIO(init + body)) as container:
        frames, audio = [], []
        for frame in container.decode(*container.streams):
            if isinstance(frame, av.VideoFrame):
                frames.append(frame)
            else:
                audio.append(frame.to_ndarray().astype(np.float32).reshape(-1))
    assert frames and audio, (len(frames), len(audio))
    return frames, np.concatenate(audio)


def mean_yuv(frame: av.VideoFrame, rect: Rect, inset: int = 40) -> tuple[float, float, float]:
    flat = frame.to_ndarray().reshape(-1)
    w, h = frame.width, frame.height
    y = flat[:w * h].reshape(h, w)
    u = flat[w * h:w * h * 5 // 4].reshape(h // 2, w // 2)
    v = flat[w * h * 5 // 4:].reshape(h // 2, w // 2)
    x0, y0, x1, y1 = rect.x + inset, rect.y + inset, rect.x + rect.w - inset, rect.y + rect.h - inset
    return (float(y[y0:y1, x0:x1].mean()), float(u[y0 // 2:y1 // 2, x0 // 2:x1 // 2].mean()),
            float(v[y0 // 2:y1 // 2, x0 // 2:x1 // 2].mean()))


def near(found: tuple[float, ...], wanted: tuple[int, ...], tolerance: float = 12) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(found, wanted))


def assert_tiles(frames: list[av.VideoFrame], speakers: int) -> None:
    """The last frame shows ``speakers`` camera tiles where the grid puts them, black elsewhere."""
    frame = frames[-1]
    assert (frame.width, frame.height) == (1280, 720)
    regions = layout_regions("auto", speakers)
    for rect in regions.speakers:
        assert near(mean_yuv(frame, rect), CAMERA_YUV), (speakers, rect, mean_yuv(frame, rect))
    if speakers == 2:  # the bands above and below the two tiles
        assert near(mean_yuv(frame, Rect(0, 0, 1280, 180), inset=20), BACKGROUND), mean_yuv(frame, Rect(0, 0, 1280, 180), 20)
    if speakers == 3:
        assert near(mean_yuv(frame, Rect(0, 360, 320, 360), inset=20), BACKGROUND)


def assert_not_silent(samples: np.ndarray) -> None:
    rms = float(np.sqrt(np.mean(samples ** 2)))
    assert rms > 0.01, f"the program's audio is silent (rms {rms:.5f})"


def assert_clean(*pages: tuple[Page, PageErrors]) -> None:
    for page, errors in pages:
        assert errors.unexpected(allow=NO_FAVICON) == [], page.url


async def stage_events(live: LiveServer, wid: uuid.UUID) -> list[dict[str, Any]]:
    rows = await live.services.db.fetch(
        "SELECT kind, audience, program_ms, data::text AS data FROM room_events WHERE webinar_id = $1 "
        "AND kind LIKE 'stage.%' ORDER BY id", wid)
    return [dict(r) for r in rows]


@pytest.mark.settings(live_grace_s=2.0)
async def test_one_then_two_speakers_make_the_program_and_a_viewer_plays_it(live: LiveServer, chromium: Chromium) -> None:
    world, speakers = await webcam_world(live, extra_speakers=1)
    wid = world.a.webinar.id
    first = await speaker_page(chromium, live, wid, speakers[0])
    await go_on_stage(first[0])
    await until_live(live, wid)
    await program_plays(first[0])
    frames, audio = await latest_program(live, wid, after_segments=2)
    assert_tiles(frames, 1)
    assert_not_silent(audio)

    second = await speaker_page(chromium, live, wid, speakers[1])
    # Backstage: staff see each other; the stage still has one person.
    await first[0].wait_for_function("window.webinarSpeak.backstage.length === 1", timeout=WAIT_MS)
    await go_on_stage(second[0])
    await program_plays(second[0])
    await first[0].wait_for_function("window.webinarSpeak.stage.on_stage.length === 2", timeout=WAIT_MS)
    frames, audio = await latest_program(live, wid, after_segments=2)
    assert_tiles(frames, 2)
    assert_not_silent(audio)

    # A viewer's page plays the program.
    viewer = await chromium.new_page()
    viewer_errors = watch_errors(viewer)
    await viewer.goto(f"{live.url}/w/{wid}")
    from tests.support.browser import wait_video_advancing

    await wait_video_advancing(viewer, 2.0, timeout=40)

    events = await stage_events(live, wid)
    states = [e for e in events if e["kind"] == "stage.state"]
    assert states and all(e["audience"] == "all" for e in states)
    assert all(e["audience"] == "staff" for e in events if e["kind"] == "stage.backstage")
    assert states[-1]["program_ms"] is not None  # program-timed (the live was running)

    # The second speaker leaves the stage, then the room; the program is back to one tile.
    await second[0].locator("#speak-off-stage").click()
    await second[0].wait_for_function("window.webinarSpeak.status === 'backstage'", timeout=WAIT_MS)
    await second[0].locator("#speak-leave").click()
    await first[0].wait_for_function("window.webinarSpeak.backstage.length === 0", timeout=WAIT_MS)
    frames, _ = await latest_program(live, wid, after_segments=2)
    assert_tiles(frames, 1)
    assert_clean(first, second, (viewer, viewer_errors))


async def test_four_speakers_fill_the_grid_and_a_fifth_is_refused(live: LiveServer, chromium: Chromium) -> None:
    world, speakers = await webcam_world(live, extra_speakers=4)
    wid = world.a.webinar.id
    pages = []
    for user in speakers[:4]:
        page = await speaker_page(chromium, live, wid, user)
        await go_on_stage(page[0])
        pages.append(page)
    fifth = await speaker_page(chromium, live, wid, speakers[4])
    await fifth[0].locator("#speak-on-stage").click()
    await fifth[0].wait_for_function("window.webinarSpeak.error !== null", timeout=WAIT_MS)
    error = await fifth[0].evaluate("window.webinarSpeak.error")
    assert "4 speakers at most" in error
    assert await fifth[0].evaluate("window.webinarSpeak.status") == "backstage"
    assert await fifth[0].text_content("#speak-error") == error
    frames, audio = await latest_program(live, wid, after_segments=2)
    assert_tiles(frames, 4)
    assert_not_silent(audio)
    await program_plays(fifth[0])  # backstage sees the program too
    assert_clean(*pages, fifth)


async def test_speak_page_access_and_viewers_refused_on_signaling(live: LiveServer) -> None:
    world, _ = await webcam_world(live)
    wid = world.a.webinar.id
    async with live.client() as outsider:
        await outsider.login(world.b.speaker.email, PASSWORD)
        assert (await outsider.get(f"/w/{wid}/speak")).status_code == 404
    async with live.client() as speaker:
        await speaker.login(world.a.speaker.email, PASSWORD)
        page = await speaker.get(f"/w/{wid}/speak")
        assert page.status_code == 200 and 'id="speak-config"' in page.text
        assert (await speaker.get(f"/w/{wid}/speak/preflight?bytes=100")).status_code == 400
        download = await speaker.get(f"/w/{wid}/speak/preflight?bytes=131072")
        assert download.status_code == 200 and len(download.content) == 131072
        no_csrf = await speaker.post(f"/w/{wid}/speak/preflight", content=b"x" * 131072)
        assert no_csrf.status_code == 403
        upload = await speaker.post(f"/w/{wid}/speak/preflight", content=b"x" * 131072,
                                    headers={"x-csrf-token": speaker.csrf})
        assert upload.status_code == 200 and upload.json()["bytes"] == 131072
        too_big = await speaker.post(f"/w/{wid}/speak/preflight", content=b"x" * (9 * 1024 * 1024),
                                     headers={"x-csrf-token": speaker.csrf})
        assert too_big.status_code == 413
    # A studio webinar's speaker page explains instead of showing the room.
    await live.services.db.execute("UPDATE webinars SET room_type = 'studio' WHERE id = $1", wid)
    async with live.client() as speaker:
        await speaker.login(world.a.speaker.email, PASSWORD)
        page = await speaker.get(f"/w/{wid}/speak")
        assert page.status_code == 200 and 'id="speak-closed"' in page.text and "speak-config" not in page.text


async def test_signaling_is_for_staff_of_webcam_rooms_only(live: LiveServer) -> None:
    """Viewers are refused every stage.* and rtc.* message; a bad offer gets a clear error and
    changes nothing; going on stage needs the connection check (R-ROOM-4); a studio room refuses."""
    from tests.integration.test_rooms_ws import guest, staff_cookie
    from tests.support.room_client import RoomClient

    world, _ = await webcam_world(live)
    wid = world.a.webinar.id
    url = f"ws://127.0.0.1:{live.settings.port}/ws/rooms/{wid}"
    viewer = RoomClient(url, token=await guest(live, wid, "Vic"))
    await viewer.connect()
    speaker = RoomClient(url, cookie=await staff_cookie(live, world.a.speaker.email), origin=live.url)
    await speaker.connect()
    try:
        for kind, fields in (("rtc.offer", {"sdp": "v=0 not really an offer"}), ("stage.join", {}),
                             ("stage.leave", {}), ("rtc.hangup", {}), ("stage.layout", {"layout": "slide"})):
            reply = await viewer.send(kind, **fields)
            assert reply["type"] == "error" and reply["code"] == "forbidden", (kind, reply)
        reply = await speaker.send("stage.layout", layout="slide")  # moderators only
        assert reply["code"] == "forbidden"
        reply = await speaker.send("stage.join")
        assert reply["code"] == "not_backstage" and "camera" in reply["message"]
        reply = await speaker.send("rtc.offer", sdp="v=0 garbage that is not an SDP offer")
        assert reply["type"] == "error" and reply["code"] == "rtc_failed", reply
        reply = await speaker.send("rtc.offer", sdp="x" * 15_000)  # over MAX_SDP_CHARS, under the frame limit
        assert reply["type"] == "error" and reply["code"] == "invalid", reply
        room = live.services.extras["webcam"].room(wid)
        assert room.peers == {} and room.stage.present == {}
        await live.services.db.execute("UPDATE webinars SET room_type = 'studio' WHERE id = $1", wid)
        reply = await speaker.send("stage.join")
        assert reply["code"] == "not_webcam"
    finally:
        await viewer.close()
        await speaker.close()


def _SolidCamera() -> Any:  # noqa: N802 (kept as the name other webcam tests import)
    """An aiortc video track of one colour at 30 fps, 640x360 (a speaker without a browser)."""
    return solid_video_track(CAMERA_YUV, 640, 360, 30)


async def test_aiortc_speaker_goes_on_stage_and_leaves_over_the_websocket(live: LiveServer) -> None:
    """The whole signaling path without a browser: an aiortc peer as the speaker's browser."""
    from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription

    from tests.integration.test_rooms_ws import staff_cookie
    from tests.support.room_client import RoomClient

    world, _ = await webcam_world(live)
    wid = world.a.webinar.id
    url = f"ws://127.0.0.1:{live.settings.port}/ws/rooms/{wid}"
    moderator = RoomClient(url, cookie=await staff_cookie(live, world.a.moderator.email), origin=live.url)
    await moderator.connect()
    async with live.client() as http:
        await http.login(world.a.speaker.email, PASSWORD)
        await http.get(f"/w/{wid}/speak")
        speaker = RoomClient(url, cookie=f"wb_session={http.cookies['wb_session']}", origin=live.url)
        await speaker.connect()
        pc = RTCPeerConnection()
        video = pc.addTransceiver(_SolidCamera(), direction="sendrecv")
        video.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/H264"])
        pc.addTransceiver("audio", direction="sendrecv")
        received: list[Any] = []

        @pc.on("track")
        def on_track(track: Any) -> None:
            async def read() -> None:
                with contextlib.suppress(Exception):
                    while len(received) < 10_000:
                        received.append(await track.recv())
            asyncio.ensure_future(read())

        try:
            await pc.setLocalDescription(await pc.createOffer())
            reply = await speaker.send("rtc.offer", sdp=pc.localDescription.sdp)
            assert reply["type"] == "ack", reply
            await pc.setRemoteDescription(RTCSessionDescription(**reply["answer"]))
            me = speaker.welcome["participant"]["id"]
            await moderator.event("stage.backstage", lambda e: [p["id"] for p in e["data"]["backstage"]] == [me], 10)
            refused = await speaker.send("stage.join")  # no connection check yet (R-ROOM-4)
            assert refused["code"] == "preflight", refused
            check = await http.post(f"/w/{wid}/speak/preflight", content=os.urandom(512 * 1024),
                                    headers={"x-csrf-token": http.csrf})
            assert check.status_code == 200 and check.json()["upload_mbps"] > 1
            joined = await speaker.send("stage.join")
            assert joined["type"] == "ack" and [p["id"] for p in joined["stage"]["on_stage"]] == [me]
            await until_live(live, wid)
            layout = await moderator.send("stage.layout", layout="speaker_slide")
            assert layout["stage"]["layout"] == "speaker_slide"
            spot = await moderator.send("stage.spotlight", participant_id=me)
            assert spot["stage"]["spotlight"] == me
            deadline = asyncio.get_running_loop().time() + 20
            while not any(isinstance(f, av.VideoFrame) and f.width == 1280 for f in received):
                assert asyncio.get_running_loop().time() < deadline, "no program picture reached the speaker"
                await asyncio.sleep(0.2)
            # The moderator's layout reaches the program: the speaker in the right-hand column,
            # the (empty) content region dark grey.
            frames, _ = await latest_program(live, wid, after_segments=2)
            regions = layout_regions("speaker_slide", 1)
            assert regions.content is not None
            assert near(mean_yuv(frames[-1], regions.speakers[0], inset=30), CAMERA_YUV), mean_yuv(
                frames[-1], regions.speakers[0], inset=30)
            assert near(mean_yuv(frames[-1], regions.content), CONTENT_BACKGROUND)
            hangup = await speaker.send("rtc.hangup")
            assert hangup["type"] == "ack", hangup
            await moderator.event("stage.backstage", lambda e: e["data"]["backstage"] == [] and e["id"] > joined["event_id"], 10)
            await moderator.event("stage.state", lambda e: e["data"]["on_stage"] == [], 10)
        finally:
            await pc.close()
            await speaker.close()
            await moderator.close()
