"""Sponsor pages (R-ACC-2): what a sponsor login or key covers. The participant
files themselves come with the analytics part (billing/)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from server.accounts import get_account
from server.errors import NotFound
from server.permissions import sponsor_scope
from server.sponsor_keys import SponsorScope
from server.web import AppRoute, path_uuid, render, services


async def sponsor_account(request: Request) -> Response:
    account_id = path_uuid(request, "account_id")
    scope = await sponsor_scope(request, account_id)
    db = services(request).db
    if isinstance(scope, SponsorScope) and scope.webinar_id is not None:
        rows = await db.fetch("SELECT id, title, starts_at, state FROM webinars WHERE id = $1", scope.webinar_id)
    else:
        rows = await db.fetch(
            "SELECT id, title, starts_at, state FROM webinars WHERE account_id = $1 AND state <> 'cancelled' ORDER BY starts_at",
            account_id,
        )
    return await render(request, "sponsor.html", account=await get_account(db, account_id), webinars=rows)


async def sponsor_webinar(request: Request) -> Response:
    webinar_id = path_uuid(request, "webinar_id")
    db = services(request).db
    row = await db.fetchrow("SELECT id, account_id, title, starts_at, state FROM webinars WHERE id = $1", webinar_id)
    if row is None:
        raise NotFound("webinar")
    await sponsor_scope(request, row["account_id"], webinar_id)
    return await render(request, "sponsor.html", account=await get_account(db, row["account_id"]), webinars=[row])


routes = [
    AppRoute("/sponsor/accounts/{account_id}", sponsor_account, access="sponsor", methods=["GET"]),
    AppRoute("/sponsor/webinars/{webinar_id}", sponsor_webinar, access="sponsor", methods=["GET"]),
]
