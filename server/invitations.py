"""Single-purpose invitation links for speakers and moderators (R-ACC-2).

The link carries a signed token naming the invitation row; the row makes it
single-use (``accepted_at``) and revocable (delete). Lifetime:
:data:`INVITATION_TTL_S`.
"""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg

from server.db import Database
from server.errors import NotFound, RuleViolation
from server.security import InvalidToken, Signer
from server.users import normalise_email

INVITATION_TTL_S = 30 * 24 * 3600


async def create_invitation(
    db: Database, signer: Signer, webinar_id: uuid.UUID, role: str, email: str, *, name: str = "",
    invited_by: uuid.UUID | None = None,
) -> tuple[uuid.UUID, str]:
    """Return the invitation id and its signed token (put it in ``/invite/{token}``)."""
    if role not in ("speaker", "moderator"):
        raise RuleViolation("role_invalid", role=role)
    email = normalise_email(email)
    row = await db.fetchrow(
        """INSERT INTO invitations (webinar_id, role, email, name, invited_by, expires_at)
           VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6)) RETURNING id, expires_at""",
        webinar_id, role, email, name.strip()[:200], invited_by, float(INVITATION_TTL_S),
    )
    assert row is not None
    token = signer.sign("invitation", {"i": str(row["id"]), "r": role}, ttl_s=INVITATION_TTL_S)
    return row["id"], token


async def open_invitation(db: Database, signer: Signer, token: str) -> asyncpg.Record:
    """The invitation row behind a token, or :class:`InvalidToken` (forged, expired, used)."""
    body = signer.unsign("invitation", token)
    try:
        inv_id = uuid.UUID(str(body.get("i")))
    except ValueError:
        raise InvalidToken("malformed invitation") from None
    row = await db.fetchrow(
        """SELECT i.*, w.title AS webinar_title, w.account_id FROM invitations i
           JOIN webinars w ON w.id = i.webinar_id WHERE i.id = $1""",
        inv_id,
    )
    if row is None or row["role"] != body.get("r"):
        raise InvalidToken("unknown invitation")
    if row["accepted_at"] is not None:
        raise InvalidToken("invitation already used")
    if row["expires_at"] < dt.datetime.now(dt.UTC):
        raise InvalidToken("expired", expired=True)
    return row


async def accept_invitation(db: Database, invitation_id: uuid.UUID, user_id: uuid.UUID) -> uuid.UUID:
    """Use the invitation once: the user gets the role on the webinar. Returns the webinar id."""
    async with db.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """UPDATE invitations SET accepted_at = now(), accepted_by = $2
               WHERE id = $1 AND accepted_at IS NULL AND expires_at > now() RETURNING webinar_id, role""",
            invitation_id, user_id,
        )
        if row is None:
            raise NotFound("invitation")
        await conn.execute(
            "INSERT INTO webinar_members (webinar_id, user_id, role) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            row["webinar_id"], user_id, row["role"],
        )
    webinar_id: uuid.UUID = row["webinar_id"]
    return webinar_id
