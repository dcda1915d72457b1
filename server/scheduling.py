"""Scheduling rules of the terms of sale (R-SCH-1 to R-SCH-5).

- R-SCH-1 **Date requests**: a requested slot is confirmed when it is free
  (inside a contract with webinars left, no overlap with the account's
  webinars), else answered with the next free alternatives
  (:func:`request_date`).
- R-SCH-2 A webinar is **rescheduled once** at most, an order **3 times** at
  most, and the new date must fall inside the contract.
- R-SCH-3 A reschedule or cancellation must be asked **at least 30 days before
  the Monday of the broadcast week** (the week of the current date, in
  Europe/Paris). A later request is refused with that reason and the webinar
  is marked *consumed*: it counts against the order, no reschedule, no refund.
  A late cancellation still cancels the webinar, as consumed.
- R-SCH-4 Rescheduling or cancelling (in time) a webinar of an order with the
  **studio/director option** records a flat **2,000 EUR excl. tax** fee.
- R-SCH-5 Webinars bought but **not delivered 12 months after the order**
  (signature date) are lost and billed in full (:func:`mark_lost`).

Announced webinars move only through :func:`reschedule`; drafts are date
requests and move freely (inside the rules of :mod:`server.webinars`).
"""

from __future__ import annotations

import calendar
import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Awaitable, Callable

import asyncpg

from server.db import Database
from server.errors import NotFound, RuleViolation
from server.orders import BUSINESS_TZ, Order
from server.webinars import Webinar, check_schedule, lock_account

NOTICE_DAYS = 30
MAX_RESCHEDULES_PER_WEBINAR = 1
MAX_RESCHEDULES_PER_ORDER = 3
STUDIO_FEE_CENTS = 200_000
LOST_AFTER_MONTHS = 12
ALTERNATIVES = 3
ALTERNATIVE_STEP = dt.timedelta(minutes=30)
ALTERNATIVE_SEARCH_DAYS = 14
WORKING_HOURS = (dt.time(8, 0), dt.time(20, 0))
"""Alternatives start between these local times (Europe/Paris)."""

Hook = Callable[[asyncpg.Connection, uuid.UUID], Awaitable[None]]
AFTER_MOVE: list[Hook] = []
"""Called in the reschedule's transaction with (conn, webinar id): registrants' notifications."""
AFTER_CANCEL: list[Hook] = []


def broadcast_monday(starts_at: dt.datetime) -> dt.datetime:
    """00:00 Paris time on the Monday of the week that holds ``starts_at``."""
    local = starts_at.astimezone(BUSINESS_TZ)
    monday = local.date() - dt.timedelta(days=local.weekday())
    return dt.datetime.combine(monday, dt.time(), BUSINESS_TZ)


def change_deadline(starts_at: dt.datetime) -> dt.datetime:
    """The last instant a reschedule or cancellation may be asked (R-SCH-3)."""
    return broadcast_monday(starts_at) - dt.timedelta(days=NOTICE_DAYS)


@dataclass(frozen=True)
class DateAnswer:
    confirmed: bool
    order_id: uuid.UUID | None
    alternatives: tuple[dt.datetime, ...] = ()
    reason: str = ""


async def _orders(conn: asyncpg.Connection, account_id: uuid.UUID) -> list[Order]:
    return [Order.from_row(r) for r in await conn.fetch("SELECT * FROM orders WHERE account_id = $1", account_id)]


async def _slot_problem(conn: asyncpg.Connection, account_id: uuid.UUID, orders: list[Order], starts_at: dt.datetime,
                        duration: int, exclude: uuid.UUID | None) -> tuple[str, Order | None]:
    last = "no_order"
    for order in orders:
        try:
            await check_schedule(conn, account_id, order, starts_at, duration, exclude=exclude)
        except RuleViolation as exc:
            last = exc.code
            continue
        return "", order
    return last, None


