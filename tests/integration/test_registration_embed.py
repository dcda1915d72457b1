"""The embeddable registration form (R-REG-1) in a real browser, on another site.

A second HTTP server (starlette under uvicorn, on its own loopback port) serves
a client's page that includes ``/static/embed.js`` from our server. Chromium
reaches that page as ``http://partner.test:PORT`` (``--host-resolver-rules``
maps the name to 127.0.0.1), so the frame is cross-site, not merely
cross-origin: the site's ``SameSite=Lax`` CSRF cookie would not be sent with
its POST. The visitor fills the form inside the frame; the host page must get
the ``webinar:registered`` event, the frame must take its content's height,
and the registration must be in the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from server.webinars import set_state
from tests.conftest import LiveServer
from tests.support.browser import chromium_available, failed_resource, launch_chromium, watch_errors
from tests.support.net import free_port
from tests.world import make_side

pytestmark = [
    pytest.mark.integration,
    pytest.mark.browser,
    pytest.mark.skipif(not chromium_available(), reason="Debian's chromium is needed"),
]

PARTNER_HOST = "partner.test"
"""The client site's host name; Chromium resolves it to 127.0.0.1 (see module docstring)."""
WAIT_MS = 30_000
"""Longest wait for something in the page (milliseconds; the machine may be busy)."""


def host_page(server_url: str, webinar_id: uuid.UUID) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Partner site</title></head>
<body>
<h1>Partner site</h1>
<p>Register to our webinar below.</p>
<script>
  window.registered = [];
  document.addEventListener("webinar:registered", (event) => window.registered.push(event.detail));
</script>
<div style="width: 640px">
<script src="{server_url}/static/embed.js" data-webinar="{webinar_id}" data-lang="en"></script>
</div>
<p id="after">Footer of the partner site.</p>
</body></html>"""


@contextlib.asynccontextmanager
async def partner_site(page_html: str) -> AsyncIterator[int]:
    """Serve ``page_html`` at ``/`` on a free loopback port; stopped on exit."""

    async def index(request: Request) -> HTMLResponse:
        return HTMLResponse(page_html)

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(Starlette(routes=[Route("/", index)]), host="127.0.0.1", port=port,
                                           log_config=None, lifespan="off"))
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(30):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.02)
        yield port
    finally:
        server.should_exit = True
        async with asyncio.timeout(30):
            await task


async def test_iframe_form_on_another_site(live: LiveServer) -> None:
    db = live.services.db
    side = await make_side(db, "E", dt.datetime.now(dt.UTC).replace(microsecond=0))
    await set_state(db, side.webinar.id, "announced")
    wid = side.webinar.id
    async with partner_site(host_page(live.url, wid)) as port, \
            launch_chromium(extra_args=[f"--host-resolver-rules=MAP {PARTNER_HOST} 127.0.0.1"]) as chromium:
        page = await chromium.new_page("desktop", timezone_id="America/New_York", locale="en-US")
        errors = watch_errors(page)
        await page.goto(f"http://{PARTNER_HOST}:{port}/")
        frame_element = page.locator("iframe[data-webinar-frame]")
        await frame_element.wait_for(timeout=WAIT_MS)
        # The frame takes its content's height (the default iframe is 150 px high).
        await page.wait_for_function(
            "() => { const f = document.querySelector('iframe[data-webinar-frame]');"
            " return f && parseFloat(f.style.height) > 300; }", timeout=WAIT_MS)
        frame = page.frame_locator("iframe[data-webinar-frame]")
        await frame.locator("#f-email").wait_for(timeout=WAIT_MS)
        content_height = await frame.locator("#embed-root").evaluate("e => Math.ceil(e.getBoundingClientRect().height)")
        frame_height = await frame_element.evaluate("f => f.getBoundingClientRect().height")
        assert abs(frame_height - content_height) <= 1, (frame_height, content_height)
        # The visitor's own time zone, written by the frame's script (not the Paris fallback).
        when = await frame.locator("time[data-local]").text_content()
        assert when and "Paris time" not in when and ("EST" in when or "EDT" in when), when

        await frame.locator("#f-first_name").fill("Grace")
        await frame.locator("#f-last_name").fill("Hopper")
        await frame.locator("#f-email").fill("Grace.Hopper@Example.com")
        await frame.locator('input[name="consent_marketing"]').check()
        await frame.locator('button[type="submit"]').click()

        await page.wait_for_function("() => window.registered.length > 0", timeout=WAIT_MS)
        assert await page.evaluate("() => window.registered") == [{"webinarId": str(wid)}]
        await frame.locator("#join-link").wait_for(timeout=WAIT_MS)
        # The success content is shorter than the form: the frame followed it.
        await page.wait_for_function(
            "(h) => Math.abs(document.querySelector('iframe[data-webinar-frame]').getBoundingClientRect().height - h) > 50",
            arg=frame_height, timeout=WAIT_MS)
        done_height = await frame.locator("#embed-root").evaluate("e => Math.ceil(e.getBoundingClientRect().height)")
        new_frame_height = await frame_element.evaluate("f => f.getBoundingClientRect().height")
        assert abs(new_frame_height - done_height) <= 1, (new_frame_height, done_height)
        join_href = await frame.locator("#join-link").get_attribute("href")
        assert join_href and join_href.startswith(f"{live.url}/w/{wid}?token=")
        assert errors.unexpected(allow=failed_resource("/favicon.ico")) == []

    row = await db.fetchrow("SELECT * FROM registrations WHERE webinar_id = $1", wid)
    assert row is not None
    assert (row["email"], row["first_name"], row["source"], row["locale"], row["time_zone"]) == \
        ("grace.hopper@example.com", "Grace", "iframe", "en", "America/New_York")
    consents = await db.fetch("SELECT kind, granted FROM consents WHERE registration_id = $1", row["id"])
    assert [(c["kind"], c["granted"]) for c in consents] == [("marketing", True)]
