"""Orders ("bons de commande", R-ACC-3): what an account bought and for how long.

Contract dates are calendar days in :data:`BUSINESS_TZ` (the service's terms
are French): a contract from 2026-01-01 to 2026-12-31 covers from midnight
Paris time on the first day to midnight ending the last.
Prices are euro cents excluding tax.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import asyncpg

from server.db import Database
from server.errors import NotFound, RuleViolation

BUSINESS_TZ = ZoneInfo("Europe/Paris")
ORDER_KINDS = ("advertiser", "advertiser_publishing", "sponsored_editorial")
MAX_WEBINARS_PER_ORDER = 1000


@dataclass(frozen=True)
class Order:
    id: uuid.UUID
    account_id: uuid.UUID
    reference: str
    signed_on: dt.date
    contract_start: dt.date
    contract_end: dt.date
    webinars_bought: int
    kind: str
    studio_option: bool
    price_per_webinar_cents: int
    options_price_cents: int

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> "Order":
        return cls(*(row[f] for f in cls.__dataclass_fields__))

    @property
    def window(self) -> tuple[dt.datetime, dt.datetime]:
        """The contract as an instant range [start, end) in UTC."""
        start = dt.datetime.combine(self.contract_start, dt.time(), BUSINESS_TZ)
        end = dt.datetime.combine(self.contract_end + dt.timedelta(days=1), dt.time(), BUSINESS_TZ)
        return start.astimezone(dt.UTC), end.astimezone(dt.UTC)


async def create_order(
    db: Database | asyncpg.Connection,
    account_id: uuid.UUID,
    *,
    reference: str,
    signed_on: dt.date,
    contract_start: dt.date,
    contract_end: dt.date,
    webinars_bought: int,
    kind: str,
    studio_option: bool = False,
    price_per_webinar_cents: int,
    options_price_cents: int = 0,
) -> Order:
    reference = reference.strip()
    if not 1 <= len(reference) <= 100:
        raise RuleViolation("order_reference_invalid")
    if kind not in ORDER_KINDS:
        raise RuleViolation("order_kind_invalid", kind=kind)
    if contract_end < contract_start:
        raise RuleViolation("contract_dates_inverted")
    if not 1 <= webinars_bought <= MAX_WEBINARS_PER_ORDER:
        raise RuleViolation("webinars_bought_invalid", max=MAX_WEBINARS_PER_ORDER)
    if price_per_webinar_cents < 0 or options_price_cents < 0:
        raise RuleViolation("price_negative")
    try:
        row = await db.fetchrow(
            """INSERT INTO orders (account_id, reference, signed_on, contract_start, contract_end,
                   webinars_bought, kind, studio_option, price_per_webinar_cents, options_price_cents)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING *""",
            account_id, reference, signed_on, contract_start, contract_end, webinars_bought, kind,
            studio_option, price_per_webinar_cents, options_price_cents,
        )
    except asyncpg.ForeignKeyViolationError:
        raise NotFound("account") from None
    assert row is not None
    return Order.from_row(row)


async def get_order(db: Database | asyncpg.Connection, order_id: uuid.UUID) -> Order:
    row = await db.fetchrow("SELECT * FROM orders WHERE id = $1", order_id)
    if row is None:
        raise NotFound("order")
    return Order.from_row(row)


async def account_orders(db: Database | asyncpg.Connection, account_id: uuid.UUID) -> list[Order]:
    rows = await db.fetch("SELECT * FROM orders WHERE account_id = $1 ORDER BY contract_start", account_id)
    return [Order.from_row(r) for r in rows]


async def webinars_used(db: Database | asyncpg.Connection, order_id: uuid.UUID) -> int:
    """Webinars counted against the order: every one not cancelled, and the cancelled
    ones that were consumed (cancelled too late, R-SCH-3)."""
    return int(
        await db.fetchval(
            "SELECT count(*) FROM webinars WHERE order_id = $1 AND (state <> 'cancelled' OR consumed_at IS NOT NULL)",
            order_id,
        )
    )
