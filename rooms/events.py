"""The room event log: append (persist before acknowledging), read back, encode once.

Each room has one counter row (``rooms.last_event_id``). Appending takes its
row lock inside the caller's transaction, so event ids grow by one in commit
order: a client that saw id N and asks for "> N" can never miss an event that
commits later with a smaller id. The lock is held until that transaction
ends, so the room's events are serialised by it: :func:`append` should be the
last statement of its transaction, and the busiest path, a chat message, is
one statement with nothing before or after it (:func:`append_chat`): the
participant check, the id, the event and the message are committed together
by PostgreSQL without a round trip to us while the lock is held.

An event is sent to clients as JSON ``{"id", "kind", "t", "at", "data"}``
(see :mod:`rooms.messages`); it is encoded once per node, and batches are
built by concatenating encoded events.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import msgspec

_encoder = msgspec.json.Encoder()

MAX_CATCHUP = 2000
"""Most events replayed to a reconnecting client; beyond that it gets a fresh snapshot."""


@dataclass(frozen=True, slots=True)
class RoomEvent:
    webinar_id: uuid.UUID
    id: int
    kind: str
    audience: str
    """``all``, ``moderators`` or ``p:<participant id>``."""
    wire: bytes
    """The event as clients receive it (one JSON object)."""

    def to_broker(self) -> bytes:
        return b"%d\n%s\n%s\n%s" % (self.id, self.kind.encode(), self.audience.encode(), self.wire)

    @classmethod
    def from_broker(cls, webinar_id: uuid.UUID, message: bytes) -> RoomEvent:
        id_, kind, audience, wire = message.split(b"\n", 3)
        return cls(webinar_id, int(id_), kind.decode(), audience.decode(), wire)


def _wire(event_id: int, kind: str, program_ms: int | None, created_at: dt.datetime, data_json: str) -> bytes:
    t = "null" if program_ms is None else f"{program_ms / 1000:.3f}"
    at = created_at.astimezone(dt.UTC).isoformat(timespec="milliseconds")
    return f'{{"id":{event_id},"kind":{json.dumps(kind)},"t":{t},"at":"{at}","data":{data_json}}}'.encode()


_NEXT_ID = """INSERT INTO rooms (webinar_id, last_event_id) VALUES ($1, 1)
               ON CONFLICT (webinar_id) DO UPDATE SET last_event_id = rooms.last_event_id + 1
               RETURNING last_event_id"""
_PROGRAM_MS = """(SELECT (extract(epoch FROM clock_timestamp() - live_started_at) * 1000)::bigint
                   FROM webinars WHERE id = $1 AND live_started_at IS NOT NULL)"""


async def append(
    conn: asyncpg.Connection, webinar_id: uuid.UUID, kind: str, data: dict[str, Any], audience: str = "all"
) -> RoomEvent:
    """Add one event in the caller's transaction and return it (publish it after commit)."""
    data_json = _encoder.encode(data).decode()
    row = await conn.fetchrow(
        f"""WITH seq AS ({_NEXT_ID})
           INSERT INTO room_events (webinar_id, id, kind, audience, program_ms, data)
           SELECT $1, seq.last_event_id, $2, $3, {_PROGRAM_MS}, $4::jsonb
           FROM seq
           RETURNING id, program_ms, created_at""",
        webinar_id, kind, audience, data_json,
    )
    assert row is not None
    return RoomEvent(webinar_id, row["id"], kind, audience, _wire(row["id"], kind, row["program_ms"], row["created_at"], data_json))


_APPEND_CHAT = f"""
    WITH who AS (
        SELECT coalesce(muted_until > now(), false) AS muted, banned_at IS NOT NULL AS banned
        FROM participants WHERE id = $2 AND webinar_id = $1),
    allowed AS (SELECT 1 FROM who WHERE NOT banned AND (NOT muted OR $5::boolean)),
    seq AS (
        INSERT INTO rooms (webinar_id, last_event_id) SELECT $1, 1 FROM allowed
        ON CONFLICT (webinar_id) DO UPDATE SET last_event_id = rooms.last_event_id + 1
        RETURNING last_event_id),
    event AS (
        INSERT INTO room_events (webinar_id, id, kind, audience, program_ms, data)
        SELECT $1, seq.last_event_id, 'chat.message', 'all', {_PROGRAM_MS}, $3::jsonb FROM seq
        RETURNING id, program_ms, created_at),
    message AS (
        INSERT INTO chat_messages (webinar_id, event_id, participant_id, text)
        SELECT $1, event.id, $2, $4 FROM event)
    SELECT who.muted, who.banned, event.id, event.program_ms, event.created_at
    FROM who LEFT JOIN event ON true"""


async def append_chat(
    db: asyncpg.Connection | asyncpg.Pool | Any, webinar_id: uuid.UUID, participant_id: uuid.UUID,
    data: dict[str, Any], text: str, *, may_while_muted: bool,
) -> RoomEvent | str:
    """Store a ``chat.message`` event and its ``chat_messages`` row in ONE autocommitted statement
    (``db`` must not be inside a transaction: the room's lock is released by its commit).

    Returns the committed event, or why nothing was stored: ``"banned"`` (also: no such
    participant in this room) or ``"muted"`` (unless ``may_while_muted``)."""
    data_json = _encoder.encode(data).decode()
    row = await db.fetchrow(_APPEND_CHAT, webinar_id, participant_id, data_json, text, may_while_muted)
    if row is None or row["banned"]:
        return "banned"
    if row["id"] is None:
        return "muted"
    return RoomEvent(webinar_id, row["id"], "chat.message", "all",
                     _wire(row["id"], "chat.message", row["program_ms"], row["created_at"], data_json))


async def read_after(
    db: asyncpg.Connection | asyncpg.Pool | Any, webinar_id: uuid.UUID, after: int, limit: int = MAX_CATCHUP,
    upto: int | None = None,
) -> list[RoomEvent]:
    rows = await db.fetch(
        """SELECT id, kind, audience, program_ms, created_at, data::text AS data FROM room_events
           WHERE webinar_id = $1 AND id > $2 AND ($3::bigint IS NULL OR id <= $3) ORDER BY id LIMIT $4""",
        webinar_id, after, upto, limit,
    )
    return [
        RoomEvent(webinar_id, r["id"], r["kind"], r["audience"], _wire(r["id"], r["kind"], r["program_ms"], r["created_at"], r["data"]))
        for r in rows
    ]


async def last_event_id(db: Any, webinar_id: uuid.UUID) -> int:
    value = await db.fetchval("SELECT last_event_id FROM rooms WHERE webinar_id = $1", webinar_id)
    return int(value or 0)


def batch_frame(wires: list[bytes]) -> bytes:
    """One ``events`` frame holding several encoded events."""
    return b'{"type":"events","events":[' + b",".join(wires) + b"]}"
