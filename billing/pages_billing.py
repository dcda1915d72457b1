"""Admin billing pages (R-BIL): invoices and their payments, interest due, orders'
billing terms, fees and extras, the ECB rates table, the invoice issuer; an
invoice as an HTML page and as a PDF. Platform admins only.

Objects are named by query parameters or form fields (``id``, ``order_id``,
``invoice_id``, ``account_id``), never by path parameters."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from billing.interest import MARGIN_POINTS, RECOVERY_FEE_CENTS, delete_ecb_rate, ecb_rates, parse_rate, set_ecb_rate
from billing.invoice_pdf import invoice_pdf
from billing.invoices import (
    FEE_KINDS,
    Invoice,
    Issuer,
    get_invoice,
    get_issuer,
    issue_balance_invoice,
    issue_due_invoices,
    issue_fees_invoice,
    issue_metering_invoice,
    issue_signature_invoice,
    list_invoices,
    order_delivery,
    order_total_cents,
    record_extra,
    record_payment,
    set_billing_terms,
    set_issuer,
    today_paris,
)
from billing.money import format_cents, format_percent, parse_euros
from server.errors import NotFound, RuleViolation
from server.i18n import translate
from server.orders import Order
from server.permissions import require_admin
from server.web import AppRoute, BadRequest, add_template_dir, form_str, read_form, redirect, render, request_lang, services

add_template_dir(Path(__file__).with_name("templates"))

NOTICES = ("issued", "saved", "paid")
ISSUERS = {"deposit": issue_signature_invoice, "balance": issue_balance_invoice, "metering": issue_metering_invoice}


def _uuid(value: str | None, name: str) -> uuid.UUID:
    try:
        return uuid.UUID(value or "")
    except ValueError:
        raise BadRequest(f"{name} is not an id") from None


def _date(value: str, field: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise RuleViolation("bad_value", field=field) from None


def _euros(value: str, field: str) -> int:
    try:
        return parse_euros(value)
    except ValueError:
        raise RuleViolation("bad_value", field=field) from None


def _account_filter(request: Request) -> uuid.UUID | None:
    value = request.query_params.get("account_id")
    if not value:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound("account") from None


async def _page(request: Request, *, status_code: int = 200, error: str | None = None) -> Response:
    db = services(request).db
    lang = request_lang(request)
    account_id = _account_filter(request)
    today = today_paris()
    rates = await ecb_rates(db)
    invoices = []
    for invoice in await list_invoices(db, account_id):
        try:
            charges: Any = invoice.charges(today, rates)
        except RuleViolation as exc:
            charges = translate(lang, f"rule.{exc.code}", **exc.params)
        invoices.append((invoice, charges))
    orders = []
    for row in await db.fetch(
            """SELECT o.*, a.name AS account_name,
                      coalesce((SELECT array_agg(i.kind || ':' || i.number ORDER BY i.year, i.seq) FROM invoices i
                                WHERE i.order_id = o.id), '{}') AS invoiced
               FROM orders o JOIN accounts a ON a.id = o.account_id
               WHERE $1::uuid IS NULL OR o.account_id = $1 ORDER BY o.signed_on DESC, o.created_at DESC""", account_id):
        order = Order.from_row(row)
        orders.append({"order": order, "row": row, "total": order_total_cents(order),
                       "delivery": await order_delivery(db, order, today), "invoiced": list(row["invoiced"])})
    fees = await db.fetch(
        """SELECT f.*, a.name AS account_name, w.title FROM fees f JOIN accounts a ON a.id = f.account_id
           LEFT JOIN webinars w ON w.id = f.webinar_id
           WHERE f.invoice_id IS NULL AND ($1::uuid IS NULL OR f.account_id = $1) ORDER BY f.at""", account_id)
    accounts = await db.fetch("SELECT id, name FROM accounts ORDER BY lower(name)")
    notice = request.query_params.get("notice")
    return await render(
        request, "billing.html", status_code=status_code, invoices=invoices, orders=orders, fees=fees,
        accounts=accounts, account_id=account_id, rates=sorted(rates.items(), reverse=True),
        issuer=await get_issuer(db), today=today, error=error,
        notice=translate(lang, f"billing.notice.{notice}") if notice in NOTICES else None,
        money=lambda cents: format_cents(cents, lang), percent=lambda value: format_percent(value, lang),
        fee_kinds=FEE_KINDS, margin=MARGIN_POINTS, recovery_fee=format_cents(RECOVERY_FEE_CENTS, lang))


async def _act(request: Request, action: Any) -> Response:
    """Run ``action(form, admin)`` (it returns where to go); a rule refusal re-renders the page."""
    admin = await require_admin(request)
    form = await read_form(request)
    try:
        target: str = await action(form, admin)
    except RuleViolation as exc:
        return await _page(request, status_code=422,
                           error=translate(request_lang(request), f"rule.{exc.code}", **exc.params))
    return redirect(target)


def _back(form: FormData, notice: str) -> str:
    """Back to the billing page (filtered on the account it was showing, if any)."""
    account = form.get("back_account_id")
    try:
        suffix = f"&account_id={uuid.UUID(account)}" if isinstance(account, str) and account else ""
    except ValueError:
        suffix = ""
    return f"/admin/billing?notice={notice}{suffix}"


async def billing_home(request: Request) -> Response:
    await require_admin(request)
    return await _page(request)


async def billing_run(request: Request) -> Response:
    async def action(form: FormData, admin: Any) -> str:
        await issue_due_invoices(services(request).db, created_by=admin.id)
        return _back(form, "issued")
    return await _act(request, action)


async def billing_issue(request: Request) -> Response:
    async def action(form: FormData, admin: Any) -> str:
        kind = form_str(form, "kind", max_len=20)
        if kind not in ISSUERS:
            raise BadRequest("unknown invoice kind")
        invoice = await ISSUERS[kind](services(request).db, _uuid(form_str(form, "order_id", max_len=40), "order_id"),
                                      created_by=admin.id)
        return f"/admin/billing/invoice?id={invoice.id}"
    return await _act(request, action)


async def billing_fees_invoice(request: Request) -> Response:
    async def action(form: FormData, admin: Any) -> str:
        kind = form_str(form, "kind", max_len=20)
        if kind not in FEE_KINDS:
            raise BadRequest("unknown invoice kind")
        invoice = await issue_fees_invoice(services(request).db, _uuid(form_str(form, "account_id", max_len=40),
                                                                       "account_id"), kind, created_by=admin.id)
        return f"/admin/billing/invoice?id={invoice.id}"
    return await _act(request, action)


async def billing_extra(request: Request) -> Response:
    async def action(form: FormData, admin: Any) -> str:
        await record_extra(services(request).db, _uuid(form_str(form, "account_id", max_len=40), "account_id"),
                           form_str(form, "label", max_len=300), _euros(form_str(form, "amount", max_len=20), "amount"))
        return _back(form, "saved")
    return await _act(request, action)


async def billing_terms(request: Request) -> Response:
    async def action(form: FormData, admin: Any) -> str:
        try:
            percent = int(form_str(form, "deposit_percent", max_len=3))
        except ValueError:
            raise RuleViolation("deposit_percent_invalid") from None
        price = form_str(form, "price_per_attendee", max_len=20, required=False)
        await set_billing_terms(services(request).db, _uuid(form_str(form, "order_id", max_len=40), "order_id"),
                                deposit_percent=percent,
                                price_per_attendee_cents=_euros(price, "price_per_attendee") if price else None)
        return _back(form, "saved")
    return await _act(request, action)


async def billing_payment(request: Request) -> Response:
    async def action(form: FormData, admin: Any) -> str:
        paid = form_str(form, "paid_on", max_len=10, required=False)
        await record_payment(services(request).db, _uuid(form_str(form, "invoice_id", max_len=40), "invoice_id"),
                             _date(paid, "paid_on") if paid else None)
        return _back(form, "paid")
    return await _act(request, action)


async def billing_ecb_rate(request: Request) -> Response:
    async def action(form: FormData, admin: Any) -> str:
        await set_ecb_rate(services(request).db, _date(form_str(form, "valid_from", max_len=10), "valid_from"),
                           parse_rate(form_str(form, "rate_percent", max_len=12)), updated_by=admin.id)
        return _back(form, "saved")
    return await _act(request, action)


async def billing_ecb_rate_delete(request: Request) -> Response:
    async def action(form: FormData, admin: Any) -> str:
        await delete_ecb_rate(services(request).db, _date(form_str(form, "valid_from", max_len=10), "valid_from"))
        return _back(form, "saved")
    return await _act(request, action)


async def billing_issuer(request: Request) -> Response:
    async def action(form: FormData, admin: Any) -> str:
        await set_issuer(services(request).db, Issuer(
            form_str(form, "name", max_len=200, required=False), form_str(form, "address", max_len=1000, required=False),
            form_str(form, "legal_ids", max_len=500, required=False),
            form_str(form, "payment_details", max_len=500, required=False)))
        return _back(form, "saved")
    return await _act(request, action)


async def _requested_invoice(request: Request) -> Invoice | None:
    value = request.query_params.get("id")
    if not value:
        return None
    try:
        invoice_id = uuid.UUID(value)
    except ValueError:
        raise NotFound("invoice") from None
    return await get_invoice(services(request).db, invoice_id)


async def invoice_page(request: Request) -> Response:
    """The invoice as a printable page, in the invoice's language."""
    await require_admin(request)
    invoice = await _requested_invoice(request)
    if invoice is None:
        return redirect("/admin/billing")

    def it(key: str, **params: Any) -> str:
        return translate(invoice.lang, key, **params)

    rates = await ecb_rates(services(request).db)
    try:
        charges: Any = invoice.charges(today_paris(), rates)
    except RuleViolation as exc:
        charges = translate(request_lang(request), f"rule.{exc.code}", **exc.params)
    return await render(request, "invoice.html", invoice=invoice, it=it, charges=charges,
                        rate=format_percent(invoice.vat_rate_percent, invoice.lang),
                        money=lambda cents: format_cents(cents, request_lang(request)))


