"""Per-participant figures of one webinar, as SQL read through a cursor, and the
files built from them: the sponsor's participant file (R-ANA-2) and the
organizer's attendance table.

Figures per participant (R-ANA-1): live and replay viewing time, attention
time (``attendance``, written by :mod:`billing.attendance`), poll answers,
questions, chat messages, CTA impressions and clicks, and the engagement
score (:mod:`billing.engagement`). Readers clamp once more what the recorder
already clamps: live time to the live's duration, replay time to the time
since the live ended, attention to live + replay (a participant connected to
two server processes at once is clamped per process only).

**Who is in the sponsor file** (R-ANA-2): registrations of the webinar whose
*latest* ``sponsor_share`` consent row is a yes, given for the sponsor the
webinar names now (``consents.sponsor_name = webinars.sponsor_name``, not
empty). A withdrawn consent, a consent given for another sponsor name, a
guest without registration, staff: not in the file. Registrants who did not
attend are in it with zero figures (``attended`` = no).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Callable, Sequence

from billing.engagement import engagement_score
from billing.exports import Cell, Column, Kind

_AGGREGATES = """
w AS (
    SELECT id, sponsor_name,
           CASE WHEN live_started_at IS NULL THEN 0::float8
                ELSE extract(epoch FROM coalesce(live_ended_at, now()) - live_started_at)::float8 END AS live_s,
           CASE WHEN live_ended_at IS NULL THEN 0::float8
                ELSE greatest(0, extract(epoch FROM now() - live_ended_at))::float8 END AS replay_window_s,
           CASE WHEN live_started_at IS NULL THEN duration_minutes * 60.0::float8
                ELSE extract(epoch FROM coalesce(live_ended_at, now()) - live_started_at)::float8 END AS reference_s
    FROM webinars WHERE id = $1),
votes AS (SELECT v.participant_id, count(*) AS n FROM poll_votes v JOIN polls p ON p.id = v.poll_id
          WHERE p.webinar_id = $1 GROUP BY 1),
asked AS (SELECT participant_id, count(*) AS n FROM questions
          WHERE webinar_id = $1 AND participant_id IS NOT NULL GROUP BY 1),
chats AS (SELECT participant_id, count(*) AS n FROM chat_messages
          WHERE webinar_id = $1 AND deleted_at IS NULL GROUP BY 1),
cta AS (SELECT participant_id, sum(impressions) AS impressions, sum(clicks) AS clicks,
               count(*) FILTER (WHERE clicks > 0) AS ctas_clicked
        FROM (SELECT i.participant_id, i.cta_id, count(*) FILTER (WHERE i.kind = 'impression') AS impressions,
                     count(*) FILTER (WHERE i.kind = 'click') AS clicks
              FROM cta_interactions i JOIN ctas c ON c.id = i.cta_id WHERE c.webinar_id = $1 GROUP BY 1, 2) per_cta
        GROUP BY 1)
"""
_FIGURES = """
       least(coalesce(a.live_seconds, 0), w.live_s) AS live_s,
       least(coalesce(a.replay_seconds, 0), w.replay_window_s) AS replay_s,
       least(coalesce(a.attention_seconds, 0),
             least(coalesce(a.live_seconds, 0), w.live_s) + least(coalesce(a.replay_seconds, 0), w.replay_window_s))
           AS attention_s,
       w.reference_s,
       coalesce(votes.n, 0) AS polls, coalesce(asked.n, 0) AS questions, coalesce(chats.n, 0) AS chat,
       coalesce(cta.impressions, 0) AS cta_impressions, coalesce(cta.clicks, 0) AS cta_clicks,
       coalesce(cta.ctas_clicked, 0) AS ctas_clicked
