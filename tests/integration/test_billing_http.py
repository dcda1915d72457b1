"""The admin billing and personal-data pages through a real server: issue an invoice,
read it as HTML and PDF, record a payment and an ECB rate; find, export and erase a
person; report a breach. Everything admin-only (the authorization matrix covers the
refusals; a couple are checked here on real objects)."""

from __future__ import annotations

import io
import json
import re
import uuid

import pytest
from pypdf import PdfReader

from tests.conftest import LiveServer, browser
from tests.world import PASSWORD, make_world

pytestmark = pytest.mark.integration


async def test_admin_issues_reads_and_records_payment_of_an_invoice(live: LiveServer) -> None:
    db = live.services.db
    world = await make_world(db)
    async with browser(live) as adm, browser(live) as org:
        await adm.login(world.admin.email, PASSWORD)
        await org.login(world.a.organizer.email, PASSWORD)
        page = await adm.get("/admin/billing")
        assert page.status_code == 200 and "PO-A" in page.text and "PO-B" in page.text
        assert "PO-B" not in (await adm.get(f"/admin/billing?account_id={world.a.account_id}")).text

        bad = await adm.post_form("/admin/billing/ecb-rates", {"valid_from": "2025-06-11", "rate_percent": "abc"})
        assert bad.status_code == 422 and "Invalid value for rate_percent" in bad.text
        ok = await adm.post_form("/admin/billing/ecb-rates", {"valid_from": "2025-06-11", "rate_percent": "2,15"})
        assert ok.status_code == 303
        assert str(await db.fetchval("SELECT rate_percent FROM ecb_rates")) == "2.150"

        issued = await adm.post_form("/admin/billing/issue", {"order_id": str(world.a.order_id), "kind": "deposit"})
        assert issued.status_code == 303, issued.text[:300]
        location = issued.headers["location"]
        assert location.startswith("/admin/billing/invoice?id=")
        invoice_id = uuid.UUID(location.split("=", 1)[1])
        number = await db.fetchval("SELECT number FROM invoices WHERE id = $1", invoice_id)
        assert re.fullmatch(r"\d{4}-0001", number)

        html = await adm.get(location)
        assert html.status_code == 200
        assert f"Facture {number}" in html.text and "Total TTC" in html.text   # the invoice's language: French
        assert "15\u00a0000,00\u00a0€" in html.text   # 5 x 5,000 EUR, 50 % = 12,500 EUR + 20 % VAT
        pdf = await adm.get(f"/admin/billing/invoice.pdf?id={invoice_id}")
        assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
        assert pdf.headers["content-disposition"] == f'attachment; filename="invoice-{number}.pdf"'
        text = PdfReader(io.BytesIO(pdf.content)).pages[0].extract_text().replace("\u00a0", " ")
        assert f"Facture {number}" in text and "15 000,00 €" in text and "12 500,00 €" in text
        assert "BCE" in text and "40 EUR" in text

        again = await adm.post_form("/admin/billing/issue", {"order_id": str(world.a.order_id), "kind": "deposit"})
        assert again.status_code == 422 and "already issued" in again.text
        early = await adm.post_form("/admin/billing/issue", {"order_id": str(world.a.order_id), "kind": "balance"})
        assert early.status_code == 422 and "not fully delivered" in early.text

        paid_on = (await db.fetchval("SELECT issued_on FROM invoices WHERE id = $1", invoice_id)).isoformat()
        paid = await adm.post_form("/admin/billing/payments", {"invoice_id": str(invoice_id), "paid_on": paid_on})
        assert paid.status_code == 303 and paid.headers["location"] == "/admin/billing?notice=paid"
        assert (await db.fetchval("SELECT paid_on FROM invoices WHERE id = $1", invoice_id)).isoformat() == paid_on

        # Not for anyone else, even the account's own organizer.
        for url in (location, f"/admin/billing/invoice.pdf?id={invoice_id}", "/admin/billing"):
            assert (await org.get(url)).status_code == 404
        assert (await adm.get("/admin/billing/invoice?id=not-an-id")).status_code == 404
        assert (await adm.get(f"/admin/billing/invoice?id={uuid.uuid4()}")).status_code == 404


