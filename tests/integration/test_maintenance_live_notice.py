"""Maintenance mode (R-OPS-3) reaching people already on a room page, against the real app:

- over the room WebSocket (the real ``websockets`` client): connected viewers and moderators
  get the ``maintenance`` notice once per change (this node's own clients, not once per
  broker message), a client joining while the mode is on gets it right after its welcome,
  one that comes back after it went off gets the "off" state; the room's events go on;
- in Chromium: a viewer on the viewer page ``/w/{id}`` (French) and a moderator on
  ``/w/{id}/moderate`` (English) see the banner of ``base.html`` appear with the admin's
  message (as text) when the admin switches the mode on at ``/admin/maintenance``, then
  disappear when it is switched off, without a reload.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from playwright.async_api import expect

from server.maintenance import set_maintenance
from tests.conftest import LiveServer, browser
from tests.integration.test_maintenance import NOTICE_EN, NOTICE_FR, admin_on
from tests.integration.test_room_ui import (
    WAIT_MS,
    moderator,
    needs_chromium,
    open_room,
    wait_connected,
)
from tests.integration.test_rooms_ws import (
    connect_moderator,
    connect_viewer,
    setup_room,
)
from tests.support.browser import Chromium, failed_resource, watch_errors
from tests.support.room_client import RoomClient
from tests.world import PASSWORD

pytestmark = pytest.mark.integration

MESSAGE = "Back at 6 <b>am</b>"
"""An admin's message with markup: pages must show it as text."""


def maintenance_notices(client: RoomClient) -> list[dict[str, Any]]:
    return [n["data"] for n in client.notices if n["kind"] == "maintenance"]


async def until_notices(client: RoomClient, count: int, timeout: float = 10) -> list[dict[str, Any]]:
    """The client's maintenance notices once it got ``count`` of them (bounded wait)."""
    await client.wait(lambda: len(maintenance_notices(client)) >= count, timeout)
    return maintenance_notices(client)


async def test_connected_and_joining_clients_get_the_maintenance_state(live: LiveServer) -> None:
    world, url = await setup_room(live)
    wid = world.a.webinar.id
    db, broker = live.services.db, live.services.broker
    opened: list[RoomClient] = []
    try:
        viewer = await connect_viewer(live, url, wid, "Vera")
        mod = await connect_moderator(live, url, world)
        opened += [viewer, mod]
        assert maintenance_notices(viewer) == [], "nothing changed since the node started: nothing sent"

        await set_maintenance(db, True, MESSAGE, changed_by="test", broker=broker)
        on = {"enabled": True, "message": MESSAGE}
        for client in (viewer, mod):
            await until_notices(client, 1)
        # Room events still flow, and the notice was not repeated (by the broker or by polling).
        ack = await viewer.send("chat.send", text="still here")
        assert ack["type"] == "ack"
        await mod.event("chat.message", lambda e: e["data"]["text"] == "still here")
        await asyncio.sleep(0.5)
        assert maintenance_notices(viewer) == [on] and maintenance_notices(mod) == [on]

        # Joining while on: the notice comes with the welcome.
        late = await connect_viewer(live, url, wid, "Late")
        opened.append(late)
        assert await until_notices(late, 1, 5) == [on]

        last_seen = viewer.last_event_id
        await viewer.close()  # away while the mode goes off
        await set_maintenance(db, False, changed_by="test", broker=broker)
        off = {"enabled": False, "message": ""}
        for client in (mod, late):
            assert (await until_notices(client, 2))[-1] == off

        # Back (a resume with its last event id): told that it is off, so its page hides the notice.
        back = RoomClient(url, token=viewer.url.split("?token=", 1)[1])
        opened.append(back)
        welcome = await back.connect(last_seen)
        assert welcome.get("resumed") is True
        assert await until_notices(back, 1, 5) == [off]
    finally:
        for client in opened:
            await client.close()


@pytest.mark.browser
@needs_chromium
async def test_banner_appears_and_disappears_on_open_pages(live: LiveServer, chromium: Chromium) -> None:
    world = await open_room(live)
    wid = world.a.webinar.id
    page = await chromium.new_page(locale="fr-FR")
    errors = watch_errors(page)
    await page.goto(f"{live.url}/w/{wid}")
    await page.locator("#interaction .room-join input[name=name]").fill("Viviane")
    await page.locator("#interaction .room-join button[type=submit]").click()
    await wait_connected(page)
    mod_page, mod_errors = await moderator(chromium, live, world)
    await mod_page.goto(f"{live.url}/w/{wid}/moderate?lang=en")  # the moderator reads English
    await wait_connected(mod_page)
    pages = ((page, errors), (mod_page, mod_errors))
    for p, _ in pages:
        await expect(p.locator("#maintenance-notice")).to_be_hidden()
        await p.evaluate("window.__notReloaded = true")

    async with browser(live) as adm:
        await adm.login(world.admin.email, PASSWORD)
        assert (await admin_on(adm, MESSAGE)).status_code == 303
        for p, title in ((page, NOTICE_FR), (mod_page, NOTICE_EN)):
            banner = p.locator("#maintenance-notice")
            await expect(banner).to_be_visible(timeout=WAIT_MS)
            await expect(p.locator("#maintenance-notice-title")).to_contain_text(title)
            await expect(p.locator("#maintenance-notice-message")).to_have_text(MESSAGE)
            assert await banner.locator("b").count() == 0, "the message is text, not markup"

        assert (await adm.post_form("/admin/maintenance", {"action": "off"})).status_code == 303
        for p, _ in pages:
            await expect(p.locator("#maintenance-notice")).to_be_hidden(timeout=WAIT_MS)
            assert await p.evaluate("window.__notReloaded === true"), "shown and hidden without a reload"
            assert await p.evaluate("window.webinarRoom.connected")
    # No console error but the favicon's 404 and the player's (no live yet: no playlist).
    allow = failed_resource("/favicon.ico", f"/hls/{wid}/index.m3u8")
    for p, found in pages:
        assert found.unexpected(allow=allow) == [], p.url
