"""Builds a small world of two client accounts for tests: an admin, and for each
account an organizer, a sponsor, an order, a webinar with a speaker and a moderator."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field

from server.accounts import add_member, create_account
from server.db import Database
from server.orders import create_order
from server.users import User, create_user
from server.webinars import Webinar, create_webinar

PASSWORD = "correct horse battery"


@dataclass
class Side:
    account_id: uuid.UUID
    order_id: uuid.UUID
    organizer: User
    sponsor: User
    speaker: User
    moderator: User
    webinar: Webinar
    users: dict[str, User] = field(default_factory=dict)


@dataclass
class World:
    admin: User
    a: Side
    b: Side


async def make_side(db: Database, tag: str, now: dt.datetime) -> Side:
    account = await create_account(db, f"Client {tag} {uuid.uuid4().hex[:6]}")
    order = await create_order(
        db, account.id, reference=f"PO-{tag}", signed_on=now.date(), contract_start=now.date() - dt.timedelta(days=10),
        contract_end=now.date() + dt.timedelta(days=300), webinars_bought=5, kind="advertiser",
        price_per_webinar_cents=500000,
    )
    users = {}
    for role in ("organizer", "sponsor", "speaker", "moderator"):
        users[role] = await create_user(db, f"{role}-{tag}-{uuid.uuid4().hex[:6]}@example.com", name=f"{role} {tag}",
                                        password=PASSWORD)
    await add_member(db, account.id, users["organizer"].id, "organizer")
    await add_member(db, account.id, users["sponsor"].id, "sponsor")
    webinar = await create_webinar(db, account.id, title=f"Webinar {tag}", starts_at=now + dt.timedelta(days=20),
                                   duration_minutes=60, room_type="studio")
    for role in ("speaker", "moderator"):
        await db.execute("INSERT INTO webinar_members (webinar_id, user_id, role) VALUES ($1, $2, $3)",
                         webinar.id, users[role].id, role)
    return Side(account.id, order.id, users["organizer"], users["sponsor"], users["speaker"], users["moderator"],
                webinar, users)


async def make_world(db: Database) -> World:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    admin = await create_user(db, f"admin-{uuid.uuid4().hex[:6]}@example.com", password=PASSWORD, is_admin=True)
    return World(admin, await make_side(db, "A", now), await make_side(db, "B", now))