async def test_admin_finds_exports_and_erases_a_person_and_reports_a_breach(live: LiveServer) -> None:
    db = live.services.db
    world = await make_world(db)
    email = "http.person@example.org"
    pid = await db.fetchval("INSERT INTO participants (webinar_id, display_name, email) VALUES ($1, 'Hattie P.', $2) "
                            "RETURNING id", world.a.webinar.id, email)
    await db.execute("INSERT INTO registrations (webinar_id, email, first_name, last_name, participant_id) "
                     "VALUES ($1, $2, 'Hattie', 'Pemberton', $3)", world.a.webinar.id, email, pid)
    async with browser(live) as adm:
        await adm.login(world.admin.email, PASSWORD)
        assert (await adm.get("/admin/personal-data")).status_code == 200
        found = await adm.post_form("/admin/personal-data/find", {"email": email.upper()})
        assert found.status_code == 200 and "registrations" in found.text and "participants" in found.text
        bad = await adm.post_form("/admin/personal-data/find", {"email": "nope"})
        assert bad.status_code == 422 and "not valid" in bad.text

        export = await adm.post_form("/admin/personal-data/export", {"email": email})
        assert export.status_code == 200 and export.headers["content-type"].startswith("application/json")
        assert export.headers["content-disposition"].startswith('attachment; filename="personal-data-')
        document = json.loads(export.text)
        assert document["tables"]["registrations"][0]["last_name"] == "Pemberton"

        refused = await adm.post_form("/admin/personal-data/erase", {"email": email, "confirm": "other@example.org"})
        assert refused.status_code == 422
        assert await db.fetchval("SELECT count(*) FROM registrations WHERE email = $1", email) == 1
        erased = await adm.post_form("/admin/personal-data/erase", {"email": email, "confirm": email})
        assert erased.status_code == 200 and 'id="erased"' in erased.text
        assert await db.fetchval("SELECT count(*) FROM registrations WHERE email = $1", email) == 0
        assert await db.fetchval("SELECT display_name FROM participants WHERE id = $1", pid) == "erased"
        log = await adm.get("/admin/personal-data")
        assert "Erasure" in log.text and "Export" in log.text and email not in log.text

        breach = {"occurred_at": "2026-03-01T09:00", "detected_at": "2026-03-02T10:30", "affected_count": "42",
                  "description": "A participant file was sent to the wrong sponsor.", "categories": "contact"}
        missing = await adm.post_form("/admin/personal-data/breaches", {**breach, "categories": ""})
        assert missing.status_code == 422 and "category" in missing.text
        recorded = await adm.post_form("/admin/personal-data/breaches", breach)
        assert recorded.status_code == 303
        listed = await adm.get(recorded.headers["location"])
        assert "wrong sponsor" in listed.text and "Breach recorded." in listed.text
        row = await db.fetchrow("SELECT categories, affected_count, reported_by FROM data_breaches")
        assert (row["categories"], row["affected_count"], row["reported_by"]) == (["contact"], 42, world.admin.id)

        retention = await adm.post_form("/admin/personal-data/retention")
        assert retention.status_code == 200 and "0 contracts" in retention.text
        months = {"account_id": str(world.a.account_id), "retention_months": "24"}
        saved = await adm.post_form("/admin/personal-data/retention-months", months)
        assert saved.status_code == 303 and saved.headers["location"] == "/admin/personal-data?notice=retention_months"
        assert await db.fetchval("SELECT retention_months FROM accounts WHERE id = $1", world.a.account_id) == 24
        too_long = await adm.post_form("/admin/personal-data/retention-months", {**months, "retention_months": "121"})
        assert too_long.status_code == 422 and "0 to 120 months" in too_long.text
        unknown = await adm.post_form("/admin/personal-data/retention-months", {**months, "account_id": str(uuid.uuid4())})
        assert unknown.status_code == 404
