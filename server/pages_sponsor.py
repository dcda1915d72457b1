"""Sponsor pages (R-ACC-2): what a sponsor login or key covers, with links to
each webinar's participant files (served by billing/pages_analytics.py; a key the
sponsor came with is carried over to the links)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from server.accounts import get_account
from server.errors import NotFound
from server.permissions import SPONSOR_KEY_PARAM, sponsor_scope
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
    return await render(request, "sponsor.html", account=await get_account(db, account_id), webinars=rows,
                        files=_files(request, rows))


def _files(request: Request, webinars: list[Any]) -> dict[Any, dict[str, str]]:
    """Each webinar's participant files (billing/pages_analytics.py), with the key the sponsor came with."""
    key = request.query_params.get(SPONSOR_KEY_PARAM)
    suffix = f"?{urlencode({SPONSOR_KEY_PARAM: key})}" if key else ""
    return {w["id"]: {kind: f"/sponsor/webinars/{w['id']}/participants.{kind}{suffix}" for kind in ("csv", "xlsx")}
            for w in webinars}


async def sponsor_webinar(request: Request) -> Response:
    webinar_id = path_uuid(request, "webinar_id")
    db = services(request).db
    row = await db.fetchrow("SELECT id, account_id, title, starts_at, state FROM webinars WHERE id = $1", webinar_id)
    if row is None:
        raise NotFound("webinar")
    await sponsor_scope(request, row["account_id"], webinar_id)
    return await render(request, "sponsor.html", account=await get_account(db, row["account_id"]), webinars=[row],
                        files=_files(request, [row]))


routes = [
    AppRoute("/sponsor/accounts/{account_id}", sponsor_account, access="sponsor", methods=["GET"]),
    AppRoute("/sponsor/webinars/{webinar_id}", sponsor_webinar, access="sponsor", methods=["GET"]),
]
