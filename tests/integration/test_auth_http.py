"""Login, sessions, CSRF, revocation, invitations and sponsor keys over real HTTP."""

from __future__ import annotations

import datetime as dt

from server.invitations import create_invitation
from server.security import Signer
from server.sponsor_keys import create_sponsor_key
from tests.conftest import LiveServer, browser, extract
from tests.world import PASSWORD, make_world


async def test_login_logout_and_session_cookie_flags(live: LiveServer) -> None:
    world = await make_world(live.services.db)
    async with browser(live) as b:
        page = await b.get("/login")
        assert page.status_code == 200 and 'name="csrf_token"' in page.text
        response = await b.login(world.a.organizer.email, PASSWORD)
        cookie = response.headers["set-cookie"]
        assert "wb_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax")
        account_page = await b.get(f"/accounts/{world.a.account_id}")
        assert account_page.status_code == 200 and world.a.webinar.title in account_page.text
        assert (await b.post_form("/logout")).status_code == 303
        assert (await b.get(f"/accounts/{world.a.account_id}")).status_code == 303  # back to login


async def test_wrong_password_is_refused_then_rate_limited(live: LiveServer) -> None:
    world = await make_world(live.services.db)
    async with browser(live) as b:
        await b.get("/login")
        for _ in range(5):
            r = await b.post_form("/login", {"email": world.a.organizer.email, "password": "wrong password!"})
            assert r.status_code == 401 and "Wrong email or password" in r.text
        # Even the right password is refused while the window lasts.
        r = await b.post_form("/login", {"email": world.a.organizer.email, "password": PASSWORD})
        assert r.status_code == 429
        assert "Too many failed attempts" in r.text
    # Another user is not affected.
    async with browser(live) as other:
        await other.login(world.a.sponsor.email, PASSWORD)


async def test_post_without_csrf_is_refused(live: LiveServer) -> None:
    world = await make_world(live.services.db)
    async with browser(live) as b:
        await b.login(world.a.organizer.email, PASSWORD)
        form = {"title": "No CSRF", "starts_at": "2030-01-01T10:00", "duration_minutes": "30", "room_type": "webcam"}
        r = await b.post_form(f"/accounts/{world.a.account_id}/webinars", form, csrf=False)
        assert r.status_code == 403 and "expired or was sent from another site" in r.text
        r = await b.post(f"/accounts/{world.a.account_id}/webinars", data={**form, "csrf_token": "forged"})
        assert r.status_code == 403
        # A login form without the token is refused too.
        async with browser(live) as anon:
            r = await anon.post("/login", data={"email": world.a.organizer.email, "password": PASSWORD})
            assert r.status_code == 403
        assert await live.services.db.fetchval("SELECT count(*) FROM webinars WHERE title='No CSRF'") == 0


async def test_organizer_creates_webinar_with_rule_errors_shown(live: LiveServer) -> None:
    world = await make_world(live.services.db)
    start = (dt.datetime.now(dt.UTC) + dt.timedelta(days=40)).strftime("%Y-%m-%dT10:00")
    async with browser(live) as b:
        await b.get("/login?lang=en")
        await b.login(world.a.organizer.email, PASSWORD)
        bad = await b.post_form(f"/accounts/{world.a.account_id}/webinars",
                                {"title": "Long", "starts_at": start, "timezone": "Europe/Paris", "duration_minutes": "300",
                                 "room_type": "studio"})
        assert bad.status_code == 422 and "4 hours at most" in bad.text
        ok = await b.post_form(f"/accounts/{world.a.account_id}/webinars",
                               {"title": "Launch <b>", "starts_at": start, "timezone": "Europe/Paris",
                                "duration_minutes": "90", "room_type": "studio", "language": "en"})
        assert ok.status_code == 303
        page = await b.get(ok.headers["location"])
        assert "Launch &lt;b&gt;" in page.text and "Launch <b>" not in page.text
        clash = await b.post_form(f"/accounts/{world.a.account_id}/webinars",
                                  {"title": "Clash", "starts_at": start, "timezone": "Europe/Paris",
                                   "duration_minutes": "30", "room_type": "webcam"})
        assert clash.status_code == 422 and "never overlap" in clash.text
        # Stream key: shown once, only its hash is kept.
        webinar_url = ok.headers["location"]
        key_page = await b.post_form(f"{webinar_url}/stream-key")
        key = extract(r'<code class="secret">(wbk_[^<]+)</code>', key_page.text)
        assert key not in (await b.get(webinar_url)).text


async def test_revoke_all_sessions_of_an_account(live: LiveServer) -> None:
    world = await make_world(live.services.db)
    async with browser(live) as org_a, browser(live) as org_b, browser(live) as admin:
        await org_a.login(world.a.organizer.email, PASSWORD)
        await org_b.login(world.b.organizer.email, PASSWORD)
        await admin.login(world.admin.email, PASSWORD)
        r = await admin.post_form(f"/admin/accounts/{world.a.account_id}/revoke-sessions")
        assert r.status_code == 200
        assert (await org_a.get(f"/accounts/{world.a.account_id}")).status_code == 303
        assert (await org_b.get(f"/accounts/{world.b.account_id}")).status_code == 200
        assert (await admin.get("/admin")).status_code == 200
        # Revoking one user ends its sessions and its logins.
        r = await admin.post_form(f"/admin/users/{world.b.organizer.id}/disable")
        assert r.status_code == 303
        assert (await org_b.get(f"/accounts/{world.b.account_id}")).status_code == 303
        await org_b.get("/login")
        r = await org_b.post_form("/login", {"email": world.b.organizer.email, "password": PASSWORD})
        assert r.status_code == 403 and "has been revoked" in r.text