async def request_date(db: Database, account_id: uuid.UUID, starts_at: dt.datetime, duration_minutes: int) -> DateAnswer:
    """R-SCH-1: confirm a slot, or propose the next free ones (same duration)."""
    if starts_at.tzinfo is None:
        raise RuleViolation("start_needs_timezone")
    async with db.acquire() as conn, conn.transaction(readonly=True):
        orders = await _orders(conn, account_id)
        if not orders:
            raise RuleViolation("no_order")
        problem, order = await _slot_problem(conn, account_id, orders, starts_at, duration_minutes, None)
        if order is not None:
            return DateAnswer(True, order.id)
        found: list[dt.datetime] = []
        candidate = starts_at + ALTERNATIVE_STEP
        end = starts_at + dt.timedelta(days=ALTERNATIVE_SEARCH_DAYS)
        while candidate <= end and len(found) < ALTERNATIVES:
            local = candidate.astimezone(BUSINESS_TZ).time()
            if WORKING_HOURS[0] <= local <= WORKING_HOURS[1]:
                if (await _slot_problem(conn, account_id, orders, candidate, duration_minutes, None))[1] is not None:
                    found.append(candidate)
            candidate += ALTERNATIVE_STEP
        return DateAnswer(False, None, tuple(found), problem)


async def _load(conn: asyncpg.Connection, webinar_id: uuid.UUID) -> tuple[Webinar, asyncpg.Record, Order]:
    row = await conn.fetchrow("SELECT * FROM webinars WHERE id = $1", webinar_id)
    if row is None:
        raise NotFound("webinar")
    await lock_account(conn, row["account_id"])
    row = await conn.fetchrow("SELECT * FROM webinars WHERE id = $1", webinar_id)
    assert row is not None
    order_row = await conn.fetchrow("SELECT * FROM orders WHERE id = $1", row["order_id"])
    assert order_row is not None
    return Webinar.from_row(row), row, Order.from_row(order_row)


async def _late(conn: asyncpg.Connection, webinar: Webinar, now: dt.datetime) -> bool:
    if now <= change_deadline(webinar.starts_at):
        return False
    await conn.execute("UPDATE webinars SET consumed_at = coalesce(consumed_at, $2) WHERE id = $1", webinar.id, now)
    return True


async def reschedule(db: Database, webinar_id: uuid.UUID, new_starts_at: dt.datetime, *,
                     requested_by: uuid.UUID | None = None, now: dt.datetime | None = None) -> Webinar:
    """Move an announced (or draft) webinar under R-SCH-2..4. A late request marks the
    webinar consumed and raises ``too_late`` (the mark is kept: it is the rule)."""
    now = now or dt.datetime.now(dt.UTC)
    if new_starts_at.tzinfo is None:
        raise RuleViolation("start_needs_timezone")
    late_error: RuleViolation | None = None
    async with db.acquire() as conn, conn.transaction():
        webinar, row, order = await _load(conn, webinar_id)
        if webinar.state not in ("draft", "announced"):
            raise RuleViolation("webinar_not_editable", state=webinar.state)
        if row["consumed_at"] is not None:
            raise RuleViolation("webinar_consumed")
        if await _late(conn, webinar, now):
            late_error = RuleViolation("too_late", deadline=change_deadline(webinar.starts_at).date().isoformat(),
                                       days=NOTICE_DAYS)
        else:
            if row["reschedule_count"] >= MAX_RESCHEDULES_PER_WEBINAR:
                raise RuleViolation("already_rescheduled")
            done = await conn.fetchval(
                "SELECT count(*) FROM schedule_changes WHERE order_id = $1 AND kind = 'reschedule'", order.id)
            if done >= MAX_RESCHEDULES_PER_ORDER:
                raise RuleViolation("order_reschedules_used", max=MAX_RESCHEDULES_PER_ORDER)
            await check_schedule(conn, webinar.account_id, order, new_starts_at, webinar.duration_minutes, exclude=webinar.id)
            updated = await conn.fetchrow(
                """UPDATE webinars SET starts_at = $2, schedule_version = schedule_version + 1,
                       reschedule_count = reschedule_count + 1, updated_at = now()
                   WHERE id = $1 RETURNING *""", webinar.id, new_starts_at)
            await conn.execute(
                "INSERT INTO schedule_changes (webinar_id, order_id, kind, old_starts_at, new_starts_at, requested_by, at) "
                "VALUES ($1, $2, 'reschedule', $3, $4, $5, $6)", webinar.id, order.id, webinar.starts_at, new_starts_at,
                requested_by, now)
            if order.studio_option:
                await _fee(conn, order, webinar, "reschedule", now)
            for hook in AFTER_MOVE:
                await hook(conn, webinar.id)
            assert updated is not None
            result = Webinar.from_row(updated)
    if late_error is not None:
        raise late_error
    return result


