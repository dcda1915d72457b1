"""Admin personal-data pages (R-GDPR-1..3): find, export (JSON) and erase everything
about one email address; the processing log; the retention run; the breach
register. Platform admins only. The email travels in POSTed forms, never in a URL."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from billing.breaches import CATEGORIES, Breach, list_breaches, record_breach
from billing.personal_data import erase_person, export_person, find_person, processing_entries
from billing.retention import MAX_RETENTION_MONTHS, run_retention, set_retention_months
from server.errors import NotFound, RuleViolation
from server.i18n import translate
from server.orders import BUSINESS_TZ
from server.permissions import require_admin
from server.users import normalise_email
from server.web import AppRoute, add_template_dir, form_str, read_form, redirect, render, request_lang, services

add_template_dir(Path(__file__).with_name("templates"))


NOTICES = ("breach", "retention_months")


def log_key(request: Request) -> bytes:
    """The key of the processing log's subject hashes: the server's secret."""
    return services(request).settings.resolved_secret().encode()


async def _page(request: Request, *, status_code: int = 200, **context: Any) -> Response:
    db = services(request).db
    values: dict[str, Any] = {"found": None, "report": None, "email": "", "error": None, "notice": None,
                              "retention": None}
    values.update(context)
    accounts = await db.fetch("SELECT id, name, retention_months FROM accounts ORDER BY lower(name)")
    return await render(request, "privacy.html", status_code=status_code, log=await processing_entries(db),
                        breaches=await list_breaches(db), categories=CATEGORIES, accounts=accounts,
                        max_months=MAX_RETENTION_MONTHS, **values)


def _error(request: Request, exc: RuleViolation) -> str:
    return translate(request_lang(request), f"rule.{exc.code}", **exc.params)


async def privacy_home(request: Request) -> Response:
    await require_admin(request)
    notice = request.query_params.get("notice")
    return await _page(request, notice=translate(request_lang(request), f"privacy.notice.{notice}")
                       if notice in NOTICES else None)


async def privacy_find(request: Request) -> Response:
    await require_admin(request)
    form = await read_form(request)
    raw = form_str(form, "email", max_len=254)
    try:
        email = normalise_email(raw)
    except RuleViolation as exc:
        return await _page(request, status_code=422, email=raw, error=_error(request, exc))
    async with services(request).db.acquire() as conn:
        found = await find_person(conn, email)
    return await _page(request, email=email, found=found)


async def privacy_export(request: Request) -> Response:
    admin = await require_admin(request)
    form = await read_form(request)
    try:
        email = normalise_email(form_str(form, "email", max_len=254))
    except RuleViolation as exc:
        return await _page(request, status_code=422, error=_error(request, exc))
    body = await export_person(services(request).db, email, actor_id=admin.id, log_key=log_key(request))
    stamp = dt.datetime.now(BUSINESS_TZ).strftime("%Y%m%d-%H%M")
    return Response(body, media_type="application/json; charset=utf-8",
                    headers={"content-disposition": f'attachment; filename="personal-data-{stamp}.json"',
                             "cache-control": "private, no-store"})


async def privacy_erase(request: Request) -> Response:
    admin = await require_admin(request)
    form = await read_form(request)
    raw = form_str(form, "email", max_len=254)
    try:
        email = normalise_email(raw)
        if form_str(form, "confirm", max_len=254, required=False).lower() != email:
            raise RuleViolation("erase_confirm")
        report = await erase_person(services(request).db, email, actor_id=admin.id, log_key=log_key(request))
    except RuleViolation as exc:
        return await _page(request, status_code=422, email=raw, error=_error(request, exc))
    return await _page(request, report=report, notice=translate(request_lang(request), "privacy.erased"))


async def privacy_retention(request: Request) -> Response:
    await require_admin(request)
    await read_form(request)
    results = await run_retention(services(request).db)
    return await _page(request, retention=results)


async def privacy_retention_months(request: Request) -> Response:
    await require_admin(request)
    form = await read_form(request)
    try:
        try:
            account_id = uuid.UUID(form_str(form, "account_id", max_len=40))
        except ValueError:
            raise NotFound("account") from None
        try:
            months = int(form_str(form, "retention_months", max_len=4))
        except ValueError:
            raise RuleViolation("retention_months_invalid", max=MAX_RETENTION_MONTHS) from None
        await set_retention_months(services(request).db, account_id, months)
    except RuleViolation as exc:
        return await _page(request, status_code=422, error=_error(request, exc))
    return redirect("/admin/personal-data?notice=retention_months")


def _moment(value: str, field: str) -> dt.datetime:
    """A ``datetime-local`` value, read in Europe/Paris."""
    try:
        return dt.datetime.fromisoformat(value).replace(tzinfo=BUSINESS_TZ)
    except ValueError:
        raise RuleViolation("bad_value", field=field) from None


async def privacy_breach(request: Request) -> Response:
    admin = await require_admin(request)
    form = await read_form(request)
    try:
        try:
            affected = int(form_str(form, "affected_count", max_len=10))
        except ValueError:
            raise RuleViolation("bad_value", field="affected_count") from None
        await record_breach(services(request).db, Breach(
            occurred_at=_moment(form_str(form, "occurred_at", max_len=20), "occurred_at"),
            detected_at=_moment(form_str(form, "detected_at", max_len=20), "detected_at"),
            description=form_str(form, "description", max_len=5000),
            categories=tuple(c for c in form.getlist("categories") if isinstance(c, str)),
            affected_count=affected,
            measures=form_str(form, "measures", max_len=5000, required=False)), reported_by=admin.id)
    except RuleViolation as exc:
        return await _page(request, status_code=422, error=_error(request, exc))
    return redirect("/admin/personal-data?notice=breach")


routes = [
    AppRoute("/admin/personal-data", privacy_home, access="admin", methods=["GET"]),
    AppRoute("/admin/personal-data/find", privacy_find, access="admin", methods=["POST"]),
    AppRoute("/admin/personal-data/export", privacy_export, access="admin", methods=["POST"]),
    AppRoute("/admin/personal-data/erase", privacy_erase, access="admin", methods=["POST"]),
    AppRoute("/admin/personal-data/retention", privacy_retention, access="admin", methods=["POST"]),
    AppRoute("/admin/personal-data/retention-months", privacy_retention_months, access="admin", methods=["POST"]),
    AppRoute("/admin/personal-data/breaches", privacy_breach, access="admin", methods=["POST"]),
]
