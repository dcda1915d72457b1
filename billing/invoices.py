"""Invoices (R-BIL-1..4): what is invoiced when, numbering, totals, payments.

What is invoiced, each on its own invoice:

- **deposit** (``issue_signature_invoice``): ``orders.deposit_percent`` (50 %
  unless the order says otherwise) of the order's total, once the order is
  signed (R-BIL-1);
- **balance** (``issue_balance_invoice``): the order's total less the
  deposit, once the order's last webinar is delivered (R-BIL-1). A bought
  webinar counts as delivered when it went live (states live, ended, replay,
  removed), was consumed by a late change (R-SCH-3) or is lost (R-SCH-5:
  12 months after the signature every webinar not delivered is lost and
  billed in full) — the definitions of :mod:`server.scheduling`;
- **fees**: reschedule/cancellation fees of studio webinars (R-SCH-4,
  table ``fees``); **extras**: services outside the order (R-BIL-3, ``fees``
  of kind ``extra``) — never on an order's invoice;
- **metering** (orders with ``price_per_attendee_cents``): attendees not
  billed yet, one per person per webinar whether live or replay (R-BIL-4,
  :func:`billing.metering.attendees_for_billing`).

The order's total excl. tax is ``webinars_bought × price_per_webinar_cents
+ options_price_cents`` (the options price is for the whole order).

Numbers are ``YYYY-NNNN`` (year of the invoice date), sequential without gaps
within a year: the year's counter row is locked (``FOR UPDATE``) and bumped in
the invoice's own transaction, so a rolled-back invoice gives its number back
and two invoices never share one. Invoice dates never go backwards within a
year's numbering. Amounts are integer cents; VAT is
:data:`billing.money.VAT_RATE_PERCENT` on the total excl. tax, rounded once.
An issued invoice is never changed; only its payment date is recorded.

:func:`issue_due_invoices` issues everything that is due (daily job).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

import asyncpg

from billing.interest import LateCharges, due_date, late_interest
from billing.metering import attendees_for_billing
from billing.money import VAT_RATE_PERCENT, format_cents, percent_of, vat_cents
from server.db import Database
from server.errors import NotFound, RuleViolation
from server.i18n import LANGUAGES, translate
from server.orders import BUSINESS_TZ, Order
from server.scheduling import DELIVERED_STATES, LOST_AFTER_MONTHS, add_months

INVOICE_KINDS = ("deposit", "balance", "metering", "fees", "extras")
METERED_STATES = ("ended", "replay", "removed")
"""Webinars whose attendees are metered: the live is over (replay viewers keep coming)."""
FEE_KINDS = {"fees": ("reschedule", "cancellation"), "extras": ("extra",)}
"""Which ``fees`` rows go on a fees invoice and on an extras invoice."""
MAX_LABEL = 300


def today_paris(now: dt.datetime | None = None) -> dt.date:
    """The calendar day in Europe/Paris (invoice dates are French calendar days)."""
    return (now or dt.datetime.now(dt.UTC)).astimezone(BUSINESS_TZ).date()


# Pure rules ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Line:
    description: str
    quantity: int
    unit_price_cents: int
    """Excl. tax; negative on a deduction line."""

    @property
    def amount_cents(self) -> int:
        return self.quantity * self.unit_price_cents


@dataclass(frozen=True)
class Totals:
    excl_cents: int
    vat_rate_percent: Decimal
    vat_cents: int
    incl_cents: int


def totals(lines: Sequence[Line], vat_rate_percent: Decimal = VAT_RATE_PERCENT) -> Totals:
    """Total excl. tax (sum of the lines), VAT on that total, total incl. tax. Raises
    :class:`ValueError` for no line, a quantity below 1 or a negative total."""
    if not lines:
        raise ValueError("an invoice needs at least one line")
    for line in lines:
        if not isinstance(line.quantity, int) or line.quantity < 1:
            raise ValueError(f"quantity must be a positive integer: {line}")
        if not line.description.strip():
            raise ValueError("a line needs a description")
    excl = sum(line.amount_cents for line in lines)
    if excl < 0:
        raise ValueError(f"an invoice total cannot be negative ({excl} cents)")
    vat = vat_cents(excl, vat_rate_percent)
    return Totals(excl, vat_rate_percent, vat, excl + vat)


def order_total_cents(order: Order) -> int:
    """The order's total excl. tax: webinars bought × price per webinar + options (cents)."""
    return order.webinars_bought * order.price_per_webinar_cents + order.options_price_cents


