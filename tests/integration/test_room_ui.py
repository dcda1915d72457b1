"""The room's pages in a real browser: two viewers on the pop-out interaction panel
(``/w/{id}/panel``, guests with different names) and a moderator on the control panel
(``/w/{id}/moderate``, logged in through ``/login``), all against the real app and database.

Round trips: a chat message, a poll (created and opened by the moderator, voted by the
viewers, results everywhere), a question upvoted by the other viewer, a pushed CTA clicked
(``cta_interactions`` rows checked in the database), a message deleted by the moderator;
hostile names and messages shown as text; live-state and stream-health notices, the
moderator's viewer count, a mute and a ban; a viewer whose WebSocket drops comes back by
itself and shows what it missed exactly once, and a reload resumes too. Every page's uncaught exceptions and console
errors are collected and must be none.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import pytest
from playwright.async_api import Locator, Page, expect

from server.i18n import translate
from server.webinars import set_state
from tests.conftest import LiveServer, browser
from tests.support.browser import Chromium, PageErrors, chromium_available, failed_resource, watch_errors
from tests.world import PASSWORD, World, make_world

pytestmark = pytest.mark.integration
needs_chromium = pytest.mark.skipif(not chromium_available(), reason="Debian's chromium is needed")

WAIT_MS = 20_000
"""Longest wait for something to show up in a page (milliseconds): the machine may be busy."""
HOSTILE_NAME = '<img src=x onerror="window.__pwned=1">'
HOSTILE_TEXT = "<script>window.__pwned=2</script>"
NO_FAVICON = failed_resource("/favicon.ico")
"""The site has no favicon: Chromium logs the 404 of its automatic request."""


async def open_room(live: LiveServer) -> World:
    """The test world, with account A's webinar announced (its room accepts connections)."""
    world = await make_world(live.services.db)
    await set_state(live.services.db, world.a.webinar.id, "announced")
    return world


async def viewer(chromium: Chromium, live: LiveServer, webinar_id: uuid.UUID, name: str,
                 locale: str = "en-GB") -> tuple[Page, PageErrors]:
    """A guest on the pop-out panel: the name form, then connected."""
    page = await chromium.new_page(locale=locale)
    errors = watch_errors(page)
    await page.goto(f"{live.url}/w/{webinar_id}/panel")
    await page.locator(".room-join input[name=name]").fill(name)
    await page.locator(".room-join button[type=submit]").click()
    await wait_connected(page)
    assert await page.evaluate("window.webinarRoom.role") == "viewer"
    return page, errors


async def moderator(chromium: Chromium, live: LiveServer, world: World) -> tuple[Page, PageErrors]:
    """The world's moderator, logged in through /login in this browser context."""
    page = await chromium.new_page()
    errors = watch_errors(page)
    await page.goto(f"{live.url}/w/{world.a.webinar.id}/moderate")
    assert "/login" in page.url
    await page.locator("input[name=email]").fill(world.a.moderator.email)
    await page.locator("input[name=password]").fill(PASSWORD)
    await page.locator("form.card button[type=submit]").click()
    await page.wait_for_url(f"**/w/{world.a.webinar.id}/moderate", timeout=WAIT_MS)
    await wait_connected(page)
    assert await page.evaluate("window.webinarRoom.role") == "moderator"
    return page, errors


async def wait_connected(page: Page) -> None:
    """Until the page's room client got its welcome."""
    await page.wait_for_function("window.webinarRoom !== undefined && window.webinarRoom.connected", timeout=WAIT_MS)


async def tab(page: Page, name: str) -> None:
    """Show one section of the viewer panel (chat, qa, polls, rate, help)."""
    await page.locator(f"[role=tab][data-tab={name}]").click()


async def chat(page: Page, text: str) -> None:
    """Send a chat message from a viewer panel; returns once acknowledged (the input is cleared)."""
    await tab(page, "chat")
    await page.locator(".room-chat-form input").fill(text)
    await page.locator(".room-chat-form button[type=submit]").click()
    await expect(page.locator(".room-chat-form input")).to_have_value("", timeout=WAIT_MS)


