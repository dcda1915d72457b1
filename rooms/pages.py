"""Organizer pages of the interaction part: calls-to-action of a webinar and the
account's help-bot FAQ; the moderator panel's page; the pop-out interaction panel
(``/w/{id}/panel``), the room access check its script uses, and the room's static
files (``/rooms/static/``: the WebSocket client, the panel, the moderator panel)."""

from __future__ import annotations

import uuid
from pathlib import Path
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from rooms.helpbot import MAX_FAQ_ENTRIES, MAX_VARIANTS
from rooms.participants import ROOM_STATES, JoinRefused, from_token, staff_role
from server.errors import NotFound
from server.i18n import translate
from server.permissions import require_organizer, require_webinar_organizer
from server.web import (
    AppRoute,
    add_template_dir,
    current_user,
    form_str,
    path_uuid,
    read_form,
    redirect,
    render,
    request_lang,
    require_user,
    services,
)
from server.webinars import get_webinar

add_template_dir(Path(__file__).with_name("templates"))

STATIC_DIR = Path(__file__).with_name("static")
STATIC_URL = "/rooms/static"
"""Where the room's scripts and styles are served (``/static`` itself is the server's folder)."""

CTA_FORM_FIELDS = ("company", "job_function", "phone", "message")
"""Fields a CTA form may ask for (the participant's name and email are known already)."""
MAX_CTAS = 50


def _url_ok(value: str, required: bool) -> bool:
    if not value:
        return not required
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc) and len(value) <= 2000


async def _ctas_page(request: Request, webinar_id: uuid.UUID, status_code: int = 200, error: str | None = None) -> Response:
    _, webinar = await require_webinar_organizer(request, webinar_id)
    rows = await services(request).db.fetch("SELECT * FROM ctas WHERE webinar_id = $1 ORDER BY id", webinar_id)
    stats = {r["cta_id"]: r for r in await services(request).db.fetch(
        """SELECT cta_id, count(*) FILTER (WHERE kind = 'impression') AS impressions,
                  count(*) FILTER (WHERE kind = 'click') AS clicks, count(*) FILTER (WHERE kind = 'submit') AS forms
           FROM cta_interactions WHERE cta_id = ANY($1::bigint[]) GROUP BY cta_id""", [r["id"] for r in rows])}
    return await render(request, "ctas.html", status_code=status_code, webinar=webinar, ctas=rows, stats=stats,
                        fields=CTA_FORM_FIELDS, error=error)


async def ctas_page(request: Request) -> Response:
    return await _ctas_page(request, path_uuid(request, "webinar_id"))


