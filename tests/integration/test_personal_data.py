"""Personal data on a real PostgreSQL (R-GDPR-1..3): find, export and erase everything
about one email; after erasure nothing personal remains in any table (every text column
of every table, listed from information_schema) nor in an export, while aggregates stay;
the retention job; the processing log."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from billing.personal_data import (
    ERASED_NAME,
    ERASED_TEXT,
    erase_person,
    export_person,
    find_mentions,
    find_person,
    subject_hash,
    text_columns,
    unreviewed_links,
)
from billing.retention import run_retention
from rooms.events import append
from rooms.participants import for_staff
from server.accounts import create_account
from server.db import Database
from server.errors import RuleViolation
from server.orders import create_order
from server.registrations import load_form_config, register
from server.sessions import create_session
from server.users import create_user
from server.webinars import create_webinar, set_state
from tests.world import make_side

pytestmark = pytest.mark.integration

KEY = b"test-log-key"
EMAIL = "zephyrine.quillardet@example.org"
FIRST, LAST, PHONE, IP, AGENT = "Zéphyrine", "Quillardet", "+33612345678", "203.0.113.77", "ZephBrowser/1.0"
NEEDLES = [EMAIL, FIRST, LAST, PHONE, IP, AGENT]
BOB = "bob.control@example.org"


@dataclass
class Room:
    webinar_id: uuid.UUID
    subject_pid: uuid.UUID
    staff_pid: uuid.UUID
    bob_pid: uuid.UUID
    admin_id: uuid.UUID


def author(pid: uuid.UUID, name: str, role: str = "viewer") -> dict[str, Any]:
    return {"id": str(pid), "name": name, "role": role}


async def build_room(db: Database) -> Room:
    """A live webinar where the subject registered, logged in as a speaker too, and did one of everything;
    Bob, the control, did the same kinds of things."""
    side = await make_side(db, "P", dt.datetime.now(dt.UTC).replace(microsecond=0))
    admin = await create_user(db, f"admin-{uuid.uuid4().hex[:6]}@example.com", is_admin=True)
    wid = side.webinar.id
    await db.execute("UPDATE webinars SET sponsor_name = 'Acme' WHERE id = $1", wid)
    await set_state(db, wid, "announced")
    config = await load_form_config(db, wid)
    form = {"form_version": str(config.form_version), "wording_digest": config.wording_digest("en"),
            "consent_sponsor_share": "1", "consent_marketing": "1"}
    subject = await register(db, wid, {**form, "first_name": FIRST, "last_name": LAST, "email": EMAIL, "phone": "06 12 34 56 78",
                                       "company": f"{LAST} SARL", "job_function": "CEO",
                                       "question": f"Will {FIRST} get the slides?"},
                             ip=IP, user_agent=AGENT, source="page", locale="en", time_zone=None)
    bob = await register(db, wid, {**form, "first_name": "Bob", "last_name": "Control", "email": BOB,
                                   "question": "Is there a replay?"},
                         ip="198.51.100.1", user_agent="BobAgent", source="page", locale="en", time_zone=None)
    user = await create_user(db, EMAIL, name=f"{FIRST} {LAST}", password="correct horse battery")
    await db.execute("INSERT INTO webinar_members (webinar_id, user_id, role) VALUES ($1, $2, 'speaker')", wid, user.id)
    await create_session(db, user.id, max_age_s=3600, ip=IP, user_agent=AGENT)
    await db.execute("INSERT INTO login_attempts (email, ip, succeeded) VALUES ($1, $2::inet, false)", EMAIL, IP)
    await db.execute("INSERT INTO invitations (webinar_id, role, email, name, expires_at) "
                     "VALUES ($1, 'speaker', $2, $3, now() + interval '1 day')", wid, EMAIL, f"{FIRST} {LAST}")
    await db.execute("INSERT INTO emails_sent (registration_id, kind, to_email, message_id, marketing) "
                     "VALUES ($1, 'confirmation', $2, '<m1@example.org>', false)", subject.registration_id, EMAIL)
    await db.execute("INSERT INTO emails_sent (registration_id, kind, to_email, message_id, marketing) "
                     "VALUES ($1, 'confirmation', $2, '<m2@example.org>', false)", bob.registration_id, BOB)
    await db.execute("INSERT INTO audit_log (action, subject) VALUES ('user.invited', $1)", EMAIL)
    await db.execute("INSERT INTO jobs (kind, dedupe_key, run_at, state, last_error) "
                     "VALUES ('email.reminder_d1', $1, now(), 'failed', $2)", f"k-{uuid.uuid4()}", f"550 <{EMAIL}>: no such user")
    await set_state(db, wid, "live")
    staff = await for_staff(db, user, wid)
    me, sub_name = subject.participant.id, subject.participant.display_name
    bob_pid = bob.participant.id
    async with db.acquire() as conn, conn.transaction():
        await conn.execute("UPDATE participants SET first_seen_live_at = now() WHERE id = ANY($1::uuid[])", [me, bob_pid])
        for pid in (me, bob_pid):
            await conn.execute(
                "INSERT INTO attendance (participant_id, webinar_id, live_seconds, replay_seconds, attention_seconds, "
                "first_seen_at, last_seen_at) VALUES ($1, $2, 1200, 300, 1000, now(), now())", pid, wid)
            await conn.execute(
                "INSERT INTO attendance_sessions (id, webinar_id, participant_id, mode, started_at, last_beat_at, seconds) "
                "VALUES ($1, $2, $3, 'live', now(), now(), 1200)", uuid.uuid4(), wid, pid)
        await conn.execute("INSERT INTO downloads (account_id, webinar_id, user_id, file, ip, user_agent) "
                           "VALUES ($1, $2, $3, 'participants.csv', $4::inet, $5)", side.account_id, wid, user.id, IP, AGENT)
        for pid, name, text in ((me, sub_name, f"Hello from {FIRST}, call me on {PHONE}"),
                                (staff.id, staff.display_name, "Speaker here"),
                                (bob_pid, "Bob C.", "Hi all")):
            event = await append(conn, wid, "chat.message", {"author": author(pid, name), "text": text})
            await conn.execute("INSERT INTO chat_messages (webinar_id, event_id, participant_id, text) VALUES ($1, $2, $3, $4)",
                               wid, event.id, pid, text)
        qid = await conn.fetchval("INSERT INTO questions (webinar_id, participant_id, text) VALUES ($1, $2, $3) RETURNING id",
                                  wid, me, f"{LAST} asks: what about GDPR?")
        await append(conn, wid, "qa.question", {"question_id": qid, "text": f"{LAST} asks: what about GDPR?",
                                                "status": "open", "upvotes": 0, "source": "live", "author": sub_name})
        bob_q = await conn.fetchval("INSERT INTO questions (webinar_id, participant_id, text) VALUES ($1, $2, 'Bob asks') "
                                    "RETURNING id", wid, bob_pid)
        await conn.execute("INSERT INTO question_votes (question_id, participant_id) VALUES ($1, $2), ($3, $4)",
                           qid, bob_pid, bob_q, me)
        poll = await conn.fetchval("INSERT INTO polls (webinar_id, question, options, state) "
                                   "VALUES ($1, 'Useful?', '[\"yes\",\"no\"]', 'open') RETURNING id", wid)
        await conn.execute("INSERT INTO poll_votes (poll_id, participant_id, choices) VALUES ($1, $2, '{0}'), ($1, $3, '{1}')",
                           poll, me, bob_pid)
        cta = await conn.fetchval("INSERT INTO ctas (webinar_id, label, form_fields, consent_text, state) "
                                  "VALUES ($1, 'Call me', '{phone,company}', 'OK to call', 'pushed') RETURNING id", wid)
        await conn.execute(
            "INSERT INTO cta_interactions (cta_id, participant_id, kind, mode, data, consent) VALUES "
            "($1, $2, 'submit', 'live', $3::jsonb, true), ($1, $4, 'impression', 'live', '{}', false)",
            cta, me, json.dumps({"phone": PHONE, "company": f"{LAST} SARL"}), bob_pid)
        await append(conn, wid, "cta.submitted", {"cta_id": cta, "participant": author(me, sub_name)}, audience="moderators")
        rating = await conn.fetchval("INSERT INTO ratings (webinar_id, participant_id, stars, comment) VALUES "
                                     "($1, $2, 4, $3) RETURNING id", wid, me, f"Great, signed {FIRST}")
        await append(conn, wid, "rating.posted", {"rating_id": rating, "stars": 4, "comment": f"Great, signed {FIRST}",
                                                  "author": sub_name})
        await conn.execute("INSERT INTO ratings (webinar_id, participant_id, stars, comment) VALUES ($1, $2, 2, 'meh')",
                           wid, bob_pid)
        help_id = await conn.fetchval("INSERT INTO help_requests (webinar_id, participant_id, text) VALUES ($1, $2, $3) "
                                      "RETURNING id", wid, me, f"No sound, write to {EMAIL}")
        await append(conn, wid, "help.forwarded", {"request_id": help_id, "question": f"No sound, write to {EMAIL}"},
                     audience=f"p:{me}")
        await append(conn, wid, "help.unanswered", {"request_id": help_id, "question": f"No sound, write to {EMAIL}",
                                                    "participant": author(me, sub_name)}, audience="moderators")
        await append(conn, wid, "participant.muted", {"participant_id": str(me), "name": sub_name, "minutes": 5},
                     audience="moderators")
    return Room(wid, me, staff.id, bob_pid, admin.id)


AGGREGATES = {
    "participants": "SELECT count(*) FROM participants WHERE webinar_id = $1",
    "chat_messages": "SELECT count(*) FROM chat_messages WHERE webinar_id = $1",
    "questions": "SELECT count(*) FROM questions WHERE webinar_id = $1",
    "question_votes": "SELECT count(*) FROM question_votes v JOIN questions q ON q.id = v.question_id WHERE q.webinar_id = $1",
    "poll_votes": "SELECT count(*) FROM poll_votes v JOIN polls p ON p.id = v.poll_id WHERE p.webinar_id = $1",
    "cta_interactions": "SELECT count(*) FROM cta_interactions i JOIN ctas c ON c.id = i.cta_id WHERE c.webinar_id = $1",
    "rating_stars": "SELECT sum(stars) FROM ratings WHERE webinar_id = $1",
    "help_requests": "SELECT count(*) FROM help_requests WHERE webinar_id = $1",
    "room_events": "SELECT count(*) FROM room_events WHERE webinar_id = $1",
    "live_attendees": "SELECT count(*) FROM participants WHERE webinar_id = $1 AND first_seen_live_at IS NOT NULL",
    "viewing_seconds": "SELECT sum(live_seconds + replay_seconds) FROM attendance WHERE webinar_id = $1",
    "viewing_sessions": "SELECT count(*) FROM attendance_sessions WHERE webinar_id = $1",
    "downloads": "SELECT count(*) FROM downloads WHERE webinar_id = $1",
}


async def aggregates(db: Database, webinar_id: uuid.UUID) -> dict[str, int]:
    return {name: await db.fetchval(sql, webinar_id) for name, sql in AGGREGATES.items()}


async def test_find_and_export_everything_about_one_email(db: Database) -> None:
    room = await build_room(db)
    async with db.acquire() as conn:
        found = await find_person(conn, EMAIL.upper())
    counts = found.counts()
    assert counts == {
        "users": 1, "webinar_members": 1, "sessions": 1, "login_attempts": 1, "invitations": 1, "registrations": 1,
        "consents": 2, "emails_sent": 1, "participants": 2, "chat_messages": 2, "questions": 2, "question_votes": 1,
        "poll_votes": 1, "cta_interactions": 1, "ratings": 1, "help_requests": 1, "room_events": 8,
        "attendance": 1, "attendance_sessions": 1, "downloads": 1,
    }, counts
    assert [w["id"] for w in found.webinars] == [str(room.webinar_id)]
    body = await export_person(db, EMAIL, actor_id=room.admin_id, log_key=KEY)
    document = json.loads(body)
    assert document["format"] == "webinar-personal-data/1" and document["subject"] == EMAIL
    assert document["tables"]["registrations"][0]["phone"] == PHONE
    assert document["tables"]["consents"][0]["ip"] == IP
    assert {q["text"] for q in document["tables"]["questions"]} == {f"Will {FIRST} get the slides?",
                                                                    f"{LAST} asks: what about GDPR?"}
    assert document["tables"]["cta_interactions"][0]["data"] == {"phone": PHONE, "company": f"{LAST} SARL"}
    assert "password_hash" not in document["tables"]["users"][0]
    assert "token_hash" not in document["tables"]["sessions"][0]
    assert BOB not in body and "Hi all" not in body and "Bob asks" not in body   # nobody else's data
    log = await db.fetch("SELECT action, subject_hash, actor_id, counts FROM processing_log")
    assert [(r["action"], r["subject_hash"], r["actor_id"]) for r in log] == [
        ("export", subject_hash(KEY, EMAIL), room.admin_id)]
    assert json.loads(log[0]["counts"])["registrations"] == 1
    async with db.acquire() as conn:
        nobody = await find_person(conn, "nobody@example.org")
    assert not nobody.found


async def test_erasure_leaves_nothing_personal_anywhere_and_keeps_aggregates(db: Database) -> None:
    room = await build_room(db)
    before = await aggregates(db, room.webinar_id)
    async with db.acquire() as conn:
        assert await find_mentions(conn, NEEDLES), "the scan finds the person before erasure"
    report = await erase_person(db, EMAIL, actor_id=room.admin_id, log_key=KEY)
    assert report.leftovers == [] and report.unreviewed == []
    assert report.counts["registrations"] == 1 and report.counts["users"] == 1 and report.counts["participants"] == 2

    async with db.acquire() as conn:
        columns = await text_columns(conn)
        assert ("registrations", "phone") in columns and ("room_events", "data") in columns
        assert ("consents", "ip") in columns and ("ctas", "form_fields") in columns
        # Every text, json, inet and array column of every table: not one mention of the person.
        assert await find_mentions(conn, NEEDLES) == []
        again = await find_person(conn, EMAIL)
    assert not again.found
    export = json.loads(await export_person(db, EMAIL, actor_id=room.admin_id, log_key=KEY))
    assert export.pop("subject") == EMAIL   # the request's own address, nothing else
    assert export["tables"] == {} and export["webinars"] == []
    assert not any(n.lower() in json.dumps(export, ensure_ascii=False).lower() for n in NEEDLES)

    assert await aggregates(db, room.webinar_id) == before
    rows = await db.fetch("SELECT display_name, email, user_id, erased_at FROM participants WHERE id = ANY($1::uuid[])",
                          [room.subject_pid, room.staff_pid])
    assert all((r["display_name"], r["email"], r["user_id"]) == (ERASED_NAME, None, None) and r["erased_at"] for r in rows)
    assert await db.fetchval("SELECT text FROM chat_messages WHERE participant_id = $1", room.subject_pid) == ERASED_TEXT
    assert await db.fetchval("SELECT comment FROM ratings WHERE participant_id = $1", room.subject_pid) == ""
    assert await db.fetchval("SELECT count(*) FROM registrations WHERE webinar_id = $1", room.webinar_id) == 1
    # Bob, the control, keeps everything.
    assert await db.fetchval("SELECT text FROM chat_messages WHERE participant_id = $1", room.bob_pid) == "Hi all"
    assert await db.fetchval("SELECT display_name FROM participants WHERE id = $1", room.bob_pid) == "Bob C."
    assert await db.fetchval("SELECT count(*) FROM room_events WHERE data::text LIKE '%Hi all%'") == 1
    assert await db.fetchval("SELECT count(*) FROM emails_sent WHERE to_email = $1", BOB) == 1
    assert await db.fetchval("SELECT count(*) FROM consents c JOIN registrations r ON r.id = c.registration_id "
                             "WHERE r.email = $1", BOB) == 2
    # The replay still shows the message, without its author or text.
    chat = json.loads(await db.fetchval(
        "SELECT data::text FROM room_events WHERE kind = 'chat.message' AND data->'author'->>'id' = $1", str(room.subject_pid)))
    assert chat == {"author": {"id": str(room.subject_pid), "name": ERASED_NAME, "role": "viewer"}, "text": ERASED_TEXT}
    actions = [r["action"] for r in await db.fetch("SELECT action FROM processing_log ORDER BY id")]
    assert actions == ["erase", "export"]


async def test_erasure_reports_mentions_by_others_and_refuses_self(db: Database) -> None:
    room = await build_room(db)
    await db.execute("UPDATE chat_messages SET text = $2 WHERE participant_id = $1", room.bob_pid, f"mail {EMAIL}")
    report = await erase_person(db, EMAIL, actor_id=room.admin_id, log_key=KEY)
    assert ("chat_messages", "text", 1) in report.leftovers   # Bob wrote it: reported for review, not guessed at
    admin_email = await db.fetchval("SELECT email FROM users WHERE id = $1", room.admin_id)
    with pytest.raises(RuleViolation) as self_erase:
        await erase_person(db, admin_email, actor_id=room.admin_id, log_key=KEY)
    assert self_erase.value.code == "erase_self"
    with pytest.raises(RuleViolation):
        await erase_person(db, "not an email", actor_id=room.admin_id, log_key=KEY)


async def test_every_table_linked_to_a_person_is_reviewed(db: Database) -> None:
    """A new table referencing participants, registrations or users must say what erasure does
    with it (billing.personal_data.REVIEWED_LINKS)."""
    async with db.acquire() as conn:
        assert await unreviewed_links(conn) == []


# Retention (R-GDPR-1) ------------------------------------------------------------------------------
async def _attendee(db: Database, webinar_id: uuid.UUID, name: str) -> uuid.UUID:
    email = f"{name.lower()}@example.net"
    pid: uuid.UUID = await db.fetchval(
        "INSERT INTO participants (webinar_id, display_name, email) VALUES ($1, $2, $3) RETURNING id", webinar_id, name, email)
    rid = await db.fetchval(
        "INSERT INTO registrations (webinar_id, email, first_name, last_name, phone, participant_id) "
        "VALUES ($1, $2, $3, 'Surname', '+33700000000', $4) RETURNING id", webinar_id, email, name, pid)
    await db.execute("INSERT INTO consents (registration_id, kind, granted, ip, form_version, wording) "
                     "VALUES ($1, 'marketing', true, '192.0.2.9', 1, 'ok')", rid)
    async with db.acquire() as conn, conn.transaction():
        event = await append(conn, webinar_id, "chat.message", {"author": author(pid, name), "text": f"{name} says hi"})
        await conn.execute("INSERT INTO chat_messages (webinar_id, event_id, participant_id, text) VALUES ($1, $2, $3, $4)",
                           webinar_id, event.id, pid, f"{name} says hi")
    return pid


async def test_retention_erases_participants_after_contract_plus_retention(db: Database) -> None:
    old_account = await create_account(db, f"Old {uuid.uuid4().hex[:6]}")
    old_order = await create_order(db, old_account.id, reference="OLD", signed_on=dt.date(2024, 1, 1),
                                   contract_start=dt.date(2024, 1, 1), contract_end=dt.date(2024, 12, 31),
                                   webinars_bought=1, kind="advertiser", price_per_webinar_cents=1)
    new_order = await create_order(db, old_account.id, reference="NEW", signed_on=dt.date(2025, 6, 1),
                                   contract_start=dt.date(2025, 6, 1), contract_end=dt.date(2026, 5, 31),
                                   webinars_bought=1, kind="advertiser", price_per_webinar_cents=1)
    short = await create_account(db, f"Short {uuid.uuid4().hex[:6]}")
    await db.execute("UPDATE accounts SET retention_months = 0 WHERE id = $1", short.id)
    short_order = await create_order(db, short.id, reference="SHORT", signed_on=dt.date(2025, 1, 1),
                                     contract_start=dt.date(2025, 1, 1), contract_end=dt.date(2025, 12, 30),
                                     webinars_bought=1, kind="advertiser", price_per_webinar_cents=1)
    webinars = {}
    for order, when in ((old_order, dt.datetime(2024, 5, 2, 10, tzinfo=dt.UTC)),
                        (new_order, dt.datetime(2025, 9, 2, 10, tzinfo=dt.UTC)),
                        (short_order, dt.datetime(2025, 5, 2, 10, tzinfo=dt.UTC))):
        w = await create_webinar(db, order.account_id, title=order.reference, starts_at=when, duration_minutes=60,
                                 room_type="webcam", order_id=order.id)
        webinars[order.reference] = w.id
    await _attendee(db, webinars["OLD"], "Oldie")
    await _attendee(db, webinars["NEW"], "Newbie")
    await _attendee(db, webinars["SHORT"], "Shorty")

    # 31 December 2025, Paris: the old contract's data is kept one more day; the short one is due.
    first = await run_retention(db, dt.datetime(2025, 12, 31, 12, tzinfo=dt.UTC))
    assert [r.order_id for r in first] == [short_order.id]
    second = await run_retention(db, dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC))
    assert [r.order_id for r in second] == [old_order.id]
    assert second[0].counts["registrations"] == 1 and second[0].counts["participants"] == 1
    assert await run_retention(db, dt.datetime(2026, 1, 2, 12, tzinfo=dt.UTC)) == []   # idempotent

    async with db.acquire() as conn:
        assert await find_mentions(conn, ["oldie", "shorty", "192.0.2.9"]) == [("consents", "ip", 1)]  # Newbie's consent
        assert await find_mentions(conn, ["newbie"]) != []   # the running contract is untouched
    for ref in ("OLD", "SHORT"):
        assert await db.fetchval("SELECT count(*) FROM participants WHERE webinar_id = $1 AND erased_at IS NOT NULL",
                                 webinars[ref]) == 1
        assert await db.fetchval("SELECT count(*) FROM chat_messages WHERE webinar_id = $1", webinars[ref]) == 1
    log = await db.fetch("SELECT action, account_id, subject_hash, counts FROM processing_log ORDER BY id")
    assert [(r["action"], r["account_id"], r["subject_hash"]) for r in log] == [
        ("retention", short.id, None), ("retention", old_account.id, None)]
    assert json.loads(log[1]["counts"])["order_id"] == str(old_order.id)
