"""The speaker page in Chromium on a node that does not run webcam media
(``WEBINAR_ENABLE_WEBCAM=0``, docs/DEPLOYMENT.md "Webcam rooms"): its connection check
and its join show the server's ``media_node`` reason, and no webcam room is opened there.
The routing through nginx to the media node: tests/integration/test_two_nodes.py."""

from __future__ import annotations

import pytest

from tests.conftest import LiveServer
from tests.integration.test_webcam_room import (
    WAIT_MS,
    open_speak_page,
    run_connection_check,
    webcam_world,
)
from tests.support.browser import Chromium, chromium_available

pytestmark = [pytest.mark.integration, pytest.mark.browser,
              pytest.mark.skipif(not chromium_available(), reason="Debian's chromium is needed")]

CHROMIUM_FAKE_MEDIA = True
"""The page opens the camera and microphone before anything else (Chromium's fake devices)."""


@pytest.mark.settings(enable_webcam=False, node_name="node-b")
async def test_speaker_page_on_a_node_without_webcam_media_says_why(live: LiveServer, chromium: Chromium) -> None:
    world, _ = await webcam_world(live)
    wid = world.a.webinar.id
    page, _ = await open_speak_page(chromium, live, wid, world.a.speaker)

    assert (await run_connection_check(page))["verdict"] == "failed"
    assert "WEBINAR_ENABLE_WEBCAM=0" in (await page.text_content("#speak-check-result") or "")

    await page.locator("#speak-join").click()
    await page.wait_for_function("document.getElementById('speak-error').textContent !== ''", timeout=WAIT_MS)
    shown = await page.text_content("#speak-error") or ""
    assert "this server (node-b) does not run webcam rooms" in shown and "WEBINAR_ENABLE_WEBCAM=0" in shown, shown
    assert await page.evaluate("window.webinarSpeak.client.refusedReason") == "media_node"
    assert await page.evaluate("window.webinarSpeak.status") == "setup"
    assert live.services.extras["webcam"].rooms == {}, "no webcam room (peers, program) on this node"
