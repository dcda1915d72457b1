"""What the organizer's analytics page shows, read from the database.

Everything is aggregated in PostgreSQL or in one streamed pass over the
audience (flat memory whatever the audience size); the page draws it
(:mod:`billing.charts`). Days are calendar days in Europe/Paris.

- registrations per day (and the running total);
- concurrent viewers through the live: per time step (1 min for a live up
  to 2 h, 2 min up to 4 h), the number of distinct participants with a live
  session overlapping the step;
- attention distribution: attendees by attention share (attention time /
  the live's duration), in ten 10 % bins;
- engagement score distribution (ten bins) and the most engaged participants;
- CTA funnel per CTA: distinct participants who saw it, clicked it, sent its
  form; CTA report per CTA per day (R-ANA-3);
- poll results: votes per option.
"""

from __future__ import annotations

import datetime as dt
import heapq
import json
import math
import uuid
from dataclasses import dataclass, field

from billing.exports import PARIS, cursor_batches
from billing.figures import AUDIENCE_SQL, score_of
from server.db import Database

TOP_PARTICIPANTS = 20
MAX_DAYS = 731
"""Registration days shown one by one (beyond, only days with registrations)."""
MAX_STEPS = 120
"""Concurrency points at most (the step grows by whole minutes to stay under it)."""


@dataclass
class Summary:
    registrations: int = 0
    sponsor_consents: int = 0
    audience: int = 0
    """Participants (guests and registrants) who viewed live or replay; counted once (R-BIL-4)."""
    live_viewers: int = 0
    replay_viewers: int = 0
    peak_concurrent: int = 0
    average_attention_min: float = 0.0
    average_score: float = 0.0


@dataclass
class TopParticipant:
    name: str
    email: str
    live_min: float
    replay_min: float
    attention_min: float
    score: int


@dataclass
class CtaFunnel:
    cta_id: int
    label: str
    impressions: int
    clicks: int
    submissions: int


@dataclass
class CtaDay:
    day: dt.date
    cta_id: int
    label: str
    impressions: int
    clicks: int
    submissions: int
    viewers: int
    clickers: int

    @property
    def ctr(self) -> float:
        """Clicks per impression, in %."""
        return 100.0 * self.clicks / self.impressions if self.impressions else 0.0


@dataclass
class PollResult:
    poll_id: int
    question: str
    state: str
    options: list[tuple[str, int]]
    voters: int


@dataclass
class Analytics:
    webinar_id: uuid.UUID
    live_started_at: dt.datetime | None
    live_ended_at: dt.datetime | None
    reference_s: float
    summary: Summary
    registrations_per_day: list[tuple[dt.date, int, int]]
    """(day, registrations that day, running total)."""
    concurrency_step_min: int
    concurrency: list[tuple[dt.datetime, int]]
    attention_bins: list[int]
    """Attendees with attention share in [10 i %, 10 (i+1) %), the last bin including 100 %."""
    score_bins: list[int]
    """Attendees with score in [10 i, 10 i + 9], the last bin 90-100."""
    top: list[TopParticipant]
    funnels: list[CtaFunnel]
    cta_days: list[CtaDay]
    polls: list[PollResult]
    unclosed_sessions: int = 0
    notes: list[str] = field(default_factory=list)


