"""Organizer pages of the interaction part: calls-to-action of a webinar and the
account's help-bot FAQ; and the moderator panel's page."""

from __future__ import annotations

import uuid
from pathlib import Path
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from rooms.helpbot import MAX_FAQ_ENTRIES, MAX_VARIANTS
from rooms.participants import staff_role
from server.errors import NotFound
from server.i18n import translate
from server.permissions import require_organizer, require_webinar_organizer
from server.web import AppRoute, add_template_dir, form_str, path_uuid, read_form, redirect, render, request_lang, require_user, services
from server.webinars import get_webinar

add_template_dir(Path(__file__).with_name("templates"))

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


routes = [
    AppRoute("/webinars/{webinar_id}/ctas", ctas_page, access="organizer", methods=["GET"]),
    AppRoute("/webinars/{webinar_id}/ctas", cta_create, access="organizer", methods=["POST"]),
    AppRoute("/accounts/{account_id}/faq", faq_page, access="organizer", methods=["GET"]),
    AppRoute("/accounts/{account_id}/faq", faq_create, access="organizer", methods=["POST"]),
    AppRoute("/accounts/{account_id}/faq/delete", faq_delete, access="organizer", methods=["POST"]),
    AppRoute("/w/{webinar_id}/moderate", moderator_panel, access="user", methods=["GET"]),
]
