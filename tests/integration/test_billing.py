"""Invoices on a real PostgreSQL (R-BIL-1..4): the 50/50 split, the balance on the last
delivery (live, consumed, lost), numbering without gaps, fees and extras on their own
invoices, attendance metering counting a person once (live + replay), payments and
late charges."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from decimal import Decimal

import pytest

from billing.interest import late_interest, set_ecb_rate
from billing.invoices import (
    _allocate_number,
    get_invoice,
    issue_balance_invoice,
    issue_due_invoices,
    issue_fees_invoice,
    issue_metering_invoice,
    issue_signature_invoice,
    list_invoices,
    record_extra,
    record_payment,
    set_billing_terms,
)
from billing.metering import attendees_for_billing
from server.accounts import create_account
from server.db import Database
from server.errors import RuleViolation
from server.orders import Order, create_order
from server.scheduling import reschedule
from server.users import create_user
from server.webinars import create_webinar, set_state

pytestmark = pytest.mark.integration

D = dt.date
PARIS = dt.timezone(dt.timedelta(hours=1))
SIGNED = D(2026, 1, 10)


async def make_order(db: Database, *, bought: int = 2, price: int = 500_000, options: int = 100_000,
                     signed: dt.date = SIGNED, studio: bool = False) -> Order:
    account = await create_account(db, f"Billing {uuid.uuid4().hex[:8]}")
    return await create_order(db, account.id, reference=f"PO-{uuid.uuid4().hex[:4]}", signed_on=signed,
                              contract_start=D(2026, 1, 1), contract_end=D(2026, 12, 31), webinars_bought=bought,
                              kind="advertiser", studio_option=studio, price_per_webinar_cents=price,
                              options_price_cents=options)


async def webinar(db: Database, order: Order, day: int, *, state: str = "draft") -> uuid.UUID:
    w = await create_webinar(db, order.account_id, title=f"Webinar {day}", starts_at=dt.datetime(2026, 3, day, 10,
                             tzinfo=PARIS), duration_minutes=60, room_type="studio", order_id=order.id)
    path = ["announced", "live", "ended", "replay"]
    for step in path[:path.index(state) + 1] if state != "draft" else []:
        await set_state(db, w.id, step)
    return w.id


# R-BIL-1 -----------------------------------------------------------------------------------------------
async def test_fifty_fifty_split_deposit_then_balance_on_last_delivery(db: Database) -> None:
    order = await make_order(db)   # 2 x 5,000 EUR + 1,000 EUR options = 11,000 EUR excl. tax
    deposit = await issue_signature_invoice(db, order.id, today=D(2026, 1, 12))
    assert deposit.number == "2026-0001" and deposit.kind == "deposit"
    assert (deposit.total_excl_cents, deposit.vat_cents, deposit.total_incl_cents) == (550_000, 110_000, 660_000)
    assert deposit.vat_rate_percent == Decimal("20.00")
    assert (deposit.issued_on, deposit.due_on) == (D(2026, 1, 12), D(2026, 2, 11))
    assert [line.amount_cents for line in deposit.lines] == [550_000]

    first = await webinar(db, order, 2, state="replay")
    second = await webinar(db, order, 9, state="announced")
    with pytest.raises(RuleViolation) as early:
        await issue_balance_invoice(db, order.id, today=D(2026, 3, 5))
    assert early.value.code == "order_not_delivered" and early.value.params == {"delivered": 1, "bought": 2}
    assert first

    await set_state(db, second, "live")   # the last webinar is delivered
    balance = await issue_balance_invoice(db, order.id, today=D(2026, 3, 9))
    assert balance.number == "2026-0002"
    assert [(line.quantity, line.unit_price_cents) for line in balance.lines] == [(2, 500_000), (1, 100_000), (1, -550_000)]
    assert balance.total_excl_cents == 550_000
    assert deposit.total_excl_cents + balance.total_excl_cents == 1_100_000
    assert "2026-0001" in balance.lines[-1].description
    for again in (issue_signature_invoice, issue_balance_invoice):
        with pytest.raises(RuleViolation) as twice:
            await again(db, order.id, today=D(2026, 3, 9))
        assert twice.value.code == "invoice_exists"


async def test_order_deposit_share_other_than_half(db: Database) -> None:
    order = await make_order(db, bought=1, price=1_000_001, options=0)
    await set_billing_terms(db, order.id, deposit_percent=30, price_per_attendee_cents=None)
    deposit = await issue_signature_invoice(db, order.id, today=D(2026, 1, 10))
    assert deposit.total_excl_cents == 300_000   # 30 % of 10,000.01 EUR, half up
    with pytest.raises(RuleViolation) as locked:
        await set_billing_terms(db, order.id, deposit_percent=50, price_per_attendee_cents=None)
    assert locked.value.code == "deposit_already_invoiced"
    await webinar(db, order, 2, state="live")
    balance = await issue_balance_invoice(db, order.id, today=D(2026, 3, 2))
    assert balance.total_excl_cents == 700_001


async def test_deposit_is_refused_before_signature_and_without_share(db: Database) -> None:
    order = await make_order(db, signed=D(2026, 2, 1))
    with pytest.raises(RuleViolation) as early:
        await issue_signature_invoice(db, order.id, today=D(2026, 1, 31))
    assert early.value.code == "order_not_signed"
    await set_billing_terms(db, order.id, deposit_percent=0, price_per_attendee_cents=None)
    with pytest.raises(RuleViolation) as none:
        await issue_signature_invoice(db, order.id, today=D(2026, 2, 1))
    assert none.value.code == "nothing_to_invoice"
    with pytest.raises(RuleViolation):
        await set_billing_terms(db, order.id, deposit_percent=101, price_per_attendee_cents=None)


@pytest.mark.parametrize("how", ["consumed", "lost_mark", "twelve_months"])
async def test_balance_trigger_counts_consumed_and_lost_webinars(db: Database, how: str) -> None:
    order = await make_order(db, bought=2, options=0)
    await webinar(db, order, 2, state="ended")
    other = await webinar(db, order, 9, state="announced")
    before, after = (D(2027, 1, 9), D(2027, 1, 10)) if how == "twelve_months" else (D(2026, 3, 1), D(2026, 3, 1))
    with pytest.raises(RuleViolation) as early:
        await issue_balance_invoice(db, order.id, today=before)
    assert early.value.code == "order_not_delivered"
    if how == "consumed":   # R-SCH-3: a late request consumes the webinar
        with pytest.raises(RuleViolation):
            await reschedule(db, other, dt.datetime(2026, 4, 20, 10, tzinfo=PARIS),
                             now=dt.datetime(2026, 3, 1, tzinfo=dt.UTC))
    elif how == "lost_mark":
        await db.execute("UPDATE webinars SET lost_at = now() WHERE id = $1", other)
    # twelve_months, R-SCH-5: from 12 months after the signature the rest is lost, billed in full
    balance = await issue_balance_invoice(db, order.id, today=after)
    assert balance.total_excl_cents == 1_000_000   # no deposit invoiced: the whole order
    lost_note = [line for line in balance.lines if line.amount_cents == 0]
    assert len(lost_note) == (0 if how == "consumed" else 1)


async def test_sweep_issues_what_is_due_once(db: Database) -> None:
    order = await make_order(db, bought=1, options=0)
    first = await issue_due_invoices(db, D(2026, 1, 10))
    assert [(i.kind, i.number) for i in first] == [("deposit", "2026-0001")]
    assert await issue_due_invoices(db, D(2026, 1, 11)) == []
    await webinar(db, order, 2, state="live")
    second = await issue_due_invoices(db, D(2026, 3, 2))
    assert [(i.kind, i.number, i.total_excl_cents) for i in second] == [("balance", "2026-0002", 250_000)]
    assert await issue_due_invoices(db, D(2026, 3, 3)) == []


# Numbering ----------------------------------------------------------------------------------------------------
async def test_numbers_are_sequential_without_gaps_even_concurrently(db: Database) -> None:
    orders = [await make_order(db, bought=1) for _ in range(8)]
    results = await asyncio.gather(*(issue_signature_invoice(db, o.id, today=D(2026, 2, 1)) for o in orders))
    assert sorted(i.number for i in results) == [f"2026-{n:04d}" for n in range(1, 9)]
    # A transaction that took a number and rolled back gives it back.
    async with db.acquire() as conn:
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                assert await _allocate_number(conn, D(2026, 2, 2)) == (2026, 9)
                raise RuntimeError("the invoice failed")
    extra = await make_order(db, bought=1)
    assert (await issue_signature_invoice(db, extra.id, today=D(2026, 2, 2))).number == "2026-0009"
    # Dates never go backwards within a year; a new year starts at 1.
    late = await make_order(db, bought=1)
    with pytest.raises(RuleViolation) as backwards:
        await issue_signature_invoice(db, late.id, today=D(2026, 2, 1))
    assert backwards.value.code == "invoice_date_backwards"
    assert (await issue_signature_invoice(db, late.id, today=D(2027, 1, 4))).number == "2027-0001"


# Fees and extras (R-SCH-4, R-BIL-3) ----------------------------------------------------------------------------
async def test_reschedule_fees_and_extras_have_their_own_invoices(db: Database) -> None:
    order = await make_order(db, bought=3, studio=True)
    w = await webinar(db, order, 16, state="announced")
    await reschedule(db, w, dt.datetime(2026, 4, 16, 10, tzinfo=PARIS), now=dt.datetime(2026, 1, 20, tzinfo=dt.UTC))
    await record_extra(db, order.account_id, "Extra replay editing", 80_000)
    with pytest.raises(RuleViolation):
        await record_extra(db, order.account_id, "  ", 80_000)
    deposit = await issue_signature_invoice(db, order.id, today=D(2026, 1, 21))
    assert all("Extra" not in line.description for line in deposit.lines)

    fees = await issue_fees_invoice(db, order.account_id, "fees", today=D(2026, 1, 21))
    assert fees.kind == "fees" and fees.order_id is None
    assert [(line.quantity, line.unit_price_cents) for line in fees.lines] == [(1, 200_000)]
    assert "Webinar 16" in fees.lines[0].description
    extras = await issue_fees_invoice(db, order.account_id, "extras", today=D(2026, 1, 21))
    assert [(line.description, line.amount_cents) for line in extras.lines] == [("Extra replay editing", 80_000)]
    assert (extras.total_excl_cents, extras.total_incl_cents) == (80_000, 96_000)
    left = await db.fetch("SELECT kind, invoice_id, invoiced_at FROM fees WHERE account_id = $1", order.account_id)
    assert {r["invoice_id"] for r in left} == {fees.id, extras.id} and all(r["invoiced_at"] for r in left)
    with pytest.raises(RuleViolation) as nothing:
        await issue_fees_invoice(db, order.account_id, "fees", today=D(2026, 1, 22))
    assert nothing.value.code == "nothing_to_invoice"
    assert [i.number for i in await list_invoices(db, order.account_id)] == ["2026-0003", "2026-0002", "2026-0001"]


# R-BIL-4 -----------------------------------------------------------------------------------------------------------
async def _participant(db: Database, webinar_id: uuid.UUID, name: str, *, email: str | None = None,
                       user_id: uuid.UUID | None = None, live_s: float = 0, replay_s: float = 0) -> uuid.UUID:
    """A participant and, when it viewed (seconds > 0), its attendance totals as the recorder writes them."""
    pid: uuid.UUID = await db.fetchval(
        "INSERT INTO participants (webinar_id, display_name, email, user_id) VALUES ($1, $2, $3, $4) RETURNING id",
        webinar_id, name, email, user_id)
    await _view(db, webinar_id, pid, live_s, replay_s)
    return pid


async def _view(db: Database, webinar_id: uuid.UUID, pid: uuid.UUID, live_s: float, replay_s: float) -> None:
    await db.execute(
        """INSERT INTO attendance (participant_id, webinar_id, live_seconds, replay_seconds, attention_seconds,
                                   first_seen_at, last_seen_at)
           VALUES ($1, $2, $3, $4, 0, now(), now())
           ON CONFLICT (participant_id) DO UPDATE SET live_seconds = attendance.live_seconds + $3,
               replay_seconds = attendance.replay_seconds + $4""", pid, webinar_id, live_s, replay_s)


async def test_attendance_metering_counts_live_and_replay_once(db: Database) -> None:
    order = await make_order(db, bought=2, price=0, options=0)
    await set_billing_terms(db, order.id, deposit_percent=0, price_per_attendee_cents=250)
    wid = await webinar(db, order, 2, state="ended")
    both = await _participant(db, wid, "Both", email="both@example.com", live_s=1800, replay_s=600)
    await _participant(db, wid, "Replay", email="replay@example.com", replay_s=300)
    await _participant(db, wid, "Live", live_s=60)                                     # a guest, no email
    await _participant(db, wid, "No-show", email="noshow@example.com")                 # registered, never viewed
    await _participant(db, wid, "Opened", email="opened@example.com", live_s=0, replay_s=0)
    staff = await create_user(db, f"speaker-{uuid.uuid4().hex[:6]}@example.com")
    await _participant(db, wid, "Speaker", user_id=staff.id, live_s=3600)             # staff are not attendees
    assert sorted(len(p) for p in await _attendees(db, wid)) == [1, 1, 1]

    first = await issue_metering_invoice(db, order.id, today=D(2026, 3, 3))
    assert [(line.quantity, line.unit_price_cents, line.amount_cents) for line in first.lines] == [(3, 250, 750)]
    assert first.kind == "metering" and first.total_incl_cents == 900

    # Later: the live attendee comes back in replay (not billed again) and a newcomer watches the replay.
    await _view(db, wid, both, 0, 1200)
    await _participant(db, wid, "Late", email="late@example.com", replay_s=900)
    second = await issue_metering_invoice(db, order.id, today=D(2026, 4, 3))
    assert [line.quantity for line in second.lines] == [1]
    with pytest.raises(RuleViolation) as nothing:
        await issue_metering_invoice(db, order.id, today=D(2026, 4, 4))
    assert nothing.value.code == "nothing_to_invoice"
    assert await db.fetchval("SELECT count(*) FROM metered_attendees WHERE webinar_id = $1", wid) == 4


async def _attendees(db: Database, webinar_id: uuid.UUID) -> list[tuple[uuid.UUID, ...]]:
    async with db.acquire() as conn:
        return await attendees_for_billing(conn, webinar_id)


async def test_metering_groups_participant_rows_of_one_email(db: Database) -> None:
    order = await make_order(db, bought=1, options=0)
    wid = await webinar(db, order, 2, state="ended")
    a = await _participant(db, wid, "Ann live", email="ann@example.com", live_s=100)
    b = await _participant(db, wid, "Ann replay", email="ann@example.com", replay_s=100)
    assert await _attendees(db, wid) == [(a, b)]
    with pytest.raises(RuleViolation) as off:
        await issue_metering_invoice(db, order.id, today=D(2026, 3, 3))
    assert off.value.code == "order_not_metered"


# Payments and late charges (R-BIL-2) ------------------------------------------------------------------------------
async def test_payment_and_late_charges_across_a_half_year(db: Database) -> None:
    await set_ecb_rate(db, D(2025, 6, 11), Decimal("2.15"))
    await set_ecb_rate(db, D(2026, 6, 15), Decimal("2.40"))
    order = await make_order(db, bought=1, price=1_000_000, options=0)
    invoice = await issue_signature_invoice(db, order.id, today=D(2026, 5, 21))   # due 20 June
    assert invoice.due_on == D(2026, 6, 20)
    rates = {D(2025, 6, 11): Decimal("2.15"), D(2026, 6, 15): Decimal("2.40")}
    unpaid = invoice.charges(D(2026, 7, 10), rates)
    assert unpaid == late_interest(600_000, D(2026, 6, 20), D(2026, 7, 10), rates)
    assert (unpaid.days_late, unpaid.interest_cents, unpaid.recovery_fee_cents) == (20, 4036, 4000)
    paid = await record_payment(db, invoice.id, D(2026, 6, 30), today=D(2026, 7, 10))
    assert paid.paid_on == D(2026, 6, 30)
    assert paid.charges(D(2026, 12, 1), rates).days_late == 10
    on_time = await record_payment(db, invoice.id, D(2026, 6, 20), today=D(2026, 7, 10))
    assert on_time.charges(D(2026, 12, 1), rates).total_cents == 0
    for bad, code in ((D(2026, 5, 20), "paid_before_issue"), (D(2026, 7, 11), "paid_in_future")):
        with pytest.raises(RuleViolation) as refused:
            await record_payment(db, invoice.id, bad, today=D(2026, 7, 10))
        assert refused.value.code == code
    assert (await get_invoice(db, invoice.id)).paid_on == D(2026, 6, 20)
