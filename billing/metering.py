"""Who counts as an attendee for attendance-based billing (R-BIL-4).

A person counts **once per webinar**, whether they attended live, in replay or
both. :func:`attendees_for_billing` is the single place that decides it; the
metering invoices (:mod:`billing.invoices`) only use its answer.

An attendee is an audience participant (not staff: speakers, moderators and
organizers join with their login, ``user_id`` set) who viewed the webinar:
some live or replay viewing time in ``attendance`` (the per-participant
totals :mod:`billing.attendance` records from heartbeats). It is the
"audience" of the analytics page (:mod:`billing.analytics`), so the invoice
and the page agree. One person = one registration, whose participant row is
used live and in replay; participant rows carrying the same email are grouped
as one person.
"""

from __future__ import annotations

import uuid

import asyncpg

ATTENDEES_SQL = """
SELECT array_agg(p.id ORDER BY p.created_at, p.id) AS participant_ids
FROM participants p
JOIN attendance a ON a.participant_id = p.id
WHERE p.webinar_id = $1 AND p.user_id IS NULL AND (a.live_seconds > 0 OR a.replay_seconds > 0)
GROUP BY coalesce(p.email, p.id::text)
ORDER BY min(p.created_at)
"""


async def attendees_for_billing(conn: asyncpg.Connection, webinar_id: uuid.UUID) -> list[tuple[uuid.UUID, ...]]:
    """The webinar's attendees for billing, one item per person: the participant ids of that
    person (usually one). ``len()`` of the result is the number of attendees billed."""
    rows = await conn.fetch(ATTENDEES_SQL, webinar_id)
    return [tuple(r["participant_ids"]) for r in rows]
