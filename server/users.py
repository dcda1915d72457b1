"""People who log in: creation, password login with rate limiting, revocation (R-ACC-6)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import asyncpg

from server.db import Database
from server.errors import RuleViolation
from server.security import hash_password, needs_rehash, password_problem, verify_password


@dataclass(frozen=True)
class User:
    id: uuid.UUID
    email: str
    name: str
    is_admin: bool
    locale: str
    disabled: bool

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> "User":
        return cls(row["id"], row["email"], row["name"], row["is_admin"], row["locale"], row["disabled_at"] is not None)


def normalise_email(email: str) -> str:
    """Lower-cased, trimmed; a minimal shape check (full validation is the registration issue's)."""
    value = email.strip().lower()
    local, _, domain = value.partition("@")
    if not local or "." not in domain or len(value) > 254 or any(c.isspace() for c in value):
        raise RuleViolation("email_invalid")
    return value


async def create_user(
    db: Database | asyncpg.Connection,
    email: str,
    *,
    name: str = "",
    password: str | None = None,
    is_admin: bool = False,
    locale: str = "fr",
) -> User:
    email = normalise_email(email)
    if password is not None and (problem := password_problem(password)):
        raise RuleViolation(problem.removeprefix("error."))
    if len(name) > 200:
        raise RuleViolation("name_too_long")
    try:
        row = await db.fetchrow(
            """INSERT INTO users (email, name, password_hash, is_admin, locale)
               VALUES ($1, $2, $3, $4, $5) RETURNING *""",
            email, name.strip(), hash_password(password) if password else None, is_admin, locale,
        )
    except asyncpg.UniqueViolationError:
        raise RuleViolation("email_taken", email=email) from None
    assert row is not None
    return User.from_row(row)


async def get_user(db: Database | asyncpg.Connection, user_id: uuid.UUID) -> User | None:
    row = await db.fetchrow("SELECT * FROM users WHERE id = $1", user_id)
    return User.from_row(row) if row else None


async def get_user_by_email(db: Database | asyncpg.Connection, email: str) -> User | None:
    row = await db.fetchrow("SELECT * FROM users WHERE email = $1", email.strip().lower())
    return User.from_row(row) if row else None


async def set_password(db: Database | asyncpg.Connection, user_id: uuid.UUID, password: str) -> None:
    if problem := password_problem(password):
        raise RuleViolation(problem.removeprefix("error."))
    await db.execute("UPDATE users SET password_hash = $2 WHERE id = $1", user_id, hash_password(password))


class LoginRefused(Exception):
    """Login failed; ``code`` is ``bad_credentials``, ``rate_limited`` or ``disabled``."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


async def authenticate(
    db: Database,
    email: str,
    password: str,
    *,
    ip: str | None,
    max_failures: int,
    max_failures_per_ip: int,
    window_s: int,
    now: dt.datetime | None = None,
) -> User:
    """Check a password login. Every attempt is recorded; too many recent failures
    for the email (or from the IP) refuse further tries until the window passes,
    even with the right password, so guessing is bounded."""
    now = now or dt.datetime.now(dt.UTC)
    email = email.strip().lower()[:254]
    since = now - dt.timedelta(seconds=window_s)
    failures = await db.fetchval(
        "SELECT count(*) FROM login_attempts WHERE email = $1 AND at > $2 AND NOT succeeded", email, since
    )
    ip_failures = 0
    if ip:
        ip_failures = await db.fetchval(
            "SELECT count(*) FROM login_attempts WHERE ip = $1::inet AND at > $2 AND NOT succeeded", ip, since
        )
    if failures >= max_failures or ip_failures >= max_failures_per_ip:
        raise LoginRefused("rate_limited")
    row = await db.fetchrow("SELECT * FROM users WHERE email = $1", email)
    ok = verify_password(row["password_hash"] if row else None, password)
    await db.execute(
        "INSERT INTO login_attempts (email, ip, at, succeeded) VALUES ($1, $2::inet, $3, $4)", email, ip, now, ok
    )
    if not ok or row is None:
        raise LoginRefused("bad_credentials")
    if row["disabled_at"] is not None:
        raise LoginRefused("disabled")
    if needs_rehash(row["password_hash"]):
        await db.execute("UPDATE users SET password_hash = $2 WHERE id = $1", row["id"], hash_password(password))
    return User.from_row(row)


async def disable_user(db: Database, user_id: uuid.UUID) -> None:
    """Revoke a user (R-ACC-6): no more logins, every session ended."""
    async with db.acquire() as conn, conn.transaction():
        await conn.execute("UPDATE users SET disabled_at = coalesce(disabled_at, now()) WHERE id = $1", user_id)
        await conn.execute("UPDATE sessions SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL", user_id)