"""
_JOINS = """
LEFT JOIN attendance a ON a.participant_id = {pid}
LEFT JOIN votes ON votes.participant_id = {pid}
LEFT JOIN asked ON asked.participant_id = {pid}
LEFT JOIN chats ON chats.participant_id = {pid}
LEFT JOIN cta ON cta.participant_id = {pid}
"""


def date_sql(expr: str, kind: Kind) -> str:
    """A timestamptz column as the file wants it, computed by PostgreSQL (much cheaper than in Python):
    CSV: ISO 8601 text in Europe/Paris with its offset (the export transaction's time zone is
    Europe/Paris, see :func:`billing.exports.cursor_batches`); XLSX: an Excel serial date in Paris time."""
    if kind == "csv":
        return f"""to_char({expr}, 'YYYY-MM-DD"T"HH24:MI:SSTZH:TZM')"""
    return f"(extract(epoch FROM ({expr}) AT TIME ZONE 'Europe/Paris') / 86400.0 + 25569)"


def sponsor_file_sql(kind: Kind) -> str:
    """$1 = webinar id. The consenting registrants and their figures.

    In no guaranteed order (the order PostgreSQL produces them, usually the
    registrations' storage order): a global ORDER BY would cost a sort of
    every wide row before the first byte goes out (about a quarter of the
    query's time at 100,000 rows) and stop the file from streaming."""
    return f"""
WITH {_AGGREGATES}
SELECT r.email, r.first_name, r.last_name, r.phone, r.company, r.job_function, r.company_size, r.department,
       r.industry, {date_sql("r.created_at", kind)} AS registered_at, {date_sql("c.at", kind)} AS consent_at,
       {date_sql("a.first_seen_at", kind)} AS first_seen_at, {date_sql("a.last_seen_at", kind)} AS last_seen_at,
       {_FIGURES}
FROM w
JOIN registrations r ON r.webinar_id = w.id
JOIN LATERAL (SELECT c.granted, c.at, c.sponsor_name FROM consents c
              WHERE c.registration_id = r.id AND c.kind = 'sponsor_share'
              ORDER BY c.at DESC, c.id DESC LIMIT 1) c
     ON c.granted AND w.sponsor_name <> '' AND c.sponsor_name = w.sponsor_name
{_JOINS.format(pid="r.participant_id")}
"""


AUDIENCE_SQL = f"""
WITH {_AGGREGATES}
SELECT p.id AS participant_id, p.display_name, coalesce(r.email, p.email) AS email, r.id IS NOT NULL AS registered,
       {_FIGURES}
FROM w
JOIN participants p ON p.webinar_id = w.id AND p.user_id IS NULL
LEFT JOIN registrations r ON r.participant_id = p.id
{_JOINS.format(pid="p.id")}
"""
"""$1 = webinar id. Every audience participant (guests and registrants, not staff) and their figures."""


def attendance_sql(kind: Kind) -> str:
    """$1 = webinar id. One row per viewing session, with its participant's totals."""
    return f"""
WITH {_AGGREGATES}
SELECT p.display_name, coalesce(r.email, p.email) AS email, r.company, r.id IS NOT NULL AS registered,
       s.mode, {date_sql("s.started_at", kind)} AS started_at,
       {date_sql("coalesce(s.ended_at, s.last_beat_at)", kind)} AS left_at,
       s.seconds AS session_s, s.attention_seconds AS session_attention_s, {_FIGURES}
FROM w
JOIN attendance_sessions s ON s.webinar_id = w.id
JOIN participants p ON p.id = s.participant_id
LEFT JOIN registrations r ON r.participant_id = p.id
{_JOINS.format(pid="p.id")}
ORDER BY s.started_at, s.id
"""


def score_of(row: Any) -> int:
    """The engagement score of a row of any query above."""
    return engagement_score(attention_s=row["attention_s"], reference_s=row["reference_s"], polls=row["polls"],
                            questions=row["questions"], chat=row["chat"], cta_clicks=row["ctas_clicked"])


def minutes(seconds: float) -> float:
    """Seconds as minutes, to 0.1 min."""
    return round(float(seconds) / 60.0, 1)


def attended_key(live_s: float, replay_s: float) -> str:
    """``analytics.attended.{live,replay,both,no}``: how the participant watched (any viewing time > 0)."""
    live, replay = live_s > 0, replay_s > 0
    return "analytics.attended." + ("both" if live and replay else "live" if live else "replay" if replay else "no")


Translate = Callable[..., str]

SPONSOR_COLUMNS: tuple[tuple[str, str], ...] = (
    ("email", "text"), ("first_name", "text"), ("last_name", "text"), ("phone", "text"), ("company", "text"),
    ("job_function", "text"), ("company_size", "text"), ("department", "text"), ("industry", "text"),
    ("registered_at", "datetime"), ("consent_at", "datetime"), ("attended", "text"), ("live_minutes", "number"),
    ("replay_minutes", "number"), ("attention_minutes", "number"), ("first_seen", "datetime"),
    ("last_seen", "datetime"), ("poll_answers", "number"), ("questions", "number"), ("chat_messages", "number"),
    ("cta_impressions", "number"), ("cta_clicks", "number"), ("engagement_score", "number"),
)
"""(key, type) of each column of the sponsor file; headers are ``analytics.col.<key>``."""

ATTENDANCE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("name", "text"), ("email", "text"), ("company", "text"), ("registered", "text"), ("mode", "text"),
    ("joined_at", "datetime"), ("left_at", "datetime"), ("session_minutes", "number"),
    ("session_attention_minutes", "number"), ("live_minutes", "number"), ("replay_minutes", "number"),
    ("attention_minutes", "number"), ("engagement_score", "number"),
)


def columns(spec: Sequence[tuple[str, str]], t: Translate) -> list[Column]:
    return [Column(key, t(f"analytics.col.{key}"), kind) for key, kind in spec]  # type: ignore[arg-type]


def sponsor_row(t: Translate) -> Callable[[Any], list[Cell]]:
    """Formats one row of :func:`sponsor_file_sql` (in :data:`SPONSOR_COLUMNS` order)."""
    labels = {(live, replay): t(attended_key(float(live), float(replay))) for live in (False, True)
              for replay in (False, True)}

    def fmt(r: Any) -> list[Cell]:
        return [
            r["email"], r["first_name"], r["last_name"], r["phone"], r["company"], r["job_function"],
            r["company_size"], r["department"], r["industry"], r["registered_at"], r["consent_at"],
            labels[(r["live_s"] > 0, r["replay_s"] > 0)], minutes(r["live_s"]), minutes(r["replay_s"]),
            minutes(r["attention_s"]), r["first_seen_at"], r["last_seen_at"], r["polls"], r["questions"], r["chat"],
            r["cta_impressions"], r["cta_clicks"], score_of(r),
        ]

    return fmt


def attendance_row(t: Translate) -> Callable[[Any], list[Cell]]:
    """Formats one row of :func:`attendance_sql` (in :data:`ATTENDANCE_COLUMNS` order)."""

    def fmt(r: Any) -> list[Cell]:
        return [
            r["display_name"], r["email"], r["company"], t("analytics.yes" if r["registered"] else "analytics.no"),
            t(f"analytics.mode.{r['mode']}"), r["started_at"], r["left_at"], minutes(r["session_s"]),
            minutes(r["session_attention_s"]), minutes(r["live_s"]), minutes(r["replay_s"]),
            minutes(r["attention_s"]), score_of(r),
        ]

    return fmt


def file_date(now: dt.datetime | None = None) -> str:
    return (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%d-%H%M")
