"""Personal-data breaches (R-GDPR-3): what happened, when, which categories of data
and how many people were affected, and what was done. The register the GDPR
(art. 33.5) asks a controller to keep; notifying the authority within 72 h
remains a human task."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import asyncpg

from server.db import Database
from server.errors import RuleViolation

CATEGORIES = ("identity", "contact", "professional", "behaviour", "free_text", "technical", "credentials")
"""identity: names; contact: emails, phones; professional: company, job; behaviour: attendance,
interactions; free_text: chat, questions, comments; technical: IP addresses, user agents;
credentials: password hashes, sessions, keys."""
MAX_DESCRIPTION = 5000
MAX_AFFECTED = 100_000_000


@dataclass(frozen=True)
class Breach:
    occurred_at: dt.datetime
    detected_at: dt.datetime
    description: str
    categories: tuple[str, ...]
    affected_count: int
    measures: str = ""


def check_breach(breach: Breach, now: dt.datetime) -> Breach:
    """The breach cleaned, or :class:`RuleViolation` saying what is wrong."""
    description = breach.description.strip()
    measures = breach.measures.strip()
    if not 1 <= len(description) <= MAX_DESCRIPTION:
        raise RuleViolation("breach_description_invalid", max=MAX_DESCRIPTION)
    if len(measures) > MAX_DESCRIPTION:
        raise RuleViolation("breach_description_invalid", max=MAX_DESCRIPTION)
    categories = tuple(c for c in CATEGORIES if c in breach.categories)
    if not categories or set(breach.categories) - set(CATEGORIES):
        raise RuleViolation("breach_categories_invalid")
    if not 0 <= breach.affected_count <= MAX_AFFECTED:
        raise RuleViolation("bad_value", field="affected_count")
    if breach.occurred_at.tzinfo is None or breach.detected_at.tzinfo is None:
        raise RuleViolation("start_needs_timezone")
    if breach.detected_at < breach.occurred_at or breach.detected_at > now + dt.timedelta(minutes=5):
        raise RuleViolation("breach_dates_invalid")
    return Breach(breach.occurred_at, breach.detected_at, description, categories, breach.affected_count, measures)


async def record_breach(db: Database | asyncpg.Connection, breach: Breach, *, reported_by: uuid.UUID | None,
                        now: dt.datetime | None = None) -> int:
    clean = check_breach(breach, now or dt.datetime.now(dt.UTC))
    breach_id: int = await db.fetchval(
        """INSERT INTO data_breaches (occurred_at, detected_at, description, categories, affected_count, measures, reported_by)
           VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id""",
        clean.occurred_at, clean.detected_at, clean.description, list(clean.categories), clean.affected_count,
        clean.measures, reported_by)
    return breach_id


async def list_breaches(db: Database | asyncpg.Connection) -> list[asyncpg.Record]:
    return await db.fetch(
        """SELECT b.*, u.email AS reporter FROM data_breaches b LEFT JOIN users u ON u.id = b.reported_by
           ORDER BY b.detected_at DESC, b.id DESC""")
