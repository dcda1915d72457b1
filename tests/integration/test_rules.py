"""Business rules of the foundation, each with its refusal (R-ACC, R-ROOM-1/2)."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import pytest

from server.accounts import MAX_ORGANIZERS, add_member, create_account, has_active_contract
from server.db import Database
from server.errors import NotFound, RuleViolation
from server.orders import create_order
from server.users import create_user
from server.webinars import create_webinar, rotate_stream_key, set_state, update_webinar, webinar_by_stream_key
from tests.world import make_side

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


async def _account_with_order(db: Database, bought: int = 3) -> tuple[uuid.UUID, uuid.UUID]:
    account = await create_account(db, f"Acme {uuid.uuid4().hex[:6]}")
    order = await create_order(
        db, account.id, reference="PO-1", signed_on=dt.date(2026, 1, 1), contract_start=dt.date(2026, 1, 1),
        contract_end=dt.date(2026, 12, 31), webinars_bought=bought, kind="advertiser", price_per_webinar_cents=100,
    )
    return account.id, order.id


async def test_tenth_organizer_refused(db: Database) -> None:
    account_id, _ = await _account_with_order(db)
    users = [await create_user(db, f"o{i}-{uuid.uuid4().hex[:4]}@example.com") for i in range(MAX_ORGANIZERS + 1)]
    for user in users[:MAX_ORGANIZERS]:
        await add_member(db, account_id, user.id, "organizer")
    with pytest.raises(RuleViolation) as info:
        await add_member(db, account_id, users[-1].id, "organizer")
    assert info.value.code == "organizer_limit"
    assert "9 organizers" in str(info.value)
    # Re-adding an existing organizer is not a 10th; a sponsor does not count.
    await add_member(db, account_id, users[0].id, "organizer")
    await add_member(db, account_id, users[-1].id, "sponsor")
    assert await db.fetchval("SELECT count(*) FROM account_members WHERE account_id=$1 AND role='organizer'", account_id) == 9


async def test_concurrent_organizers_cannot_pass_the_cap(db: Database) -> None:
    account_id, _ = await _account_with_order(db)
    users = [await create_user(db, f"c{i}-{uuid.uuid4().hex[:4]}@example.com") for i in range(14)]
    results = await asyncio.gather(*(add_member(db, account_id, u.id, "organizer") for u in users), return_exceptions=True)
    refused = [r for r in results if isinstance(r, RuleViolation)]
    assert len(refused) == 14 - MAX_ORGANIZERS
    assert await db.fetchval("SELECT count(*) FROM account_members WHERE account_id=$1", account_id) == MAX_ORGANIZERS


async def test_overlap_refused_and_adjacent_allowed(db: Database) -> None:
    account_id, _ = await _account_with_order(db, bought=5)
    start = dt.datetime(2026, 6, 10, 10, 0, tzinfo=dt.UTC)
    first = await create_webinar(db, account_id, title="One", starts_at=start, duration_minutes=60, room_type="webcam")
    with pytest.raises(RuleViolation) as info:
        await create_webinar(db, account_id, title="Two", starts_at=start + dt.timedelta(minutes=59),
                             duration_minutes=30, room_type="studio")
    assert info.value.code == "overlap" and info.value.params["title"] == "One"
    # Back to back is fine (ranges are half-open), and another account may use the same hour.
    await create_webinar(db, account_id, title="Next", starts_at=start + dt.timedelta(hours=1), duration_minutes=30,
                         room_type="studio")
    other, _ = await _account_with_order(db)
    await create_webinar(db, other, title="Elsewhere", starts_at=start, duration_minutes=60, room_type="webcam")
    # Moving a webinar onto another one is refused as well; a cancelled one frees its slot.
    with pytest.raises(RuleViolation, match="overlap"):
        await update_webinar(db, first.id, starts_at=start + dt.timedelta(minutes=30))
    await set_state(db, first.id, "cancelled")
    await create_webinar(db, account_id, title="Replacement", starts_at=start, duration_minutes=60, room_type="webcam")


async def test_concurrent_overlap_only_one_wins(db: Database) -> None:
    account_id, _ = await _account_with_order(db, bought=10)
    start = dt.datetime(2026, 7, 1, 9, 0, tzinfo=dt.UTC)
    results = await asyncio.gather(
        *(create_webinar(db, account_id, title=f"W{i}", starts_at=start + dt.timedelta(minutes=i), duration_minutes=60,
                         room_type="webcam") for i in range(6)),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, Exception) for r in results) == 1
    assert all(isinstance(r, RuleViolation) and r.code == "overlap" for r in results if isinstance(r, Exception))


async def test_quota_exceeded(db: Database) -> None:
    account_id, order_id = await _account_with_order(db, bought=2)
    for day in (1, 2):
        await create_webinar(db, account_id, title=f"D{day}", starts_at=dt.datetime(2026, 3, day, 10, tzinfo=dt.UTC),
                             duration_minutes=60, room_type="webcam")
    with pytest.raises(RuleViolation) as info:
        await create_webinar(db, account_id, title="D3", starts_at=dt.datetime(2026, 3, 3, 10, tzinfo=dt.UTC),
                             duration_minutes=60, room_type="webcam", order_id=order_id)
    assert info.value.code == "quota_exceeded" and info.value.params["bought"] == 2


async def test_outside_contract(db: Database) -> None:
    account_id, _ = await _account_with_order(db)
    # The contract ends 2026-12-31 in Paris: 23:00 UTC on the 31st is already 2027 there.
    with pytest.raises(RuleViolation) as info:
        await create_webinar(db, account_id, title="Late", starts_at=dt.datetime(2026, 12, 31, 22, 30, tzinfo=dt.UTC),
                             duration_minutes=60, room_type="webcam")
    assert info.value.code == "outside_contract"
    with pytest.raises(RuleViolation, match="inside the contract"):
        await create_webinar(db, account_id, title="Early", starts_at=dt.datetime(2025, 12, 31, 10, tzinfo=dt.UTC),
                             duration_minutes=60, room_type="webcam")
    await create_webinar(db, account_id, title="Last evening", starts_at=dt.datetime(2026, 12, 31, 21, 0, tzinfo=dt.UTC),
                         duration_minutes=60, room_type="webcam")


async def test_duration_limit(db: Database) -> None:
    account_id, _ = await _account_with_order(db)
    start = dt.datetime(2026, 4, 1, 8, tzinfo=dt.UTC)
    with pytest.raises(RuleViolation) as info:
        await create_webinar(db, account_id, title="Marathon", starts_at=start, duration_minutes=241, room_type="studio")
    assert info.value.code == "duration_too_long" and "4 hours" in str(info.value)
    ok = await create_webinar(db, account_id, title="Four hours", starts_at=start, duration_minutes=240, room_type="studio")
    with pytest.raises(RuleViolation, match="4 hours"):
        await update_webinar(db, ok.id, duration_minutes=300)


async def test_room_type_fixed_once_announced(db: Database) -> None:
    account_id, _ = await _account_with_order(db)
    w = await create_webinar(db, account_id, title="R", starts_at=dt.datetime(2026, 5, 5, 10, tzinfo=dt.UTC),
                             duration_minutes=60, room_type="webcam")
    w = await update_webinar(db, w.id, room_type="studio")  # still a draft
    assert w.room_type == "studio"
    await set_state(db, w.id, "announced")
    with pytest.raises(RuleViolation) as info:
        await update_webinar(db, w.id, room_type="webcam")
    assert info.value.code == "room_type_locked"
    assert (await update_webinar(db, w.id, title="Renamed")).title == "Renamed"


async def test_state_machine(db: Database) -> None:
    account_id, _ = await _account_with_order(db)
    w = await create_webinar(db, account_id, title="S", starts_at=dt.datetime(2026, 5, 6, 10, tzinfo=dt.UTC),
                             duration_minutes=60, room_type="studio")
    with pytest.raises(RuleViolation, match="cannot become"):
        await set_state(db, w.id, "live")
    for state in ("announced", "live", "ended", "replay", "removed"):
        assert (await set_state(db, w.id, state)).state == state
    with pytest.raises(RuleViolation):
        await update_webinar(db, w.id, title="too late")
    with pytest.raises(NotFound):
        await set_state(db, uuid.uuid4(), "announced")


async def test_stream_keys_hashed_and_rotatable(db: Database) -> None:
    account_id, _ = await _account_with_order(db)
    w = await create_webinar(db, account_id, title="K", starts_at=dt.datetime(2026, 5, 7, 10, tzinfo=dt.UTC),
                             duration_minutes=60, room_type="studio")
    key1 = await rotate_stream_key(db, w.id)
    assert (await webinar_by_stream_key(db, key1)).id == w.id  # type: ignore[union-attr]
    stored = await db.fetchval("SELECT stream_key_hash FROM webinars WHERE id=$1", w.id)
    assert key1.encode() not in stored and len(stored) == 32
    key2 = await rotate_stream_key(db, w.id)
    assert key2 != key1
    assert await webinar_by_stream_key(db, key1) is None
    assert await webinar_by_stream_key(db, "wbk_forged") is None


async def test_contract_end_closes_organizer_access(db: Database) -> None:
    side = await make_side(db, "E", dt.datetime.now(dt.UTC))
    assert await has_active_contract(db, side.account_id)
    assert not await has_active_contract(db, side.account_id, now=dt.datetime.now(dt.UTC) + dt.timedelta(days=400))


async def test_order_validation(db: Database) -> None:
    account = await create_account(db, f"V {uuid.uuid4().hex[:6]}")
    base = dict(reference="X", signed_on=dt.date(2026, 1, 1), contract_start=dt.date(2026, 1, 1),
                contract_end=dt.date(2026, 2, 1), webinars_bought=1, kind="advertiser", price_per_webinar_cents=1)
    for change, code in [({"contract_end": dt.date(2025, 1, 1)}, "contract_dates_inverted"),
                         ({"kind": "free"}, "order_kind_invalid"), ({"webinars_bought": 0}, "webinars_bought_invalid"),
                         ({"price_per_webinar_cents": -1}, "price_negative"), ({"reference": " "}, "order_reference_invalid")]:
        with pytest.raises(RuleViolation) as info:
            await create_order(db, account.id, **{**base, **change})  # type: ignore[arg-type]
        assert info.value.code == code
    with pytest.raises(RuleViolation, match="no order"):
        other = await create_account(db, f"W {uuid.uuid4().hex[:6]}")
        await create_webinar(db, other.id, title="x", starts_at=NOW, duration_minutes=10, room_type="webcam")
