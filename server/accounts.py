"""Client accounts and their members (R-ACC-1, R-ACC-2, R-ACC-5)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import asyncpg

from server.db import Database
from server.errors import NotFound, RuleViolation
from server.orders import BUSINESS_TZ

MAX_ORGANIZERS = 9
"""R-ACC-1: organizers per account; the 10th is refused."""


@dataclass(frozen=True)
class Account:
    id: uuid.UUID
    name: str
    retention_months: int


async def create_account(db: Database | asyncpg.Connection, name: str) -> Account:
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise RuleViolation("account_name_invalid")
    try:
        row = await db.fetchrow("INSERT INTO accounts (name) VALUES ($1) RETURNING *", name)
    except asyncpg.UniqueViolationError:
        raise RuleViolation("account_name_taken", name=name) from None
    assert row is not None
    return Account(row["id"], row["name"], row["retention_months"])


async def get_account(db: Database | asyncpg.Connection, account_id: uuid.UUID) -> Account:
    row = await db.fetchrow("SELECT * FROM accounts WHERE id = $1", account_id)
    if row is None:
        raise NotFound("account")
    return Account(row["id"], row["name"], row["retention_months"])


async def add_member(db: Database, account_id: uuid.UUID, user_id: uuid.UUID, role: str) -> None:
    """Give ``user_id`` an account role. Organizers are capped at :data:`MAX_ORGANIZERS`
    under a row lock on the account, so concurrent additions cannot pass the cap."""
    if role not in ("organizer", "sponsor"):
        raise RuleViolation("role_invalid", role=role)
    async with db.acquire() as conn, conn.transaction():
        if await conn.fetchval("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", account_id) is None:
            raise NotFound("account")
        if role == "organizer":
            count = await conn.fetchval(
                "SELECT count(*) FROM account_members WHERE account_id = $1 AND role = 'organizer'", account_id
            )
            already = await conn.fetchval(
                "SELECT 1 FROM account_members WHERE account_id = $1 AND user_id = $2 AND role = 'organizer'",
                account_id, user_id,
            )
            if not already and count >= MAX_ORGANIZERS:
                raise RuleViolation("organizer_limit", limit=MAX_ORGANIZERS)
        await conn.execute(
            "INSERT INTO account_members (account_id, user_id, role) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            account_id, user_id, role,
        )


async def remove_member(db: Database, account_id: uuid.UUID, user_id: uuid.UUID, role: str) -> None:
    await db.execute(
        "DELETE FROM account_members WHERE account_id = $1 AND user_id = $2 AND role = $3", account_id, user_id, role
    )


async def members(db: Database, account_id: uuid.UUID) -> list[asyncpg.Record]:
    return await db.fetch(
        """SELECT u.id, u.email, u.name, u.disabled_at, m.role FROM account_members m
           JOIN users u ON u.id = m.user_id WHERE m.account_id = $1 ORDER BY m.role, u.email""",
        account_id,
    )


async def has_active_contract(db: Database | asyncpg.Connection, account_id: uuid.UUID, now: dt.datetime | None = None) -> bool:
    """True while some order's contract covers today (R-ACC-5: organizers lose access after it ends)."""
    today = (now or dt.datetime.now(dt.UTC)).astimezone(BUSINESS_TZ).date()
    return bool(
        await db.fetchval(
            "SELECT 1 FROM orders WHERE account_id = $1 AND contract_start <= $2 AND contract_end >= $2 LIMIT 1",
            account_id, today,
        )
    )
