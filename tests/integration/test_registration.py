"""Registration (R-REG-1, R-REG-2, R-REG-4, R-ANA-2) against a real server and PostgreSQL:
the public page and its form, the embedded form's headers, CSRF and rate limit,
consents with proof, the Q&A question, join links into the room WebSocket, the
ICS invite, and the organizer's settings.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import html
import re
import uuid
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import icalendar
import pytest
import websockets

import tests.integration.test_authz_matrix as authz
from server import pages_registration, registrations
from server.db import Database
from server.i18n import translate
from server.registrations import (
    AFTER_REGISTER,
    FormSettings,
    RegistrationClosed,
    RegistrationInvalid,
    load_form_config,
    register,
    update_form_settings,
)
from server.webinars import set_state
from tests.conftest import Browser, LiveServer, browser
from tests.support.room_client import RoomClient
from tests.world import PASSWORD, Side, make_side

pytestmark = pytest.mark.integration

HIDDEN = re.compile(r'<input type="hidden" name="(\w+)" value="([^"]*)">')


async def announced_side(live: LiveServer, tag: str = "A") -> Side:
    side = await make_side(live.services.db, tag, dt.datetime.now(dt.UTC).replace(microsecond=0))
    await set_state(live.services.db, side.webinar.id, "announced")
    return side


def hidden_fields(page: str) -> dict[str, str]:
    return {name: html.unescape(value) for name, value in HIDDEN.findall(page)}


async def open_form(b: Browser, webinar_id: uuid.UUID, kind: str = "register") -> dict[str, str]:
    response = await b.get(f"/w/{webinar_id}/{kind}?lang=en")
    assert response.status_code == 200, response.text[:300]
    return hidden_fields(response.text)


async def submit(b: Browser, webinar_id: uuid.UUID, hidden: dict[str, str] | None = None, kind: str = "register", /,
                 **fields: str) -> httpx.Response:
    form = hidden if hidden is not None else await open_form(b, webinar_id, kind)
    return await b.post(f"/w/{webinar_id}/{kind}?lang=en", data={**form, **fields})


def join_link(page: str) -> str:
    match = re.search(r'id="join-link" href="([^"]+)"', page)
    assert match, "no join link on the page"
    return html.unescape(match.group(1))


def calendar_link(page: str) -> str:
    match = re.search(r'id="calendar-link" href="([^"]+)"', page)
    assert match, "no calendar link on the page"
    return html.unescape(match.group(1))


def token_of(url: str) -> str:
    return url.split("?token=", 1)[1]


def field_error(page: str, name: str) -> str:
    match = re.search(rf'<span class="field-error" id="e-{name}">([^<]*)</span>', page)
    return html.unescape(match.group(1)) if match else ""


def ws_url(live: LiveServer, webinar_id: uuid.UUID) -> str:
    return f"ws://127.0.0.1:{live.settings.port}/ws/rooms/{webinar_id}"


PERSON = {"first_name": "Jeanne", "last_name": "Dupont", "email": "Jeanne.Dupont@Example.com"}
NAMES = {"first_name": "Sam", "last_name": "Lee"}


# The page -------------------------------------------------------------------------------------
async def test_page_presents_the_webinar_with_unticked_consents(live: LiveServer) -> None:
    side = await announced_side(live)
    await update_form_settings(live.services.db, side.webinar.id, FormSettings(
        frozenset({"email"}), True, "Ada Lovelace, CTO\nAlan Turing", "Acme Cloud", "https://cdn.example.com/acme.png"))
    async with browser(live) as b:
        r = await b.get(f"/w/{side.webinar.id}/register?lang=fr")
        assert r.status_code == 200
        page = r.text
        assert side.webinar.title in page and "Ada Lovelace, CTO" in page
        assert 'src="https://cdn.example.com/acme.png"' in page and "Avec Acme Cloud" in page
        assert translate("fr", "webinar.room.studio") in page
        iso = side.webinar.starts_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        paris = side.webinar.starts_at.astimezone(ZoneInfo("Europe/Paris"))
        assert f'<time datetime="{iso}" data-local>{paris:%d/%m/%Y} à {paris:%H:%M} (heure de Paris)</time>' in page
        boxes = re.findall(r'<input type="checkbox" name="consent_(\w+)" value="1"( checked)?>', page)
        assert boxes == [("sponsor_share", ""), ("marketing", "")], "two separate boxes, never pre-ticked"
        assert "Acme Cloud" in translate("fr", "register.consent.sponsor_share", sponsor="Acme Cloud")
        assert r.headers["x-frame-options"] == "DENY", "the page itself is not framable"
        english = await b.get(f"/w/{side.webinar.id}/register?lang=en")
        assert "(Paris time)" in english.text and "With Acme Cloud" in english.text
        # Without a sponsor, no data-sharing box at all.
        await update_form_settings(live.services.db, side.webinar.id, FormSettings(frozenset(), True, "", "", ""))
        bare = await b.get(f"/w/{side.webinar.id}/register")
        assert re.findall(r'name="consent_(\w+)"', bare.text) == ["marketing"]


async def test_registration_from_the_page_shows_join_link_and_date(live: LiveServer) -> None:
    side = await announced_side(live)
    async with browser(live) as b:
        r = await submit(b, side.webinar.id, **PERSON, time_zone="America/New_York")
        assert r.status_code == 200, r.text[:500]
        assert "Jeanne D., you are registered." in r.text
        link = join_link(r.text)
        assert link.startswith(f"{live.url}/w/{side.webinar.id}?token=")
        assert calendar_link(r.text).startswith(f"{live.url}/w/{side.webinar.id}/calendar.ics?token=")
        assert 'data-local>' in r.text and "<time datetime=" in r.text
    row = await live.services.db.fetchrow("SELECT * FROM registrations WHERE webinar_id = $1", side.webinar.id)
    assert row["email"] == "jeanne.dupont@example.com" and row["source"] == "page"
    assert row["time_zone"] == "America/New_York" and row["locale"] == "en"
    participant = await live.services.db.fetchrow("SELECT * FROM participants WHERE id = $1", row["participant_id"])
    assert participant["display_name"] == "Jeanne D." and participant["email"] == "jeanne.dupont@example.com"


# Validation -----------------------------------------------------------------------------------
async def _config_for(db: Database, side: Side, required: set[str], sponsor: str = "Acme") -> registrations.FormConfig:
    return await update_form_settings(db, side.webinar.id, FormSettings(frozenset(required), True, "", sponsor, ""))


def _form(config: registrations.FormConfig, **fields: str) -> dict[str, str]:
    return {"form_version": str(config.form_version), "wording_digest": config.wording_digest("en"), **fields}


async def _attempt(db: Database, config: registrations.FormConfig, **fields: str) -> dict[str, str]:
    """The errors :func:`register` reports ({} when it registered)."""
    try:
        await register(db, config.webinar_id, _form(config, **fields), ip="127.0.0.1", user_agent="pytest",
                       source="page", locale="en", time_zone=None)
    except RegistrationInvalid as exc:
        return exc.errors
    return {}


VALID = {"first_name": "Ana", "last_name": "Lima", "email": "ana@example.com"}
TABLE: list[tuple[dict[str, str], dict[str, str]]] = [
    ({"email": ""}, {"email": "required"}),
    ({"email": "not-an-email"}, {"email": "email_invalid"}),
    ({"email": "a@b"}, {"email": "email_invalid"}),
    ({"email": "two@@example.com"}, {"email": "email_invalid"}),
    ({"email": "x" * 250 + "@example.com"}, {"email": "too_long"}),
    ({"first_name": "x" * 101}, {"first_name": "too_long"}),
    ({"last_name": "y" * 101}, {"last_name": "too_long"}),
    ({"company": "c" * 201}, {"company": "too_long"}),
    ({"job_function": "j" * 101, "department": "d" * 101, "industry": "i" * 101},
     {"job_function": "too_long", "department": "too_long", "industry": "too_long"}),
    ({"phone": "12"}, {"phone": "phone_invalid"}),
    ({"phone": "not a phone"}, {"phone": "phone_invalid"}),
    ({"phone": "+33 6 12 34 56 78" + " 0" * 20}, {"phone": "too_long"}),
    ({"company_size": "huge"}, {"company_size": "choice_invalid"}),
    ({"question": "q" * 501}, {"question": "too_long"}),
    ({"consent_marketing": "yes"}, {"consent_marketing": "choice_invalid"}),
    ({"consent_sponsor_share": "on"}, {"consent_sponsor_share": "choice_invalid"}),
    ({"first_name": "", "last_name": ""}, {"first_name": "required", "last_name": "required"}),
    ({"first_name": "\x00\x07\u202e"}, {"first_name": "required"}),  # only control characters: empty
]


@pytest.mark.parametrize(("change", "errors"), TABLE)
async def test_field_validation_table(db: Database, change: dict[str, str], errors: dict[str, str]) -> None:
    side = await make_side(db, "V", dt.datetime.now(dt.UTC).replace(microsecond=0))
    await set_state(db, side.webinar.id, "announced")
    config = await _config_for(db, side, {"first_name", "last_name", "email"})
    assert await _attempt(db, config, **{**VALID, **change}) == errors
    assert await db.fetchval("SELECT count(*) FROM registrations") == 0, "nothing stored on error"
    assert await _attempt(db, config, **VALID) == {}


async def test_required_fields_follow_the_organizer_and_values_are_normalised(db: Database) -> None:
    side = await make_side(db, "R", dt.datetime.now(dt.UTC).replace(microsecond=0))
    await set_state(db, side.webinar.id, "announced")
    everything = set(registrations.FIELDS)
    config = await _config_for(db, side, everything)
    errors = await _attempt(db, config, email="p@example.com")
    assert errors == {name: "required" for name in registrations.FIELDS if name != "email"}
    # Only the email is required when the organizer asks for nothing else.
    config = await _config_for(db, side, set())
    assert config.required_fields == frozenset({"email"})
    assert await _attempt(db, config, email="  P@Example.COM ") == {}
    config = await _config_for(db, side, {"phone", "company_size"})
    assert await _attempt(db, config, email="q@example.com") == {"phone": "required", "company_size": "required"}
    assert await _attempt(db, config, email="q@example.com", phone="06 12 34 56 78", company_size="50-249",
                          first_name="  Zoé\tMarie \x00", job_function="CTO\u202e") == {}
    row = await db.fetchrow("SELECT * FROM registrations WHERE email = 'q@example.com'")
    assert row is not None
    assert (row["phone"], row["company_size"], row["first_name"], row["job_function"]) == \
        ("+33612345678", "50-249", "Zoé Marie", "CTO")
    assert await db.fetchval("SELECT email FROM registrations WHERE email LIKE 'p@%'") == "p@example.com"
    assert await _attempt(db, config, email="r@example.com", phone="+44 20 7946 0958", company_size="1-9") == {}
    assert await db.fetchval("SELECT phone FROM registrations WHERE email = 'r@example.com'") == "+442079460958"


async def test_errors_are_shown_next_to_fields_and_values_kept(live: LiveServer) -> None:
    side = await announced_side(live)
    async with browser(live) as b:
        r = await submit(b, side.webinar.id, first_name="Zoé <b>", last_name="", email="zoe@", phone="123",
                         company="Acme & Co", company_size="forged", consent_marketing="1")
        assert r.status_code == 422
        page = r.text
        assert field_error(page, "email") == translate("en", "register.error.email_invalid")
        assert field_error(page, "phone") == translate("en", "register.error.phone_invalid")
        assert field_error(page, "company_size") == translate("en", "register.error.choice_invalid")
        assert field_error(page, "last_name") == translate("en", "register.error.required")
        assert field_error(page, "first_name") == ""
        assert 'value="Zoé &lt;b&gt;"' in page and 'value="Acme &amp; Co"' in page and 'value="zoe@"' in page
        assert re.search(r'name="consent_marketing" value="1" checked', page), "the ticked box stays ticked"
        # French messages for a French visitor.
        fr = await b.post(f"/w/{side.webinar.id}/register?lang=fr", data={**await open_form(b, side.webinar.id),
                                                                          "email": ""})
        assert field_error(fr.text, "email") == translate("fr", "register.error.required")
    assert await live.services.db.fetchval("SELECT count(*) FROM registrations") == 0


async def test_forged_and_oversized_posts_are_refused(live: LiveServer) -> None:
    side = await announced_side(live)
    wid = side.webinar.id
    async with browser(live) as b:
        hidden = await open_form(b, wid)
        no_csrf = {k: v for k, v in hidden.items() if k != "csrf_token"}
        assert (await submit(b, wid, no_csrf, **PERSON)).status_code == 403
        assert (await submit(b, wid, {**hidden, "csrf_token": hidden["csrf_token"] + "x"}, **PERSON)).status_code == 403
        r = await submit(b, wid, hidden, **{**PERSON, "first_name": "J" * 5000})
        assert r.status_code == 422 and field_error(r.text, "first_name") == translate("en", "register.error.too_long",
                                                                                        max=100)
        huge = await submit(b, wid, hidden, **{**PERSON, "company": "c" * 1_100_000})
        assert huge.status_code == 400
        forged_version = await submit(b, wid, {**hidden, "form_version": "99"}, **PERSON)
        assert forged_version.status_code == 422
        assert translate("en", "register.error.form_changed") in html.unescape(forged_version.text)
        assert (await submit(b, wid, hidden, **PERSON, source="import")).status_code == 200
    row = await live.services.db.fetchrow("SELECT source, first_name FROM registrations")
    assert (row["source"], row["first_name"]) == ("page", "Jeanne"), "the source is not taken from the form"
    assert await live.services.db.fetchval("SELECT count(*) FROM registrations") == 1


async def test_script_in_fields_is_stored_as_text_and_escaped(live: LiveServer) -> None:
    side = await announced_side(live)
    script = "<script>alert(1)</script>"
    attribute = '"><img src=x onerror=alert(2)>'
    async with browser(live) as b:
        r = await submit(b, side.webinar.id, first_name=script, last_name=attribute, email="xss@example.com",
                         company=attribute, question=script)
        assert r.status_code == 200
        assert script not in r.text and "<img src=x" not in r.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text
        again = await submit(b, side.webinar.id, first_name=script, company=attribute, email="broken@")
        assert again.status_code == 422 and script not in again.text and "<img src=x" not in again.text
        assert 'value="&#34;&gt;&lt;img src=x onerror=alert(2)&gt;"' in again.text
    row = await live.services.db.fetchrow("SELECT first_name, company, question FROM registrations")
    assert (row["first_name"], row["company"], row["question"]) == (script, attribute, script)


# Duplicates, consents, question ---------------------------------------------------------------
async def test_duplicate_registration_is_idempotent(live: LiveServer) -> None:
    side = await announced_side(live)
    db = live.services.db
    async with browser(live) as b:
        first = await submit(b, side.webinar.id, **PERSON, company="Acme", phone="0612345678")
        assert first.status_code == 200 and "you are registered." in first.text
        second = await submit(b, side.webinar.id, first_name="Jeanne", last_name="Durand",
                              email="JEANNE.DUPONT@example.com", company="")
        assert second.status_code == 200 and "Jeanne D., your registration is updated." in second.text
    rows = await db.fetch("SELECT * FROM registrations WHERE webinar_id = $1", side.webinar.id)
    assert len(rows) == 1
    row = rows[0]
    assert (row["last_name"], row["company"], row["phone"]) == ("Durand", "Acme", "+33612345678"), \
        "empty fields of the second submission keep the first one's values"
    assert await db.fetchval("SELECT count(*) FROM participants WHERE webinar_id = $1 AND email IS NOT NULL",
                             side.webinar.id) == 1
    signer = live.services.signer
    one, two = token_of(join_link(first.text)), token_of(join_link(second.text))
    assert signer.unsign("join", one)["p"] == signer.unsign("join", two)["p"] == str(row["participant_id"])
    # The domain answer says so too.
    config = await load_form_config(db, side.webinar.id)
    result = await register(db, side.webinar.id, _form(config, **PERSON), ip=None,
                            user_agent="", source="import", locale="en", time_zone="Mars/Olympus")
    assert (result.created, result.registration_id, result.participant.id) == (False, row["id"], row["participant_id"])
    assert await db.fetchval("SELECT time_zone FROM registrations WHERE id = $1", row["id"]) == "Europe/Paris"


async def test_consents_are_recorded_with_proof(live: LiveServer) -> None:
    side = await announced_side(live)
    db = live.services.db
    wid = side.webinar.id
    await update_form_settings(db, wid, FormSettings(frozenset(), True, "", "Acme Cloud", ""))
    version = await db.fetchval("SELECT form_version FROM webinars WHERE id = $1", wid)
    async with browser(live) as b:
        b.headers["user-agent"] = "Proof-Agent/1.0"
        assert (await submit(b, wid, **PERSON, consent_sponsor_share="1")).status_code == 200
        assert (await submit(b, wid, **PERSON, consent_marketing="1")).status_code == 200
        rows = await db.fetch("SELECT c.* FROM consents c JOIN registrations r ON r.id = c.registration_id "
                              "WHERE r.webinar_id = $1 ORDER BY c.id", wid)
        assert [(r["kind"], r["granted"]) for r in rows] == [
            ("sponsor_share", True), ("marketing", False), ("sponsor_share", False), ("marketing", True)]
        sponsor_text = translate("en", "register.consent.sponsor_share", sponsor="Acme Cloud")
        organizer = await db.fetchval("SELECT name FROM accounts WHERE id = $1", side.account_id)
        marketing_text = translate("en", "register.consent.marketing", organizer=organizer)
        for r in rows:
            assert str(r["ip"]) == "127.0.0.1" and r["user_agent"] == "Proof-Agent/1.0"
            assert r["form_version"] == version and r["at"] is not None
            assert r["wording"] == (sponsor_text if r["kind"] == "sponsor_share" else marketing_text)
            assert r["sponsor_name"] == ("Acme Cloud" if r["kind"] == "sponsor_share" else "")
        assert sponsor_text in html.unescape((await b.get(f"/w/{wid}/register?lang=en")).text), "the wording shown"
        # The organizer changes the sponsor while a visitor has the old form open.
        stale = await open_form(b, wid)
        await update_form_settings(db, wid, FormSettings(frozenset(), True, "", "Globex", ""))
        refused = await submit(b, wid, stale, **PERSON, consent_sponsor_share="1", company="Kept Ltd")
        assert refused.status_code == 422
        assert translate("en", "register.error.form_changed") in html.unescape(refused.text)
        assert "Globex" in refused.text and 'value="Kept Ltd"' in refused.text
        assert await db.fetchval("SELECT count(*) FROM consents") == 4, "no proof for wording the person did not see"
        fresh = hidden_fields(refused.text)
        assert (await submit(b, wid, fresh, **PERSON, consent_sponsor_share="1")).status_code == 200
    latest = await db.fetchrow("SELECT * FROM consents WHERE kind = 'sponsor_share' ORDER BY id DESC LIMIT 1")
    assert latest["granted"] and latest["sponsor_name"] == "Globex" and latest["form_version"] == version + 1
    assert latest["wording"] == translate("en", "register.consent.sponsor_share", sponsor="Globex")
    assert await db.fetchval("SELECT count(*) FROM consents") == 6, "older proofs are kept"


async def test_question_goes_to_the_q_and_a(live: LiveServer) -> None:
    side = await announced_side(live)
    db = live.services.db
    async with browser(live) as b:
        r = await submit(b, side.webinar.id, **PERSON, question="  Will the slides\r\nbe shared? ")
        assert r.status_code == 200
        await submit(b, side.webinar.id, **PERSON, question="Will the slides\nbe shared?")  # same: not twice
    rows = await db.fetch("SELECT * FROM questions WHERE webinar_id = $1", side.webinar.id)
    assert [(q["text"], q["source"], q["participant_id"], q["anonymous"]) for q in rows] == [
        ("Will the slides\nbe shared?", "registration", None, False)]
    # The room shows it in the Q&A to the registrant who joins with the link.
    client = RoomClient(ws_url(live, side.webinar.id), token=token_of(join_link(r.text)))
    try:
        welcome = await client.connect()
        assert [q["text"] for q in welcome["state"]["questions"]] == ["Will the slides\nbe shared?"]
    finally:
        await client.close()
    # Off: the field is not shown and a posted question is ignored.
    await update_form_settings(db, side.webinar.id, FormSettings(frozenset(), False, "", "", ""))
    async with browser(live) as b:
        page = (await b.get(f"/w/{side.webinar.id}/register")).text
        assert 'name="question"' not in page
        assert (await submit(b, side.webinar.id, email="other@example.com", question="Ignored?")).status_code == 200
    assert await db.fetchval("SELECT count(*) FROM questions") == 1


async def test_after_register_hooks_run_in_the_transaction(db: Database) -> None:
    side = await make_side(db, "H", dt.datetime.now(dt.UTC).replace(microsecond=0))
    await set_state(db, side.webinar.id, "announced")
    config = await load_form_config(db, side.webinar.id)
    calls: list[tuple[uuid.UUID, bool, str]] = []

    async def record(conn: asyncpg.Connection, registration_id: uuid.UUID, created: bool) -> None:
        assert conn.is_in_transaction()
        email = await conn.fetchval("SELECT email FROM registrations WHERE id = $1", registration_id)
        calls.append((registration_id, created, email))

    async def fail(conn: asyncpg.Connection, registration_id: uuid.UUID, created: bool) -> None:
        raise RuntimeError("mail queue down")

    AFTER_REGISTER.append(record)
    try:
        first = await register(db, side.webinar.id, _form(config, **NAMES, email="hook@example.com"), ip="::1", user_agent="",
                               source="page", locale="en", time_zone=None)
        again = await register(db, side.webinar.id, _form(config, **NAMES, email="hook@example.com"), ip="::1", user_agent="",
                               source="page", locale="en", time_zone=None)
        assert calls == [(first.registration_id, True, "hook@example.com"),
                         (first.registration_id, False, "hook@example.com")]
        assert again.registration_id == first.registration_id
        AFTER_REGISTER.append(fail)
        with pytest.raises(RuntimeError):
            await register(db, side.webinar.id, _form(config, **NAMES, email="rolled@example.com"), ip=None, user_agent="",
                           source="page", locale="en", time_zone=None)
    finally:
        AFTER_REGISTER[:] = [h for h in AFTER_REGISTER if h not in (record, fail)]
    assert await db.fetchval("SELECT count(*) FROM registrations WHERE email = 'rolled@example.com'") == 0
    assert await db.fetchval("SELECT count(*) FROM participants WHERE email = 'rolled@example.com'") == 0


# States ------------------------------------------------------------------------------------------
async def test_registration_refused_when_draft_cancelled_or_removed(live: LiveServer) -> None:
    db = live.services.db
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    draft = await make_side(db, "D", now)
    async with browser(live) as b:
        assert (await b.get(f"/w/{draft.webinar.id}/register")).status_code == 404
        assert (await b.get(f"/w/{draft.webinar.id}/embed")).status_code == 404
        await b.get("/login")
        r = await b.post(f"/w/{draft.webinar.id}/register", data={"csrf_token": b.csrf, **PERSON})
        assert r.status_code == 404
        assert (await b.get(f"/w/{uuid.uuid4()}/register")).status_code == 404
        assert (await b.get("/w/not-a-uuid/register")).status_code == 404
    config = await load_form_config(db, draft.webinar.id)
    with pytest.raises(RegistrationClosed) as closed:
        await register(db, draft.webinar.id, _form(config, **PERSON), ip=None, user_agent="", source="page",
                       locale="en", time_zone=None)
    assert closed.value.code == "registration_closed"

    cancelled = await announced_side(live, "C")
    async with browser(live) as b:
        hidden = await open_form(b, cancelled.webinar.id)
        await set_state(db, cancelled.webinar.id, "cancelled")
        page = await b.get(f"/w/{cancelled.webinar.id}/register")
        assert page.status_code == 410 and translate("en", "register.closed.cancelled") in html.unescape(page.text)
        assert 'name="email"' not in page.text
        r = await submit(b, cancelled.webinar.id, hidden, **PERSON)
        assert r.status_code == 410 and translate("en", "register.closed.cancelled") in html.unescape(r.text)

    removed = await announced_side(live, "X")
    for state in ("live", "ended"):
        await set_state(db, removed.webinar.id, state)
    async with browser(live) as b:
        assert (await submit(b, removed.webinar.id, **PERSON)).status_code == 200, "replay registration is allowed"
        hidden = await open_form(b, removed.webinar.id)
        await set_state(db, removed.webinar.id, "removed")
        r = await submit(b, removed.webinar.id, hidden, email="late@example.com")
        assert r.status_code == 410 and translate("en", "register.closed.removed") in html.unescape(r.text)
    assert await db.fetchval("SELECT count(*) FROM registrations") == 1


# Join links and the calendar --------------------------------------------------------------------
async def test_join_link_joins_the_room_and_forged_links_do_not(live: LiveServer) -> None:
    side = await announced_side(live)
    other = await announced_side(live, "B")
    async with browser(live) as b:
        r = await submit(b, side.webinar.id, **PERSON)
        other_page = await submit(b, other.webinar.id, **PERSON)
    token = token_of(join_link(r.text))
    participant_id = await live.services.db.fetchval("SELECT participant_id FROM registrations WHERE webinar_id = $1",
                                                     side.webinar.id)
    client = RoomClient(ws_url(live, side.webinar.id), token=token)
    try:
        welcome = await client.connect()
        assert welcome["participant"] == {"id": str(participant_id), "name": "Jeanne D.", "role": "viewer"}
    finally:
        await client.close()
    forged = [token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
              token_of(join_link(other_page.text)),  # a real token of another webinar
              "not-a-token"]
    for bad in forged:
        with pytest.raises(websockets.InvalidStatus):
            await RoomClient(ws_url(live, side.webinar.id), token=bad).connect()
    before = await live.services.db.fetchval("SELECT count(*) FROM participants")
    async with browser(live) as b:
        page = await b.get(f"/w/{side.webinar.id}?token={forged[0]}")
        assert page.status_code == 200
        assert (await b.get(f"/w/{side.webinar.id}/calendar.ics?token={forged[0]}")).status_code == 404
    assert await live.services.db.fetchval("SELECT count(*) FROM participants") == before, \
        "a forged link gets no participant"


async def test_calendar_invite(live: LiveServer) -> None:
    side = await announced_side(live)
    db = live.services.db
    async with browser(live) as b:
        r = await submit(b, side.webinar.id, **PERSON)
        url = calendar_link(r.text)
        first = await b.get(url)
        assert first.status_code == 200
        assert first.headers["content-type"].startswith("text/calendar")
        assert "attachment" in first.headers["content-disposition"]
        registration_id = await db.fetchval("SELECT id FROM registrations WHERE webinar_id = $1", side.webinar.id)
        event = _event(first.content)
        assert str(event["uid"]) == f"{side.webinar.id}.{registration_id}@127.0.0.1"
        assert int(event["sequence"]) == 0
        assert event.decoded("dtstart") == side.webinar.starts_at.astimezone(dt.UTC)
        assert event.decoded("dtend") == side.webinar.ends_at.astimezone(dt.UTC)
        assert "DTSTART:" + side.webinar.starts_at.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ") in \
            first.content.decode().replace("\r\n ", "")
        assert str(event["url"]) == join_link(r.text)
        assert str(event["summary"]) == side.webinar.title
        # The webinar moves: same UID, higher SEQUENCE, new time.
        moved = side.webinar.starts_at + dt.timedelta(days=2, hours=3)
        await db.execute("UPDATE webinars SET starts_at = $2, schedule_version = schedule_version + 1 WHERE id = $1",
                         side.webinar.id, moved)
        second = _event((await b.get(url)).content)
        assert str(second["uid"]) == str(event["uid"]) and int(second["sequence"]) == 1
        assert second.decoded("dtstart") == moved.astimezone(dt.UTC)
        await set_state(db, side.webinar.id, "cancelled")
        cancelled = await b.get(url)
        calendar = icalendar.Calendar.from_ical(cancelled.content)
        assert str(calendar["method"]) == "CANCEL" and str(_event(cancelled.content)["status"]) == "CANCELLED"
        assert (await b.get(f"/w/{side.webinar.id}/calendar.ics")).status_code == 404


def _event(content: bytes) -> Any:
    calendar = icalendar.Calendar.from_ical(content)
    assert str(calendar["version"]) == "2.0"
    events = calendar.walk("VEVENT")
    assert len(events) == 1
    if str(calendar["method"]) != "CANCEL":
        assert str(calendar["method"]) == "REQUEST"
    return events[0]


# The embedded form (HTTP level; the cross-site browser test is test_registration_embed.py) --------
async def test_embed_is_framable_and_uses_its_own_form_token(live: LiveServer) -> None:
    side = await announced_side(live)
    other = await announced_side(live, "B")
    wid = side.webinar.id
    async with browser(live) as b:
        page = await b.get(f"/w/{wid}/embed?lang=en")
        assert page.status_code == 200
        assert page.headers["content-security-policy"] == "frame-ancestors *"
        assert page.headers["cache-control"] == "no-store"
        assert "<header" not in page.text, "no site header in the frame"
        hidden = hidden_fields(page.text)
        assert "form_token" in hidden and "csrf_token" not in hidden
        # A cross-site frame sends no cookies: the form token alone must do.
        bare = httpx.AsyncClient(base_url=live.url, timeout=30)
        async with bare:
            ok = await bare.post(f"/w/{wid}/embed?lang=en", data={**hidden, **PERSON})
            assert ok.status_code == 200, ok.text[:500]
            assert f'data-registered="{wid}"' in ok.text and join_link(ok.text).startswith(f"{live.url}/w/{wid}?token=")
            assert ok.headers["content-security-policy"] == "frame-ancestors *"
            no_token = await bare.post(f"/w/{wid}/embed?lang=en",
                                       data={**{k: v for k, v in hidden.items() if k != "form_token"},
                                             "email": "nt@example.com", "company": "Kept"})
            assert no_token.status_code == 403 and 'value="Kept"' in no_token.text
            assert translate("en", "register.error.form_expired") in html.unescape(no_token.text)
            assert "data-registered" not in no_token.text
            other_token = hidden_fields((await bare.get(f"/w/{other.webinar.id}/embed")).text)["form_token"]
            wrong = await bare.post(f"/w/{wid}/embed", data={**hidden, "form_token": other_token,
                                                             "email": "wrong@example.com"})
            assert wrong.status_code == 403
            expired = live.services.signer.sign("embed-form", {"w": str(wid), "c": _tag("127.0.0.1")}, ttl_s=-10)
            late = await bare.post(f"/w/{wid}/embed", data={**hidden, **NAMES, "form_token": expired,
                                                            "email": "late@example.com"})
            assert late.status_code == 403
            assert 'value="late@example.com"' in late.text
            retried = await bare.post(f"/w/{wid}/embed", data={**hidden_fields(late.text), **NAMES,
                                                               "email": "late@example.com"})
            assert retried.status_code == 200, "the form shown again carries a fresh token"
    rows = await live.services.db.fetch("SELECT email, source FROM registrations WHERE webinar_id = $1 ORDER BY email",
                                        wid)
    assert [(r["email"], r["source"]) for r in rows] == [("jeanne.dupont@example.com", "iframe"),
                                                         ("late@example.com", "iframe")]


def _tag(ip: str) -> str:
    import hashlib

    return hashlib.sha256(ip.encode()).hexdigest()[:16]


async def test_embed_is_not_denied_by_x_frame_options(live: LiveServer) -> None:
    """Needs SecurityHeadersMiddleware to leave X-Frame-Options out when a response sets frame-ancestors."""
    side = await announced_side(live)
    async with browser(live) as b:
        embed = await b.get(f"/w/{side.webinar.id}/embed")
        assert "x-frame-options" not in embed.headers
        assert (await b.get(f"/w/{side.webinar.id}/register")).headers["x-frame-options"] == "DENY"
        assert (await b.get("/login")).headers["x-frame-options"] == "DENY"


async def test_embed_rate_limit_per_address(live: LiveServer) -> None:
    side = await announced_side(live)
    wid = side.webinar.id
    async with browser(live) as b:
        hidden = await open_form(b, wid, "embed")
        limit = pages_registration.EMBED_POSTS_PER_MINUTE
        for i in range(limit):
            r = await submit(b, wid, hidden, "embed", **NAMES, email=f"burst{i}@example.com")
            assert r.status_code == 200, (i, r.status_code)
        blocked = await submit(b, wid, hidden, "embed", email="one-too-many@example.com", company="Kept Corp")
        assert blocked.status_code == 429
        assert 1 <= int(blocked.headers["retry-after"]) <= 60
        assert translate("en", "register.error.rate_limited") in html.unescape(blocked.text)
        assert 'value="Kept Corp"' in blocked.text and 'value="one-too-many@example.com"' in blocked.text
        # The page form (CSRF cookie) is not throttled by the embed limit.
        assert (await submit(b, wid, **PERSON)).status_code == 200
    assert await live.services.db.fetchval("SELECT count(*) FROM registrations") == limit + 1


# Organizer settings ------------------------------------------------------------------------------
async def test_organizer_settings_and_snippet(live: LiveServer) -> None:
    side = await announced_side(live)
    db = live.services.db
    wid = side.webinar.id
    async with browser(live) as b:
        await b.login(side.organizer.email, PASSWORD)
        page = await b.get(f"/webinars/{wid}/registration")
        assert page.status_code == 200
        snippet = f'&lt;script src="{live.url}/static/embed.js" data-webinar="{wid}"&gt;&lt;/script&gt;'
        assert snippet in page.text
        version = await db.fetchval("SELECT form_version FROM webinars WHERE id = $1", wid)
        bad = await b.post_form(f"/webinars/{wid}/registration", {
            "required": ["phone", "bogus"], "speaker_question": "1", "speakers": "Ada",
            "sponsor_name": "S" * 201, "sponsor_logo_url": "javascript:alert(1)"})
        assert bad.status_code == 422
        assert translate("en", "register.error.url_invalid") in html.unescape(bad.text)
        assert translate("en", "register.error.too_long", max=200) in html.unescape(bad.text)
        assert 'value="javascript:alert(1)"' in bad.text and ">Ada</textarea>" in bad.text, "values kept"
        assert await db.fetchval("SELECT form_version FROM webinars WHERE id = $1", wid) == version
        good = await b.post_form(f"/webinars/{wid}/registration", {
            "required": ["phone", "company", "bogus"], "speakers": "Ada\nAlan", "sponsor_name": "Acme",
            "sponsor_logo_url": "https://example.com/logo.png"})
        assert good.status_code == 303 and good.headers["location"] == f"/webinars/{wid}/registration?saved=1"
        row = await db.fetchrow("SELECT * FROM webinars WHERE id = $1", wid)
        assert list(row["required_fields"]) == ["email", "phone", "company"]
        assert (row["speaker_question"], row["speakers"], row["sponsor_name"], row["form_version"]) == \
            (False, "Ada\nAlan", "Acme", version + 1)
        same = await b.post_form(f"/webinars/{wid}/registration", {
            "required": ["phone"], "speaker_question": "1", "speakers": "", "sponsor_name": "Acme",
            "sponsor_logo_url": ""})
        assert same.status_code == 303
        assert await db.fetchval("SELECT form_version FROM webinars WHERE id = $1", wid) == version + 1, \
            "only a sponsor change bumps the form version"
        webinar_page = await b.get(f"/webinars/{wid}")
        assert webinar_page.status_code == 200 and snippet in webinar_page.text
    async with browser(live) as stranger:
        await stranger.login(side.sponsor.email, PASSWORD)
        assert (await stranger.get(f"/webinars/{wid}/registration")).status_code in (403, 404)


async def test_authorization_matrix_covers_registration_routes(live: LiveServer) -> None:
    routes = authz.app_routes(live)
    assert ("/webinars/{webinar_id}/registration", "POST", "organizer") in routes
    assert ("/w/{webinar_id}/embed", "POST", "public") in routes
    await authz.test_routes_refuse_other_accounts_objects(live)
    await authz.test_positive_control_every_get_route_answers_its_role(live)


async def test_concurrent_registrations_and_duplicates(live: LiveServer) -> None:
    """A burst with the same people several times at once: one row and one participant per email."""
    side = await announced_side(live)
    db = live.services.db
    config = await load_form_config(db, side.webinar.id)

    async def one(i: int) -> registrations.RegistrationResult:
        return await register(db, side.webinar.id, _form(config, **NAMES, email=f"burst{i % 10}@example.com",
                                                         consent_marketing="1" if i % 2 else ""),
                              ip="10.0.0.1", user_agent="burst", source="page", locale="en", time_zone=None)

    results = await asyncio.gather(*(one(i) for i in range(40)))
    assert sum(r.created for r in results) == 10
    by_email: dict[uuid.UUID, set[uuid.UUID]] = {}
    for r in results:
        by_email.setdefault(r.registration_id, set()).add(r.participant.id)
    assert len(by_email) == 10 and all(len(p) == 1 for p in by_email.values())
    assert await db.fetchval("SELECT count(*) FROM registrations") == 10
    assert await db.fetchval("SELECT count(*) FROM participants WHERE webinar_id = $1", side.webinar.id) == 10
    assert await db.fetchval("SELECT count(*) FROM consents") == 40