async def cta_create(request: Request) -> Response:
    webinar_id = path_uuid(request, "webinar_id")
    await require_webinar_organizer(request, webinar_id)
    form = await read_form(request)
    lang = request_lang(request)
    label = form_str(form, "label", max_len=80)
    url = form_str(form, "url", max_len=2000, required=False)
    image_url = form_str(form, "image_url", max_len=2000, required=False)
    fields = [f for f in form.getlist("form_fields") if f in CTA_FORM_FIELDS]
    consent = form_str(form, "consent_text", max_len=1000, required=False)
    if not _url_ok(url, required=not fields) or not _url_ok(image_url, required=False):
        return await _ctas_page(request, webinar_id, 422, translate(lang, "cta.bad_url"))
    if fields and not consent:
        return await _ctas_page(request, webinar_id, 422, translate(lang, "cta.consent_needed"))
    db = services(request).db
    if await db.fetchval("SELECT count(*) FROM ctas WHERE webinar_id = $1", webinar_id) >= MAX_CTAS:
        return await _ctas_page(request, webinar_id, 422, translate(lang, "cta.too_many", max=MAX_CTAS))
    await db.execute(
        "INSERT INTO ctas (webinar_id, label, url, image_url, body, form_fields, consent_text) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        webinar_id, label, url, image_url, form_str(form, "body", max_len=500, required=False), fields, consent)
    return redirect(f"/webinars/{webinar_id}/ctas")


async def _faq_page(request: Request, account_id: uuid.UUID, status_code: int = 200, error: str | None = None) -> Response:
    await require_organizer(request, account_id)
    rows = await services(request).db.fetch("SELECT * FROM help_faq WHERE account_id = $1 ORDER BY id", account_id)
    return await render(request, "faq.html", status_code=status_code, account_id=account_id, entries=rows, error=error)


async def faq_page(request: Request) -> Response:
    return await _faq_page(request, path_uuid(request, "account_id"))


async def faq_create(request: Request) -> Response:
    account_id = path_uuid(request, "account_id")
    await require_organizer(request, account_id)
    form = await read_form(request)
    lang = request_lang(request)
    variants = [v.strip()[:300] for v in form_str(form, "variants", max_len=6000).splitlines() if v.strip()]
    answer = form_str(form, "answer", max_len=2000)
    db = services(request).db
    if not variants or len(variants) > MAX_VARIANTS:
        return await _faq_page(request, account_id, 422, translate(lang, "faq.variants_range", max=MAX_VARIANTS))
    if await db.fetchval("SELECT count(*) FROM help_faq WHERE account_id = $1", account_id) >= MAX_FAQ_ENTRIES:
        return await _faq_page(request, account_id, 422, translate(lang, "faq.too_many", max=MAX_FAQ_ENTRIES))
    await db.execute("INSERT INTO help_faq (account_id, variants, answer) VALUES ($1, $2, $3)", account_id, variants, answer)
    return redirect(f"/accounts/{account_id}/faq")


async def faq_delete(request: Request) -> Response:
    account_id = path_uuid(request, "account_id")
    await require_organizer(request, account_id)
    form = await read_form(request)
    try:
        entry = int(form_str(form, "entry_id", max_len=20))
    except ValueError:
        raise NotFound("faq") from None
    await services(request).db.execute("DELETE FROM help_faq WHERE id = $1 AND account_id = $2", entry, account_id)
    return redirect(f"/accounts/{account_id}/faq")


async def moderator_panel(request: Request) -> Response:
    """The control panel: staff with the moderator role only (the room WebSocket checks again)."""
    webinar_id = path_uuid(request, "webinar_id")
    user = await require_user(request)
    webinar = await get_webinar(services(request).db, webinar_id)
    if await staff_role(services(request).db, user, webinar_id) != "moderator":
        raise NotFound("webinar")
    return await render(request, "moderate.html", webinar=webinar, hls_url=f"/hls/{webinar_id}/index.m3u8")


async def panel_page(request: Request) -> Response:
    """``GET /w/{webinar_id}/panel``: the interaction panel alone (a pop-out, a second screen,
    a studio). Public like the viewer page; 404 unless the room is open (announced to replay)."""
    webinar_id = path_uuid(request, "webinar_id")
    db = services(request).db
    webinar = await get_webinar(db, webinar_id)
    if webinar.state not in ROOM_STATES:
        raise NotFound("webinar")
    user = await current_user(request)
    role = await staff_role(db, user, webinar_id) if user is not None else None
    response = await render(request, "room_panel.html", webinar=webinar, room_staff=role is not None,
                            room_static=STATIC_URL)
    response.headers["cache-control"] = "no-cache"
    return response


async def room_access(request: Request) -> Response:
    """``GET /w/{webinar_id}/room-access``: may this page join the room, and if not why.

    A browser cannot see why a WebSocket handshake was refused (it only gets code 1006), so
    the room client asks here after failed attempts: with its join token in the
    ``X-Room-Token`` header, or with the login cookie for staff. Always 200 (a refusal is an
    answer, not an error): ``{"ok": true, "role": ...}`` or ``{"ok": false, "error": code}``
    with the codes of :class:`rooms.participants.JoinRefused`."""
    db = services(request).db
    no_store = {"cache-control": "no-store"}
    try:
        webinar_id = uuid.UUID(request.path_params["webinar_id"])
        state = await db.fetchval("SELECT state FROM webinars WHERE id = $1", webinar_id)
        if state not in ROOM_STATES:
            raise JoinRefused("room_closed")
        token = request.headers.get("x-room-token")
        if token:
            participant = await from_token(db, services(request).signer, webinar_id, token)
            role: str | None = participant.role
        else:
            user = await current_user(request)
            role = await staff_role(db, user, webinar_id) if user is not None else None
            if role is None:
                raise JoinRefused("no_identity")
    except ValueError:
        return JSONResponse({"ok": False, "error": "room_closed"}, headers=no_store)
    except JoinRefused as exc:
        return JSONResponse({"ok": False, "error": exc.code}, headers=no_store)
    return JSONResponse({"ok": True, "role": role}, headers=no_store)


routes: list[BaseRoute] = [
    AppRoute("/webinars/{webinar_id}/ctas", ctas_page, access="organizer", methods=["GET"]),
    AppRoute("/webinars/{webinar_id}/ctas", cta_create, access="organizer", methods=["POST"]),
    AppRoute("/accounts/{account_id}/faq", faq_page, access="organizer", methods=["GET"]),
    AppRoute("/accounts/{account_id}/faq", faq_create, access="organizer", methods=["POST"]),
    AppRoute("/accounts/{account_id}/faq/delete", faq_delete, access="organizer", methods=["POST"]),
    AppRoute("/w/{webinar_id}/moderate", moderator_panel, access="user", methods=["GET"]),
    AppRoute("/w/{webinar_id}/panel", panel_page, access="public", methods=["GET"]),
    AppRoute("/w/{webinar_id}/room-access", room_access, access="public", methods=["GET"]),
    Mount(STATIC_URL, StaticFiles(directory=str(STATIC_DIR)), name="rooms_static"),
]