def message(page: Page, text: str) -> Locator:
    """The chat lines of ``page`` whose text contains ``text``."""
    return page.locator(".room-chat-list .room-message", has=page.locator(".room-text", has_text=text))


async def until(condition: Callable[[], Awaitable[bool]], what: str, timeout: float = WAIT_MS / 1000) -> None:
    """Poll an async condition (a database row) until true; bounded."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


def assert_clean(*pages: tuple[Page, PageErrors]) -> None:
    """No uncaught exception and no console error (but the favicon's 404) on any page."""
    for page, errors in pages:
        assert errors.unexpected(allow=NO_FAVICON) == [], page.url


@pytest.mark.browser
@needs_chromium
async def test_two_viewers_and_a_moderator_round_trip(live: LiveServer, chromium: Chromium) -> None:
    """Chat, poll vote, question upvote and CTA click round-trip; a deletion reaches everyone;
    hostile names and messages stay text."""
    world = await open_room(live)
    wid = world.a.webinar.id
    db = live.services.db
    cta_id = await db.fetchval(
        "INSERT INTO ctas (webinar_id, label, url) VALUES ($1, 'Book a demo', $2) RETURNING id", wid, f"{live.url}/healthz")
    alice = await viewer(chromium, live, wid, "Alice")
    bob = await viewer(chromium, live, wid, "Bob", locale="fr-FR")
    mod = await moderator(chromium, live, world)
    pages = [alice, bob, mod]
    a, b, m = alice[0], bob[0], mod[0]
    assert await b.locator("[role=tab][data-tab=qa]").inner_text() == "Questions"  # Bob reads French

    # Chat: Alice's message reaches Bob and the moderator.
    await chat(a, "Hello from Alice")
    for page in (a, b, m):
        await expect(message(page, "Hello from Alice")).to_have_count(1, timeout=WAIT_MS)
        await expect(message(page, "Hello from Alice").locator(".room-author")).to_have_text("Alice")

    # Poll: the moderator creates and opens it; both viewers vote; results show everywhere.
    await m.locator(".mod-poll-question").fill("Best day for the next session?")
    options = m.locator(".mod-poll-option")
    await options.nth(0).fill("Monday")
    await options.nth(1).fill("Tuesday")
    await m.locator(".mod-poll-create").click()
    draft = m.locator(".mod-poll-list .room-poll[data-state=draft]")
    await expect(draft).to_have_count(1, timeout=WAIT_MS)
    await draft.locator(".mod-poll-open").click()
    await expect(m.locator(".mod-poll-list .room-poll[data-state=open]")).to_have_count(1, timeout=WAIT_MS)
    for page, choice in ((a, 1), (b, 1)):
        await tab(page, "polls")
        poll = page.locator(".room-poll-list .room-poll")
        await expect(poll).to_have_count(1, timeout=WAIT_MS)
        await poll.locator(f"input[value='{choice}']").check()
        await poll.locator(".room-vote").click()
        await expect(poll.locator(".room-poll-status")).not_to_be_empty(timeout=WAIT_MS)
    for page in (a, b, m):
        tuesday = page.locator(".room-poll .room-result[data-option='1']")
        await expect(tuesday).to_have_attribute("data-count", "2", timeout=WAIT_MS)
        await expect(page.locator(".room-poll .room-result[data-option='0']")).to_have_attribute("data-count", "0")
    # Alice changes her mind while the poll is open.
    await a.locator(".room-poll input[value='0']").check()
    await a.locator(".room-poll .room-vote").click()
    for page in (a, b, m):
        await expect(page.locator(".room-poll .room-result[data-option='0']")).to_have_attribute(
            "data-count", "1", timeout=WAIT_MS)

    # Q&A: Alice asks, Bob upvotes (once), the count is 1 for everybody.
    await tab(a, "qa")
    await a.locator(".room-qa-form textarea").fill("Will the slides be shared?")
    await a.locator(".room-qa-form button[type=submit]").click()
    await tab(b, "qa")
    question = b.locator(".room-qa-list .room-question", has_text="Will the slides be shared?")
    await expect(question).to_have_count(1, timeout=WAIT_MS)
    await question.locator(".room-upvote").click()
    await expect(question.locator(".room-upvote")).to_be_disabled(timeout=WAIT_MS)
    for page in (a, b):
        await expect(page.locator(".room-question .room-upvotes")).to_have_text("1", timeout=WAIT_MS)
    await expect(m.locator(".mod-qa-list .room-question")).to_have_attribute("data-upvotes", "1", timeout=WAIT_MS)
    await expect(a.locator(".room-question .room-upvote")).to_be_enabled()  # Alice has not used hers

    # CTA: pushed by the moderator, seen by the viewers, Alice's click recorded.
    await m.locator(f".mod-cta[data-cta-id='{cta_id}'] .mod-cta-push").click()
    for page in (a, b):
        link = page.locator(f".room-cta[data-cta-id='{cta_id}'] a.room-cta-link")
        await expect(link).to_have_text("Book a demo", timeout=WAIT_MS)
        assert await link.get_attribute("target") == "_blank"
        assert "noopener" in (await link.get_attribute("rel") or "").split()
    alice_id = uuid.UUID(await a.evaluate("window.webinarRoom.client.participant.id"))
    bob_id = uuid.UUID(await b.evaluate("window.webinarRoom.client.participant.id"))
    async with a.context.expect_page(timeout=WAIT_MS) as popup_info:
        await a.locator(f".room-cta[data-cta-id='{cta_id}'] a.room-cta-link").click()
    popup = await popup_info.value
    assert popup.url.startswith(f"{live.url}/healthz")
    assert await popup.evaluate("window.opener") is None  # rel=noopener

    async def recorded() -> bool:
        kinds = {(r["participant_id"], r["kind"]) for r in await db.fetch(
            "SELECT participant_id, kind FROM cta_interactions WHERE cta_id = $1", cta_id)}
        return {(alice_id, "click"), (alice_id, "impression"), (bob_id, "impression")} <= kinds

    await until(recorded, "the CTA impressions and click")
    rows = await db.fetch("SELECT participant_id, kind, mode FROM cta_interactions WHERE cta_id = $1", cta_id)
    assert sorted((r["participant_id"] == alice_id, r["kind"], r["mode"]) for r in rows) == [
        (False, "impression", "live"), (True, "click", "live"), (True, "impression", "live")]

    # Hostile name and message: shown as text, nothing runs.
    mallory = await viewer(chromium, live, wid, HOSTILE_NAME)
    pages.append(mallory)
    await chat(mallory[0], HOSTILE_TEXT)
    for page in (a, b, m, mallory[0]):
        hostile = message(page, HOSTILE_TEXT)
        await expect(hostile).to_have_count(1, timeout=WAIT_MS)
        await expect(hostile.locator(".room-author")).to_have_text(HOSTILE_NAME)
        await expect(hostile.locator(".room-text")).to_have_text(HOSTILE_TEXT)
        assert await page.locator(".room-chat-list img, .room-chat-list script").count() == 0

    # The moderator deletes Alice's message: gone on every page.
    await message(m, "Hello from Alice").locator(".mod-delete").click()
    for page in (a, b, m, mallory[0]):
        await expect(message(page, "Hello from Alice")).to_have_count(0, timeout=WAIT_MS)
    await expect(message(a, HOSTILE_TEXT)).to_have_count(1)  # only that one
    assert await db.fetchval("SELECT deleted_at IS NOT NULL FROM chat_messages WHERE text = 'Hello from Alice'")

    # Live state and stream health from notices; the moderator counts the connected pages.
    hub = live.services.extras["rooms"]
    await hub.notice(wid, "live.interrupted", {"grace_s": 30})
    await expect(a.locator(".room-live")).to_have_text(translate("en", "room.live.interrupted"), timeout=WAIT_MS)
    await expect(b.locator(".room-live")).to_have_text(translate("fr", "room.live.interrupted"), timeout=WAIT_MS)
    await expect(m.locator("#moderate-app")).to_have_attribute("data-live", "interrupted", timeout=WAIT_MS)
    await hub.notice(wid, "live.health", {"on_air": True, "input_kbps": 2400, "segments": 12, "drops": 1,
                                          "long_parts": 0, "codecs": "avc1.64001f,mp4a.40.2", "live_seconds": 754})
    await expect(m.locator("dd[data-health=input_kbps]")).to_have_text("2400 kbit/s", timeout=WAIT_MS)
    await expect(m.locator("dd[data-health=drops]")).to_have_text("1")
    await hub.notice(wid, "live.resumed", {})
    await expect(a.locator(".room-live")).to_be_hidden(timeout=WAIT_MS)
    await expect(m.locator(".mod-viewers")).to_have_text("4", timeout=WAIT_MS)  # presence: 3 viewers + the moderator

    # Mute: Bob's next message is refused, next to the input. Ban: Mallory is out and stays out.
    await chat(b, "Bob here")
    await message(m, "Bob here").locator(".mod-mute").click()
    await expect(b.locator(".room-muted")).to_be_visible(timeout=WAIT_MS)
    await b.locator(".room-chat-form input").fill("still me?")
    await b.locator(".room-chat-form button[type=submit]").click()
    await expect(b.locator(".room-chat-form .room-error")).to_have_text(translate("fr", "room.error.muted"), timeout=WAIT_MS)
    ban = message(m, HOSTILE_TEXT).locator(".mod-ban")
    await ban.click()
    await ban.click()  # the second click confirms
    mallory_page = mallory[0]
    await expect(mallory_page.locator(".room-connection")).to_have_text(translate("en", "room.refused.banned"),
                                                                        timeout=WAIT_MS)
    await expect(mallory_page.locator(".room-chat-form input")).to_be_disabled()
    assert await mallory_page.evaluate("window.webinarRoom.status") == "refused"

    for page, _ in pages:
        assert await page.evaluate("window.__pwned") is None
    assert_clean(*pages)


@pytest.mark.browser
@needs_chromium
async def test_a_dropped_viewer_comes_back_and_shows_what_it_missed_once(live: LiveServer, chromium: Chromium) -> None:
    world = await open_room(live)
    wid = world.a.webinar.id
    carol = await viewer(chromium, live, wid, "Carol")
    dave = await viewer(chromium, live, wid, "Dave")
    c, d = carol[0], dave[0]
    await c.evaluate("""() => {
        window.__seen = [];
        window.webinarRoom.client.on("event", (e) => window.__seen.push(e));
    }""")
    await chat(d, "before the drop")
    await expect(message(c, "before the drop")).to_have_count(1, timeout=WAIT_MS)
    await c.evaluate("""() => {
        window.__welcomes = [];
        window.webinarRoom.client.on("welcome", (w) => window.__welcomes.push(w.resumed));
        window.webinarRoom.client.attempts = 2;  // a first delay of 1 to 2 s: the messages below go meanwhile
        window.webinarRoom.client.ws.close(4000, "test drop");
    }""")
    await c.wait_for_function("!window.webinarRoom.connected", timeout=WAIT_MS)
    for i in range(3):
        await chat(d, f"missed {i}")
    await c.wait_for_function("window.__welcomes.length === 1 && window.webinarRoom.connected", timeout=WAIT_MS)
    assert await c.evaluate("window.__welcomes") == [True]  # resumed from its last event id, no snapshot
    for text in ("before the drop", "missed 0", "missed 1", "missed 2"):
        await expect(message(c, text)).to_have_count(1, timeout=WAIT_MS)
    ids = await c.locator(".room-chat-list .room-message").evaluate_all("items => items.map(i => i.dataset.messageId)")
    assert len(ids) == len(set(ids)) == 4
    # A frame repeating events already seen (a resume racing a live delivery) changes nothing.
    replayed = await c.evaluate("""() => {
        const seen = window.__seen.map((e) => ({...e}));
        window.webinarRoom.client._onFrame({type: "events", events: seen});
        return seen.length;
    }""")
    assert replayed >= 4
    await expect(c.locator(".room-chat-list .room-message")).to_have_count(4)
    assert await c.evaluate("window.__seen.length") == replayed  # not applied again
    assert await c.evaluate("window.webinarRoom.lastEventId") == await d.evaluate("window.webinarRoom.lastEventId")
    # The last event id (with the panel's state) is kept for a reload of the tab: it resumes too.
    await c.wait_for_function(  # saved a moment after the events (debounced)
        "key => JSON.parse(sessionStorage.getItem(key)).lastEventId === window.webinarRoom.lastEventId",
        arg=f"webinar-room:panel:{wid}", timeout=WAIT_MS)
    await asyncio.gather(c.reload(), chat(d, "during the reload"))
    await wait_connected(c)
    assert await c.evaluate("window.webinarRoom.resumed") is True
    await expect(message(c, "during the reload")).to_have_count(1, timeout=WAIT_MS)
    await expect(c.locator(".room-chat-list .room-message")).to_have_count(5, timeout=WAIT_MS)
    assert_clean(carol, dave)


async def test_panel_page_and_room_access(live: LiveServer) -> None:
    """The pop-out page exists only for open rooms; the access check explains refusals."""
    world = await open_room(live)
    wid = world.a.webinar.id
    async with browser(live) as b:
        page = await b.get(f"/w/{wid}/panel")
        assert page.status_code == 200
        assert 'id="room-i18n"' in page.text and "/rooms/static/panel-boot.js" in page.text
        assert f'"webinarId": "{wid}"' in page.text
        for missing in (f"/w/{world.b.webinar.id}/panel", f"/w/{uuid.uuid4()}/panel", "/w/nope/panel"):
            assert (await b.get(missing)).status_code == 404, missing  # B's webinar is a draft
        assert (await b.get("/rooms/static/panel.js")).headers["content-type"].startswith(("text/javascript",
                                                                                           "application/javascript"))
        r = await b.post_form(f"/w/{wid}/join", {"name": "Erin"})
        token = r.json()["token"]
        assert (await b.get(f"/w/{wid}/room-access", headers={"X-Room-Token": token})).json() == {
            "ok": True, "role": "viewer"}
        assert (await b.get(f"/w/{wid}/room-access", headers={"X-Room-Token": "forged"})).json()["error"] == "bad_token"
        assert (await b.get(f"/w/{wid}/room-access")).json() == {"ok": False, "error": "no_identity"}
        assert (await b.get(f"/w/{world.b.webinar.id}/room-access")).json()["error"] == "room_closed"
        assert (await b.get("/w/nope/room-access")).json() == {"ok": False, "error": "room_closed"}
        participant = uuid.UUID(r.json()["participant"]["id"])
        await live.services.db.execute("UPDATE participants SET banned_at = now() WHERE id = $1", participant)
        assert (await b.get(f"/w/{wid}/room-access", headers={"X-Room-Token": token})).json()["error"] == "banned"
    async with browser(live) as staff:
        await staff.login(world.a.moderator.email, PASSWORD)
        assert (await staff.get(f"/w/{wid}/room-access")).json() == {"ok": True, "role": "moderator"}
        panel = await staff.get(f"/w/{wid}/panel")
        assert '"staff": true' in panel.text  # staff use their login, no name form
        moderate = await staff.get(f"/w/{wid}/moderate")
        assert moderate.status_code == 200 and 'id="moderate-app"' in moderate.text
        assert '"room.mod.poll.create"' in moderate.text
