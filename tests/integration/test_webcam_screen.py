"""Screen sharing in webcam rooms, server side: an aiortc speaker sends a camera and, on a second
video section, a "screen" (the speaker page's getDisplayMedia track); while screen pictures come
the program shows the screen full frame with the speaker as a picture in picture (``screen_pip``),
and once they stop (:data:`rooms.webcam.peer.SCREEN_STALE_S`) the program is back to the camera.

Decoded program frames from the LL-HLS output are checked by colour: the screen is a solid blue,
the camera the solid green of test_webcam_room.py."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from rooms.webcam.compositor import Rect, layout_regions
from rooms.webcam.peer import SCREEN_STALE_S
from tests.conftest import LiveServer
from tests.integration.test_webcam_maintenance import aiortc_speaker
from tests.integration.test_webcam_room import (
    CAMERA_YUV,
    NO_FAVICON,
    WAIT_MS,
    assert_tiles,
    go_on_stage,
    latest_program,
    mean_yuv,
    near,
    speaker_page,
    until_live,
    webcam_world,
)
from tests.support.browser import Chromium, chromium_available
from tests.support.webrtc import solid_video_track

pytestmark = [pytest.mark.integration]

SCREEN_YUV = (41, 240, 110)
"""Y, U, V of the fake screen (blue)."""


def _SolidScreen() -> Any:  # noqa: N802
    """An aiortc video track of one colour at 10 fps, 1280x720, while ``sharing`` is set; then
    silent (a stopped share: the browser sends no more pictures on that section)."""
    return solid_video_track(SCREEN_YUV, 1280, 720, 10)


async def test_shared_screen_fills_the_program_until_it_stops(live: LiveServer) -> None:
    world, _ = await webcam_world(live)
    wid = world.a.webinar.id
    screen = _SolidScreen()
    async with aiortc_speaker(live, wid, world.a.speaker.email, screen=screen) as speaker:
        joined = await speaker.send("stage.join")
        assert joined["type"] == "ack", joined
        await until_live(live, wid)
        room = live.services.extras["webcam"].room(wid)
        deadline = asyncio.get_running_loop().time() + 30
        while not all(p.screen is not None for p in room.peers.values()):
            assert asyncio.get_running_loop().time() < deadline, "no screen picture reached the server"
            await asyncio.sleep(0.2)

        regions = layout_regions("screen_pip", 1)
        frames, _ = await latest_program(live, wid, after_segments=2)
        frame = frames[-1]
        assert near(mean_yuv(frame, Rect(0, 0, 800, 500), inset=20), SCREEN_YUV), mean_yuv(frame, Rect(0, 0, 800, 500), 20)
        pip = regions.speakers[0]
        assert near(mean_yuv(frame, pip, inset=30), CAMERA_YUV), mean_yuv(frame, pip, inset=30)

        # The share stops: after SCREEN_STALE_S the program is the camera's grid again.
        screen.sharing.clear()
        await asyncio.sleep(SCREEN_STALE_S + 0.5)
        frames, _ = await latest_program(live, wid, after_segments=2)
        assert_tiles(frames, 1)
        assert room.stage.layout == "auto"  # the moderator's layout was never changed by the share


CHROMIUM_FAKE_MEDIA = True
CHROMIUM_EXTRA_ARGS = ("--auto-select-desktop-capture-source=Entire screen", "--enable-usermedia-screen-capturing")


@pytest.mark.browser
@pytest.mark.skipif(not chromium_available(), reason="Debian's chromium is needed")
async def test_speaker_page_shares_a_screen(live: LiveServer, chromium: Chromium) -> None:
    """The page's "share my screen" puts a getDisplayMedia track on the offer's second video
    section: the server receives its pictures and the program shows them; "stop" ends the share."""
    world, _ = await webcam_world(live)
    wid = world.a.webinar.id
    page, errors = await speaker_page(chromium, live, wid, world.a.speaker)
    await go_on_stage(page)
    await until_live(live, wid)
    await page.locator("#speak-screen").click()
    await page.wait_for_function("window.webinarSpeak.screen !== null || window.webinarSpeak.error !== null",
                                 timeout=WAIT_MS)
    assert await page.evaluate("window.webinarSpeak.error") is None, await page.evaluate("window.webinarSpeak.error")
    room = live.services.extras["webcam"].room(wid)
    deadline = asyncio.get_running_loop().time() + WAIT_MS / 1000
    while room.shared_screen(time.monotonic()) is None:
        assert asyncio.get_running_loop().time() < deadline, "no screen picture reached the server"
        await asyncio.sleep(0.2)
    await page.locator("#speak-screen").click()  # stop sharing
    await page.wait_for_function("window.webinarSpeak.screen === null", timeout=WAIT_MS)
    deadline = asyncio.get_running_loop().time() + SCREEN_STALE_S + 30
    while room.shared_screen(time.monotonic()) is not None:
        assert asyncio.get_running_loop().time() < deadline, "the share did not stop"
        await asyncio.sleep(0.2)
    assert errors.unexpected(allow=NO_FAVICON) == []
