"""Authorization matrix: every non-public route × every role of account A, aimed
at account B's objects, must be refused (403/404, or the login page for
anonymous callers). Routes are read from the app itself, so a route added later
joins the matrix; a new path parameter must be given a value below.
Admin-only routes are also refused to every non-admin role on A's own objects,
and a positive control proves each GET route really answers its rightful role.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from starlette.routing import Mount, WebSocketRoute

from server.web import AppRoute
from tests.conftest import Browser, LiveServer, browser
from tests.world import PASSWORD, Side, World, make_world

ROLES = ("anonymous", "organizer", "sponsor", "speaker", "moderator")


CONTENT: dict[uuid.UUID, int] = {}
"""Webinar id -> a shared-content item of it (rooms/webcam/content_routes.py), see :func:`add_content`."""


def path_values(side: Side) -> dict[str, str]:
    return {
        "account_id": str(side.account_id),
        "webinar_id": str(side.webinar.id),
        "user_id": str(side.organizer.id),
        "item_id": str(CONTENT.get(side.webinar.id, 1)),
        "index": "0",
    }


async def add_content(live: LiveServer, world: World) -> None:
    """Give each side's webinar a real content item (an image), so the content routes name real objects."""
    import hashlib

    from PIL import Image

    from rooms.webcam.content_store import store_upload, webinar_folder
    from rooms.webcam.uploads import Received

    for side in (world.a, world.b):
        folder = webinar_folder(live.settings.media_dir, side.webinar.id)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / ".upload-matrix"
        Image.new("RGB", (64, 36), (255, 0, 0)).save(path, format="PNG")
        data = path.read_bytes()
        item = await store_upload(live.services.db, live.settings.media_dir, side.webinar.id,
                                  Received(path, "png", len(data), hashlib.sha256(data).hexdigest()), "matrix.png",
                                  side.organizer.id)
        CONTENT[side.webinar.id] = item.id


def fill(path: str, values: dict[str, str]) -> str:
    def sub(match: re.Match[str]) -> str:
        name = match.group(1).split(":")[0]
        assert name in values, f"path parameter {{{name}}} of {path} has no value in the matrix: add one"
        return values[name]

    return re.sub(r"{([^}]+)}", sub, path)


def app_routes(live: LiveServer) -> list[tuple[str, str, str]]:
    found: list[tuple[str, str, str]] = []
    for route in live.app.routes:
        if isinstance(route, (Mount, WebSocketRoute)):
            continue  # static files; the room WebSocket has its own refusal tests (test_rooms_ws.py)
        assert isinstance(route, AppRoute), f"{route} is not an AppRoute: declare its access level"
        for method in sorted(route.methods or []):
            if method != "HEAD":
                found.append((route.path, method, route.access))
    return found


async def call(b: Browser, method: str, url: str) -> Any:
    if method == "GET":
        return await b.get(url)
    # A valid CSRF token, so that a refusal can only come from authorization.
    return await b.post_form(url, {"title": "x", "email": "x@example.com", "role": "organizer", "state": "removed",
                                   "name": "x", "starts_at": "2030-01-01T10:00", "duration_minutes": "10",
                                   "room_type": "webcam", "ttl_days": "3", "reference": "x",
                                   "action": "on"})  # /admin/maintenance


def refused(response: Any, role: str) -> bool:
    if response.status_code in (403, 404):
        return True
    return role == "anonymous" and response.status_code == 303 and response.headers["location"].startswith("/login")


async def clients(live: LiveServer, world: World) -> dict[str, Browser]:
    out: dict[str, Browser] = {}
    for role in ROLES:
        b = live.client()
        await b.__aenter__()
        if role == "anonymous":
            await b.get("/login")
        else:
            await b.login(world.a.users[role].email, PASSWORD)
        out[role] = b
    return out


async def test_routes_refuse_other_accounts_objects(live: LiveServer) -> None:
    world = await make_world(live.services.db)
    await add_content(live, world)
    routes = app_routes(live)
    assert len([r for r in routes if r[2] != "public"]) >= 15
    logged = await clients(live, world)
    failures = []
    try:
        for path, method, access in routes:
            if access == "public" or (access == "user" and "{" not in path):
                continue  # open to anyone / to any logged-in user, and names no object
            url = fill(path, path_values(world.b))
            for role, b in logged.items():
                response = await call(b, method, url)
                if not refused(response, role):
                    failures.append(f"{role} {method} {url} -> {response.status_code}")
            if access == "admin":
                own = fill(path, path_values(world.a))
                for role, b in logged.items():
                    response = await call(b, method, own)
                    if not refused(response, role):
                        failures.append(f"{role} {method} {own} (admin only) -> {response.status_code}")
    finally:
        for b in logged.values():
            await b.__aexit__(None, None, None)
    assert not failures, "\n".join(failures)
    # B's webinar was not touched by any of those POSTs.
    row = await live.services.db.fetchrow("SELECT title, state FROM webinars WHERE id=$1", world.b.webinar.id)
    assert (row["title"], row["state"]) == (world.b.webinar.title, "draft")
    assert not await live.services.db.fetchval("SELECT enabled FROM maintenance"), "maintenance switched by a non-admin"
    assert await live.services.db.fetchval("SELECT count(*) FROM webcam_content WHERE webinar_id = $1",
                                           world.b.webinar.id) == 1


RIGHTFUL = {"organizer": "organizer", "admin": "admin", "user": "organizer", "sponsor": "sponsor"}


async def test_positive_control_every_get_route_answers_its_role(live: LiveServer) -> None:
    """Without this, a route answering 404 to everyone would pass the matrix."""
    world = await make_world(live.services.db)
    await add_content(live, world)
    async with browser(live) as org, browser(live) as spo, browser(live) as adm:
        await org.login(world.a.organizer.email, PASSWORD)
        await spo.login(world.a.sponsor.email, PASSWORD)
        await adm.login(world.admin.email, PASSWORD)
        who = {"organizer": org, "sponsor": spo, "admin": adm}
        for path, method, access in app_routes(live):
            if method != "GET" or access == "public":
                continue
            response = await who[RIGHTFUL[access]].get(fill(path, path_values(world.a)))
            assert response.status_code in (200, 303), f"{access} GET {path} -> {response.status_code}"
            if response.status_code == 303:
                assert not response.headers["location"].startswith("/login")


@pytest.mark.parametrize("bad", ["not-a-uuid", str(uuid.uuid4())])
async def test_unknown_ids_are_404(live: LiveServer, bad: str) -> None:
    world = await make_world(live.services.db)
    async with browser(live) as adm:
        await adm.login(world.admin.email, PASSWORD)
        for path in ("/webinars/{x}", "/accounts/{x}", "/admin/accounts/{x}"):
            assert (await adm.get(path.replace("{x}", bad))).status_code == 404