async def cancel(db: Database, webinar_id: uuid.UUID, *, requested_by: uuid.UUID | None = None,
                 now: dt.datetime | None = None) -> tuple[Webinar, bool]:
    """Cancel a webinar; returns (webinar, consumed). In time: the order gets the
    webinar back (a studio fee applies, R-SCH-4). Late: cancelled but consumed."""
    now = now or dt.datetime.now(dt.UTC)
    async with db.acquire() as conn, conn.transaction():
        webinar, row, order = await _load(conn, webinar_id)
        if webinar.state not in ("draft", "announced"):
            raise RuleViolation("transition_refused", current=webinar.state, wanted="cancelled")
        consumed = row["consumed_at"] is not None or await _late(conn, webinar, now)
        updated = await conn.fetchrow("UPDATE webinars SET state = 'cancelled', updated_at = now() WHERE id = $1 RETURNING *",
                                      webinar.id)
        await conn.execute(
            "INSERT INTO schedule_changes (webinar_id, order_id, kind, old_starts_at, requested_by, at) "
            "VALUES ($1, $2, 'cancellation', $3, $4, $5)", webinar.id, order.id, webinar.starts_at, requested_by, now)
        if order.studio_option and not consumed and webinar.state == "announced":
            await _fee(conn, order, webinar, "cancellation", now)
        for hook in AFTER_CANCEL:
            await hook(conn, webinar.id)
    assert updated is not None
    return Webinar.from_row(updated), consumed


async def _fee(conn: asyncpg.Connection, order: Order, webinar: Webinar, kind: str, now: dt.datetime) -> None:
    await conn.execute(
        "INSERT INTO fees (account_id, order_id, webinar_id, kind, amount_cents, label, at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        order.account_id, order.id, webinar.id, kind, STUDIO_FEE_CENTS,
        f"{kind} of a studio/director webinar: {webinar.title}", now)


DELIVERED_STATES = ("live", "ended", "replay", "removed")
"""Webinar states that count as delivered (it went live); a webinar whose slot was
consumed (``consumed_at``) counts too. Used by R-SCH-5 and the balance invoice."""


def add_months(day: dt.date, months: int) -> dt.date:
    """``day`` plus ``months`` calendar months, clamped to the last day of the month
    (31 January + 1 month = 28/29 February). The one month arithmetic of the rules."""
    month = day.month - 1 + months
    year = day.year + month // 12
    month = month % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


@dataclass(frozen=True)
class LostReport:
    order_id: uuid.UUID
    lost: int
    """Webinars bought and not delivered: billed in full (R-SCH-5)."""
    marked: tuple[uuid.UUID, ...]
    """Existing webinars marked lost now (those never scheduled have no row)."""


async def mark_lost(db: Database, now: dt.datetime | None = None) -> list[LostReport]:
    """For every order signed more than 12 months ago: mark its undelivered webinars
    lost and report how many bought webinars were lost. Idempotent."""
    now = now or dt.datetime.now(dt.UTC)
    today = now.astimezone(BUSINESS_TZ).date()
    reports = []
    async with db.acquire() as conn, conn.transaction():
        for order_row in await conn.fetch("SELECT * FROM orders ORDER BY signed_on"):
            order = Order.from_row(order_row)
            if add_months(order.signed_on, LOST_AFTER_MONTHS) > today:
                continue
            delivered = await conn.fetchval(
                "SELECT count(*) FROM webinars WHERE order_id = $1 AND "
                "(state = ANY($2::text[]) OR consumed_at IS NOT NULL)", order.id, list(DELIVERED_STATES))
            marked = await conn.fetch(
                "UPDATE webinars SET lost_at = $2 WHERE order_id = $1 AND lost_at IS NULL AND consumed_at IS NULL "
                "AND state IN ('draft', 'announced') RETURNING id", order.id, now)
            reports.append(LostReport(order.id, max(0, order.webinars_bought - int(delivered)), tuple(r["id"] for r in marked)))
    return reports
