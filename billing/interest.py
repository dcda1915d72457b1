"""Late-payment charges (R-BIL-2) and the ECB rates table the admin maintains.

Rule (terms of sale, art. L441-10 of the French commercial code):

- an invoice is due :data:`PAYMENT_TERM_DAYS` days after its date;
- a late payment bears interest at the ECB main refinancing rate plus
  :data:`MARGIN_POINTS` points. The ECB rate used is the one **in force on
  1 January** for days in January to June, and the one **in force on 1 July**
  for days in July to December;
- plus a flat recovery fee of :data:`RECOVERY_FEE_CENTS` (40 EUR) per late invoice.

How it is computed (:func:`late_interest`):

- interest runs for every day *after* the due date up to and including the
  payment date (paid on the due date: not late; paid the next day: one day);
- each day takes the rate of its half-year, so a period spanning 30 June /
  1 July (or 31 December / 1 January) uses each half's rate for its own days;
- simple interest (no compounding) on the amount incl. tax, on a 365-day year
  whatever the year (days / 365);
- the interest is summed exactly and rounded once, half up, to the cent.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import asyncpg

from billing.money import round_cents
from server.db import Database
from server.errors import RuleViolation

PAYMENT_TERM_DAYS = 30
"""Days between an invoice's date and its due date (R-BIL-2)."""
MARGIN_POINTS = Decimal("10")
"""Points added to the ECB rate (R-BIL-2)."""
RECOVERY_FEE_CENTS = 4000
"""Flat recovery fee per late invoice, 40 EUR (R-BIL-2)."""
DAYS_PER_YEAR = Decimal(365)
MIN_RATE = Decimal("-10")
MAX_RATE = Decimal("50")


@dataclass(frozen=True)
class InterestPeriod:
    """Days of one half-year in a late period, and the annual rate they bear."""

    first_day: dt.date
    last_day: dt.date
    days: int
    ecb_rate_percent: Decimal
    """The ECB rate in force on 1 January or 1 July of that half-year."""
    rate_percent: Decimal
    """ECB rate + :data:`MARGIN_POINTS`."""
    interest: Decimal
    """Exact interest of these days, in cents (not rounded)."""


@dataclass(frozen=True)
class LateCharges:
    days_late: int
    periods: tuple[InterestPeriod, ...]
    interest_cents: int
    recovery_fee_cents: int

    @property
    def total_cents(self) -> int:
        return self.interest_cents + self.recovery_fee_cents


def half_year_reference(day: dt.date) -> dt.date:
    """1 January of ``day``'s year for January to June, 1 July for July to December."""
    return dt.date(day.year, 1 if day.month <= 6 else 7, 1)


def rate_in_force(on: dt.date, ecb_rates: Mapping[dt.date, Decimal]) -> Decimal:
    """The ECB rate (percent) in force on ``on``: the latest one valid from that day or before.
    Raises :class:`RuleViolation` ``ecb_rate_missing`` when no rate was recorded that early."""
    known = [d for d in ecb_rates if d <= on]
    if not known:
        raise RuleViolation("ecb_rate_missing", date=on.isoformat())
    return ecb_rates[max(known)]


def _half_year_end(day: dt.date) -> dt.date:
    return dt.date(day.year, 6, 30) if day.month <= 6 else dt.date(day.year, 12, 31)


def late_interest(amount_cents: int, due_date: dt.date, paid_date: dt.date,
                  ecb_rates: Mapping[dt.date, Decimal]) -> LateCharges:
    """Late interest and recovery fee on ``amount_cents`` (the invoice total incl. tax, cents)
    due on ``due_date`` and paid on ``paid_date`` (or, for an unpaid invoice, the day the
    charges are computed for). ``ecb_rates`` maps a valid-from date to the ECB rate in percent.

    Not late (paid on or before the due date): no interest and no fee.
    Raises :class:`ValueError` for a negative or non-integer amount and
    :class:`RuleViolation` ``ecb_rate_missing`` when a half-year's rate is unknown.
    """
    if not isinstance(amount_cents, int) or isinstance(amount_cents, bool) or amount_cents < 0:
        raise ValueError(f"amount_cents must be a non-negative integer, not {amount_cents!r}")
    if not isinstance(due_date, dt.date) or not isinstance(paid_date, dt.date):
        raise ValueError("due_date and paid_date must be dates")
    days_late = (paid_date - due_date).days
    if days_late <= 0:
        return LateCharges(0, (), 0, 0)
    periods: list[InterestPeriod] = []
    first = due_date + dt.timedelta(days=1)
    while first <= paid_date:
        last = min(_half_year_end(first), paid_date)
        days = (last - first).days + 1
        ecb = rate_in_force(half_year_reference(first), ecb_rates)
        rate = ecb + MARGIN_POINTS
        interest = Decimal(amount_cents) * rate / 100 * days / DAYS_PER_YEAR
        periods.append(InterestPeriod(first, last, days, ecb, rate, interest))
        first = last + dt.timedelta(days=1)
    total = sum((p.interest for p in periods), Decimal(0))
    return LateCharges(days_late, tuple(periods), max(0, round_cents(total)), RECOVERY_FEE_CENTS)


def due_date(issued_on: dt.date) -> dt.date:
    """The due date of an invoice issued on ``issued_on`` (R-BIL-2)."""
    return issued_on + dt.timedelta(days=PAYMENT_TERM_DAYS)


# The table -------------------------------------------------------------------------
def parse_rate(text: str) -> Decimal:
    """A rate typed by the admin ("2,15", "2.15", "-0.5") as a Decimal with at most 3 decimals."""
    try:
        rate = Decimal(text.strip().replace(",", ".").replace("%", "").strip())
    except InvalidOperation:
        raise RuleViolation("bad_value", field="rate_percent") from None
    if not rate.is_finite() or rate.as_tuple().exponent < -3 or not MIN_RATE <= rate <= MAX_RATE:  # type: ignore[operator]
        raise RuleViolation("bad_value", field="rate_percent")
    return rate


async def ecb_rates(db: Database | asyncpg.Connection) -> dict[dt.date, Decimal]:
    """Every recorded rate, by valid-from date."""
    return {r["valid_from"]: r["rate_percent"] for r in await db.fetch("SELECT valid_from, rate_percent FROM ecb_rates")}


async def set_ecb_rate(db: Database | asyncpg.Connection, valid_from: dt.date, rate_percent: Decimal,
                       *, updated_by: uuid.UUID | None = None) -> None:
    """Record (or correct) the ECB rate valid from ``valid_from``."""
    if not MIN_RATE <= rate_percent <= MAX_RATE:
        raise RuleViolation("bad_value", field="rate_percent")
    await db.execute(
        """INSERT INTO ecb_rates (valid_from, rate_percent, updated_by) VALUES ($1, $2, $3)
           ON CONFLICT (valid_from) DO UPDATE SET rate_percent = $2, updated_by = $3, updated_at = now()""",
        valid_from, rate_percent, updated_by)


async def delete_ecb_rate(db: Database | asyncpg.Connection, valid_from: dt.date) -> bool:
    return (await db.execute("DELETE FROM ecb_rates WHERE valid_from = $1", valid_from)) == "DELETE 1"
