"""Unsubscribing from marketing email (R-REG-4), without an account or a login.

The link in every marketing mail is ``{base_url}/unsubscribe/{token}``: the
token is signed by the server (purpose ``unsubscribe``) and names one
registration; it does not expire, so a mail read months later still works.
Whoever holds the token may unsubscribe that registration, and nothing else.

Unsubscribing applies to the registration the mail was about (one person,
one webinar): it sets ``registrations.unsubscribed_at`` and records the
choice as a ``consents`` row (kind ``marketing``, granted false, time, IP,
user agent, the webinar's form version, wording ``unsubscribe link (page)``
or ``unsubscribe link (one-click)``). Doing it again changes nothing and
records nothing. Transactional mail (confirmation, reminders, changes to the
webinar) is not affected: it is what the person registered for.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import uuid
from typing import Literal

from server.db import Database
from server.security import InvalidToken, Signer

Via = Literal["page", "one-click"]
Outcome = Literal["unsubscribed", "already", "gone"]
WORDING = "unsubscribe link"
MAX_USER_AGENT = 500
"""Characters of the User-Agent kept as proof."""


def unsubscribe_token(signer: Signer, registration_id: uuid.UUID) -> str:
    return signer.sign("unsubscribe", {"r": str(registration_id)}, ttl_s=None)


def unsubscribe_url(base_url: str, signer: Signer, registration_id: uuid.UUID) -> str:
    return f"{base_url}/unsubscribe/{unsubscribe_token(signer, registration_id)}"


def registration_from_token(signer: Signer, token: str) -> uuid.UUID:
    """The registration a token names; :class:`InvalidToken` when forged or malformed."""
    body = signer.unsign("unsubscribe", token)
    try:
        return uuid.UUID(str(body["r"]))
    except (KeyError, ValueError):
        raise InvalidToken("malformed payload") from None


def _ip(value: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address(value)) if value else None
    except ValueError:
        return None


async def unsubscribe(db: Database, registration_id: uuid.UUID, *, via: Via, ip: str | None, user_agent: str,
                      now: dt.datetime | None = None) -> Outcome:
    """Unsubscribe one registration from marketing mail; ``gone`` when it was erased."""
    if via not in ("page", "one-click"):
        raise ValueError(f"unknown unsubscribe channel {via!r}")
    now = now or dt.datetime.now(dt.UTC)
    async with db.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """UPDATE registrations r SET unsubscribed_at = $2, updated_at = $2
               FROM webinars w WHERE r.id = $1 AND w.id = r.webinar_id AND r.unsubscribed_at IS NULL
               RETURNING w.form_version""", registration_id, now)
        if row is None:
            exists = await conn.fetchval("SELECT 1 FROM registrations WHERE id = $1", registration_id)
            return "already" if exists else "gone"
        await conn.execute(
            """INSERT INTO consents (registration_id, kind, granted, at, ip, user_agent, form_version, wording)
               VALUES ($1, 'marketing', false, $2, $3::inet, $4, $5, $6)""",
            registration_id, now, _ip(ip), user_agent[:MAX_USER_AGENT], row["form_version"], f"{WORDING} ({via})")
    return "unsubscribed"
