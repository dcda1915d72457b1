"""An invoice as a PDF (A4), drawn with fpdf2.

fpdf2 is pure Python (no system library, unlike WeasyPrint's pango/cairo) and
its built-in Helvetica covers French text and the euro sign through the
Windows-1252 encoding; a character outside it (rare in a company name) is
replaced by its unaccented form, or "?".
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import Any

from fpdf import FPDF

from billing.invoices import Invoice
from billing.money import format_percent
from server.i18n import translate

ENCODING = "windows-1252"


def _safe(text: str) -> str:
    """``text`` restricted to what the PDF's built-in font can show."""
    out = []
    for ch in text:
        try:
            ch.encode(ENCODING)
            out.append(ch)
        except UnicodeEncodeError:
            plain = unicodedata.normalize("NFKD", ch).encode(ENCODING, "ignore").decode(ENCODING)
            out.append(plain or "?")
    return "".join(out)


class _InvoicePDF(FPDF):
    """A4 pages with the invoice number and the page count at the bottom."""

    footer_text = ""

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("helvetica", "", 8)
        self.cell(0, 5, f"{self.footer_text} - {self.page_no()}/{{nb}}", align="R")


def invoice_pdf(invoice: Invoice) -> bytes:
    """The invoice as PDF bytes, in the invoice's own language."""
    lang = invoice.lang

    def t(key: str, **params: Any) -> str:
        return _safe(translate(lang, key, **params))

    money: Callable[[int], str] = lambda cents: _safe(invoice.money(cents))  # noqa: E731
    pdf = _InvoicePDF(format="A4", unit="mm")
    pdf.footer_text = t("invoice.heading", number=invoice.number)
    pdf.core_fonts_encoding = ENCODING
    pdf.set_title(_safe(f"{translate(lang, 'invoice.title')} {invoice.number}"))
    pdf.set_author(_safe(invoice.issuer_name or "webinar"))
    pdf.set_creator("webinar")
    pdf.set_auto_page_break(auto=True, margin=18)
    pdf.add_page()
    width = pdf.w - pdf.l_margin - pdf.r_margin

    pdf.set_font("helvetica", "B", 12)
    pdf.multi_cell(width / 2, 6, _safe(invoice.issuer_name or "—"), align="L", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("helvetica", "", 9)
    for block in (invoice.issuer_address, invoice.issuer_legal_ids):
        if block:
            pdf.multi_cell(width / 2, 4.5, _safe(block), align="L", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(6)

    pdf.set_font("helvetica", "B", 18)
    pdf.cell(width, 10, t("invoice.heading", number=invoice.number), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("helvetica", "", 10)
    facts = [
        (t("invoice.issued_on"), invoice.issued_on.isoformat()),
        (t("invoice.due_on"), invoice.due_on.isoformat()),
        (t("invoice.kind"), t(f"invoice.kind.{invoice.kind}")),
    ]
    if invoice.order_reference:
        facts.append((t("invoice.order"), _safe(invoice.order_reference)))
    for label, value in facts:
        pdf.cell(40, 6, label)
        pdf.cell(width - 40, 6, value, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    pdf.set_font("helvetica", "B", 10)
    pdf.cell(40, 6, t("invoice.buyer"))
    pdf.set_font("helvetica", "", 10)
    pdf.multi_cell(width - 40, 6, _safe(invoice.buyer_name), align="L", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(5)

    cols = (width - 75, 20, 27.5, 27.5)
    pdf.set_font("helvetica", "B", 9)
    pdf.set_fill_color(235, 238, 242)
    for text, w, align in zip((t("invoice.description"), t("invoice.quantity"), t("invoice.unit_price"),
                               t("invoice.amount")), cols, ("L", "R", "R", "R"), strict=True):
        pdf.cell(w, 7, text, border="B", align=align, fill=True)
    pdf.ln()
    pdf.set_font("helvetica", "", 9)
    for line in invoice.lines:
        description = _safe(line.description)
        wrapped = pdf.multi_cell(cols[0], 5, description, dry_run=True, output="LINES")
        assert isinstance(wrapped, list)
        height = 5 * len(wrapped)
        if pdf.get_y() + height > pdf.page_break_trigger:
            pdf.add_page()
        y = pdf.get_y()
        pdf.multi_cell(cols[0], 5, description, align="L", new_x="RIGHT", new_y="TOP")
        x = pdf.l_margin + cols[0]
        for text, w in zip((str(line.quantity), money(line.unit_price_cents), money(line.amount_cents)), cols[1:], strict=True):
            pdf.set_xy(x, y)
            pdf.cell(w, 5, text, align="R")
            x += w
        pdf.set_xy(pdf.l_margin, y + height + 1)
        pdf.set_draw_color(208, 215, 222)
        pdf.line(pdf.l_margin, pdf.get_y(), pdf.l_margin + width, pdf.get_y())
        pdf.ln(1.5)
    pdf.ln(3)

    rate = _safe(format_percent(invoice.vat_rate_percent, lang))
    for label, cents, bold in ((t("invoice.total_excl"), invoice.total_excl_cents, False),
                               (t("invoice.vat", rate=rate), invoice.vat_cents, False),
                               (t("invoice.total_incl"), invoice.total_incl_cents, True)):
        pdf.set_font("helvetica", "B" if bold else "", 10)
        pdf.cell(width - 40, 7, label, align="R")
        pdf.cell(40, 7, money(cents), align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(6)

    pdf.set_font("helvetica", "", 8)
    if invoice.issuer_payment_details:
        pdf.multi_cell(width, 4.5, t("invoice.payment_details") + " " + _safe(invoice.issuer_payment_details),
                       align="L", new_x="LMARGIN", new_y="NEXT")
    pdf.multi_cell(width, 4.5, t("invoice.late_terms"), align="L", new_x="LMARGIN", new_y="NEXT")
    if invoice.paid_on:
        pdf.ln(2)
        pdf.set_font("helvetica", "B", 10)
        pdf.cell(width, 6, t("invoice.paid_on", date=invoice.paid_on.isoformat()), new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
