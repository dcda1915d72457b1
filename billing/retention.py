"""Retention of participant data (R-GDPR-1): kept for the contract's duration plus
``accounts.retention_months`` (12 unless the client asked otherwise), then erased.

Each order is one contract: the participants and registrants of its webinars
are erased (as :func:`billing.personal_data.erase_person` does: aggregates
stay, personal data goes) once the day after ``contract_end +
retention_months`` has come, in Europe/Paris. With 0 months, the day after the
contract's end. The client's own logins (organizers, sponsors) are not
participant data and are not touched here.

:func:`run_retention` is idempotent and meant to run daily (job worker).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import asyncpg

from billing.invoices import today_paris
from billing.personal_data import erase_webinars_participants, log_retention
from server.db import Database
from server.errors import NotFound, RuleViolation
from server.scheduling import add_months

MAX_RETENTION_MONTHS = 120
"""As the ``accounts.retention_months`` check allows."""


def keep_until(contract_end: dt.date, retention_months: int) -> dt.date:
    """The last day participant data of a contract ending on ``contract_end`` is kept."""
    if not 0 <= retention_months <= MAX_RETENTION_MONTHS:
        raise ValueError(f"retention_months must be between 0 and 120, not {retention_months!r}")
    return add_months(contract_end, retention_months)


def retention_due(contract_end: dt.date, retention_months: int, today: dt.date) -> bool:
    """True once the data of that contract must be erased (from the day after :func:`keep_until`)."""
    return today > keep_until(contract_end, retention_months)


@dataclass(frozen=True)
class RetentionResult:
    order_id: uuid.UUID
    account_id: uuid.UUID
    counts: dict[str, int]


async def run_retention(db: Database, now: dt.datetime | None = None) -> list[RetentionResult]:
    """Erase the participant data of every contract past its retention; one transaction and one
    processing-log entry per contract that still had something to erase. Returns what was done."""
    today = today_paris(now)
    results = []
    orders = await db.fetch(
        """SELECT o.id, o.account_id, o.contract_end, a.retention_months FROM orders o
           JOIN accounts a ON a.id = o.account_id ORDER BY o.contract_end, o.id""")
    for order in orders:
        if not retention_due(order["contract_end"], order["retention_months"], today):
            continue
        async with db.acquire() as conn, conn.transaction():
            webinars = [r["id"] for r in await conn.fetch(
                """SELECT w.id FROM webinars w WHERE w.order_id = $1 AND (
                       EXISTS (SELECT 1 FROM participants p WHERE p.webinar_id = w.id AND p.erased_at IS NULL)
                       OR EXISTS (SELECT 1 FROM registrations r WHERE r.webinar_id = w.id)
                       OR EXISTS (SELECT 1 FROM invitations i WHERE i.webinar_id = w.id))
                   FOR UPDATE""", order["id"])]
            if not webinars:
                continue
            counts = await erase_webinars_participants(conn, webinars)
            counts["webinars"] = len(webinars)
            await log_retention(conn, order["account_id"], {**counts, "order_id": str(order["id"])})
        results.append(RetentionResult(order["id"], order["account_id"], counts))
    return results


async def set_retention_months(db: Database | asyncpg.Connection, account_id: uuid.UUID, months: int) -> None:
    """How long after its contracts end an account's participant data is kept (the client's choice)."""
    if not 0 <= months <= MAX_RETENTION_MONTHS:
        raise RuleViolation("retention_months_invalid", max=MAX_RETENTION_MONTHS)
    if await db.execute("UPDATE accounts SET retention_months = $2 WHERE id = $1", account_id, months) == "UPDATE 0":
        raise NotFound("account")
