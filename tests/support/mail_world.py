"""What the email tests share: a controllable clock, a webinar with registrants
inserted directly (as the registration pages would), and helpers to schedule
and drain the email jobs."""

from __future__ import annotations

import datetime as dt
import uuid

from server.accounts import create_account
from server.db import Database
from server.jobs import JobWorker
from server.notifications import on_registered
from server.orders import create_order
from server.webinars import create_webinar


class Clock:
    """A clock that moves only when told to."""

    def __init__(self, start: dt.datetime) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def set(self, at: dt.datetime) -> None:
        self.now = at

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


def real_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


async def make_webinar(db: Database, starts_at: dt.datetime, title: str = "Cloud costs") -> uuid.UUID:
    """An announced webinar of a fresh account starting at ``starts_at`` (set directly, any time)."""
    today = real_now().date()
    account = await create_account(db, f"Client {uuid.uuid4().hex[:8]}")
    await create_order(db, account.id, reference="PO-1", signed_on=today, contract_start=today - dt.timedelta(days=10),
                       contract_end=today + dt.timedelta(days=300), webinars_bought=5, kind="advertiser",
                       price_per_webinar_cents=100000)
    webinar = await create_webinar(db, account.id, title=title, starts_at=real_now() + dt.timedelta(days=20),
                                   duration_minutes=60, room_type="studio")
    await db.execute("UPDATE webinars SET starts_at = $2, state = 'announced' WHERE id = $1", webinar.id, starts_at)
    return webinar.id


async def add_registration(db: Database, webinar_id: uuid.UUID, email: str, *, locale: str = "en",
                           first_name: str = "Ada") -> tuple[uuid.UUID, uuid.UUID]:
    """A registration row and its room participant; returns (registration id, participant id)."""
    participant = await db.fetchval(
        "INSERT INTO participants (webinar_id, display_name, email) VALUES ($1, $2, $3) RETURNING id",
        webinar_id, first_name or "guest", email)
    registration = await db.fetchval(
        """INSERT INTO registrations (webinar_id, email, first_name, last_name, locale, time_zone, participant_id)
           VALUES ($1, $2, $3, 'Lovelace', $4, 'Europe/Paris', $5) RETURNING id""",
        webinar_id, email, first_name, locale, participant)
    return registration, participant


async def registered(db: Database, registration_id: uuid.UUID, now: dt.datetime) -> int:
    """What the registration transaction does after writing the row: schedule the emails.
    Returns how many jobs that created."""
    async with db.acquire() as conn, conn.transaction():
        before = await conn.fetchval("SELECT count(*) FROM jobs")
        await on_registered(conn, registration_id, True, now=now)
        return int(await conn.fetchval("SELECT count(*) FROM jobs")) - int(before)


async def drain(worker: JobWorker) -> int:
    """Run the worker until nothing is due; returns how many jobs ran."""
    total = 0
    for _ in range(50):
        ran = await worker.run_once()
        if ran == 0:
            return total
        total += ran
    raise AssertionError("the queue did not drain")