def deposit_cents(order_total: int, deposit_percent: int) -> int:
    """The share invoiced at signature (R-BIL-1), half-up to the cent."""
    return percent_of(order_total, deposit_percent)


@dataclass(frozen=True)
class Delivery:
    """How much of an order was delivered (R-BIL-1 balance trigger)."""

    bought: int
    delivered: int
    """Webinars that went live or were consumed (R-SCH-3)."""
    lost: int
    """Bought webinars lost (R-SCH-5): billed in full as if delivered."""

    @property
    def complete(self) -> bool:
        return self.delivered + self.lost >= self.bought


def delivery(bought: int, delivered: int, lost_rows: int, signed_on: dt.date, today: dt.date) -> Delivery:
    """Delivery of an order. ``lost_rows``: its webinars marked lost. From
    :data:`~server.scheduling.LOST_AFTER_MONTHS` months after the signature, every
    bought webinar not delivered is lost (R-SCH-5), whether or not it was ever scheduled."""
    delivered = min(delivered, bought)
    if today >= add_months(signed_on, LOST_AFTER_MONTHS):
        lost = bought - delivered
    else:
        lost = min(lost_rows, bought - delivered)
    return Delivery(bought, delivered, lost)


def invoice_number(year: int, seq: int) -> str:
    """``2026-0001``: the year, then the sequence number within the year (4 digits at least)."""
    return f"{year}-{seq:04d}"


# Records ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Invoice:
    id: uuid.UUID
    number: str
    account_id: uuid.UUID
    order_id: uuid.UUID | None
    kind: str
    lang: str
    issued_on: dt.date
    due_on: dt.date
    buyer_name: str
    order_reference: str
    issuer_name: str
    issuer_address: str
    issuer_legal_ids: str
    issuer_payment_details: str
    total_excl_cents: int
    vat_rate_percent: Decimal
    vat_cents: int
    total_incl_cents: int
    paid_on: dt.date | None
    lines: tuple[Line, ...]

    def charges(self, today: dt.date, ecb_rates: dict[dt.date, Decimal]) -> LateCharges:
        """Late charges (R-BIL-2): up to the payment date, or up to ``today`` while unpaid."""
        return late_interest(self.total_incl_cents, self.due_on, self.paid_on or today, ecb_rates)

    def money(self, cents: int) -> str:
        return format_cents(cents, self.lang)


def _invoice(row: asyncpg.Record, lines: Sequence[asyncpg.Record]) -> Invoice:
    values = {f: row[f] for f in Invoice.__dataclass_fields__ if f != "lines"}
    values["lines"] = tuple(Line(r["description"], r["quantity"], r["unit_price_cents"]) for r in lines)
    return Invoice(**values)


async def _load(conn: asyncpg.Connection | Database, invoice_ids: Sequence[uuid.UUID]) -> list[Invoice]:
    rows = await conn.fetch("SELECT * FROM invoices WHERE id = ANY($1::uuid[]) ORDER BY year, seq", list(invoice_ids))
    lines = await conn.fetch("SELECT * FROM invoice_lines WHERE invoice_id = ANY($1::uuid[]) ORDER BY position",
                             list(invoice_ids))
    by_invoice: dict[uuid.UUID, list[asyncpg.Record]] = {}
    for line in lines:
        by_invoice.setdefault(line["invoice_id"], []).append(line)
    return [_invoice(r, by_invoice.get(r["id"], [])) for r in rows]


async def get_invoice(db: Database | asyncpg.Connection, invoice_id: uuid.UUID) -> Invoice:
    found = await _load(db, [invoice_id])
    if not found:
        raise NotFound("invoice")
    return found[0]


async def list_invoices(db: Database | asyncpg.Connection, account_id: uuid.UUID | None = None) -> list[Invoice]:
    """Every invoice (of one account), newest number first."""
    ids = [r["id"] for r in await db.fetch(
        "SELECT id FROM invoices WHERE $1::uuid IS NULL OR account_id = $1", account_id)]
    return list(reversed(await _load(db, ids)))


