"""The viewer page: ``GET /w/{webinar_id}`` shows the live (or the replay) in the browser.

The page is HTML from ``player/templates/viewer.html`` plus a small ES module
(``player/static/viewer.js``, no build step) that plays the webinar's media
playlist, ``/hls/{webinar_id}/index.m3u8``, served by :mod:`player.origin`:
with hls.js (vendored in ``player/static/vendor``, served by us, never from a
CDN) where Media Source Extensions exist, with the browser's own HLS player on
iPhone Safari (R-ROOM-3: computer, phone and tablet, in the browser, no app).

When the webinar has the lower rendition (:mod:`player.renditions`), the page
plays the multivariant playlist ``/hls/{webinar_id}/master.m3u8`` instead:
hls.js picks the rendition (capped to the player's size), Safari's native
player too. :func:`playlist_url_for` decides which URL, see there.

Access is public for now: anyone with the link watches. Registration and join
tokens will narrow it later. Webinars that are unknown, still a draft, removed
or cancelled answer 404, so the page never reveals what is not announced.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from player.publication import VOD_PLAYLIST, hls_prefix
from player.renditions import MASTER_PLAYLIST, low_rendition_enabled
from server.errors import NotFound
from server.web import AppRoute, add_template_dir, path_uuid, render, services
from server.webinars import get_webinar

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
STATIC_URL = "/static/player"
HIDDEN_STATES = frozenset({"draft", "removed", "cancelled"})
"""Webinar states for which the viewer page does not exist (404)."""

add_template_dir(HERE / "templates")


def playlist_url(webinar_id: object) -> str:
    """The media playlist the page plays (the origin's URL, same host)."""
    return f"/hls/{webinar_id}/index.m3u8"


def master_url(webinar_id: object) -> str:
    """The multivariant playlist, for a live with the lower rendition."""
    return f"/hls/{webinar_id}/{MASTER_PLAYLIST}"


async def playlist_url_for(request: Request, webinar_id: uuid.UUID) -> str:
    """The playlist the page plays: the multivariant one when there is one.

    A running live decides (it has the 480p rendition or not); then a replay
    (a stored ``master.m3u8``, else the source's VOD playlist); before any
    live, the webinar's switch (the next live will follow it).
    """
    extras = services(request).extras
    live = extras.get("live")
    if live is not None and live.rendition(webinar_id) is not None:
        return master_url(webinar_id) if live.variants(webinar_id) is not None else playlist_url(webinar_id)
    store = extras.get("media_store")
    if store is not None:
        if store.exists(f"{hls_prefix(webinar_id)}/{MASTER_PLAYLIST}"):
            return master_url(webinar_id)
        if store.exists(f"{hls_prefix(webinar_id)}/{VOD_PLAYLIST}"):
            return playlist_url(webinar_id)
    if await low_rendition_enabled(services(request).db, webinar_id):
        return master_url(webinar_id)
    return playlist_url(webinar_id)


async def viewer_page(request: Request) -> Response:
    """Render the player for one webinar; 404 when it does not exist or is not public."""
    webinar_id = path_uuid(request, "webinar_id")
    webinar = await get_webinar(services(request).db, webinar_id)
    if webinar.state in HIDDEN_STATES:
        raise NotFound("webinar")
    response = await render(
        request, "viewer.html", webinar=webinar, hls_url=await playlist_url_for(request, webinar.id),
        static_url=STATIC_URL,
    )
    # The state shown (waiting, live, ended) comes from the playlist, but the page
    # itself carries the webinar's state and title: do not let caches keep it.
    response.headers["cache-control"] = "no-cache"
    return response


def build_routes() -> list[BaseRoute]:
    """The page and its static files (JS modules, CSS, vendored hls.js)."""
    return [
        AppRoute("/w/{webinar_id}", viewer_page, access="public", methods=["GET"], name="viewer_page"),
        Mount(STATIC_URL, StaticFiles(directory=str(STATIC_DIR)), name="player_static"),
    ]


routes: list[BaseRoute] = build_routes()
