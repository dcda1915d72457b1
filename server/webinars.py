"""Webinars: scheduling rules, room type, life cycle, stream keys.

Rules enforced here (shared/REQUIREMENTS.md):
- R-ROOM-2: a live lasts at most 4 hours (:data:`MAX_DURATION_MIN`).
- R-ROOM-1: the room type (webcam/studio) is chosen when the webinar is
  announced and cannot change afterwards.
- R-ACC-4: webinars of one account never overlap; an account runs at most
  the webinars its order bought, inside the order's contract.
All checks run in one transaction holding a row lock on the account, so two
concurrent requests cannot both take the last slot or the same hour.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from server.db import Database
from server.errors import NotFound, RuleViolation
from server.orders import Order, webinars_used
from server.security import new_token, token_digest

MAX_DURATION_MIN = 240
ROOM_TYPES = ("webcam", "studio")
STATES = ("draft", "announced", "live", "ended", "replay", "removed", "cancelled")
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "draft": ("announced", "cancelled"),
    "announced": ("live", "cancelled"),
    "live": ("ended",),
    "ended": ("replay", "removed"),
    "replay": ("removed",),
    "removed": (),
    "cancelled": (),
}
"""Allowed state changes. A live that ends goes to ``ended`` then ``replay`` once the replay is ready."""
EDITABLE_FIELDS = ("title", "description", "starts_at", "duration_minutes", "room_type", "language")
STREAM_KEY_PREFIX = "wbk_"


@dataclass(frozen=True)
class Webinar:
    id: uuid.UUID
    account_id: uuid.UUID
    order_id: uuid.UUID
    title: str
    description: str
    language: str
    starts_at: dt.datetime
    duration_minutes: int
    room_type: str
    state: str

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> "Webinar":
        return cls(*(row[f] for f in cls.__dataclass_fields__))

    @property
    def ends_at(self) -> dt.datetime:
        return self.starts_at + dt.timedelta(minutes=self.duration_minutes)


def _check_fields(title: str, starts_at: dt.datetime, duration_minutes: int, room_type: str, language: str) -> None:
    if not 1 <= len(title.strip()) <= 200:
        raise RuleViolation("title_invalid")
    if starts_at.tzinfo is None:
        raise RuleViolation("start_needs_timezone")
    if duration_minutes > MAX_DURATION_MIN:
        raise RuleViolation("duration_too_long", max_hours=MAX_DURATION_MIN // 60)
    if duration_minutes < 1:
        raise RuleViolation("duration_invalid")
    if room_type not in ROOM_TYPES:
        raise RuleViolation("room_type_invalid", room_type=room_type)
    if language not in ("fr", "en"):
        raise RuleViolation("language_invalid")


async def check_schedule(
    conn: asyncpg.Connection,
    account_id: uuid.UUID,
    order: Order,
    starts_at: dt.datetime,
    duration_minutes: int,
    exclude: uuid.UUID | None,
) -> None:
    """Contract window, quota and overlap. Caller holds the account row lock."""
    start, end = order.window
    ends_at = starts_at + dt.timedelta(minutes=duration_minutes)
    if starts_at < start or ends_at > end:
        raise RuleViolation(
            "outside_contract", contract_start=order.contract_start.isoformat(), contract_end=order.contract_end.isoformat()
        )
    if exclude is None:
        if await webinars_used(conn, order.id) >= order.webinars_bought:
            raise RuleViolation("quota_exceeded", bought=order.webinars_bought)
    clash = await conn.fetchrow(
        """SELECT title, starts_at, starts_at + make_interval(mins => duration_minutes) AS ends_at
           FROM webinars
           WHERE account_id = $1 AND state <> 'cancelled' AND id IS DISTINCT FROM $4
             AND tstzrange(starts_at, starts_at + make_interval(mins => duration_minutes)) && tstzrange($2, $3)
           ORDER BY starts_at LIMIT 1""",
        account_id, starts_at, ends_at, exclude,
    )
    if clash is not None:
        raise RuleViolation(
            "overlap", title=clash["title"], starts_at=clash["starts_at"].isoformat(), ends_at=clash["ends_at"].isoformat()
        )


async def lock_account(conn: asyncpg.Connection, account_id: uuid.UUID) -> None:
    if await conn.fetchval("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", account_id) is None:
        raise NotFound("account")


async def _pick_order(conn: asyncpg.Connection, account_id: uuid.UUID, order_id: uuid.UUID | None, starts_at: dt.datetime) -> Order:
    if order_id is not None:
        row = await conn.fetchrow("SELECT * FROM orders WHERE id = $1 AND account_id = $2", order_id, account_id)
        if row is None:
            raise NotFound("order")
        return Order.from_row(row)
    rows = await conn.fetch("SELECT * FROM orders WHERE account_id = $1 ORDER BY contract_start", account_id)
    if not rows:
        raise RuleViolation("no_order")
    orders = [Order.from_row(r) for r in rows]
    # Prefer an order whose contract covers the date and that has room left.
    for order in orders:
        start, end = order.window
        if start <= starts_at < end and await webinars_used(conn, order.id) < order.webinars_bought:
            return order
    covering = [o for o in orders if o.window[0] <= starts_at < o.window[1]]
    return covering[0] if covering else orders[-1]


async def create_webinar(
    db: Database,
    account_id: uuid.UUID,
    *,
    title: str,
    starts_at: dt.datetime,
    duration_minutes: int,
    room_type: str,
    description: str = "",
    language: str = "fr",
    order_id: uuid.UUID | None = None,
) -> Webinar:
    _check_fields(title, starts_at, duration_minutes, room_type, language)
    if len(description) > 20000:
        raise RuleViolation("description_too_long")
    async with db.acquire() as conn, conn.transaction():
        await lock_account(conn, account_id)
        order = await _pick_order(conn, account_id, order_id, starts_at)
        await check_schedule(conn, account_id, order, starts_at, duration_minutes, exclude=None)
        row = await conn.fetchrow(
            """INSERT INTO webinars (account_id, order_id, title, description, language, starts_at,
                   duration_minutes, room_type)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *""",
            account_id, order.id, title.strip(), description, language, starts_at, duration_minutes, room_type,
        )
    assert row is not None
    return Webinar.from_row(row)


async def get_webinar(db: Database | asyncpg.Connection, webinar_id: uuid.UUID) -> Webinar:
    row = await db.fetchrow("SELECT * FROM webinars WHERE id = $1", webinar_id)
    if row is None:
        raise NotFound("webinar")
    return Webinar.from_row(row)


async def account_webinars(db: Database | asyncpg.Connection, account_id: uuid.UUID) -> list[Webinar]:
    rows = await db.fetch("SELECT * FROM webinars WHERE account_id = $1 ORDER BY starts_at", account_id)
    return [Webinar.from_row(r) for r in rows]


async def update_webinar(db: Database, webinar_id: uuid.UUID, **changes: Any) -> Webinar:
    """Edit a webinar. The room type is locked once announced (R-ROOM-1), and so is
    the date: moving an announced webinar is a reschedule (:mod:`server.scheduling`,
    R-SCH). Schedule changes are checked like a creation (contract, overlap);
    nothing changes once the webinar is live or over."""
    unknown = set(changes) - set(EDITABLE_FIELDS)
    if unknown:
        raise RuleViolation("field_not_editable", field=", ".join(sorted(unknown)))
    async with db.acquire() as conn, conn.transaction():
        current = await conn.fetchrow("SELECT * FROM webinars WHERE id = $1", webinar_id)
        if current is None:
            raise NotFound("webinar")
        await lock_account(conn, current["account_id"])
        current = await conn.fetchrow("SELECT * FROM webinars WHERE id = $1", webinar_id)
        assert current is not None
        web = Webinar.from_row(current)
        if web.state not in ("draft", "announced"):
            raise RuleViolation("webinar_not_editable", state=web.state)
        merged = {f: changes.get(f, getattr(web, f)) for f in EDITABLE_FIELDS}
        if merged["room_type"] != web.room_type and web.state != "draft":
            raise RuleViolation("room_type_locked")
        if merged["starts_at"] != web.starts_at and web.state != "draft":
            raise RuleViolation("schedule_locked")  # moves go through server.scheduling.reschedule (R-SCH)
        _check_fields(merged["title"], merged["starts_at"], merged["duration_minutes"], merged["room_type"], merged["language"])
        if merged["starts_at"] != web.starts_at or merged["duration_minutes"] != web.duration_minutes:
            order_row = await conn.fetchrow("SELECT * FROM orders WHERE id = $1", web.order_id)
            assert order_row is not None
            await check_schedule(
                conn, web.account_id, Order.from_row(order_row), merged["starts_at"], merged["duration_minutes"], exclude=web.id
            )
        row = await conn.fetchrow(
            """UPDATE webinars SET title = $2, description = $3, starts_at = $4, duration_minutes = $5,
                   room_type = $6, language = $7, updated_at = now()
               WHERE id = $1 RETURNING *""",
            webinar_id, merged["title"].strip(), merged["description"], merged["starts_at"],
            merged["duration_minutes"], merged["room_type"], merged["language"],
        )
    assert row is not None
    return Webinar.from_row(row)


async def set_state(db: Database | asyncpg.Connection, webinar_id: uuid.UUID, new_state: str) -> Webinar:
    """Move along :data:`TRANSITIONS`; anything else is refused with the current state."""
    if new_state not in STATES:
        raise RuleViolation("state_invalid", state=new_state)
    row = await db.fetchrow("SELECT state FROM webinars WHERE id = $1", webinar_id)
    if row is None:
        raise NotFound("webinar")
    if new_state not in TRANSITIONS[row["state"]]:
        raise RuleViolation("transition_refused", current=row["state"], wanted=new_state)
    updated = await db.fetchrow(
        """UPDATE webinars SET state = $3, updated_at = now(),
               announced_at = CASE WHEN $3 = 'announced' THEN now() ELSE announced_at END,
               live_started_at = CASE WHEN $3 = 'live' THEN now() ELSE live_started_at END,
               live_ended_at = CASE WHEN $3 = 'ended' THEN now() ELSE live_ended_at END
           WHERE id = $1 AND state = $2 RETURNING *""",
        webinar_id, row["state"], new_state,
    )
    if updated is None:  # changed under us: report the fresh state
        return await set_state(db, webinar_id, new_state)
    return Webinar.from_row(updated)


async def rotate_stream_key(db: Database | asyncpg.Connection, webinar_id: uuid.UUID) -> str:
    """A new random stream key; the old one stops working. Only its SHA-256 is
    stored, so the returned key is shown once."""
    key = STREAM_KEY_PREFIX + new_token(24)
    result = await db.execute(
        "UPDATE webinars SET stream_key_hash = $2, stream_key_rotated_at = now() WHERE id = $1",
        webinar_id, token_digest(key),
    )
    if result.endswith(" 0"):
        raise NotFound("webinar")
    return key


async def webinar_by_stream_key(db: Database | asyncpg.Connection, key: str) -> Webinar | None:
    if not key.startswith(STREAM_KEY_PREFIX) or len(key) > 100:
        return None
    row = await db.fetchrow("SELECT * FROM webinars WHERE stream_key_hash = $1", token_digest(key))
    return Webinar.from_row(row) if row else None
