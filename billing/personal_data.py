"""Personal data of one person (R-GDPR-2) and erasure of participants (R-GDPR-1).

A person is known by an email address. Everything about them is:

- their **registrations** (one per webinar) and the **consents** given with them,
  the **emails sent** to them;
- their **participants** (room identities: the registration's, or the one of
  their login as speaker/moderator/organizer) and what those did in rooms:
  chat messages, questions (live, and the one asked at registration),
  question votes, poll votes, CTA impressions/clicks/forms, ratings and
  comments, help requests, and the room events that carried them;
- their attendance (viewing time live and in replay, viewing sessions);
- their **user** (login) with its memberships, sessions, login attempts,
  invitations and the file downloads they made (IP address, browser).

:func:`find_person` collects it, :func:`export_person` returns it as JSON,
:func:`erase_person` erases it. Erasure keeps aggregates (how many
participants, votes, clicks, messages...) and removes every personal datum:

- registrations and their consents are deleted; emails sent keep their row
  (counts) with the address replaced by :data:`ERASED_NAME`;
- participants stay as anonymous rows: display name :data:`ERASED_NAME`, no
  email, no user, ``erased_at`` set; so attendance, poll votes, CTA
  interactions, question votes and ratings (stars) still count;
- free texts they wrote become :data:`ERASED_TEXT` (chat, questions, help
  requests), rating comments are emptied, CTA form contents are dropped; the
  room events that showed them (replayed with the video) are rewritten the same way;
- their user is deleted (sessions, memberships go with it; what they did as
  staff keeps its rows, with no author; their downloads lose IP and browser),
  and so are invitations and login attempts for that address.

Every export and erasure is written to ``processing_log`` with a keyed hash of
the email (:func:`subject_hash`), never the email itself, and the counts.

Tables that point at participants, registrations or users are listed in
:data:`REVIEWED_LINKS` with what erasure does to them; a table added later that
is not reviewed is still exported (generically) and is reported by
:func:`unreviewed_links` (a test fails until it is reviewed).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any

import asyncpg

from server.db import Database
from server.errors import RuleViolation
from server.users import normalise_email

ERASED_NAME = "erased"
"""What replaces a person's name or address (participants' display names, email recipients)."""
ERASED_TEXT = "[erased]"
"""What replaces a free text a person wrote."""
EXPORT_FORMAT = "webinar-personal-data/1"
SECRET_COLUMNS = frozenset({"password_hash", "token_hash", "stream_key_hash"})
"""Never exported: they are not the person's data but secrets of the service."""
FREE_TEXT_KEYS = frozenset({"text", "comment", "question"})
"""Keys of room event data holding what a person typed."""

PERSON = "person"
"""Rows about the person: exported, and erased or anonymised."""
ACTOR = "actor"
"""Rows where the person acted as staff: the link is cleared when their user is deleted."""
REVIEWED_LINKS: dict[tuple[str, str], str] = {
    ("participants", "user_id"): PERSON,
    ("account_members", "user_id"): PERSON,
    ("webinar_members", "user_id"): PERSON,
    ("sessions", "user_id"): PERSON,
    ("invitations", "accepted_by"): PERSON,
    ("registrations", "participant_id"): PERSON,
    ("chat_messages", "participant_id"): PERSON,
    ("questions", "participant_id"): PERSON,
    ("question_votes", "participant_id"): PERSON,
    ("poll_votes", "participant_id"): PERSON,
    ("cta_interactions", "participant_id"): PERSON,
    ("ratings", "participant_id"): PERSON,
    ("help_requests", "participant_id"): PERSON,
    ("metered_attendees", "participant_id"): PERSON,
    ("attendance_sessions", "participant_id"): PERSON,
    ("attendance", "participant_id"): PERSON,
    ("downloads", "user_id"): PERSON,
    ("consents", "registration_id"): PERSON,
    ("emails_sent", "registration_id"): PERSON,
    ("invitations", "invited_by"): ACTOR,
    ("sponsor_keys", "created_by"): ACTOR,
    ("audit_log", "actor_id"): ACTOR,
    ("schedule_changes", "requested_by"): ACTOR,
    ("ecb_rates", "updated_by"): ACTOR,
    ("invoices", "created_by"): ACTOR,
    ("processing_log", "actor_id"): ACTOR,
    ("data_breaches", "reported_by"): ACTOR,
    ("webcam_content", "created_by"): ACTOR,
}
"""Every (table, column) that references participants, registrations or users, and its kind."""


