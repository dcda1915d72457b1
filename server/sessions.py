"""Server-side login sessions.

The browser holds a random 256-bit token in the ``wb_session`` cookie
(HttpOnly, SameSite=Lax, Secure when served over https); the database keeps
its SHA-256 only. A session ends at logout, at expiry, when the user is
disabled, or when an admin revokes every session of the user's account.
"""

from __future__ import annotations

import datetime as dt
import uuid

from server.db import Database
from server.security import new_token, token_digest

COOKIE = "wb_session"
TOUCH_EVERY_S = 300
"""``last_seen_at`` is refreshed at most this often (seconds) to spare writes."""


async def create_session(
    db: Database, user_id: uuid.UUID, *, max_age_s: int, ip: str | None, user_agent: str | None
) -> str:
    token = new_token()
    await db.execute(
        """INSERT INTO sessions (token_hash, user_id, expires_at, ip, user_agent)
           VALUES ($1, $2, now() + make_interval(secs => $3), $4::inet, $5)""",
        token_digest(token), user_id, float(max_age_s), ip, (user_agent or "")[:300],
    )
    return token


async def session_user_id(db: Database, token: str | None) -> uuid.UUID | None:
    """The user of a live session, or None (unknown, expired, revoked, user disabled)."""
    if not token or len(token) > 100:
        return None
    row = await db.fetchrow(
        """SELECT s.user_id, s.last_seen_at FROM sessions s JOIN users u ON u.id = s.user_id
           WHERE s.token_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > now()
             AND u.disabled_at IS NULL""",
        token_digest(token),
    )
    if row is None:
        return None
    if row["last_seen_at"] < dt.datetime.now(dt.UTC) - dt.timedelta(seconds=TOUCH_EVERY_S):
        await db.execute("UPDATE sessions SET last_seen_at = now() WHERE token_hash = $1", token_digest(token))
    uid: uuid.UUID = row["user_id"]
    return uid


async def end_session(db: Database, token: str) -> None:
    await db.execute("UPDATE sessions SET revoked_at = now() WHERE token_hash = $1", token_digest(token))


async def revoke_account_sessions(db: Database, account_id: uuid.UUID) -> int:
    """End every session of every member of the account, and of its webinars' members (R-ACC-6)."""
    result = await db.execute(
        """UPDATE sessions SET revoked_at = now()
           WHERE revoked_at IS NULL AND user_id IN (
               SELECT user_id FROM account_members WHERE account_id = $1
               UNION
               SELECT m.user_id FROM webinar_members m JOIN webinars w ON w.id = m.webinar_id
               WHERE w.account_id = $1)
             AND user_id NOT IN (SELECT id FROM users WHERE is_admin)""",
        account_id,
    )
    return int(result.split()[-1])
