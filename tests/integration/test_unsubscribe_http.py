"""The unsubscribe link of a real marketing mail, followed over HTTP without any login:
through the confirmation page, and as an RFC 8058 one-click POST."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from server.notifications import email_worker
from server.security import Signer
from tests.conftest import LiveServer
from tests.support.mail_world import Clock, add_registration, drain, make_webinar, real_now, registered
from tests.support.smtp_server import smtp_sink


async def test_unsubscribe_from_a_real_mail_without_login(live: LiveServer) -> None:
    db = live.services.db
    t0 = real_now()
    start = t0 + dt.timedelta(days=3)
    webinar_id = await make_webinar(db, start, title="Unsubscribe test")
    regs = {}
    for email in ("page@example.com", "oneclick@example.com"):
        regs[email], _ = await add_registration(db, webinar_id, email)
        await registered(db, regs[email], t0)
    await db.execute("UPDATE webinars SET state = 'replay' WHERE id = $1", webinar_id)
    with tempfile.TemporaryDirectory() as tmp:
        async with smtp_sink() as smtp:
            settings = live.settings.replace(smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_tls="none",
                                             data_dir=Path(tmp))
            worker = email_worker(db, settings, live.services.signer, clock=Clock(start + dt.timedelta(days=2)))
            await drain(worker)
            links = {str(m["To"]): str(m["List-Unsubscribe"]).strip("<>") for m in smtp.messages}
    assert set(links) == set(regs)
    for url in links.values():
        assert url.startswith(f"{live.url}/unsubscribe/")

    async def state(email: str) -> tuple[object, list[tuple[str, bool, str, str]]]:
        at = await db.fetchval("SELECT unsubscribed_at FROM registrations WHERE id = $1", regs[email])
        rows = await db.fetch("SELECT kind, granted, wording, host(ip) AS ip FROM consents WHERE registration_id = $1",
                              regs[email])
        return at, [(r["kind"], r["granted"], r["wording"], r["ip"]) for r in rows]

    # Through the page: GET shows a button and changes nothing; POST (no cookie, no CSRF token) unsubscribes.
    path = urlsplit(links["page@example.com"]).path
    async with httpx.AsyncClient(base_url=live.url, cookies={"wb_lang": "en"}) as anonymous:
        page = await anonymous.get(path)
        assert page.status_code == 200
        assert f'action="{path}"' in page.text and "page@example.com" in page.text and "Unsubscribe test" in page.text
        assert await state("page@example.com") == (None, [])
    async with httpx.AsyncClient(base_url=live.url) as anonymous:
        done = await anonymous.post(path)
        assert done.status_code == 200 and 'id="unsubscribed"' in done.text
    at, consents = await state("page@example.com")
    assert at is not None and consents == [("marketing", False, "unsubscribe link (page)", "127.0.0.1")]
    async with httpx.AsyncClient(base_url=live.url) as anonymous:
        again = await anonymous.get(path)
        assert again.status_code == 200 and 'id="unsubscribed"' in again.text and f'action="{path}"' not in again.text

    # RFC 8058 one-click, as a mail provider sends it; twice: recorded once.
    path = urlsplit(links["oneclick@example.com"]).path
    for _ in range(2):
        async with httpx.AsyncClient(base_url=live.url) as provider:
            response = await provider.post(path, content=b"List-Unsubscribe=One-Click",
                                           headers={"content-type": "application/x-www-form-urlencoded"})
            assert response.status_code == 200
    at, consents = await state("oneclick@example.com")
    assert at is not None and consents == [("marketing", False, "unsubscribe link (one-click)", "127.0.0.1")]

    # Forged, foreign-purpose and oversized requests.
    join_token = live.services.signer.sign("join", {"r": str(regs["page@example.com"])}, ttl_s=None)
    forged = Signer("another secret").sign("unsubscribe", {"r": str(regs["page@example.com"])}, ttl_s=None)
    async with httpx.AsyncClient(base_url=live.url) as anonymous:
        for token in ("garbage", join_token, forged):
            assert (await anonymous.get(f"/unsubscribe/{token}")).status_code == 404
            assert (await anonymous.post(f"/unsubscribe/{token}")).status_code == 404
        big = await anonymous.post(path, content=b"x" * 5000)
        assert big.status_code == 400
