"""Billing and personal-data rules as pure functions (no database): money, the 50/50
split, delivery, late interest with the half-year rule and the 40 EUR fee,
retention dates, breach checks, room-event redaction."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from billing.breaches import Breach, check_breach
from billing.interest import (
    RECOVERY_FEE_CENTS,
    due_date,
    half_year_reference,
    late_interest,
    parse_rate,
    rate_in_force,
)
from billing.invoices import Line, delivery, deposit_cents, invoice_number, totals
from billing.money import format_cents, format_percent, parse_euros, percent_of, round_cents, vat_cents
from billing.personal_data import ERASED_NAME, ERASED_TEXT, event_is_about, redact
from billing.retention import keep_until, retention_due
from server.errors import RuleViolation

D = dt.date
RATES = {D(2025, 6, 11): Decimal("2.15"), D(2026, 6, 15): Decimal("2.40"), D(2026, 12, 20): Decimal("2.00")}


# Money ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("value", "cents"), [("0.5", 1), ("1.5", 2), ("2.4999", 2), ("-0.5", -1), ("10", 10)])
def test_round_cents_half_away_from_zero(value: str, cents: int) -> None:
    assert round_cents(Decimal(value)) == cents


@pytest.mark.parametrize(("total", "percent", "deposit", "balance"), [
    (1_600_000, 50, 800_000, 800_000),
    (1001, 50, 501, 500),          # half a cent rounds up on the deposit; the two halves still add up
    (999_999, 30, 300_000, 699_999),
    (1_000_000, 0, 0, 1_000_000),
    (1_000_000, 100, 1_000_000, 0),
])
def test_deposit_and_balance_add_up_to_the_order(total: int, percent: int, deposit: int, balance: int) -> None:
    assert deposit_cents(total, percent) == deposit
    assert total - deposit_cents(total, percent) == balance


@pytest.mark.parametrize("bad", [(-1, 50), (100, 101), (100, -1)])
def test_percent_of_refuses_bad_input(bad: tuple[int, int]) -> None:
    with pytest.raises(ValueError):
        percent_of(*bad)


def test_vat_is_20_percent_rounded_once_on_the_total() -> None:
    assert vat_cents(800_000) == 160_000
    assert vat_cents(1) == 0 and vat_cents(3) == 1 and vat_cents(13) == 3   # 0.2, 0.6, 2.6 cents
    sums = totals([Line("a", 3, 333), Line("b", 1, 1)])
    assert (sums.excl_cents, sums.vat_cents, sums.incl_cents) == (1000, 200, 1200)
    assert sums.vat_rate_percent == Decimal("20")


def test_totals_refuse_bad_lines() -> None:
    with pytest.raises(ValueError, match="at least one line"):
        totals([])
    with pytest.raises(ValueError, match="quantity"):
        totals([Line("a", 0, 100)])
    with pytest.raises(ValueError, match="negative"):
        totals([Line("order", 1, 100), Line("less deposit", 1, -200)])
    deduction = totals([Line("order", 2, 500_000), Line("less deposit", 1, -500_000)])
    assert deduction.excl_cents == 500_000


@pytest.mark.parametrize(("cents", "fr", "en"), [
    (123456, "1\u00a0234,56\u00a0€", "€1,234.56"), (5, "0,05\u00a0€", "€0.05"), (-4000, "-40,00\u00a0€", "-€40.00"),
    (200_000_000, "2\u00a0000\u00a0000,00\u00a0€", "€2,000,000.00"),
])
def test_format_cents(cents: int, fr: str, en: str) -> None:
    assert format_cents(cents, "fr") == fr
    assert format_cents(cents, "en") == en


@pytest.mark.parametrize(("text", "cents"), [("1 234,50", 123450), ("2000", 200000), ("0.5", 50), ("12,3 €", 1230)])
def test_parse_euros(text: str, cents: int) -> None:
    assert parse_euros(text) == cents


@pytest.mark.parametrize("text", ["", "-3", "1.234", "abc", "1e3", "1,2,3", "999999999"])
def test_parse_euros_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_euros(text)


def test_format_percent_and_parse_rate() -> None:
    assert format_percent(Decimal("12.150"), "fr") == "12,15\u00a0%"
    assert format_percent(Decimal("20.00"), "en") == "20%"
    assert parse_rate("2,15") == Decimal("2.15") and parse_rate("-0.5 %") == Decimal("-0.5")
    for bad in ("x", "2.1234", "51", "NaN"):
        with pytest.raises(RuleViolation):
            parse_rate(bad)


def test_invoice_numbers_and_due_date() -> None:
    assert invoice_number(2026, 1) == "2026-0001"
    assert invoice_number(2026, 12345) == "2026-12345"
    assert due_date(D(2026, 1, 31)) == D(2026, 3, 2)   # 30 days, not "one month"


# Delivery (balance trigger) ---------------------------------------------------------------------------
SIGNED = D(2026, 1, 10)


@pytest.mark.parametrize(("delivered", "lost_rows", "today", "complete", "lost"), [
    (2, 0, D(2026, 6, 1), False, 0),      # one bought webinar still to deliver
    (3, 0, D(2026, 6, 1), True, 0),       # the last one went live
    (2, 1, D(2026, 6, 1), True, 1),       # the last one is marked lost
    (1, 0, D(2027, 1, 9), False, 0),      # the day before the 12 months
    (1, 0, D(2027, 1, 10), True, 2),      # 12 months after the order: the rest is lost, billed in full
    (5, 0, D(2026, 6, 1), True, 0),       # never more delivered than bought
])
def test_delivery(delivered: int, lost_rows: int, today: dt.date, complete: bool, lost: int) -> None:
    result = delivery(3, delivered, lost_rows, SIGNED, today)
    assert (result.complete, result.lost) == (complete, lost)
    assert result.delivered <= 3


# Late interest (R-BIL-2) -------------------------------------------------------------------------------
def test_half_year_reference_and_rate_in_force() -> None:
    assert half_year_reference(D(2026, 6, 30)) == D(2026, 1, 1)
    assert half_year_reference(D(2026, 7, 1)) == D(2026, 7, 1)
    assert rate_in_force(D(2026, 1, 1), RATES) == Decimal("2.15")
    assert rate_in_force(D(2026, 7, 1), RATES) == Decimal("2.40")
    assert rate_in_force(D(2027, 1, 1), RATES) == Decimal("2.00")


# (due, paid, expected interest in cents, days late); amount 1,000.00 EUR incl. tax.
INTEREST_TABLE = [
    # Paid on the due date or before: not late, no interest, no fee.
    (D(2026, 3, 31), D(2026, 3, 31), 0, 0),
    (D(2026, 3, 31), D(2026, 3, 1), 0, 0),
    # One day late: 100000 x 12.15 % x 1/365 = 33.29 cents.
    (D(2026, 3, 31), D(2026, 4, 1), 33, 1),
    # The ECB rate of 15 June does not apply before 1 July: 30 days at 12.15 % = 998.63.
    (D(2026, 5, 31), D(2026, 6, 30), 999, 30),
    # Across 30 June / 1 July: 10 days at 2.15 + 10 = 12.15 % (332.88), 10 days at 2.40 + 10 = 12.40 % (339.73).
    (D(2026, 6, 20), D(2026, 7, 10), 673, 20),
    # Across 31 December / 1 January: 6 days at 12.40 % (203.84), 5 days at 12.00 % (164.38).
    (D(2026, 12, 25), D(2027, 1, 5), 368, 11),
]


@pytest.mark.parametrize(("due", "paid", "interest", "days"), INTEREST_TABLE)
def test_late_interest_table(due: dt.date, paid: dt.date, interest: int, days: int) -> None:
    charges = late_interest(100_000, due, paid, RATES)
    assert (charges.interest_cents, charges.days_late) == (interest, days)
    assert charges.recovery_fee_cents == (RECOVERY_FEE_CENTS if days else 0)
    assert charges.total_cents == interest + charges.recovery_fee_cents
    assert sum(p.days for p in charges.periods) == days


def test_half_year_boundary_uses_each_halfs_rate_for_its_days() -> None:
    charges = late_interest(100_000, D(2026, 6, 20), D(2026, 7, 10), RATES)
    first, second = charges.periods
    assert (first.first_day, first.last_day, first.days, first.rate_percent) == (D(2026, 6, 21), D(2026, 6, 30), 10,
                                                                                 Decimal("12.15"))
    assert (second.first_day, second.last_day, second.days, second.rate_percent) == (D(2026, 7, 1), D(2026, 7, 10), 10,
                                                                                     Decimal("12.40"))
    # Neither single rate gives the right answer: 20 days at 12.15 % = 666, at 12.40 % = 679.
    assert charges.interest_cents == 673 not in (666, 679)


def test_the_flat_fee_is_40_euros_per_late_invoice() -> None:
    assert RECOVERY_FEE_CENTS == 4000
    assert late_interest(1, D(2026, 3, 31), D(2026, 4, 1), RATES).total_cents == 4000  # interest rounds to 0
    assert late_interest(12_000_000, D(2026, 3, 31), D(2026, 9, 30), RATES).recovery_fee_cents == 4000


def test_late_interest_refuses_bad_input() -> None:
    with pytest.raises(ValueError):
        late_interest(-1, D(2026, 1, 1), D(2026, 2, 1), RATES)
    with pytest.raises(ValueError):
        late_interest(10.5, D(2026, 1, 1), D(2026, 2, 1), RATES)  # type: ignore[arg-type]
    with pytest.raises(RuleViolation) as missing:
        late_interest(100, D(2025, 3, 1), D(2025, 4, 1), RATES)  # no rate in force on 1 January 2025
    assert missing.value.code == "ecb_rate_missing" and missing.value.params == {"date": "2025-01-01"}


# Retention (R-GDPR-1) ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("end", "months", "today", "due"), [
    (D(2026, 1, 31), 12, D(2027, 1, 31), False),  # the last day kept
    (D(2026, 1, 31), 12, D(2027, 2, 1), True),
    (D(2024, 2, 29), 12, D(2025, 2, 28), False),  # 29 February + 12 months = 28 February
    (D(2024, 2, 29), 12, D(2025, 3, 1), True),
    (D(2026, 5, 10), 0, D(2026, 5, 10), False),   # 0 months: erased the day after the contract's end
    (D(2026, 5, 10), 0, D(2026, 5, 11), True),
    (D(2026, 5, 10), 24, D(2027, 5, 11), False),
])
def test_retention_due(end: dt.date, months: int, today: dt.date, due: bool) -> None:
    assert retention_due(end, months, today) is due


def test_keep_until_refuses_bad_months() -> None:
    assert keep_until(D(2026, 8, 31), 6) == D(2027, 2, 28)
    with pytest.raises(ValueError):
        keep_until(D(2026, 1, 1), -1)


# Breaches (R-GDPR-3) --------------------------------------------------------------------------------------
NOW = dt.datetime(2026, 5, 1, 12, tzinfo=dt.UTC)


def test_breach_is_checked() -> None:
    ok = Breach(NOW - dt.timedelta(days=2), NOW - dt.timedelta(days=1), "  Laptop stolen  ", ("contact", "identity"), 120)
    clean = check_breach(ok, NOW)
    assert clean.description == "Laptop stolen" and clean.categories == ("identity", "contact")
    bad = [
        Breach(ok.occurred_at, ok.detected_at, " ", ok.categories, 1),
        Breach(ok.occurred_at, ok.detected_at, "x", (), 1),
        Breach(ok.occurred_at, ok.detected_at, "x", ("gossip",), 1),
        Breach(ok.occurred_at, ok.detected_at, "x", ok.categories, -1),
        Breach(ok.detected_at, ok.occurred_at, "x", ok.categories, 1),
        Breach(ok.occurred_at, NOW + dt.timedelta(days=1), "x", ok.categories, 1),
    ]
    for breach in bad:
        with pytest.raises(RuleViolation):
            check_breach(breach, NOW)


# Room events (erasure) ---------------------------------------------------------------------------------
PID = "6f1c1a44-0000-4000-8000-000000000001"
OTHER = "6f1c1a44-0000-4000-8000-000000000002"


def _about(kind: str, audience: str, data: dict[str, object]) -> bool:
    return event_is_about(kind, audience, data, participant_ids={PID}, question_ids={7}, rating_ids={9}, help_ids={11})


def test_event_is_about() -> None:
    assert _about("chat.message", "all", {"author": {"id": PID, "name": "Zoé"}, "text": "hi"})
    assert not _about("chat.message", "all", {"author": {"id": OTHER, "name": "Bob"}, "text": "hi"})
    assert _about("help.answer", f"p:{PID}", {"request_id": 1, "question": "q", "answer": "a"})
    assert _about("qa.question", "all", {"question_id": 7, "text": "q", "author": None})
    assert _about("rating.posted", "all", {"rating_id": 9, "stars": 5, "comment": "c"})
    assert _about("help.unanswered", "moderators", {"request_id": 11, "question": "q"})
    assert not _about("poll.results", "all", {"poll_id": 7, "counts": [1, 2]})


def test_redact() -> None:
    data = {"author": {"id": PID, "name": "Zoé Q.", "role": "viewer"}, "text": "call me on +33612345678"}
    assert redact(data, about=True, names={"Zoé Q."}, texts=set(), needles=[]) == {
        "author": {"id": PID, "name": ERASED_NAME, "role": "viewer"}, "text": ERASED_TEXT}
    other = {"author": {"id": OTHER, "name": "Bob"}, "text": "write to zoe@example.com"}
    assert redact(other, about=False, names={"Zoé Q."}, texts=set(), needles=["zoe@example.com"]) == {
        "author": {"id": OTHER, "name": "Bob"}, "text": ERASED_TEXT}
    untouched = {"author": {"id": OTHER, "name": "Bob"}, "text": "hello"}
    assert redact(untouched, about=False, names={"Zoé Q."}, texts={"secret"}, needles=["zoe@example.com"]) == untouched


# Text ---------------------------------------------------------------------------------------------------
def test_every_text_of_billing_and_personal_data_is_translated() -> None:
    import json
    import re
    from pathlib import Path

    from billing.breaches import CATEGORIES
    from billing.invoices import FEE_KINDS, INVOICE_KINDS
    from billing.pages_billing import ISSUERS, NOTICES
    from billing.pages_privacy import NOTICES as PRIVACY_NOTICES

    root = Path(__file__).parents[2]
    catalogs = [json.loads((root / "server" / "locales" / f"{lang}.json").read_text()) for lang in ("en", "fr")]
    modules = ["money", "interest", "invoices", "invoice_pdf", "metering", "personal_data", "retention", "breaches",
               "pages_billing", "pages_privacy"]
    keys: set[str] = set()
    for name in modules:
        source = (root / "billing" / f"{name}.py").read_text()
        keys |= {f"rule.{c}" for c in re.findall(r'RuleViolation\(\s*"(\w+)"', source)}
        keys |= set(re.findall(r'translate\([^,()]+,\s*"([a-z_]+\.[a-z_.]+)"', source))
        keys |= set(re.findall(r'\bt\(\s*"([a-z_]+\.[a-z_.]+)"', source))
    for template in ("billing.html", "invoice.html", "privacy.html"):
        keys |= set(re.findall(r'\b(?:t|it)\(\s*"([a-z_]+\.[a-z_.]+)"', (root / "billing" / "templates" / template).read_text()))
    keys |= {f"invoice.kind.{k}" for k in INVOICE_KINDS} | {f"billing.issue.{k}" for k in ISSUERS}
    keys |= {f"billing.fee_kind.{k}" for kinds in FEE_KINDS.values() for k in kinds}
    keys |= {f"invoice.line.fee_{k}" for k in FEE_KINDS["fees"]} | {f"billing.notice.{k}" for k in NOTICES}
    keys |= {f"privacy.notice.{n}" for n in PRIVACY_NOTICES}
    keys |= {f"privacy.category.{c}" for c in CATEGORIES} | {f"privacy.action.{a}" for a in ("export", "erase", "retention")}
    keys = {k for k in keys if not k.endswith(".")}   # prefixes of the families above
    assert len(keys) > 100
    for catalog in catalogs:
        assert sorted(k for k in keys if k not in catalog) == []