def subject_hash(key: bytes, email: str) -> str:
    """HMAC-SHA256 of the normalised email under the server's secret: the processing log can
    answer "was X's data exported or erased?" without holding X's address."""
    return hmac.new(key, b"gdpr-subject:" + normalise_email(email).encode(), hashlib.sha256).hexdigest()


# Reading rows as JSON ------------------------------------------------------------------------
def _jsonable(value: Any, type_name: str = "") -> Any:
    if value is None or isinstance(value, (bool, int, str)) and type_name not in ("json", "jsonb"):
        return value
    if type_name in ("json", "jsonb") and isinstance(value, str):
        return json.loads(value)
    if isinstance(value, (uuid.UUID, Decimal, IPv4Address, IPv6Address, IPv4Network, IPv6Network)):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float):
        return value
    return str(value)


async def _rows(conn: asyncpg.Connection, sql: str, *args: Any) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts, without bytea and secret columns, json(b) parsed."""
    stmt = await conn.prepare(sql)
    types = {a.name: a.type.name for a in stmt.get_attributes()}
    out = []
    for record in await stmt.fetch(*args):
        out.append({k: _jsonable(v, types[k]) for k, v in record.items()
                    if k not in SECRET_COLUMNS and types[k] != "bytea"})
    return out


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def person_links(conn: asyncpg.Connection) -> list[tuple[str, str, str]]:
    """(table, column, referenced table) of every single-column foreign key to participants,
    registrations or users, read from the catalog (so a table added later is seen)."""
    rows = await conn.fetch(
        """SELECT c.conrelid::regclass::text AS tbl, a.attname AS col, c.confrelid::regclass::text AS target
           FROM pg_constraint c
           JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
           WHERE c.contype = 'f' AND cardinality(c.conkey) = 1
             AND c.confrelid IN ('participants'::regclass, 'registrations'::regclass, 'users'::regclass)
           ORDER BY 1, 2""")
    return [(r["tbl"].strip('"'), r["col"], r["target"].strip('"')) for r in rows]


async def unreviewed_links(conn: asyncpg.Connection) -> list[tuple[str, str]]:
    """Links to a person that :data:`REVIEWED_LINKS` does not know: erasure leaves those rows
    pointing at the anonymised participant (or the deleted user) and their contents as they are."""
    return [(t, c) for t, c, _ in await person_links(conn) if (t, c) not in REVIEWED_LINKS]


# Who is the person ---------------------------------------------------------------------------
@dataclass
class Subject:
    """The ids under which one email appears."""

    email: str
    user_id: uuid.UUID | None = None
    registration_ids: list[uuid.UUID] = field(default_factory=list)
    participant_ids: list[uuid.UUID] = field(default_factory=list)
    webinar_ids: list[uuid.UUID] = field(default_factory=list)
    registration_questions: list[tuple[uuid.UUID, str]] = field(default_factory=list)
    """(webinar id, question) asked at registration: stored as anonymous questions."""
    names: set[str] = field(default_factory=set)
    phones: set[str] = field(default_factory=set)


async def _subject(conn: asyncpg.Connection, email: str) -> Subject:
    subject = Subject(email)
    user = await conn.fetchrow("SELECT id, name FROM users WHERE email = $1", email)
    if user is not None:
        subject.user_id = user["id"]
        if user["name"]:
            subject.names.add(user["name"])
    registrations = await conn.fetch(
        "SELECT id, webinar_id, participant_id, first_name, last_name, phone, question FROM registrations WHERE email = $1",
        email)
    subject.registration_ids = [r["id"] for r in registrations]
    for r in registrations:
        subject.names.update(n for n in (r["first_name"], r["last_name"], f"{r['first_name']} {r['last_name']}".strip())
                             if n)
        if r["phone"]:
            subject.phones.add(r["phone"])
        if r["question"]:
            subject.registration_questions.append((r["webinar_id"], r["question"]))
    participants = await conn.fetch(
        """SELECT id, webinar_id, display_name FROM participants
           WHERE email = $1 OR id = ANY($2::uuid[]) OR ($3::uuid IS NOT NULL AND user_id = $3)""",
        email, [r["participant_id"] for r in registrations if r["participant_id"]], subject.user_id)
    subject.participant_ids = [p["id"] for p in participants]
    subject.names.update(p["display_name"] for p in participants)
    subject.names.discard(ERASED_NAME)
    subject.webinar_ids = sorted({p["webinar_id"] for p in participants} | {r["webinar_id"] for r in registrations})
    return subject


# Find and export -------------------------------------------------------------------------------
@dataclass(frozen=True)
class PersonRecords:
    email: str
    tables: dict[str, list[dict[str, Any]]]
    """Table name -> the rows about the person (only tables with rows)."""
    webinars: list[dict[str, Any]]
    """The webinars concerned (title, date, account), for context."""
    acted_as_staff: dict[str, int]
    """``table.column`` -> rows where the person acted as staff (not exported one by one)."""
    unreviewed: list[tuple[str, str]]

    @property
    def found(self) -> bool:
        return bool(self.tables)

    def counts(self) -> dict[str, int]:
        return {table: len(rows) for table, rows in self.tables.items()}

    def to_json(self, generated_at: dt.datetime) -> str:
        return json.dumps({
            "format": EXPORT_FORMAT, "subject": self.email, "generated_at": generated_at.isoformat(),
            "webinars": self.webinars, "tables": self.tables, "acted_as_staff": self.acted_as_staff,
        }, ensure_ascii=False, indent=1, sort_keys=False)


_QUESTIONS_SQL = """
SELECT q.* FROM questions q
WHERE q.participant_id = ANY($1::uuid[])
   OR (q.source = 'registration' AND q.participant_id IS NULL
       AND (q.webinar_id, q.text) IN (SELECT * FROM unnest($2::uuid[], $3::text[])))