# Issuing -----------------------------------------------------------------------------------
async def _allocate_number(conn: asyncpg.Connection, issued_on: dt.date) -> tuple[int, int]:
    """Next (year, seq) for an invoice dated ``issued_on``, under the year's counter row lock."""
    year = issued_on.year
    await conn.execute(
        "INSERT INTO invoice_counters (year, last_seq, last_issued_on) VALUES ($1, 0, $2) ON CONFLICT (year) DO NOTHING",
        year, dt.date(year, 1, 1))
    counter = await conn.fetchrow("SELECT last_seq, last_issued_on FROM invoice_counters WHERE year = $1 FOR UPDATE", year)
    assert counter is not None
    if issued_on < counter["last_issued_on"]:
        raise RuleViolation("invoice_date_backwards", date=issued_on.isoformat(),
                            last=counter["last_issued_on"].isoformat())
    seq = counter["last_seq"] + 1
    await conn.execute("UPDATE invoice_counters SET last_seq = $2, last_issued_on = $3 WHERE year = $1",
                       year, seq, issued_on)
    return year, seq


async def _insert(conn: asyncpg.Connection, *, account_id: uuid.UUID, order: Order | None, kind: str,
                  issued_on: dt.date, lines: Sequence[Line], lang: str, created_by: uuid.UUID | None) -> uuid.UUID:
    """Number and store an invoice in the caller's transaction; returns its id."""
    if kind not in INVOICE_KINDS:
        raise ValueError(f"unknown invoice kind {kind!r}")
    if lang not in LANGUAGES:
        raise ValueError(f"unknown language {lang!r}")
    sums = totals(lines)
    buyer = await conn.fetchval("SELECT name FROM accounts WHERE id = $1", account_id)
    if buyer is None:
        raise NotFound("account")
    issuer = await conn.fetchrow("SELECT * FROM invoice_issuer WHERE id")
    assert issuer is not None
    year, seq = await _allocate_number(conn, issued_on)
    try:
        invoice_id: uuid.UUID = await conn.fetchval(
            """INSERT INTO invoices (number, year, seq, account_id, order_id, kind, lang, issued_on, due_on, buyer_name,
                   order_reference, issuer_name, issuer_address, issuer_legal_ids, issuer_payment_details,
                   total_excl_cents, vat_rate_percent, vat_cents, total_incl_cents, created_by)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)
               RETURNING id""",
            invoice_number(year, seq), year, seq, account_id, order.id if order else None, kind, lang, issued_on,
            due_date(issued_on), buyer, order.reference if order else "", issuer["name"], issuer["address"],
            issuer["legal_ids"], issuer["payment_details"], sums.excl_cents, sums.vat_rate_percent, sums.vat_cents,
            sums.incl_cents, created_by)
    except asyncpg.UniqueViolationError:
        raise RuleViolation("invoice_exists", kind=kind) from None
    await conn.executemany(
        "INSERT INTO invoice_lines (invoice_id, position, description, quantity, unit_price_cents, amount_cents) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
        [(invoice_id, i, line.description[:500], line.quantity, line.unit_price_cents, line.amount_cents)
         for i, line in enumerate(lines, 1)])
    return invoice_id


async def _lock_order(conn: asyncpg.Connection, order_id: uuid.UUID) -> Order:
    row = await conn.fetchrow("SELECT * FROM orders WHERE id = $1 FOR UPDATE", order_id)
    if row is None:
        raise NotFound("order")
    return Order.from_row(row)