async def invoice_pdf_download(request: Request) -> Response:
    await require_admin(request)
    invoice = await _requested_invoice(request)
    if invoice is None:
        return redirect("/admin/billing")
    return Response(invoice_pdf(invoice), media_type="application/pdf",
                    headers={"content-disposition": f'attachment; filename="invoice-{invoice.number}.pdf"',
                             "cache-control": "private, no-store"})


routes = [
    AppRoute("/admin/billing", billing_home, access="admin", methods=["GET"]),
    AppRoute("/admin/billing/run", billing_run, access="admin", methods=["POST"]),
    AppRoute("/admin/billing/issue", billing_issue, access="admin", methods=["POST"]),
    AppRoute("/admin/billing/fees-invoice", billing_fees_invoice, access="admin", methods=["POST"]),
    AppRoute("/admin/billing/extras", billing_extra, access="admin", methods=["POST"]),
    AppRoute("/admin/billing/terms", billing_terms, access="admin", methods=["POST"]),
    AppRoute("/admin/billing/payments", billing_payment, access="admin", methods=["POST"]),
    AppRoute("/admin/billing/ecb-rates", billing_ecb_rate, access="admin", methods=["POST"]),
    AppRoute("/admin/billing/ecb-rates/delete", billing_ecb_rate_delete, access="admin", methods=["POST"]),
    AppRoute("/admin/billing/issuer", billing_issuer, access="admin", methods=["POST"]),
    AppRoute("/admin/billing/invoice", invoice_page, access="admin", methods=["GET"]),
    AppRoute("/admin/billing/invoice.pdf", invoice_pdf_download, access="admin", methods=["GET"]),
]