async def load_analytics(db: Database, webinar_id: uuid.UUID) -> Analytics:
    w = await db.fetchrow(
        """SELECT live_started_at, live_ended_at, duration_minutes,
                  CASE WHEN live_started_at IS NULL THEN duration_minutes * 60.0
                       ELSE extract(epoch FROM coalesce(live_ended_at, now()) - live_started_at) END::float8 AS reference_s
           FROM webinars WHERE id = $1""", webinar_id)
    if w is None:
        raise LookupError("webinar")
    summary = Summary()
    reg_rows = await db.fetch(
        """SELECT (created_at AT TIME ZONE 'Europe/Paris')::date AS day, count(*) AS n
           FROM registrations WHERE webinar_id = $1 GROUP BY 1 ORDER BY 1""", webinar_id)
    per_day: list[tuple[dt.date, int, int]] = []
    running = 0
    counts = {r["day"]: r["n"] for r in reg_rows}
    days = sorted(counts)
    if days and (days[-1] - days[0]).days < MAX_DAYS:  # every day in between, so the x axis is time
        days = [days[0] + dt.timedelta(days=i) for i in range((days[-1] - days[0]).days + 1)]
    for day in days:
        running += counts.get(day, 0)
        per_day.append((day, counts.get(day, 0), running))
    summary.registrations = running
    summary.sponsor_consents = await db.fetchval(
        """SELECT count(*) FROM registrations r JOIN webinars w ON w.id = r.webinar_id
           JOIN LATERAL (SELECT granted, sponsor_name FROM consents c WHERE c.registration_id = r.id
                         AND c.kind = 'sponsor_share' ORDER BY c.at DESC, c.id DESC LIMIT 1) c
             ON c.granted AND w.sponsor_name <> '' AND c.sponsor_name = w.sponsor_name
           WHERE r.webinar_id = $1""", webinar_id)

    step_min, concurrency = await _concurrency(db, webinar_id, w["live_started_at"], w["live_ended_at"])
    summary.peak_concurrent = max((n for _, n in concurrency), default=0)

    attention_bins = [0] * 10
    score_bins = [0] * 10
    top: list[tuple[int, float, int, TopParticipant]] = []
    attention_total = 0.0
    score_total = 0
    seen = 0
    async with cursor_batches(db, AUDIENCE_SQL, webinar_id) as batches:
        async for rows in batches:
            for r in rows:
                if not (r["live_s"] > 0 or r["replay_s"] > 0):
                    continue
                score = score_of(r)
                score_bins[min(9, score // 10)] += 1
                summary.audience += 1
                summary.live_viewers += r["live_s"] > 0
                summary.replay_viewers += r["replay_s"] > 0
                share = r["attention_s"] / max(r["reference_s"], 60.0)
                attention_bins[min(9, max(0, math.floor(share * 10)))] += 1
                attention_total += r["attention_s"]
                score_total += score
                seen += 1
                entry = TopParticipant(r["display_name"], r["email"] or "", round(r["live_s"] / 60, 1),
                                       round(r["replay_s"] / 60, 1), round(r["attention_s"] / 60, 1), score)
                item = (score, r["attention_s"], seen, entry)
                if len(top) < TOP_PARTICIPANTS:
                    heapq.heappush(top, item)
                elif item[:3] > top[0][:3]:
                    heapq.heapreplace(top, item)
    if summary.audience:
        summary.average_attention_min = round(attention_total / summary.audience / 60, 1)
        summary.average_score = round(score_total / summary.audience, 1)

    return Analytics(
        webinar_id=webinar_id, live_started_at=w["live_started_at"], live_ended_at=w["live_ended_at"],
        reference_s=w["reference_s"], summary=summary, registrations_per_day=per_day,
        concurrency_step_min=step_min, concurrency=concurrency, attention_bins=attention_bins, score_bins=score_bins,
        top=[t[3] for t in sorted(top, key=lambda t: t[:3], reverse=True)],
        funnels=await cta_funnels(db, webinar_id), cta_days=await cta_days(db, webinar_id),
        polls=await poll_results(db, webinar_id),
        unclosed_sessions=await db.fetchval(
            "SELECT count(*) FROM attendance_sessions WHERE webinar_id = $1 AND ended_at IS NULL", webinar_id),
    )


async def _concurrency(db: Database, webinar_id: uuid.UUID, started: dt.datetime | None,
                       ended: dt.datetime | None) -> tuple[int, list[tuple[dt.datetime, int]]]:
    if started is None:
        return 1, []
    end = ended or dt.datetime.now(dt.UTC)
    minutes = max(1.0, (end - started).total_seconds() / 60)
    step = max(1, math.ceil(minutes / MAX_STEPS))
    rows = await db.fetch(
        """SELECT b AS t, count(DISTINCT s.participant_id) AS n
           FROM attendance_sessions s
           CROSS JOIN LATERAL generate_series(date_bin($2::interval, greatest(s.started_at, $3), $3),
                                              least(coalesce(s.ended_at, s.last_beat_at), $4), $2::interval) AS b
           WHERE s.webinar_id = $1 AND s.mode = 'live'
           GROUP BY b ORDER BY b""",
        webinar_id, dt.timedelta(minutes=step), started, end)
    counts = {r["t"]: r["n"] for r in rows}
    out: list[tuple[dt.datetime, int]] = []
    t = started
    while t <= end and len(out) <= MAX_STEPS + 1:
        out.append((t, counts.get(t, 0)))
        t += dt.timedelta(minutes=step)
    return step, out


async def cta_funnels(db: Database, webinar_id: uuid.UUID) -> list[CtaFunnel]:
    """Per CTA, distinct participants who saw it, clicked it, sent its form."""
    rows = await db.fetch(
        """SELECT c.id, c.label,
                  count(DISTINCT i.participant_id) FILTER (WHERE i.kind = 'impression') AS impressions,
                  count(DISTINCT i.participant_id) FILTER (WHERE i.kind = 'click') AS clicks,
                  count(DISTINCT i.participant_id) FILTER (WHERE i.kind = 'submit') AS submissions
           FROM ctas c LEFT JOIN cta_interactions i ON i.cta_id = c.id
           WHERE c.webinar_id = $1 GROUP BY c.id, c.label ORDER BY c.id""", webinar_id)
    return [CtaFunnel(r["id"], r["label"], r["impressions"], r["clicks"], r["submissions"]) for r in rows]


CTA_DAYS_SQL = """
SELECT (i.at AT TIME ZONE 'Europe/Paris')::date AS day, c.id AS cta_id, c.label,
       count(*) FILTER (WHERE i.kind = 'impression') AS impressions,
       count(*) FILTER (WHERE i.kind = 'click') AS clicks,
       count(*) FILTER (WHERE i.kind = 'submit') AS submissions,
       count(DISTINCT i.participant_id) FILTER (WHERE i.kind = 'impression') AS viewers,
       count(DISTINCT i.participant_id) FILTER (WHERE i.kind = 'click') AS clickers
FROM cta_interactions i JOIN ctas c ON c.id = i.cta_id
WHERE c.webinar_id = $1
GROUP BY 1, 2, 3 ORDER BY 1, 2
"""
"""$1 = webinar id. R-ANA-3: CTA impressions and clicks per CTA and per day (Europe/Paris)."""


async def cta_days(db: Database, webinar_id: uuid.UUID) -> list[CtaDay]:
    return [CtaDay(r["day"], r["cta_id"], r["label"], r["impressions"], r["clicks"], r["submissions"], r["viewers"],
                   r["clickers"]) for r in await db.fetch(CTA_DAYS_SQL, webinar_id)]


async def poll_results(db: Database, webinar_id: uuid.UUID) -> list[PollResult]:
    polls = await db.fetch("SELECT id, question, options, state FROM polls WHERE webinar_id = $1 ORDER BY id",
                           webinar_id)
    counts = await db.fetch(
        """SELECT v.poll_id, c.choice, count(*) AS n FROM poll_votes v JOIN polls p ON p.id = v.poll_id
           CROSS JOIN LATERAL unnest(v.choices) AS c(choice)
           WHERE p.webinar_id = $1 GROUP BY 1, 2""", webinar_id)
    voters = {r["poll_id"]: r["n"] for r in await db.fetch(
        """SELECT v.poll_id, count(*) AS n FROM poll_votes v JOIN polls p ON p.id = v.poll_id
           WHERE p.webinar_id = $1 GROUP BY 1""", webinar_id)}
    by_poll: dict[int, dict[int, int]] = {}
    for r in counts:
        by_poll.setdefault(r["poll_id"], {})[r["choice"]] = r["n"]
    out = []
    for p in polls:
        options = p["options"]
        if isinstance(options, str):
            options = json.loads(options)
        labels = [str(o) for o in options]  # rooms stores the options as a JSON list of strings
        votes = by_poll.get(p["id"], {})
        out.append(PollResult(p["id"], p["question"], p["state"], [(label, votes.get(i, 0)) for i, label in
                                                                    enumerate(labels)], voters.get(p["id"], 0)))
    return out


def paris(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(PARIS)
