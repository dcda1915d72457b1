"""R-SCH rules at their boundaries (table tests, real PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from server.accounts import create_account
from server.db import Database
from server.errors import RuleViolation
from server.orders import create_order, webinars_used
from server.scheduling import (
    STUDIO_FEE_CENTS,
    broadcast_monday,
    cancel,
    change_deadline,
    mark_lost,
    request_date,
    reschedule,
)
from server.webinars import create_webinar, set_state, update_webinar

PARIS = dt.timezone(dt.timedelta(hours=1))  # winter time, for readable literals


async def account(db: Database, *, studio: bool = False, bought: int = 10, signed: dt.date = dt.date(2026, 1, 2)) -> tuple[uuid.UUID, uuid.UUID]:
    acc = await create_account(db, f"Sched {uuid.uuid4().hex[:6]}")
    order = await create_order(db, acc.id, reference="PO", signed_on=signed, contract_start=dt.date(2026, 1, 1),
                               contract_end=dt.date(2027, 12, 31), webinars_bought=bought, kind="advertiser",
                               studio_option=studio, price_per_webinar_cents=1)
    return acc.id, order.id


async def announced(db: Database, account_id: uuid.UUID, starts_at: dt.datetime, title: str = "W") -> uuid.UUID:
    w = await create_webinar(db, account_id, title=title, starts_at=starts_at, duration_minutes=60, room_type="studio")
    await set_state(db, w.id, "announced")
    return w.id


# A webinar on Thursday 2026-12-10 10:00 Paris: its week's Monday is 2026-12-07, deadline 2026-11-07 00:00 Paris.
START = dt.datetime(2026, 12, 10, 10, 0, tzinfo=PARIS)


def test_deadline_is_30_days_before_the_monday() -> None:
    assert broadcast_monday(START).date() == dt.date(2026, 12, 7)
    assert change_deadline(START) == dt.datetime(2026, 11, 7, 0, 0, tzinfo=PARIS)
    sunday = dt.datetime(2026, 12, 13, 23, 0, tzinfo=PARIS)
    assert broadcast_monday(sunday).date() == dt.date(2026, 12, 7)


@pytest.mark.parametrize(("days_before_monday", "allowed"), [(31, True), (30, True), (29, False)])
async def test_reschedule_notice_boundary(db: Database, days_before_monday: int, allowed: bool) -> None:
    acc, _ = await account(db)
    wid = await announced(db, acc, START)
    now = broadcast_monday(START) - dt.timedelta(days=days_before_monday)  # exactly N days before, 00:00 Paris
    target = START + dt.timedelta(days=14)
    if allowed:
        moved = await reschedule(db, wid, target, now=now)
        assert moved.starts_at == target
        assert await db.fetchval("SELECT schedule_version FROM webinars WHERE id=$1", wid) == 1
    else:
        with pytest.raises(RuleViolation) as info:
            await reschedule(db, wid, target, now=now)
        assert info.value.code == "too_late" and info.value.params["deadline"] == "2026-11-07"
        assert await db.fetchval("SELECT consumed_at FROM webinars WHERE id=$1", wid) is not None
        with pytest.raises(RuleViolation, match="consumed"):
            await reschedule(db, wid, target, now=now - dt.timedelta(days=10))


async def test_once_per_webinar_three_per_order(db: Database) -> None:
    acc, order_id = await account(db)
    early = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    ids = [await announced(db, acc, START + dt.timedelta(days=i), f"W{i}") for i in range(4)]
    await reschedule(db, ids[0], START + dt.timedelta(days=40), now=early)
    with pytest.raises(RuleViolation) as second:
        await reschedule(db, ids[0], START + dt.timedelta(days=50), now=early)
    assert second.value.code == "already_rescheduled"
    await reschedule(db, ids[1], START + dt.timedelta(days=41), now=early)
    await reschedule(db, ids[2], START + dt.timedelta(days=42), now=early)  # the 3rd of the order
    with pytest.raises(RuleViolation) as fourth:
        await reschedule(db, ids[3], START + dt.timedelta(days=43), now=early)
    assert fourth.value.code == "order_reschedules_used" and fourth.value.params["max"] == 3
    assert await db.fetchval("SELECT count(*) FROM schedule_changes WHERE order_id=$1", order_id) == 3


async def test_new_date_must_stay_inside_the_contract_and_free(db: Database) -> None:
    acc, _ = await account(db)
    early = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    wid = await announced(db, acc, START)
    other = await announced(db, acc, START + dt.timedelta(days=20), "Other")
    with pytest.raises(RuleViolation, match="inside the contract"):
        await reschedule(db, wid, dt.datetime(2028, 1, 3, 10, tzinfo=dt.UTC), now=early)
    with pytest.raises(RuleViolation) as clash:
        await reschedule(db, wid, START + dt.timedelta(days=20, minutes=30), now=early)
    assert clash.value.code == "overlap"
    assert await db.fetchval("SELECT reschedule_count FROM webinars WHERE id=$1", wid) == 0  # refused: nothing used
    # Last day of the contract (Paris) is fine.
    await reschedule(db, wid, dt.datetime(2027, 12, 31, 18, 0, tzinfo=PARIS), now=early)
    assert other


async def test_announced_date_only_moves_by_reschedule(db: Database) -> None:
    acc, _ = await account(db)
    wid = await announced(db, acc, START)
    with pytest.raises(RuleViolation) as info:
        await update_webinar(db, wid, starts_at=START + dt.timedelta(days=7))
    assert info.value.code == "schedule_locked"


async def test_studio_fee_and_cancellation(db: Database) -> None:
    acc, order_id = await account(db, studio=True, bought=3)
    early = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    moved = await announced(db, acc, START)
    await reschedule(db, moved, START + dt.timedelta(days=7), now=early)
    in_time = await announced(db, acc, START + dt.timedelta(days=30), "In time")
    webinar, consumed = await cancel(db, in_time, now=early)
    assert webinar.state == "cancelled" and not consumed
    late = await announced(db, acc, START + dt.timedelta(days=60), "Late")
    _, consumed = await cancel(db, late, now=START + dt.timedelta(days=50))
    assert consumed
    fees = await db.fetch("SELECT kind, amount_cents FROM fees WHERE order_id=$1 ORDER BY id", order_id)
    assert [(f["kind"], f["amount_cents"]) for f in fees] == [("reschedule", STUDIO_FEE_CENTS), ("cancellation", STUDIO_FEE_CENTS)]
    # The in-time cancellation gave its slot back; the late one still counts.
    assert await webinars_used(db, order_id) == 2


async def test_no_fee_without_studio_option(db: Database) -> None:
    acc, order_id = await account(db, studio=False)
    wid = await announced(db, acc, START)
    await reschedule(db, wid, START + dt.timedelta(days=7), now=dt.datetime(2026, 6, 1, tzinfo=dt.UTC))
    assert await db.fetchval("SELECT count(*) FROM fees WHERE order_id=$1", order_id) == 0


async def test_date_request_confirmed_or_alternatives(db: Database) -> None:
    acc, _ = await account(db)
    taken = dt.datetime(2026, 9, 15, 14, 0, tzinfo=PARIS)
    await announced(db, acc, taken)
    ok = await request_date(db, acc, taken + dt.timedelta(hours=2), 60)
    assert ok.confirmed and ok.order_id is not None
    answer = await request_date(db, acc, taken + dt.timedelta(minutes=30), 60)
    assert not answer.confirmed and answer.reason == "overlap"
    assert answer.alternatives[0] == taken + dt.timedelta(hours=1)  # right after the taken slot
    assert len(answer.alternatives) == 3 and all(a > taken for a in answer.alternatives)


async def test_lost_after_twelve_months(db: Database) -> None:
    acc, order_id = await account(db, bought=5, signed=dt.date(2026, 1, 2))
    delivered = await announced(db, acc, dt.datetime(2026, 3, 1, 10, tzinfo=dt.UTC), "Done")
    for state in ("live", "ended", "replay"):
        await set_state(db, delivered, state)
    pending = await announced(db, acc, dt.datetime(2027, 6, 1, 10, tzinfo=dt.UTC), "Never happened")
    assert await mark_lost(db, now=dt.datetime(2027, 1, 1, tzinfo=dt.UTC)) == []  # 11 months: nothing yet
    reports = await mark_lost(db, now=dt.datetime(2027, 1, 2, 12, tzinfo=dt.UTC))
    report = next(r for r in reports if r.order_id == order_id)
    assert report.lost == 4 and report.marked == (pending,)
    again = next(r for r in await mark_lost(db, now=dt.datetime(2027, 1, 3, tzinfo=dt.UTC)) if r.order_id == order_id)
    assert again.lost == 4 and again.marked == ()


async def test_pages_reschedule_cancel_and_alternatives(live: object) -> None:
    from tests.conftest import LiveServer, browser
    from tests.world import PASSWORD, make_world

    assert isinstance(live, LiveServer)
    db = live.services.db
    world = await make_world(db)
    await set_state(db, world.a.webinar.id, "announced")
    async with browser(live) as b:
        await b.login(world.a.organizer.email, PASSWORD)
        url = f"/webinars/{world.a.webinar.id}"
        page = await b.get(url)
        assert "Reschedule" in page.text
        # Too late (the webinar is 20 days away): refused with the reason, now consumed.
        target = (world.a.webinar.starts_at + dt.timedelta(days=3)).strftime("%Y-%m-%dT%H:%M")
        r = await b.post_form(f"{url}/reschedule", {"starts_at": target, "timezone": "UTC", "duration_minutes": "60"})
        assert r.status_code == 409 and "Too late" in r.text
        assert await db.fetchval("SELECT consumed_at FROM webinars WHERE id=$1", world.a.webinar.id) is not None
        # Overlap on creation: the answer offers free slots nearby (R-SCH-1).
        clash = world.a.webinar.starts_at.strftime("%Y-%m-%dT%H:%M")
        r = await b.post_form(f"/accounts/{world.a.account_id}/webinars",
                              {"title": "Clash", "starts_at": clash, "timezone": "UTC", "duration_minutes": "30",
                               "room_type": "webcam"})
        assert r.status_code == 422 and "Free slots nearby" in r.text
        # Cancelling goes through the rules: late, so it stays counted.
        r = await b.post_form(f"{url}/state", {"state": "cancelled"})
        assert r.status_code == 303
        row = await db.fetchrow("SELECT state, consumed_at FROM webinars WHERE id=$1", world.a.webinar.id)
        assert row["state"] == "cancelled" and row["consumed_at"] is not None