async def _existing(conn: asyncpg.Connection, order_id: uuid.UUID, kind: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM invoices WHERE order_id = $1 AND kind = $2", order_id, kind)


async def issue_signature_invoice(db: Database, order_id: uuid.UUID, *, today: dt.date | None = None,
                                  lang: str = "fr", created_by: uuid.UUID | None = None) -> Invoice:
    """The deposit invoice of a signed order: ``deposit_percent`` % of its total (R-BIL-1).
    Refused (:class:`RuleViolation`) before the signature date, when the order has no deposit
    (0 %) or a zero total, or when its deposit or balance was already invoiced."""
    today = today or today_paris()
    async with db.acquire() as conn, conn.transaction():
        order = await _lock_order(conn, order_id)
        percent = await conn.fetchval("SELECT deposit_percent FROM orders WHERE id = $1", order_id)
        if order.signed_on > today:
            raise RuleViolation("order_not_signed", date=order.signed_on.isoformat())
        if await _existing(conn, order_id, "deposit") is not None:
            raise RuleViolation("invoice_exists", kind="deposit")
        if await _existing(conn, order_id, "balance") is not None:
            raise RuleViolation("invoice_exists", kind="balance")
        total = order_total_cents(order)
        amount = deposit_cents(total, percent)
        if percent == 0 or amount == 0:
            raise RuleViolation("nothing_to_invoice")
        line = Line(translate(lang, "invoice.line.deposit", percent=percent, reference=order.reference,
                              total=format_cents(total, lang)), 1, amount)
        invoice_id = await _insert(conn, account_id=order.account_id, order=order, kind="deposit", issued_on=today,
                                   lines=[line], lang=lang, created_by=created_by)
    return await get_invoice(db, invoice_id)


async def order_delivery(conn: asyncpg.Connection | Database, order: Order, today: dt.date) -> Delivery:
    row = await conn.fetchrow(
        """SELECT count(*) FILTER (WHERE state = ANY($2::text[]) OR consumed_at IS NOT NULL) AS delivered,
                  count(*) FILTER (WHERE lost_at IS NOT NULL AND NOT (state = ANY($2::text[]) OR consumed_at IS NOT NULL))
                      AS lost
           FROM webinars WHERE order_id = $1""", order.id, list(DELIVERED_STATES))
    assert row is not None
    return delivery(order.webinars_bought, row["delivered"], row["lost"], order.signed_on, today)


async def issue_balance_invoice(db: Database, order_id: uuid.UUID, *, today: dt.date | None = None,
                                lang: str = "fr", created_by: uuid.UUID | None = None) -> Invoice:
    """The balance invoice once the order's last webinar is delivered (or lost): the order's
    lines less the deposit invoiced. Refused while webinars remain to be delivered, when
    nothing remains to invoice, or when the balance was already invoiced."""
    today = today or today_paris()
    async with db.acquire() as conn, conn.transaction():
        order = await _lock_order(conn, order_id)
        if await _existing(conn, order_id, "balance") is not None:
            raise RuleViolation("invoice_exists", kind="balance")
        done = await order_delivery(conn, order, today)
        if not done.complete:
            raise RuleViolation("order_not_delivered", delivered=done.delivered + done.lost, bought=done.bought)
        lines = [Line(translate(lang, "invoice.line.webinars", reference=order.reference, kind=translate(
            lang, f"order.kind.{order.kind}")), order.webinars_bought, order.price_per_webinar_cents)]
        if order.options_price_cents:
            lines.append(Line(translate(lang, "invoice.line.options", reference=order.reference), 1,
                              order.options_price_cents))
        if done.lost:
            lines.append(Line(translate(lang, "invoice.line.lost_note", lost=done.lost), 1, 0))
        deposit = await _existing(conn, order_id, "deposit")
        if deposit is not None:
            lines.append(Line(translate(lang, "invoice.line.less_deposit", number=deposit["number"],
                                        date=deposit["issued_on"].isoformat()), 1, -deposit["total_excl_cents"]))
        if sum(line.amount_cents for line in lines) <= 0:
            raise RuleViolation("nothing_to_invoice")
        invoice_id = await _insert(conn, account_id=order.account_id, order=order, kind="balance", issued_on=today,
                                   lines=lines, lang=lang, created_by=created_by)
    return await get_invoice(db, invoice_id)


async def issue_metering_invoice(db: Database, order_id: uuid.UUID, *, today: dt.date | None = None,
                                 lang: str = "fr", created_by: uuid.UUID | None = None) -> Invoice:
    """Attendance-based invoice (R-BIL-4): for each webinar of the order whose live is over,
    the attendees not billed before × the order's price per attendee. A person who attended
    live and in replay counts once, and is never billed twice for one webinar."""
    today = today or today_paris()
    async with db.acquire() as conn, conn.transaction():
        order = await _lock_order(conn, order_id)
        price = await conn.fetchval("SELECT price_per_attendee_cents FROM orders WHERE id = $1", order_id)
        if price is None:
            raise RuleViolation("order_not_metered")
        lines: list[Line] = []
        billed: list[tuple[uuid.UUID, uuid.UUID]] = []
        webinars = await conn.fetch(
            "SELECT id, title, starts_at FROM webinars WHERE order_id = $1 AND state = ANY($2::text[]) ORDER BY starts_at",
            order_id, list(METERED_STATES))
        for w in webinars:
            already = {r["participant_id"] for r in await conn.fetch(
                "SELECT participant_id FROM metered_attendees WHERE webinar_id = $1", w["id"])}
            new = [person for person in await attendees_for_billing(conn, w["id"]) if not already.intersection(person)]
            if not new:
                continue
            when = w["starts_at"].astimezone(BUSINESS_TZ).date().isoformat()
            lines.append(Line(translate(lang, "invoice.line.attendees", title=w["title"], date=when), len(new), price))
            billed.extend((w["id"], pid) for person in new for pid in person)
        if not lines or sum(line.amount_cents for line in lines) == 0:
            raise RuleViolation("nothing_to_invoice")
        invoice_id = await _insert(conn, account_id=order.account_id, order=order, kind="metering", issued_on=today,
                                   lines=lines, lang=lang, created_by=created_by)
        await conn.executemany("INSERT INTO metered_attendees (webinar_id, participant_id, invoice_id) VALUES ($1, $2, $3)",
                               [(wid, pid, invoice_id) for wid, pid in billed])
    return await get_invoice(db, invoice_id)


async def record_extra(db: Database | asyncpg.Connection, account_id: uuid.UUID, label: str, amount_cents: int,
                       *, order_id: uuid.UUID | None = None, now: dt.datetime | None = None) -> int:
    """Record an extra service outside the order (R-BIL-3), invoiced on its own extras invoice."""
    label = " ".join(label.split())
    if not 1 <= len(label) <= MAX_LABEL:
        raise RuleViolation("extra_label_invalid", max=MAX_LABEL)
    if not isinstance(amount_cents, int) or amount_cents <= 0:
        raise RuleViolation("price_negative")
    if await db.fetchval("SELECT 1 FROM accounts WHERE id = $1", account_id) is None:
        raise NotFound("account")
    fee_id: int = await db.fetchval(
        "INSERT INTO fees (account_id, order_id, kind, amount_cents, label, at) VALUES ($1, $2, 'extra', $3, $4, $5) "
        "RETURNING id", account_id, order_id, amount_cents, label, now or dt.datetime.now(dt.UTC))
    return fee_id


async def issue_fees_invoice(db: Database, account_id: uuid.UUID, kind: str, *, today: dt.date | None = None,
                             lang: str = "fr", created_by: uuid.UUID | None = None) -> Invoice:
    """One invoice for the account's fees not invoiced yet: ``kind`` ``fees`` (reschedule and
    cancellation fees, R-SCH-4) or ``extras`` (services outside the order, R-BIL-3)."""
    if kind not in FEE_KINDS:
        raise ValueError(f"not a fee invoice kind: {kind!r}")
    today = today or today_paris()
    async with db.acquire() as conn, conn.transaction():
        fees = await conn.fetch(
            """SELECT f.*, w.title FROM fees f LEFT JOIN webinars w ON w.id = f.webinar_id
               WHERE f.account_id = $1 AND f.kind = ANY($2::text[]) AND f.invoice_id IS NULL AND f.amount_cents > 0
               ORDER BY f.at, f.id FOR UPDATE OF f""", account_id, list(FEE_KINDS[kind]))
        if not fees:
            raise RuleViolation("nothing_to_invoice")
        lines = []
        for fee in fees:
            if fee["kind"] == "extra":
                text = fee["label"]
            else:
                text = translate(lang, f"invoice.line.fee_{fee['kind']}", title=fee["title"] or "—",
                                 date=fee["at"].astimezone(BUSINESS_TZ).date().isoformat())
            lines.append(Line(text, 1, fee["amount_cents"]))
        invoice_id = await _insert(conn, account_id=account_id, order=None, kind=kind, issued_on=today, lines=lines,
                                   lang=lang, created_by=created_by)
        await conn.execute("UPDATE fees SET invoice_id = $2, invoiced_at = now() WHERE id = ANY($1::bigint[])",
                           [f["id"] for f in fees], invoice_id)
    return await get_invoice(db, invoice_id)


async def record_payment(db: Database | asyncpg.Connection, invoice_id: uuid.UUID, paid_on: dt.date | None,
                         *, today: dt.date | None = None) -> Invoice:
    """Record the day an invoice was paid (``None`` clears it). Not before its date, not in the future."""
    row = await db.fetchrow("SELECT issued_on FROM invoices WHERE id = $1", invoice_id)
    if row is None:
        raise NotFound("invoice")
    if paid_on is not None:
        if paid_on < row["issued_on"]:
            raise RuleViolation("paid_before_issue", date=row["issued_on"].isoformat())
        if paid_on > (today or today_paris()):
            raise RuleViolation("paid_in_future")
    await db.execute("UPDATE invoices SET paid_on = $2 WHERE id = $1", invoice_id, paid_on)
    return await get_invoice(db, invoice_id)


async def set_billing_terms(db: Database | asyncpg.Connection, order_id: uuid.UUID, *, deposit_percent: int,
                            price_per_attendee_cents: int | None) -> None:
    """Change an order's deposit share (before its deposit or balance is invoiced) and its
    attendance metering price (``None``: not metered; applies to the next metering invoices)."""
    if not 0 <= deposit_percent <= 100:
        raise RuleViolation("deposit_percent_invalid")
    if price_per_attendee_cents is not None and price_per_attendee_cents <= 0:
        raise RuleViolation("price_negative")
    row = await db.fetchrow("SELECT deposit_percent FROM orders WHERE id = $1", order_id)
    if row is None:
        raise NotFound("order")
    if row["deposit_percent"] != deposit_percent and await db.fetchval(
            "SELECT 1 FROM invoices WHERE order_id = $1 AND kind IN ('deposit', 'balance')", order_id):
        raise RuleViolation("deposit_already_invoiced")
    await db.execute("UPDATE orders SET deposit_percent = $2, price_per_attendee_cents = $3 WHERE id = $1",
                     order_id, deposit_percent, price_per_attendee_cents)


# The daily sweep ----------------------------------------------------------------------------
async def issue_due_invoices(db: Database, today: dt.date | None = None, *, lang: str = "fr",
                             created_by: uuid.UUID | None = None) -> list[Invoice]:
    """Issue every invoice that is due today, each in its own transaction (idempotent):
    deposits of signed orders, balances of delivered orders, fees and extras not invoiced,
    and once a calendar month the attendance metering of metered orders."""
    today = today or today_paris()
    issued: list[Invoice] = []

    async def attempt(issue: object, *args: object) -> None:
        try:
            issued.append(await issue(db, *args, today=today, lang=lang, created_by=created_by))  # type: ignore[operator]
        except RuleViolation as exc:
            if exc.code not in ("nothing_to_invoice", "invoice_exists", "order_not_delivered"):
                raise

    for row in await db.fetch(
            """SELECT o.id FROM orders o WHERE o.signed_on <= $1 AND o.deposit_percent > 0
                 AND NOT EXISTS (SELECT 1 FROM invoices i WHERE i.order_id = o.id AND i.kind IN ('deposit', 'balance'))
               ORDER BY o.signed_on, o.created_at""", today):
        await attempt(issue_signature_invoice, row["id"])
    for row in await db.fetch(
            """SELECT o.id FROM orders o WHERE o.signed_on <= $1
                 AND NOT EXISTS (SELECT 1 FROM invoices i WHERE i.order_id = o.id AND i.kind = 'balance')
               ORDER BY o.signed_on, o.created_at""", today):
        await attempt(issue_balance_invoice, row["id"])
    for row in await db.fetch(
            """SELECT DISTINCT account_id, kind FROM fees WHERE invoice_id IS NULL AND amount_cents > 0
               ORDER BY account_id, kind"""):
        await attempt(issue_fees_invoice, row["account_id"], "extras" if row["kind"] == "extra" else "fees")
    month_start = today.replace(day=1)
    for row in await db.fetch(
            """SELECT o.id FROM orders o WHERE o.price_per_attendee_cents IS NOT NULL
                 AND NOT EXISTS (SELECT 1 FROM invoices i WHERE i.order_id = o.id AND i.kind = 'metering'
                                 AND i.issued_on >= $1)
               ORDER BY o.signed_on, o.created_at""", month_start):
        await attempt(issue_metering_invoice, row["id"])
    return issued


# Issuer ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Issuer:
    name: str
    address: str
    legal_ids: str
    payment_details: str


ISSUER_LIMITS = {"name": 200, "address": 1000, "legal_ids": 500, "payment_details": 500}


async def get_issuer(db: Database | asyncpg.Connection) -> Issuer:
    row = await db.fetchrow("SELECT name, address, legal_ids, payment_details FROM invoice_issuer WHERE id")
    assert row is not None
    return Issuer(*row.values())


async def set_issuer(db: Database | asyncpg.Connection, issuer: Issuer) -> None:
    """Who issues the invoices; copied onto every invoice issued from now on."""
    for field, limit in ISSUER_LIMITS.items():
        if len(getattr(issuer, field)) > limit:
            raise RuleViolation("bad_value", field=field)
    await db.execute(
        "UPDATE invoice_issuer SET name = $1, address = $2, legal_ids = $3, payment_details = $4, updated_at = now() WHERE id",
        issuer.name, issuer.address, issuer.legal_ids, issuer.payment_details)
