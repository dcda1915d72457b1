"""Organizer pages: dashboard, an account's webinars and quota, create and edit
webinars, life-cycle buttons, stream keys, invitations, sponsor keys."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from server.accounts import get_account, has_active_contract
from server import scheduling
from server.errors import RuleViolation
from server.i18n import translate
from server.invitations import create_invitation
from server.orders import account_orders, webinars_used
from server.permissions import organizer_accounts, require_organizer, require_webinar_organizer
from server.sponsor_keys import create_sponsor_key
from server.urls import ingest_urls, webinar_urls
from server.web import AppRoute, form_str, path_uuid, read_form, redirect, render, request_lang, require_user, services
from server.webinars import (
    TRANSITIONS,
    Webinar,
    account_webinars,
    create_webinar,
    get_webinar,
    rotate_stream_key,
    set_state,
    update_webinar,
)

DEFAULT_TZ = "Europe/Paris"
MANUAL_STATES = ("announced", "cancelled", "removed")
"""States an organizer sets by hand; going live, ending and publishing the replay
follow the encoder (player/live.py), so no button can contradict it."""


def parse_schedule(form: FormData) -> tuple[dt.datetime, int]:
    """``starts_at`` (``YYYY-MM-DDTHH:MM`` local), ``timezone`` (IANA) and ``duration_minutes``."""
    raw = form_str(form, "starts_at", max_len=40)
    tz_name = form_str(form, "timezone", max_len=64, required=False) or DEFAULT_TZ
    try:
        tz = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise RuleViolation("bad_value", field="timezone") from None
    try:
        starts_at = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise RuleViolation("bad_value", field="starts_at") from None
    if starts_at.tzinfo is None:
        starts_at = starts_at.replace(tzinfo=tz)
    try:
        duration = int(form_str(form, "duration_minutes", max_len=6))
    except ValueError:
        raise RuleViolation("bad_value", field="duration_minutes") from None
    return starts_at, duration


async def _account_context(request: Request, account_id: uuid.UUID) -> dict[str, Any]:
    db = services(request).db
    orders = await account_orders(db, account_id)
    quotas = [(o, await webinars_used(db, o.id)) for o in orders]
    return {
        "account": await get_account(db, account_id),
        "webinars": await account_webinars(db, account_id),
        "quotas": quotas,
        "default_tz": DEFAULT_TZ,
    }


async def dashboard(request: Request) -> Response:
    user = await require_user(request)
    db = services(request).db
    accounts = []
    for account_id in await organizer_accounts(request, user):
        if await has_active_contract(db, account_id):
            accounts.append(await get_account(db, account_id))
    if len(accounts) == 1:
        return redirect(f"/accounts/{accounts[0].id}")
    memberships = await db.fetch(
        """SELECT w.id, w.title, w.starts_at, m.role FROM webinar_members m JOIN webinars w ON w.id = m.webinar_id
           WHERE m.user_id = $1 ORDER BY w.starts_at""", user.id,
    )
    return await render(request, "dashboard.html", accounts=accounts, memberships=memberships)


async def account_page(request: Request) -> Response:
    account_id = path_uuid(request, "account_id")
    await require_organizer(request, account_id)
    return await render(request, "account.html", error=None, form={}, **await _account_context(request, account_id))


async def webinar_create(request: Request) -> Response:
    account_id = path_uuid(request, "account_id")
    await require_organizer(request, account_id)
    form = await read_form(request)
    starts_at, duration = dt.datetime.now(dt.UTC), 0
    try:
        starts_at, duration = parse_schedule(form)
        webinar = await create_webinar(
            services(request).db, account_id,
            title=form_str(form, "title", max_len=200),
            description=form_str(form, "description", max_len=20000, required=False),
            starts_at=starts_at, duration_minutes=duration,
            room_type=form_str(form, "room_type", max_len=20),
            language=form_str(form, "language", max_len=2, required=False) or "fr",
        )
    except RuleViolation as exc:
        lang = request_lang(request)
        message = translate(lang, f"rule.{exc.code}", **exc.params)
        if exc.code in ("overlap", "outside_contract", "quota_exceeded"):  # R-SCH-1: offer alternatives
            answer = await scheduling.request_date(services(request).db, account_id, starts_at, duration)
            if answer.alternatives:
                tz = ZoneInfo(form_str(form, "timezone", max_len=64, required=False) or DEFAULT_TZ)
                slots = ", ".join(a.astimezone(tz).strftime("%Y-%m-%d %H:%M") for a in answer.alternatives)
                message += " " + translate(lang, "webinar.alternatives", slots=slots)
        return await render(request, "account.html", status_code=422, form=dict(form), error=message,
                            **await _account_context(request, account_id))
    return redirect(f"/webinars/{webinar.id}")


async def _webinar_page(request: Request, webinar: Webinar, status_code: int = 200, **extra: object) -> Response:
    svc = services(request)
    members = await svc.db.fetch(
        """SELECT u.email, u.name, m.role FROM webinar_members m JOIN users u ON u.id = m.user_id
           WHERE m.webinar_id = $1 ORDER BY m.role, u.email""", webinar.id,
    )
    pending = await svc.db.fetch(
        "SELECT email, role, expires_at FROM invitations WHERE webinar_id = $1 AND accepted_at IS NULL ORDER BY created_at",
        webinar.id,
    )
    local_start = webinar.starts_at.astimezone(ZoneInfo(DEFAULT_TZ))
    context: dict[str, object] = {
        "webinar": webinar, "members": members, "pending": pending,
        "transitions": [s for s in TRANSITIONS[webinar.state] if s in MANUAL_STATES],
        "urls": webinar_urls(svc.settings, webinar.id), "ingest": ingest_urls(svc.settings, None),
        "local_start": local_start.strftime("%Y-%m-%dT%H:%M"), "default_tz": DEFAULT_TZ,
        "error": None, "notice": None, "new_key": None, "invitation_link": None, "invited_email": None,
        "low_rendition": bool(await svc.db.fetchval("SELECT low_rendition FROM webinars WHERE id = $1", webinar.id)),
    }
    context.update(extra)
    return await render(request, "webinar.html", status_code=status_code, **context)


async def webinar_page(request: Request) -> Response:
    _, webinar = await require_webinar_organizer(request, path_uuid(request, "webinar_id"))
    return await _webinar_page(request, webinar)


async def webinar_update(request: Request) -> Response:
    _, webinar = await require_webinar_organizer(request, path_uuid(request, "webinar_id"))
    form = await read_form(request)
    try:
        starts_at, duration = parse_schedule(form)
        changes: dict[str, object] = {
            "title": form_str(form, "title", max_len=200),
            "description": form_str(form, "description", max_len=20000, required=False),
            "duration_minutes": duration,
            "language": form_str(form, "language", max_len=2, required=False) or webinar.language,
        }
        if webinar.state == "draft":  # an announced date moves only by reschedule
            changes["starts_at"] = starts_at
        room_type = form_str(form, "room_type", max_len=20, required=False)
        if room_type:
            changes["room_type"] = room_type
        webinar = await update_webinar(services(request).db, webinar.id, **changes)
        # The 480p rendition (player/renditions.py) is read when a live starts.
        await services(request).db.execute("UPDATE webinars SET low_rendition = $2 WHERE id = $1", webinar.id,
                                           webinar.room_type == "studio" and form.get("low_rendition") == "on")
    except RuleViolation as exc:
        return await _webinar_page(request, webinar, status_code=422,
                                   error=translate(request_lang(request), f"rule.{exc.code}", **exc.params))
    return await _webinar_page(request, webinar, notice="webinar.saved")


async def webinar_state(request: Request) -> Response:
    user, webinar = await require_webinar_organizer(request, path_uuid(request, "webinar_id"))
    form = await read_form(request)
    wanted = form_str(form, "state", max_len=20)
    try:
        if wanted not in MANUAL_STATES:
            raise RuleViolation("transition_refused", current=webinar.state, wanted=wanted)
        if wanted == "cancelled":  # cancellations follow R-SCH-3/4
            webinar, _ = await scheduling.cancel(services(request).db, webinar.id, requested_by=user.id)
        else:
            webinar = await set_state(services(request).db, webinar.id, wanted)
    except RuleViolation as exc:
        return await _webinar_page(request, webinar, status_code=409,
                                   error=translate(request_lang(request), f"rule.{exc.code}", **exc.params))
    return redirect(f"/webinars/{webinar.id}")


async def webinar_reschedule(request: Request) -> Response:
    user, webinar = await require_webinar_organizer(request, path_uuid(request, "webinar_id"))
    form = await read_form(request)
    try:
        starts_at, _ = parse_schedule(form)
        webinar = await scheduling.reschedule(services(request).db, webinar.id, starts_at, requested_by=user.id)
    except RuleViolation as exc:
        fresh = await get_webinar(services(request).db, webinar.id)  # a late request marks it consumed
        return await _webinar_page(request, fresh, status_code=409,
                                   error=translate(request_lang(request), f"rule.{exc.code}", **exc.params))
    return await _webinar_page(request, webinar, notice="webinar.rescheduled")


async def webinar_stream_key(request: Request) -> Response:
    _, webinar = await require_webinar_organizer(request, path_uuid(request, "webinar_id"))
    await read_form(request)
    key = await rotate_stream_key(services(request).db, webinar.id)
    return await _webinar_page(request, webinar, new_key=key, ingest=ingest_urls(services(request).settings, key))


async def webinar_invite(request: Request) -> Response:
    user, webinar = await require_webinar_organizer(request, path_uuid(request, "webinar_id"))
    form = await read_form(request)
    svc = services(request)
    try:
        email = form_str(form, "email", max_len=254)
        _, token = await create_invitation(svc.db, svc.signer, webinar.id, form_str(form, "role", max_len=20), email,
                                           name=form_str(form, "name", max_len=200, required=False), invited_by=user.id)
    except RuleViolation as exc:
        return await _webinar_page(request, webinar, status_code=422,
                                   error=translate(request_lang(request), f"rule.{exc.code}", **exc.params))
    return await _webinar_page(request, webinar, invitation_link=f"{svc.settings.base_url}/invite/{token}",
                               invited_email=email)


async def sponsor_key_create(request: Request) -> Response:
    account_id = path_uuid(request, "account_id")
    user = await require_organizer(request, account_id)
    form = await read_form(request)
    svc = services(request)
    lang = request_lang(request)
    try:
        raw_webinar = form_str(form, "webinar_id", max_len=40, required=False)
        try:
            webinar_id = uuid.UUID(raw_webinar) if raw_webinar else None
            ttl_days = int(form_str(form, "ttl_days", max_len=4))
        except ValueError:
            raise RuleViolation("bad_value", field="webinar_id/ttl_days") from None
        key = await create_sponsor_key(svc.db, svc.signer, account_id, webinar_id=webinar_id, ttl_days=ttl_days,
                                       label=form_str(form, "label", max_len=200, required=False), created_by=user.id)
    except RuleViolation as exc:
        return await render(request, "account.html", status_code=422, form={},
                            error=translate(lang, f"rule.{exc.code}", **exc.params),
                            **await _account_context(request, account_id))
    link = f"{svc.settings.base_url}/sponsor/accounts/{account_id}?key={key}"
    return await render(request, "account.html", error=None, form={}, sponsor_link=link,
                        **await _account_context(request, account_id))


routes = [
    AppRoute("/dashboard", dashboard, access="user", methods=["GET"]),
    AppRoute("/accounts/{account_id}", account_page, access="organizer", methods=["GET"]),
    AppRoute("/accounts/{account_id}/webinars", webinar_create, access="organizer", methods=["POST"]),
    AppRoute("/accounts/{account_id}/sponsor-keys", sponsor_key_create, access="organizer", methods=["POST"]),
    AppRoute("/webinars/{webinar_id}", webinar_page, access="organizer", methods=["GET"]),
    AppRoute("/webinars/{webinar_id}", webinar_update, access="organizer", methods=["POST"]),
    AppRoute("/webinars/{webinar_id}/state", webinar_state, access="organizer", methods=["POST"]),
    AppRoute("/webinars/{webinar_id}/stream-key", webinar_stream_key, access="organizer", methods=["POST"]),
    AppRoute("/webinars/{webinar_id}/reschedule", webinar_reschedule, access="organizer", methods=["POST"]),
    AppRoute("/webinars/{webinar_id}/invitations", webinar_invite, access="organizer", methods=["POST"]),
]

