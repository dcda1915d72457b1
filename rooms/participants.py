"""Who is in a room and with which role.

- A **viewer** holds a join token (signed, purpose ``join``) naming a
  participant row of one webinar. Until registration exists (a later issue
  issues tokens from registrations), a viewer page can create a guest
  participant with a display name (``POST /w/{id}/join``).
- **Staff** come with their login session: organizers of the account (while
  its contract runs) and admins are moderators; webinar members are
  speakers or moderators; they get a participant row linked to their user.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

from server.accounts import has_active_contract
from server.db import Database
from server.security import InvalidToken, Signer
from server.users import User

Role = Literal["viewer", "speaker", "moderator"]
JOIN_TOKEN_TTL_S = 400 * 86400
ROOM_STATES = ("announced", "live", "ended", "replay")
"""Webinar states in which its room accepts connections."""


@dataclass(frozen=True, slots=True)
class Participant:
    id: uuid.UUID
    webinar_id: uuid.UUID
    display_name: str
    role: Role
    user_id: uuid.UUID | None = None

    def public(self) -> dict[str, object]:
        return {"id": str(self.id), "name": self.display_name, "role": self.role}


class JoinRefused(Exception):
    """The token, session or webinar does not allow joining; ``code`` says why."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def clean_name(name: str) -> str:
    """Collapse white space and control characters; 1 to 80 characters."""
    cleaned = " ".join("".join(ch if ch.isprintable() else " " for ch in name).split())
    if not 1 <= len(cleaned) <= 80:
        raise JoinRefused("bad_name")
    return cleaned


async def create_guest(db: Database, signer: Signer, webinar_id: uuid.UUID, name: str) -> tuple[Participant, str]:
    state = await db.fetchval("SELECT state FROM webinars WHERE id = $1", webinar_id)
    if state not in ROOM_STATES:
        raise JoinRefused("room_closed")
    row = await db.fetchrow(
        "INSERT INTO participants (webinar_id, display_name) VALUES ($1, $2) RETURNING id", webinar_id, clean_name(name)
    )
    assert row is not None
    participant = Participant(row["id"], webinar_id, clean_name(name), "viewer")
    return participant, join_token(signer, participant)


def join_token(signer: Signer, participant: Participant) -> str:
    return signer.sign("join", {"p": str(participant.id), "w": str(participant.webinar_id)}, ttl_s=JOIN_TOKEN_TTL_S)


async def from_token(db: Database, signer: Signer, webinar_id: uuid.UUID, token: str) -> Participant:
    try:
        body = signer.unsign("join", token)
        participant_id = uuid.UUID(str(body["p"]))
        if uuid.UUID(str(body["w"])) != webinar_id:
            raise JoinRefused("wrong_room")
    except (InvalidToken, KeyError, ValueError):
        raise JoinRefused("bad_token") from None
    row = await db.fetchrow(
        "SELECT id, display_name, banned_at, user_id FROM participants WHERE id = $1 AND webinar_id = $2",
        participant_id, webinar_id,
    )
    if row is None:
        raise JoinRefused("bad_token")
    if row["banned_at"] is not None:
        raise JoinRefused("banned")
    return Participant(row["id"], webinar_id, row["display_name"], "viewer", row["user_id"])


async def staff_role(db: Database, user: User, webinar_id: uuid.UUID) -> Role | None:
    row = await db.fetchrow("SELECT account_id FROM webinars WHERE id = $1", webinar_id)
    if row is None:
        return None
    if user.is_admin:
        return "moderator"
    organizer = await db.fetchval(
        "SELECT 1 FROM account_members WHERE account_id = $1 AND user_id = $2 AND role = 'organizer'",
        row["account_id"], user.id,
    )
    if organizer and await has_active_contract(db, row["account_id"]):
        return "moderator"
    roles = {r["role"] for r in await db.fetch(
        "SELECT role FROM webinar_members WHERE webinar_id = $1 AND user_id = $2", webinar_id, user.id)}
    if "moderator" in roles:
        return "moderator"
    if "speaker" in roles:
        return "speaker"
    return None


async def for_staff(db: Database, user: User, webinar_id: uuid.UUID) -> Participant:
    role = await staff_role(db, user, webinar_id)
    if role is None:
        raise JoinRefused("not_staff")
    name = (user.name or user.email.split("@")[0])[:80] or "staff"
    row = await db.fetchrow(
        """INSERT INTO participants (webinar_id, user_id, display_name) VALUES ($1, $2, $3)
           ON CONFLICT (webinar_id, user_id) DO UPDATE SET display_name = EXCLUDED.display_name
           RETURNING id, banned_at""",
        webinar_id, user.id, name,
    )
    assert row is not None
    return Participant(row["id"], webinar_id, name, role, user.id)
