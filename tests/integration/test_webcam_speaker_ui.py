"""The speaker page's content controls in Chromium (/w/{id}/speak): a refused upload shows the
server's message, a PDF uploaded through the page lists its page thumbnails, "show" and "next"
drive the program's content (the persisted ``content.changed`` events say so), an MP4 clip is
shown, played and paused from the page, and a change made by someone else (a moderator's
WebSocket) reaches the page through ``content.changed``. Going on stage while maintenance mode
is on shows the maintenance refusal in the page's language.

The program's pixels for a slide change are proven by test_webcam_content.py's end-to-end test;
here the page's state, its DOM and the persisted events are checked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page

from server.i18n import translate
from tests.conftest import LiveServer
from tests.integration.test_rooms_ws import staff_cookie
from tests.integration.test_webcam_maintenance import switch
from tests.integration.test_webcam_room import (
    NO_FAVICON,
    WAIT_MS,
    speaker_page,
    webcam_world,
)
from tests.support import content_files as cf
from tests.support.browser import Chromium, chromium_available, failed_resource
from tests.support.room_client import RoomClient

pytestmark = [pytest.mark.integration, pytest.mark.browser,
              pytest.mark.skipif(not chromium_available(), reason="Debian's chromium is needed")]

CHROMIUM_FAKE_MEDIA = True
"""The page opens the camera and microphone before anything else (Chromium's fake devices)."""


async def content_state(page: Page) -> dict[str, Any]:
    return await page.evaluate("window.webinarSpeak.content")  # type: ignore[no-any-return]


async def content_events(live: LiveServer, wid: Any) -> list[dict[str, Any]]:
    rows = await live.services.db.fetch(
        "SELECT data::text AS data FROM room_events WHERE webinar_id = $1 AND kind = 'content.changed' ORDER BY id", wid)
    return [json.loads(r["data"]) for r in rows]


async def test_speaker_uploads_a_pdf_and_changes_slides_from_the_page(
        live: LiveServer, chromium: Chromium, tmp_path: Path) -> None:
    world, _ = await webcam_world(live)
    wid = world.a.webinar.id
    page, errors = await speaker_page(chromium, live, wid, world.a.speaker)
    await page.wait_for_function("document.querySelector('#speak-content-list li.hint') !== null")

    # A refused file: the server's own message, in the page's language; nothing listed.
    lang = await page.evaluate("document.documentElement.lang")
    await page.locator("#speak-content-file").set_input_files(str(cf.encrypted_pdf(tmp_path / "locked.pdf")))
    await page.wait_for_function("document.getElementById('speak-content-error').textContent !== ''", timeout=WAIT_MS)
    assert await page.text_content("#speak-content-error") == translate(lang, "content.refused.pdf_encrypted")
    assert await page.evaluate("window.webinarSpeak.items.length") == 0

    # A 3-page PDF through the page: listed with three thumbnails, each a real image from the server.
    await page.locator("#speak-content-file").set_input_files(str(cf.slides_pdf(tmp_path / "deck.pdf", 3)))
    await page.wait_for_function("window.webinarSpeak.items.length === 1 && window.webinarSpeak.upload === null",
                                 timeout=WAIT_MS)
    assert await page.text_content("#speak-content-error") == ""
    assert "deck.pdf" in (await page.text_content("#speak-content-result") or "")
    item = (await page.evaluate("window.webinarSpeak.items"))[0]
    assert (item["kind"], item["name"], item["pages"]) == ("pdf", "deck.pdf", 3)
    thumbs = page.locator("#speak-content-list .speak-thumb img")
    assert await thumbs.count() == 3
    await page.wait_for_function(
        "[...document.querySelectorAll('#speak-content-list .speak-thumb img')].every(i => i.complete && i.naturalWidth > 0)",
        timeout=WAIT_MS)
    assert await thumbs.nth(1).get_attribute("src") == f"/webinars/{wid}/content/{item['id']}/pages/1"

    # Show it, then next: page 2 of 3 is current in the page and in the persisted events.
    await page.locator("#speak-content-list .speak-show").click()
    await page.wait_for_function("window.webinarSpeak.content && window.webinarSpeak.content.item_id !== null",
                                 timeout=WAIT_MS)
    assert await page.locator("#speak-content-prev").is_disabled()
    await page.locator("#speak-content-next").click()
    await page.wait_for_function("window.webinarSpeak.content.page === 1", timeout=WAIT_MS)
    assert await page.text_content("#speak-content-current") == translate(lang, "speak.content.showing", name="deck.pdf",
                                                                           page=2, pages=3)
    assert await page.locator("#speak-content-list .speak-thumb.current").get_attribute("data-index") == "1"
    assert await page.get_attribute("#speak-content-preview", "src") == f"/webinars/{wid}/content/{item['id']}/pages/1"
    await page.wait_for_function("document.getElementById('speak-content-preview').naturalWidth > 0", timeout=WAIT_MS)
    me = await page.evaluate("window.webinarSpeak.me.id")
    events = await content_events(live, wid)
    assert [(e["action"], e["item_id"], e["page"]) for e in events] == [("show", item["id"], 0), ("next", item["id"], 1)]
    assert all(e["by"]["id"] == me for e in events)

    # A moderator goes back a page over their own WebSocket: the speaker's page follows.
    moderator = RoomClient(f"ws://127.0.0.1:{live.settings.port}/ws/rooms/{wid}",
                           cookie=await staff_cookie(live, world.a.moderator.email), origin=live.url)
    await moderator.connect()
    try:
        assert (await moderator.send("content.prev"))["content"]["page"] == 0
    finally:
        await moderator.close()
    await page.wait_for_function("window.webinarSpeak.content.page === 0", timeout=WAIT_MS)
    assert await page.text_content("#speak-content-current") == translate(lang, "speak.content.showing", name="deck.pdf",
                                                                           page=1, pages=3)
    await page.locator("#speak-content-clear").click()
    await page.wait_for_function("window.webinarSpeak.content.item_id === null", timeout=WAIT_MS)
    assert (await content_events(live, wid))[-1]["action"] == "clear"

    # An MP4 clip: shown, played, paused from the page.
    await page.locator("#speak-content-file").set_input_files(str(cf.colour_clip(tmp_path / "clip.mp4", seconds_each=3)))
    await page.wait_for_function("window.webinarSpeak.items.length === 2 && window.webinarSpeak.upload === null",
                                 timeout=WAIT_MS)
    assert await page.text_content("#speak-content-error") == ""
    clip = next(i for i in await page.evaluate("window.webinarSpeak.items") if i["kind"] == "clip")
    await page.locator(f"#speak-content-list li[data-key='{clip['id']}:{clip['pages']}'] .speak-show").click()
    await page.wait_for_function(f"window.webinarSpeak.content.item_id === {clip['id']}", timeout=WAIT_MS)
    assert await page.locator("#speak-clip-pause").is_disabled()
    await page.locator("#speak-clip-play").click()
    await page.wait_for_function("window.webinarSpeak.content.clip && window.webinarSpeak.content.clip.playing",
                                 timeout=WAIT_MS)
    await page.locator("#speak-clip-pause").click()
    await page.wait_for_function("!window.webinarSpeak.content.clip.playing", timeout=WAIT_MS)
    assert [e["action"] for e in await content_events(live, wid)][-3:] == ["show", "play", "pause"]

    # Maintenance on: going on stage would start a new live, and the page says why, in its language.
    await switch(live, True)
    try:
        await page.locator("#speak-on-stage").click()
        await page.wait_for_function("window.webinarSpeak.error !== null", timeout=WAIT_MS)
        assert await page.text_content("#speak-error") == translate(lang, "maintenance.notice")
        assert await page.evaluate("window.webinarSpeak.status") == "backstage"
    finally:
        await switch(live, False)
    assert errors.unexpected(allow=lambda text, url: NO_FAVICON(text, url) or failed_resource(
        "/content", statuses=(422,))(text, url)) == []