async def test_contract_end_locks_organizer_out_but_keeps_replays(live: LiveServer) -> None:
    db = live.services.db
    world = await make_world(db)
    await db.execute("UPDATE orders SET contract_start = current_date - 400, contract_end = current_date - 1 WHERE account_id = $1",
                     world.a.account_id)
    async with browser(live) as b:
        await b.login(world.a.organizer.email, PASSWORD)
        r = await b.get(f"/accounts/{world.a.account_id}")
        assert r.status_code == 403 and "contract has ended" in r.text
    assert await db.fetchval("SELECT count(*) FROM webinars WHERE account_id=$1", world.a.account_id) == 1


async def test_invitation_is_single_use(live: LiveServer) -> None:
    svc = live.services
    world = await make_world(svc.db)
    _, token = await create_invitation(svc.db, svc.signer, world.a.webinar.id, "speaker", "new.speaker@example.com")
    async with browser(live) as b:
        page = await b.get(f"/invite/{token}")
        assert page.status_code == 200 and world.a.webinar.title in page.text
        r = await b.post_form(f"/invite/{token}", {"name": "New Speaker", "password": "a long password"})
        assert r.status_code == 303
        role = await svc.db.fetchval(
            "SELECT m.role FROM webinar_members m JOIN users u ON u.id=m.user_id WHERE u.email='new.speaker@example.com'")
        assert role == "speaker"
    async with browser(live) as again:
        assert (await again.get(f"/invite/{token}")).status_code == 404
        assert (await again.get(f"/invite/{token[:-2]}xx")).status_code == 404
        # A token of another purpose (a sponsor key) is not an invitation.
        key = await create_sponsor_key(svc.db, svc.signer, world.a.account_id, webinar_id=None, ttl_days=1)
        assert (await again.get(f"/invite/{key}")).status_code == 404


async def test_sponsor_key_scope_expiry_and_forgery(live: LiveServer) -> None:
    svc = live.services
    world = await make_world(svc.db)
    key = await create_sponsor_key(svc.db, svc.signer, world.a.account_id, webinar_id=world.a.webinar.id, ttl_days=7)
    async with browser(live) as b:
        ok = await b.get(f"/sponsor/webinars/{world.a.webinar.id}", params={"key": key})
        assert ok.status_code == 200 and world.a.webinar.title in ok.text
        # The key names one webinar of account A: not the whole account, not account B.
        assert (await b.get(f"/sponsor/accounts/{world.a.account_id}", params={"key": key})).status_code == 403
        assert (await b.get(f"/sponsor/webinars/{world.b.webinar.id}", params={"key": key})).status_code == 403
        assert (await b.get(f"/sponsor/accounts/{world.b.account_id}", params={"key": key})).status_code == 403
        forged = Signer("another secret").sign("sponsor-key", {"k": "x", "a": str(world.a.account_id), "w": None}, ttl_s=60)
        assert (await b.get(f"/sponsor/accounts/{world.a.account_id}", params={"key": forged})).status_code == 403
        tampered = key[:-3] + ("AAA" if not key.endswith("AAA") else "BBB")
        assert (await b.get(f"/sponsor/webinars/{world.a.webinar.id}", params={"key": tampered})).status_code == 403
        # Expired: the row and the signed expiry both say so.
        await svc.db.execute("UPDATE sponsor_keys SET expires_at = now() - interval '1 second'")
        r = await b.get(f"/sponsor/webinars/{world.a.webinar.id}", params={"key": key})
        assert r.status_code == 403 and "This link has expired" in r.text
        account_key = await create_sponsor_key(svc.db, svc.signer, world.a.account_id, webinar_id=None, ttl_days=7)
        assert (await b.get(f"/sponsor/accounts/{world.a.account_id}", params={"key": account_key})).status_code == 200
        await svc.db.execute("UPDATE sponsor_keys SET revoked_at = now()")
        assert (await b.get(f"/sponsor/accounts/{world.a.account_id}", params={"key": account_key})).status_code == 403
    async with browser(live) as sponsor:
        await sponsor.login(world.a.sponsor.email, PASSWORD)
        assert (await sponsor.get(f"/sponsor/accounts/{world.a.account_id}")).status_code == 200
        assert (await sponsor.get(f"/sponsor/accounts/{world.b.account_id}")).status_code == 404


async def test_admin_pages_enforce_rules(live: LiveServer) -> None:
    world = await make_world(live.services.db)
    async with browser(live) as admin:
        await admin.get("/login?lang=en")
        await admin.login(world.admin.email, PASSWORD)
        r = await admin.post_form("/admin/accounts", {"name": "Newco"})
        assert r.status_code == 303
        account_url = r.headers["location"]
        r = await admin.post_form(f"{account_url}/orders", {
            "reference": "PO-9", "signed_on": "2026-01-01", "contract_start": "2026-01-01", "contract_end": "2025-01-01",
            "webinars_bought": "2", "kind": "advertiser", "price": "4500.00"})
        assert r.status_code == 422 and "must end on or after its start" in r.text
        for i in range(9):
            r = await admin.post_form(f"{account_url}/members", {"email": f"org{i}@newco.example", "role": "organizer",
                                                                 "password": "initial password"})
            assert r.status_code == 303
        r = await admin.post_form(f"{account_url}/members", {"email": "org9@newco.example", "role": "organizer"})
        assert r.status_code == 422 and "already has 9 organizers" in r.text
        page = await admin.get(f"{account_url}?lang=fr")
        assert "Organisateur" in page.text
