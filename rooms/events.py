"""The room event log: append (persist before acknowledging), read back, encode once.

Each room has one counter row (``rooms.last_event_id``). Appending takes its
row lock inside the caller's transaction, so event ids grow by one in commit
order: a client that saw id N and asks for "> N" can never miss an event that
commits later with a smaller id.

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
    def from_broker(cls, webinar_id: uuid.UUID, message: bytes) -> "RoomEvent":
        id_, kind, audience, wire = message.split(b"\n", 3)
        return cls(webinar_id, int(id_), kind.decode(), audience.decode(), wire)


def _wire(event_id: int, kind: str, program_ms: int | None, created_at: dt.datetime, data_json: str) -> bytes:
    t = "null" if program_ms is None else f"{program_ms / 1000:.3f}"
    at = created_at.astimezone(dt.UTC).isoformat(timespec="milliseconds")
    return f'{{"id":{event_id},"kind":{json.dumps(kind)},"t":{t},"at":"{at}","data":{data_json}}}'.encode()


async def append(
    conn: asyncpg.Connection, webinar_id: uuid.UUID, kind: str, data: dict[str, Any], audience: str = "all"
) -> RoomEvent:
    """Add one event in the caller's transaction and return it (publish it after commit)."""
    data_json = _encoder.encode(data).decode()
    row = await conn.fetchrow(
        """WITH seq AS (
               INSERT INTO rooms (webinar_id, last_event_id) VALUES ($1, 1)
               ON CONFLICT (webinar_id) DO UPDATE SET last_event_id = rooms.last_event_id + 1
               RETURNING last_event_id)
           INSERT INTO room_events (webinar_id, id, kind, audience, program_ms, data)
           SELECT $1, seq.last_event_id, $2, $3,
                  (SELECT (extract(epoch FROM clock_timestamp() - live_started_at) * 1000)::bigint
                   FROM webinars WHERE id = $1 AND live_started_at IS NOT NULL),
                  $4::jsonb
           FROM seq
           RETURNING id, program_ms, created_at""",
        webinar_id, kind, audience, data_json,
    )
    assert row is not None
    return RoomEvent(webinar_id, row["id"], kind, audience, _wire(row["id"], kind, row["program_ms"], row["created_at"], data_json))


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