ORDER BY q.id"""


async def find_person(conn: asyncpg.Connection, email: str) -> PersonRecords:
    """Every row about ``email`` in every table (see the module's docstring)."""
    email = normalise_email(email)
    s = await _subject(conn, email)
    pids, rids, uid = s.participant_ids, s.registration_ids, s.user_id
    qw = [w for w, _ in s.registration_questions]
    qt = [q for _, q in s.registration_questions]
    queries: dict[str, tuple[str, tuple[Any, ...]]] = {
        "users": ("SELECT * FROM users WHERE id = $1", (uid,)),
        "account_members": ("SELECT * FROM account_members WHERE user_id = $1", (uid,)),
        "webinar_members": ("SELECT * FROM webinar_members WHERE user_id = $1", (uid,)),
        "sessions": ("SELECT * FROM sessions WHERE user_id = $1 ORDER BY created_at", (uid,)),
        "login_attempts": ("SELECT * FROM login_attempts WHERE email = $1 ORDER BY at", (email,)),
        "invitations": ("SELECT * FROM invitations WHERE email = $1 OR accepted_by = $2 ORDER BY created_at",
                        (email, uid)),
        "registrations": ("SELECT * FROM registrations WHERE id = ANY($1::uuid[]) ORDER BY created_at", (rids,)),
        "consents": ("SELECT * FROM consents WHERE registration_id = ANY($1::uuid[]) ORDER BY at", (rids,)),
        "emails_sent": ("SELECT * FROM emails_sent WHERE to_email = $1 OR registration_id = ANY($2::uuid[]) "
                        "ORDER BY sent_at", (email, rids)),
        "participants": ("SELECT * FROM participants WHERE id = ANY($1::uuid[]) ORDER BY created_at", (pids,)),
        "chat_messages": ("SELECT * FROM chat_messages WHERE participant_id = ANY($1::uuid[]) ORDER BY created_at",
                          (pids,)),
        "questions": (_QUESTIONS_SQL, (pids, qw, qt)),
        "question_votes": ("SELECT * FROM question_votes WHERE participant_id = ANY($1::uuid[])", (pids,)),
        "poll_votes": ("SELECT v.*, p.question AS poll_question, p.options AS poll_options FROM poll_votes v "
                       "JOIN polls p ON p.id = v.poll_id WHERE v.participant_id = ANY($1::uuid[])", (pids,)),
        "cta_interactions": ("SELECT i.*, c.label AS cta_label FROM cta_interactions i JOIN ctas c ON c.id = i.cta_id "
                             "WHERE i.participant_id = ANY($1::uuid[]) ORDER BY i.at", (pids,)),
        "ratings": ("SELECT * FROM ratings WHERE participant_id = ANY($1::uuid[])", (pids,)),
        "help_requests": ("SELECT * FROM help_requests WHERE participant_id = ANY($1::uuid[]) ORDER BY created_at",
                          (pids,)),
        "metered_attendees": ("SELECT * FROM metered_attendees WHERE participant_id = ANY($1::uuid[])", (pids,)),
        "attendance": ("SELECT * FROM attendance WHERE participant_id = ANY($1::uuid[])", (pids,)),
        "attendance_sessions": ("SELECT * FROM attendance_sessions WHERE participant_id = ANY($1::uuid[]) "
                                "ORDER BY started_at", (pids,)),
        "downloads": ("SELECT * FROM downloads WHERE user_id = $1 ORDER BY started_at", (uid,)),
    }
    tables: dict[str, list[dict[str, Any]]] = {}
    for table, (sql, args) in queries.items():
        if uid is None and table in ("users", "account_members", "webinar_members", "sessions", "downloads"):
            continue
        rows = await _rows(conn, sql, *args)
        if rows:
            tables[table] = rows
    events = await _linked_events(conn, s, await _authored_ids(conn, s))
    if events:
        tables["room_events"] = [
            {"webinar_id": str(e["webinar_id"]), "id": e["id"], "kind": e["kind"], "audience": e["audience"],
             "created_at": e["created_at"].isoformat(), "data": json.loads(e["data"])} for e in events]
    ids = {"participants": pids, "registrations": rids, "users": [uid] if uid else []}
    acted: dict[str, int] = {}
    unreviewed = await unreviewed_links(conn)
    for table, column, target in await person_links(conn):
        kind = REVIEWED_LINKS.get((table, column))
        if kind == PERSON or not ids[target]:
            continue
        where = f"SELECT * FROM {_ident(table)} WHERE {_ident(column)} = ANY($1::uuid[])"
        if kind == ACTOR:
            count = await conn.fetchval(f"SELECT count(*) FROM ({where}) x", ids[target])
            if count:
                acted[f"{table}.{column}"] = count
        else:  # not reviewed yet: export it whole
            rows = await _rows(conn, where, ids[target])
            if rows:
                tables.setdefault(table, []).extend(rows)
    webinars = await _rows(
        conn, """SELECT w.id, w.title, w.starts_at, a.name AS account FROM webinars w JOIN accounts a ON a.id = w.account_id
                 WHERE w.id = ANY($1::uuid[]) ORDER BY w.starts_at""", s.webinar_ids)
    return PersonRecords(email, tables, webinars, acted, unreviewed)


async def _log(conn: asyncpg.Connection, action: str, *, actor_id: uuid.UUID | None, subject: str | None,
               account_id: uuid.UUID | None = None, counts: dict[str, Any]) -> None:
    await conn.execute(
        "INSERT INTO processing_log (actor_id, action, subject_hash, account_id, counts) VALUES ($1, $2, $3, $4, $5::jsonb)",
        actor_id, action, subject, account_id, json.dumps(counts, sort_keys=True))


async def export_person(db: Database, email: str, *, actor_id: uuid.UUID | None, log_key: bytes,
                        now: dt.datetime | None = None) -> str:
    """Everything about ``email`` as a JSON document (R-GDPR-2), logged as an export."""
    email = normalise_email(email)
    now = now or dt.datetime.now(dt.UTC)
    async with db.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        records = await find_person(conn, email)
        await _log(conn, "export", actor_id=actor_id, subject=subject_hash(log_key, email), counts=records.counts())
    return records.to_json(now)


# Erasure -------------------------------------------------------------------------------------------
@dataclass
class _Authored:
    question_ids: list[int] = field(default_factory=list)
    rating_ids: list[int] = field(default_factory=list)
    help_ids: list[int] = field(default_factory=list)
    texts: set[str] = field(default_factory=set)


async def _authored_ids(conn: asyncpg.Connection, s: Subject) -> _Authored:
    out = _Authored()
    rows = await conn.fetch(_QUESTIONS_SQL, s.participant_ids, [w for w, _ in s.registration_questions],
                            [q for _, q in s.registration_questions])
    out.question_ids = [r["id"] for r in rows]
    out.texts.update(r["text"] for r in rows)
    rows = await conn.fetch("SELECT id, comment FROM ratings WHERE participant_id = ANY($1::uuid[])", s.participant_ids)
    out.rating_ids = [r["id"] for r in rows]
    out.texts.update(r["comment"] for r in rows if r["comment"])
    rows = await conn.fetch("SELECT id, text FROM help_requests WHERE participant_id = ANY($1::uuid[])", s.participant_ids)
    out.help_ids = [r["id"] for r in rows]
    out.texts.update(r["text"] for r in rows)
    out.texts.update(r["text"] for r in await conn.fetch(
        "SELECT text FROM chat_messages WHERE participant_id = ANY($1::uuid[])", s.participant_ids))
    out.texts.discard(ERASED_TEXT)
    return out


def _affected(status: str) -> int:
    """Rows touched, from a command status such as ``UPDATE 3`` or ``DELETE 1``."""
    return int(status.split()[-1])


def strings_in(value: Any) -> Iterable[str]:
    """Every string inside a decoded JSON value (dicts' values and lists, recursively)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings_in(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings_in(v)


def event_is_about(kind: str, audience: str, data: Any, *, participant_ids: set[str], question_ids: set[int],
                   rating_ids: set[int], help_ids: set[int]) -> bool:
    """Whether a room event carries something of one of these participants: addressed to one of
    them, naming one of them by id, or about one of their questions, ratings or help requests."""
    if audience.startswith("p:") and audience[2:] in participant_ids:
        return True
    if any(s in participant_ids for s in strings_in(data)):
        return True
    if not isinstance(data, dict):
        return False
    return (data.get("question_id") in question_ids or data.get("rating_id") in rating_ids
            or data.get("request_id") in help_ids)


def redact(value: Any, *, about: bool, names: set[str], texts: set[str], needles: Sequence[str]) -> Any:
    """``value`` (room event data) with personal data replaced: in an event about the person
    (``about``) every free text (:data:`FREE_TEXT_KEYS`); anywhere, a string equal to one of
    their ``names`` or ``texts``, or containing one of the ``needles`` (email, phone; lower case)."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if about and k in FREE_TEXT_KEYS and isinstance(v, str) and v:
                out[k] = ERASED_TEXT
            else:
                out[k] = redact(v, about=about, names=names, texts=texts, needles=needles)
        return out
    if isinstance(value, list):
        return [redact(v, about=about, names=names, texts=texts, needles=needles) for v in value]
    if isinstance(value, str):
        if value in names:
            return ERASED_NAME
        if value in texts or any(n in value.lower() for n in needles):
            return ERASED_TEXT
    return value


async def _linked_events(conn: asyncpg.Connection, s: Subject, authored: _Authored,
                         whole_webinars: bool = False) -> list[asyncpg.Record]:
    """Room events of the subject's webinars that may be about them (every event of those
    webinars if ``whole_webinars``: the subject is then everybody in them)."""
    if not s.webinar_ids:
        return []
    pids = {str(p) for p in s.participant_ids}
    if whole_webinars:
        rows = await conn.fetch("SELECT webinar_id, id, kind, audience, created_at, data::text AS data FROM room_events "
                                "WHERE webinar_id = ANY($1::uuid[]) ORDER BY webinar_id, id", s.webinar_ids)
        return list(rows)
    rows = await conn.fetch(
        """SELECT webinar_id, id, kind, audience, created_at, data::text AS data FROM room_events
           WHERE webinar_id = ANY($1::uuid[])
             AND (audience = ANY($2::text[]) OR data::text LIKE ANY($3::text[])
                  OR data->>'question_id' = ANY($4::text[]) OR data->>'rating_id' = ANY($5::text[])
                  OR data->>'request_id' = ANY($6::text[]) OR strpos(lower(data::text), $7) > 0)
           ORDER BY webinar_id, id""",
        s.webinar_ids, [f"p:{p}" for p in pids], [f'%"{p}"%' for p in pids],
        [str(i) for i in authored.question_ids], [str(i) for i in authored.rating_ids],
        [str(i) for i in authored.help_ids], s.email)
    return [r for r in rows if event_is_about(
        r["kind"], r["audience"], json.loads(r["data"]), participant_ids=pids, question_ids=set(authored.question_ids),
        rating_ids=set(authored.rating_ids), help_ids=set(authored.help_ids)) or s.email in r["data"].lower()]


async def _erase_subject(conn: asyncpg.Connection, s: Subject, *, whole_webinars: bool = False) -> dict[str, int]:
    """Erase what ``s`` names, in the caller's transaction; returns counts of rows touched."""
    authored = await _authored_ids(conn, s)
    pids = s.participant_ids
    counts: dict[str, int] = {}

    needles = [x.lower() for x in (s.email, *s.phones) if x]
    pid_set = {str(p) for p in pids}
    changed = []
    for e in await _linked_events(conn, s, authored, whole_webinars):
        data = json.loads(e["data"])
        about = event_is_about(
            e["kind"], e["audience"], data, participant_ids=pid_set, question_ids=set(authored.question_ids),
            rating_ids=set(authored.rating_ids), help_ids=set(authored.help_ids))
        new = redact(data, about=about, names=s.names, texts=authored.texts, needles=needles)
        if new != data:
            changed.append((e["webinar_id"], e["id"], json.dumps(new, ensure_ascii=False)))
    await conn.executemany("UPDATE room_events SET data = $3::jsonb WHERE webinar_id = $1 AND id = $2", changed)
    counts["room_events"] = len(changed)
    counts["chat_messages"] = _affected(await conn.execute(
        "UPDATE chat_messages SET text = $2 WHERE participant_id = ANY($1::uuid[]) AND text <> $2", pids, ERASED_TEXT))
    counts["questions"] = _affected(await conn.execute(
        "UPDATE questions SET text = $2 WHERE id = ANY($1::bigint[]) AND text <> $2", authored.question_ids, ERASED_TEXT))
    counts["ratings"] = _affected(await conn.execute(
        "UPDATE ratings SET comment = '' WHERE participant_id = ANY($1::uuid[]) AND comment <> ''", pids))
    counts["help_requests"] = _affected(await conn.execute(
        "UPDATE help_requests SET text = $2 WHERE participant_id = ANY($1::uuid[]) AND text <> $2", pids, ERASED_TEXT))
    counts["cta_interactions"] = _affected(await conn.execute(
        "UPDATE cta_interactions SET data = '{}'::jsonb WHERE participant_id = ANY($1::uuid[]) AND data <> '{}'::jsonb",
        pids))
    counts["emails_sent"] = _affected(await conn.execute(
        "UPDATE emails_sent SET to_email = $3 WHERE (to_email = $1 OR registration_id = ANY($2::uuid[])) "
        "AND to_email <> $3", s.email, s.registration_ids, ERASED_NAME))
    counts["consents"] = _affected(await conn.execute(
        "DELETE FROM consents WHERE registration_id = ANY($1::uuid[])", s.registration_ids))
    counts["registrations"] = _affected(await conn.execute(
        "DELETE FROM registrations WHERE id = ANY($1::uuid[])", s.registration_ids))
    counts["participants"] = _affected(await conn.execute(
        """UPDATE participants SET display_name = $2, email = NULL, user_id = NULL, erased_at = coalesce(erased_at, now())
           WHERE id = ANY($1::uuid[]) AND (erased_at IS NULL OR email IS NOT NULL OR user_id IS NOT NULL
                                            OR display_name <> $2)""", pids, ERASED_NAME))
    return counts


@dataclass(frozen=True)
class ErasureReport:
    counts: dict[str, int]
    """Rows deleted or anonymised, by table."""
    leftovers: list[tuple[str, str, int]]
    """(table, column, rows) still mentioning the email or phone after erasure: texts other people
    wrote, to be reviewed by hand."""
    unreviewed: list[tuple[str, str]]


async def erase_person(db: Database, email: str, *, actor_id: uuid.UUID | None, log_key: bytes,
                       scan: bool = True) -> ErasureReport:
    """Erase everything about ``email`` (R-GDPR-2), keeping aggregates, in one transaction, and
    log it. ``scan``: afterwards, look in every text column for the email and phone numbers left
    (in what others wrote) and report them. An admin cannot erase their own login."""
    email = normalise_email(email)
    async with db.acquire() as conn:
        async with conn.transaction():
            s = await _subject(conn, email)
            if actor_id is not None and s.user_id == actor_id:
                raise RuleViolation("erase_self")
            counts = await _erase_subject(conn, s)
            counts["invitations"] = _affected(await conn.execute(
                "DELETE FROM invitations WHERE email = $1 OR accepted_by = $2", email, s.user_id))
            counts["login_attempts"] = _affected(await conn.execute(
                "DELETE FROM login_attempts WHERE email = $1", email))
            counts["audit_log"] = _affected(await conn.execute(
                """UPDATE audit_log SET subject = CASE WHEN strpos(lower(subject), $1) > 0 THEN $2 ELSE subject END,
                          detail = CASE WHEN strpos(lower(detail::text), $1) > 0 THEN '{}'::jsonb ELSE detail END
                   WHERE strpos(lower(subject), $1) > 0 OR strpos(lower(detail::text), $1) > 0""",
                email, ERASED_TEXT))
            counts["jobs"] = _affected(await conn.execute(  # e.g. an SMTP refusal quoting the address
                "UPDATE jobs SET last_error = $2 WHERE strpos(lower(last_error), $1) > 0", email, ERASED_TEXT))
            counts["users"] = 0
            if s.user_id is not None:
                counts["downloads"] = _affected(await conn.execute(
                    "UPDATE downloads SET ip = NULL, user_agent = '' WHERE user_id = $1", s.user_id))
                counts["sessions"] = await conn.fetchval("SELECT count(*) FROM sessions WHERE user_id = $1", s.user_id)
                counts["users"] = _affected(await conn.execute("DELETE FROM users WHERE id = $1", s.user_id))
            counts = {k: v for k, v in counts.items() if v}
            await _log(conn, "erase", actor_id=actor_id, subject=subject_hash(log_key, email), counts=counts)
        leftovers = await find_mentions(conn, [email, *s.phones]) if scan else []
        unreviewed = await unreviewed_links(conn)
    return ErasureReport(counts, leftovers, unreviewed)


async def erase_webinars_participants(conn: asyncpg.Connection, webinar_ids: Sequence[uuid.UUID]) -> dict[str, int]:
    """Erase every participant and registrant of these webinars (retention, R-GDPR-1) in the
    caller's transaction, the same way as :func:`erase_person`; also the invitations sent for
    them. Returns counts of rows touched (participants newly erased, registrations deleted...)."""
    s = Subject(email="")  # nobody in particular: everything is found through the webinars
    s.webinar_ids = list(webinar_ids)
    registrations = await conn.fetch(
        "SELECT id, webinar_id, first_name, last_name, phone, question FROM registrations "
        "WHERE webinar_id = ANY($1::uuid[])", s.webinar_ids)
    s.registration_ids = [r["id"] for r in registrations]
    for r in registrations:
        s.names.update(n for n in (r["first_name"], r["last_name"], f"{r['first_name']} {r['last_name']}".strip()) if n)
        if r["phone"]:
            s.phones.add(r["phone"])
        if r["question"]:
            s.registration_questions.append((r["webinar_id"], r["question"]))
    participants = await conn.fetch("SELECT id, display_name FROM participants WHERE webinar_id = ANY($1::uuid[])",
                                    s.webinar_ids)
    s.participant_ids = [p["id"] for p in participants]
    s.names.update(p["display_name"] for p in participants)
    s.names.discard(ERASED_NAME)
    counts = await _erase_subject(conn, s, whole_webinars=True)
    counts["invitations"] = _affected(await conn.execute(
        "DELETE FROM invitations WHERE webinar_id = ANY($1::uuid[])", s.webinar_ids))
    return {k: v for k, v in counts.items() if v}


# Mentions anywhere --------------------------------------------------------------------------------
TEXT_TYPES = ("text", "character varying", "character", "json", "jsonb", "inet", "cidr", "citext")


async def text_columns(conn: asyncpg.Connection) -> list[tuple[str, str]]:
    """(table, column) of every column of the public schema that can hold text: text, varchar,
    json(b), inet, and arrays of those. Read from information_schema, so new tables are included."""
    rows = await conn.fetch(
        """SELECT c.table_name, c.column_name FROM information_schema.columns c
           JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
           WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'
             AND (c.data_type = ANY($1::text[]) OR c.udt_name = ANY($1::text[])
                  OR (c.data_type = 'ARRAY' AND c.udt_name IN ('_text', '_varchar', '_bpchar', '_jsonb', '_json')))
           ORDER BY 1, 2""", list(TEXT_TYPES))
    return [(r["table_name"], r["column_name"]) for r in rows]


async def find_mentions(conn: asyncpg.Connection, needles: Sequence[str]) -> list[tuple[str, str, int]]:
    """(table, column, rows) of every text column holding one of ``needles`` (case-insensitive
    substring). Costs a scan of every table: for erasure reports and tests."""
    wanted = sorted({x.lower() for x in needles if x and x.strip()})
    if not wanted:
        return []
    found = []
    for table, column in await text_columns(conn):
        count = await conn.fetchval(
            f"SELECT count(*) FROM {_ident(table)} WHERE EXISTS (SELECT 1 FROM unnest($1::text[]) n "
            f"WHERE strpos(lower({_ident(column)}::text), n) > 0)", wanted)
        if count:
            found.append((table, column, int(count)))
    return found


async def processing_entries(db: Database | asyncpg.Connection, limit: int = 100) -> list[asyncpg.Record]:
    """The latest entries of the processing log, newest first."""
    return await db.fetch(
        """SELECT l.id, l.at, l.action, l.subject_hash, l.counts::text AS counts, u.email AS actor_email, a.name AS account
           FROM processing_log l LEFT JOIN users u ON u.id = l.actor_id LEFT JOIN accounts a ON a.id = l.account_id
           ORDER BY l.at DESC, l.id DESC LIMIT $1""", limit)


async def log_retention(conn: asyncpg.Connection, account_id: uuid.UUID, counts: dict[str, Any]) -> None:
    """A retention run's entry in the processing log (no subject: a whole contract's participants)."""
    await _log(conn, "retention", actor_id=None, subject=None, account_id=account_id, counts=counts)
