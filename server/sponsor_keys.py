"""Sponsor access by signed, expiring key (R-ACC-2).

A key covers only what it names: one account's participant files, or one
webinar's. The signed token carries the key id and its scope; the row makes
it revocable. An expired, revoked, forged or out-of-scope key is refused.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from server.db import Database
from server.errors import NotFound, RuleViolation
from server.security import InvalidToken, Signer

MAX_KEY_TTL_DAYS = 400


@dataclass(frozen=True)
class SponsorScope:
    key_id: uuid.UUID
    account_id: uuid.UUID
    webinar_id: uuid.UUID | None
    """None: every webinar of the account."""

    def covers(self, account_id: uuid.UUID, webinar_id: uuid.UUID | None) -> bool:
        if account_id != self.account_id:
            return False
        return self.webinar_id is None or self.webinar_id == webinar_id


async def create_sponsor_key(
    db: Database, signer: Signer, account_id: uuid.UUID, *, webinar_id: uuid.UUID | None, ttl_days: int,
    label: str = "", created_by: uuid.UUID | None = None,
) -> str:
    if not 1 <= ttl_days <= MAX_KEY_TTL_DAYS:
        raise RuleViolation("key_ttl_invalid", max=MAX_KEY_TTL_DAYS)
    if webinar_id is not None:
        owner = await db.fetchval("SELECT account_id FROM webinars WHERE id = $1", webinar_id)
        if owner != account_id:
            raise NotFound("webinar")
    row = await db.fetchrow(
        """INSERT INTO sponsor_keys (account_id, webinar_id, label, created_by, expires_at)
           VALUES ($1, $2, $3, $4, now() + make_interval(days => $5)) RETURNING id""",
        account_id, webinar_id, label[:200], created_by, ttl_days,
    )
    assert row is not None
    payload = {"k": str(row["id"]), "a": str(account_id), "w": str(webinar_id) if webinar_id else None}
    return signer.sign("sponsor-key", payload, ttl_s=ttl_days * 86400)


async def check_sponsor_key(db: Database, signer: Signer, token: str) -> SponsorScope:
    """The scope a key grants, or :class:`InvalidToken`."""
    body = signer.unsign("sponsor-key", token)
    try:
        key_id = uuid.UUID(str(body["k"]))
        account_id = uuid.UUID(str(body["a"]))
        webinar_id = uuid.UUID(str(body["w"])) if body.get("w") else None
    except (KeyError, ValueError):
        raise InvalidToken("malformed sponsor key") from None
    row = await db.fetchrow("SELECT * FROM sponsor_keys WHERE id = $1", key_id)
    if row is None or row["account_id"] != account_id or row["webinar_id"] != webinar_id:
        raise InvalidToken("unknown sponsor key")
    if row["revoked_at"] is not None:
        raise InvalidToken("revoked sponsor key")
    if row["expires_at"] < dt.datetime.now(dt.UTC):
        raise InvalidToken("expired", expired=True)
    return SponsorScope(key_id, account_id, webinar_id)


async def revoke_sponsor_key(db: Database, key_id: uuid.UUID) -> None:
    await db.execute("UPDATE sponsor_keys SET revoked_at = now() WHERE id = $1", key_id)
