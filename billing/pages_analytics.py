"""Routes of the analytics part.

Organizer (access ``organizer``: an organizer of the webinar's account with
an active contract, or an admin):

- ``GET /webinars/{webinar_id}/analytics``: the analytics page (charts as
  inline SVG, each with its data table);
- ``GET /webinars/{webinar_id}/analytics/attendance.csv``: one row per
  viewing session (join and leave times) with the participant's totals;
- ``GET /webinars/{webinar_id}/analytics/cta.csv``: CTA impressions and
  clicks per CTA and per day (R-ANA-3).

Sponsor (access ``sponsor``: a sponsor login of the account or of the
webinar, a signed unexpired key ``?key=`` covering it, or an admin;
:func:`server.permissions.sponsor_scope`):

- ``GET /sponsor/webinars/{webinar_id}/participants.csv`` and ``.xlsx``:
  the participant file (R-ANA-2, :mod:`billing.figures`).

A logged-in user who is not a sponsor of the webinar's account gets **403**
on the sponsor files (a sponsor of another account is told "forbidden"; the
webinar ids are random UUIDs, so nothing is enumerable); an expired, revoked
or out-of-scope key gets 403 too; no login and no key goes to the login page.
Every file download is streamed and logged (:mod:`billing.exports`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from billing import charts
from billing.analytics import CTA_DAYS_SQL, Analytics, load_analytics, paris
from billing.engagement import ATTENTION_POINTS, WEIGHTS
from billing.exports import Column, Downloader, FileRequest, Kind, LoggedDownload
from billing.figures import (
    ATTENDANCE_COLUMNS,
    SPONSOR_COLUMNS,
    attendance_row,
    attendance_sql,
    columns,
    file_date,
    sponsor_file_sql,
    sponsor_row,
)
from server.errors import Forbidden, NotFound
from server.i18n import translate
from server.permissions import require_webinar_organizer, sponsor_scope
from server.sponsor_keys import SponsorScope
from server.users import User
from server.web import AppRoute, add_template_dir, current_user, path_uuid, render, request_lang, services

add_template_dir(Path(__file__).with_name("templates"))

STATIC_URL = "/billing/static"


def _client(request: Request) -> tuple[str | None, str]:
    return (request.client.host if request.client else None), request.headers.get("user-agent", "")


def _translator(request: Request, user: User | None) -> Callable[..., str]:
    lang = request_lang(request, user)
    return lambda key, **params: translate(lang, key, **params)


def _slug(title: str) -> str:
    cleaned = "".join(ch.lower() if ch.isalnum() else "-" for ch in title)
    return "-".join(part for part in cleaned.split("-") if part)[:40] or "webinar"


# Organizer -----------------------------------------------------------------------------------
async def analytics_page(request: Request) -> Response:
    _, webinar = await require_webinar_organizer(request, path_uuid(request, "webinar_id"))
    data = await load_analytics(services(request).db, webinar.id)
    t = _translator(request, await current_user(request))
    return await render(request, "analytics.html", webinar=webinar, a=data, charts=_charts(data, t), paris=paris,
                        attention_points=int(ATTENTION_POINTS), weights=WEIGHTS,
                        static_url=STATIC_URL)


def _charts(a: Analytics, t: Callable[..., str]) -> dict[str, Any]:
    """Every chart of the page, drawn from ``a``."""
    out: dict[str, Any] = {}
    out["registrations"] = charts.line_chart(
        [(d.strftime("%d/%m"), total) for d, _, total in a.registrations_per_day], step=True,
        title=t("analytics.registrations_title"), y_label=t("analytics.registrations_axis"),
        desc=t("analytics.registrations_desc", total=a.summary.registrations, days=len(a.registrations_per_day)))
    out["concurrency"] = charts.line_chart(
        [(paris(moment).strftime("%H:%M"), n) for moment, n in a.concurrency],
        title=t("analytics.concurrency_title"), y_label=t("analytics.viewers_axis"),
        desc=t("analytics.concurrency_desc", peak=a.summary.peak_concurrent, step=a.concurrency_step_min))
    out["attention"] = charts.bar_chart(
        [(f"{10 * i}–{10 * (i + 1)} %", n) for i, n in enumerate(a.attention_bins)],
        title=t("analytics.attention_title"), y_label=t("analytics.attendees_axis"),
        desc=t("analytics.attention_desc", audience=a.summary.audience, average=a.summary.average_attention_min))
    out["scores"] = charts.bar_chart(
        [(f"{10 * i}–{10 * i + 9 if i < 9 else 100}", n) for i, n in enumerate(a.score_bins)],
        title=t("analytics.scores_title"), y_label=t("analytics.participants_axis"), color=charts.SERIES[2],
        desc=t("analytics.scores_desc", average=a.summary.average_score))
    out["funnels"] = [
        charts.hbar_chart(
            [(t("analytics.funnel.impressions"), f.impressions), (t("analytics.funnel.clicks"), f.clicks),
             (t("analytics.funnel.submissions"), f.submissions)],
            total=f.impressions or None, title=t("analytics.funnel_title", label=f.label),
            desc=t("analytics.funnel_desc", label=f.label, impressions=f.impressions, clicks=f.clicks,
                   submissions=f.submissions))
        for f in a.funnels]
    out["polls"] = [
        charts.hbar_chart(p.options, total=sum(n for _, n in p.options) or None,
                          title=p.question, desc=t("analytics.poll_desc", voters=p.voters,
                                                   results=", ".join(f"{label}: {n}" for label, n in p.options)))
        for p in a.polls]
    return out


def _who(scope: SponsorScope | User) -> Downloader:
    if isinstance(scope, SponsorScope):
        return Downloader(sponsor_key_id=scope.key_id)
    return Downloader(user_id=scope.id)


async def attendance_csv(request: Request) -> Response:
    user, webinar = await require_webinar_organizer(request, path_uuid(request, "webinar_id"))
    t = _translator(request, user)
    ip, agent = _client(request)
    return LoggedDownload(services(request).db, FileRequest(
        who=Downloader(user_id=user.id), account_id=webinar.account_id, webinar_id=webinar.id,
        filename=f"attendance-{_slug(webinar.title)}-{file_date()}.csv", kind="csv",
        columns=columns(ATTENDANCE_COLUMNS, t), query=attendance_sql("csv"), args=(webinar.id,), fmt=attendance_row(t),
        ip=ip, user_agent=agent))


CTA_COLUMNS: tuple[tuple[str, str], ...] = (
    ("day", "text"), ("cta_id", "number"), ("cta", "text"), ("impressions", "number"), ("clicks", "number"),
    ("submissions", "number"), ("unique_viewers", "number"), ("unique_clickers", "number"), ("ctr_percent", "number"),
)


async def cta_csv(request: Request) -> Response:
    user, webinar = await require_webinar_organizer(request, path_uuid(request, "webinar_id"))
    t = _translator(request, user)
    ip, agent = _client(request)

    def fmt(r: Any) -> list[Any]:
        ctr = round(100.0 * r["clicks"] / r["impressions"], 1) if r["impressions"] else 0
        return [r["day"].isoformat(), r["cta_id"], r["label"], r["impressions"], r["clicks"], r["submissions"],
                r["viewers"], r["clickers"], ctr]

    return LoggedDownload(services(request).db, FileRequest(
        who=Downloader(user_id=user.id), account_id=webinar.account_id, webinar_id=webinar.id,
        filename=f"cta-{_slug(webinar.title)}-{file_date()}.csv", kind="csv",
        columns=columns(CTA_COLUMNS, t), query=CTA_DAYS_SQL, args=(webinar.id,), fmt=fmt, ip=ip, user_agent=agent))


# Sponsor -------------------------------------------------------------------------------------
async def _sponsor_file(request: Request, kind: Kind) -> Response:
    webinar_id = path_uuid(request, "webinar_id")
    db = services(request).db
    row = await db.fetchrow("SELECT id, account_id, title FROM webinars WHERE id = $1", webinar_id)
    if row is None:
        raise NotFound("webinar")
    try:
        scope = await sponsor_scope(request, row["account_id"], webinar_id)
    except NotFound:
        raise Forbidden("error.403") from None  # logged in, but not a sponsor of this account or webinar
    user = scope if isinstance(scope, User) else None
    t = _translator(request, user)
    ip, agent = _client(request)
    spec: list[Column] = columns(SPONSOR_COLUMNS, t)
    return LoggedDownload(db, FileRequest(
        who=_who(scope), account_id=row["account_id"], webinar_id=webinar_id,
        filename=f"participants-{_slug(row['title'])}-{file_date()}.{kind}", kind=kind, columns=spec,
        query=sponsor_file_sql(kind), args=(webinar_id,), fmt=sponsor_row(t), ip=ip, user_agent=agent))


async def sponsor_csv(request: Request) -> Response:
    return await _sponsor_file(request, "csv")


async def sponsor_xlsx(request: Request) -> Response:
    return await _sponsor_file(request, "xlsx")


routes: list[BaseRoute] = [
    AppRoute("/webinars/{webinar_id}/analytics", analytics_page, access="organizer", methods=["GET"]),
    AppRoute("/webinars/{webinar_id}/analytics/attendance.csv", attendance_csv, access="organizer", methods=["GET"]),
    AppRoute("/webinars/{webinar_id}/analytics/cta.csv", cta_csv, access="organizer", methods=["GET"]),
    AppRoute("/sponsor/webinars/{webinar_id}/participants.csv", sponsor_csv, access="sponsor", methods=["GET"]),
    AppRoute("/sponsor/webinars/{webinar_id}/participants.xlsx", sponsor_xlsx, access="sponsor", methods=["GET"]),
    Mount(STATIC_URL, StaticFiles(directory=str(Path(__file__).with_name("static"))), name="billing_static"),
]
