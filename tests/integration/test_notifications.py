"""Registrants' emails end to end: real PostgreSQL, a real SMTP server (aiosmtpd on
loopback), the job worker driven by a controllable clock."""

from __future__ import annotations

import asyncio
import datetime as dt
import tempfile
import uuid
from collections import Counter
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import AsyncIterator, Iterator

import pytest

from server.db import Database
from server.jobs import Job, JobWorker, Skipped
from server.mail import OutboxTransport, transport_from_settings
from server.notifications import Mailer, email_worker, format_when, on_webinar_cancelled, on_webinar_moved
from server.security import Signer
from server.settings import Settings
from server.unsubscribe import unsubscribe
from tests.support.mail_world import Clock, add_registration, drain, make_webinar, real_now, registered
from tests.support.smtp_server import SMTPSink, smtp_sink

SECRET = "test-secret"


def mail_settings(smtp: SMTPSink | None, data_dir: Path) -> Settings:
    extra: dict[str, object] = {"smtp_host": "127.0.0.1", "smtp_port": smtp.port, "smtp_tls": "none"} if smtp else {}
    return Settings.from_env({}, data_dir=data_dir, secret_key=SECRET, public_url="https://webinar.example.com",
                             mail_from="Webinar <webinar@example.com>", smtp_timeout_s=10, **extra)


@pytest.fixture
async def smtp() -> AsyncIterator[SMTPSink]:
    async with smtp_sink() as sink:
        yield sink


@pytest.fixture
def data_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="webinar-test-mail-") as tmp:
        yield Path(tmp)


def kinds_to(sink: SMTPSink) -> list[tuple[str, str]]:
    """(recipient, mail kind) of every received message, the kind read from its subject."""
    return [(str(msg["To"]), subject_kind(str(msg["Subject"]))) for msg in sink.messages]


def subject_kind(subject: str) -> str:
    for prefix, kind in (("Registration confirmed", "confirmation"), ("Reminder:", "reminder_d1"),
                         ("In 30 minutes", "reminder_h30"), ("Starting in 5 minutes", "reminder_h5"),
                         ("The replay of", "replay"), ("New date for", "rescheduled"), ("Cancelled:", "cancelled"),
                         ("Inscription confirmée", "confirmation"), ("Rappel :", "reminder_d1"),
                         ("Dans 30 minutes", "reminder_h30"), ("Dans 5 minutes", "reminder_h5"),
                         ("Le replay de", "replay"), ("Nouvelle date", "rescheduled"), ("Annulé", "cancelled")):
        if subject.startswith(prefix):
            return kind
    raise AssertionError(f"unexpected subject {subject!r}")


def text_of(msg: EmailMessage) -> str:
    body = msg.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


async def test_schedule_d1_h30_h5_and_replay_only_to_those_who_missed_the_live(
        db: Database, smtp: SMTPSink, data_dir: Path) -> None:
    t0 = real_now()
    start = t0 + dt.timedelta(days=3)
    webinar_id = await make_webinar(db, start)
    attendee, attendee_participant = await add_registration(db, webinar_id, "ada@example.com")
    absent, _ = await add_registration(db, webinar_id, "grace@example.com", locale="fr", first_name="Grace")
    clock = Clock(t0)
    assert await registered(db, attendee, clock()) == 5  # confirmation, D-1, H-30, H-5, D+2
    assert await registered(db, absent, clock()) == 5
    assert await registered(db, absent, clock()) == 0  # registering again schedules nothing new
    worker = email_worker(db, mail_settings(smtp, data_dir), Signer(SECRET), clock=clock)

    assert await drain(worker) == 2
    assert sorted(kinds_to(smtp)) == [("ada@example.com", "confirmation"), ("grace@example.com", "confirmation")]
    confirmation = next(m for m in smtp.messages if m["To"] == "ada@example.com")
    assert confirmation["X-Webinar-Category"] == "transactional" and confirmation["List-Unsubscribe"] is None
    assert "Hello Ada," in text_of(confirmation) and "Cloud costs" in str(confirmation["Subject"])
    assert f"https://webinar.example.com/w/{webinar_id}?token=" in text_of(confirmation)
    ics = [p for p in confirmation.iter_attachments() if p.get_content_type() == "text/calendar"]
    assert len(ics) == 1 and "SEQUENCE:0" in ics[0].get_content() and ics[0].get_param("method") == "REQUEST"
    french = next(m for m in smtp.messages if m["To"] == "grace@example.com")
    assert str(french["Subject"]).startswith("Inscription confirmée") and "Bonjour Grace," in text_of(french)

    expected = 2
    for kind, moment in (("reminder_d1", start - dt.timedelta(days=1)),
                         ("reminder_h30", start - dt.timedelta(minutes=30)),
                         ("reminder_h5", start - dt.timedelta(minutes=5))):
        clock.set(moment - dt.timedelta(seconds=1))
        assert await drain(worker) == 0, f"{kind} went out early"
        clock.set(moment)
        assert await drain(worker) == 2
        expected += 2
        assert len(smtp.messages) == expected
        assert {r for r, k in kinds_to(smtp)[-2:]} == {"ada@example.com", "grace@example.com"}
        assert {k for r, k in kinds_to(smtp)[-2:]} == {kind}

    # The live happens; only Ada's participant connects to the room during it.
    await db.execute("UPDATE webinars SET state = 'live', live_started_at = $2 WHERE id = $1", webinar_id, start)
    await db.execute("UPDATE participants SET first_seen_live_at = $2 WHERE id = $1", attendee_participant, start)
    await db.execute("UPDATE webinars SET state = 'replay', live_ended_at = $2 WHERE id = $1", webinar_id,
                     start + dt.timedelta(hours=1))
    clock.set(start + dt.timedelta(days=2) - dt.timedelta(seconds=1))
    assert await drain(worker) == 0
    clock.set(start + dt.timedelta(days=2))
    assert await drain(worker) == 2  # two jobs ran: one mail, one skipped
    replay = smtp.messages[-1]
    assert (replay["To"], subject_kind(str(replay["Subject"]))) == ("grace@example.com", "replay")
    assert len(smtp.messages) == 9
    assert replay["X-Webinar-Category"] == "marketing"
    assert replay["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert str(replay["List-Unsubscribe"]).startswith("<https://webinar.example.com/unsubscribe/")
    assert "https://webinar.example.com/unsubscribe/" in text_of(replay)
    assert all(m["List-Unsubscribe"] is None for m in smtp.messages[:-1])
    skipped = await db.fetchrow("SELECT state, last_error FROM jobs WHERE dedupe_key = $1",
                                f"email.replay:{attendee}:v0")
    assert skipped is not None and (skipped["state"], skipped["last_error"]) == ("skipped", "attended the live")
    assert len({m["Message-ID"] for m in smtp.messages}) == 9
    logged = await db.fetch("SELECT kind, to_email, marketing, message_id FROM emails_sent ORDER BY id")
    assert len(logged) == 9 and [r["marketing"] for r in logged] == [False] * 8 + [True]
    assert {r["message_id"] for r in logged} == {m["Message-ID"] for m in smtp.messages}
    clock.set(start + dt.timedelta(days=30))
    assert await drain(worker) == 0 and len(smtp.messages) == 9


async def test_late_registration_and_stale_reminders(db: Database, smtp: SMTPSink, data_dir: Path) -> None:
    t0 = real_now()
    start = t0 + dt.timedelta(hours=2)
    webinar_id = await make_webinar(db, start)
    reg, _ = await add_registration(db, webinar_id, "late@example.com")
    clock = Clock(t0)
    assert await registered(db, reg, clock()) == 4  # no D-1: its moment had passed
    keys = {r["kind"] for r in await db.fetch("SELECT kind FROM jobs")}
    assert keys == {"email.confirmation", "email.reminder_h30", "email.reminder_h5", "email.replay"}
    worker = email_worker(db, mail_settings(smtp, data_dir), Signer(SECRET), clock=clock)
    assert await drain(worker) == 1
    # The workers were down until 10 minutes before the start: H-30 is stale (15 min tolerance), H-5 goes.
    clock.set(start - dt.timedelta(minutes=10))
    assert await drain(worker) == 1
    clock.set(start - dt.timedelta(minutes=5))
    assert await drain(worker) == 1
    assert [k for _, k in kinds_to(smtp)] == ["confirmation", "reminder_h5"]
    stale = await db.fetchrow("SELECT state, last_error FROM jobs WHERE kind = 'email.reminder_h30'")
    assert stale is not None and (stale["state"], stale["last_error"]) == ("skipped", "too late")


async def test_exactly_once_across_a_restart_and_a_crash_after_smtp(
        db: Database, smtp: SMTPSink, data_dir: Path) -> None:
    t0 = real_now()
    start = t0 + dt.timedelta(days=3)
    webinar_id = await make_webinar(db, start)
    reg, _ = await add_registration(db, webinar_id, "ada@example.com")
    clock = Clock(t0)
    await registered(db, reg, clock())
    settings = mail_settings(smtp, data_dir).replace(job_lease_s=120)

    first = email_worker(db, settings, Signer(SECRET), clock=clock, worker_id="first")
    await first.start()
    async with asyncio.timeout(30):
        while len(smtp.messages) < 1:
            await asyncio.sleep(0.02)
    await first.stop()

    # A new process: its own pool, its own worker.
    pool = Database(db.dsn, min_size=1, max_size=3)
    await pool.connect()
    try:
        second = email_worker(pool, settings, Signer(SECRET), clock=clock, worker_id="second")
        assert await drain(second) == 0
        clock.set(start - dt.timedelta(days=1))

        # A worker hands the D-1 reminder to SMTP, records it, then dies before marking the job done.
        mailer = Mailer(pool, transport_from_settings(settings), Signer(SECRET), settings, clock=clock)
        sent = asyncio.Event()

        async def send_then_die(job: Job) -> None:
            await mailer.handle(job)
            sent.set()
            await asyncio.Event().wait()

        dying = JobWorker(pool, {"email.reminder_d1": send_then_die}, clock=clock, worker_id="dying", lease_s=120)
        task = asyncio.create_task(dying.run_once())
        async with asyncio.timeout(30):
            await sent.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert len(smtp.messages) == 2
        job = await pool.fetchrow("SELECT id, state, locked_by FROM jobs WHERE kind = 'email.reminder_d1'")
        assert job is not None and (job["state"], job["locked_by"]) == ("running", "dying")

        assert await drain(second) == 0  # the lease still runs
        clock.set(clock() + dt.timedelta(seconds=121))
        assert await drain(second) == 1  # taken over: sees the mail went out, does not send it again
        done = await pool.fetchrow("SELECT state, locked_by, attempts FROM jobs WHERE id = $1", job["id"])
        assert done is not None and (done["state"], done["locked_by"], done["attempts"]) == ("done", "second", 2)
        assert len(smtp.messages) == 2
        assert await pool.fetchval("SELECT count(*) FROM emails_sent WHERE job_id = $1", job["id"]) == 1
    finally:
        await pool.close()
    assert [k for _, k in kinds_to(smtp)] == ["confirmation", "reminder_d1"]


async def test_two_workers_polling_the_same_database_deliver_each_mail_once(db: Database, data_dir: Path) -> None:
    t0 = real_now()
    start = t0 + dt.timedelta(days=1, hours=1)
    webinar_id = await make_webinar(db, start)
    clock = Clock(t0)
    people = [f"p{n}@example.com" for n in range(15)]
    for email in people:
        reg, _ = await add_registration(db, webinar_id, email)
        await registered(db, reg, clock())
    clock.set(start - dt.timedelta(days=1) + dt.timedelta(minutes=1))  # confirmation and D-1 both due
    async with smtp_sink(delay_s=0.03) as smtp:
        settings = mail_settings(smtp, data_dir).replace(job_poll_s=0.02)
        pool = Database(db.dsn, min_size=1, max_size=5)
        await pool.connect()
        workers = [email_worker(db, settings, Signer(SECRET), clock=clock, worker_id="w1", batch=3),
                   email_worker(pool, settings, Signer(SECRET), clock=clock, worker_id="w2", batch=3)]
        try:
            for worker in workers:
                await worker.start()
            async with asyncio.timeout(120):
                while await db.fetchval("SELECT count(*) FROM jobs WHERE run_at <= $1 AND state <> 'done'",
                                        clock()) > 0:
                    await asyncio.sleep(0.05)
        finally:
            for worker in workers:
                await worker.stop()
            await pool.close()
        received = Counter(kinds_to(smtp))
    assert set(received) == {(p, k) for p in people for k in ("confirmation", "reminder_d1")}
    assert set(received.values()) == {1}
    assert await db.fetchval("SELECT count(*) FROM emails_sent") == 30
    by_worker = {r["locked_by"]: r["n"] for r in await db.fetch(
        "SELECT locked_by, count(*) AS n FROM jobs WHERE state = 'done' GROUP BY locked_by")}
    assert set(by_worker) == {"w1", "w2"} and sum(by_worker.values()) == 30


async def test_smtp_failures_are_retried_with_backoff_then_delivered_once(
        db: Database, smtp: SMTPSink, data_dir: Path) -> None:
    t0 = real_now()
    webinar_id = await make_webinar(db, t0 + dt.timedelta(days=3))
    reg, _ = await add_registration(db, webinar_id, "ada@example.com")
    refused, _ = await add_registration(db, webinar_id, "nobody@example.com")
    clock = Clock(t0)
    await registered(db, reg, clock())
    await registered(db, refused, clock())
    smtp.refused_recipients.add("nobody@example.com")
    worker = email_worker(db, mail_settings(smtp, data_dir), Signer(SECRET), clock=clock)
    await asyncio.to_thread(smtp.stop)  # the SMTP server is down

    async def confirmation(key_reg: uuid.UUID) -> dict[str, object]:
        row = await db.fetchrow("SELECT state, attempts, run_at, last_error FROM jobs WHERE dedupe_key = $1",
                                f"email.confirmation:{key_reg}")
        assert row is not None
        return dict(row)

    assert await drain(worker) == 2
    job = await confirmation(reg)
    assert (job["state"], job["attempts"], job["run_at"]) == ("pending", 1, t0 + dt.timedelta(seconds=60))
    assert job["last_error"]
    clock.set(t0 + dt.timedelta(seconds=59))
    assert await drain(worker) == 0  # backing off

    await asyncio.to_thread(smtp.start)
    smtp.fail_next_data("451 4.3.0 try again later")
    clock.set(t0 + dt.timedelta(seconds=60))
    assert await drain(worker) == 2
    job = await confirmation(reg)
    assert (job["state"], job["attempts"]) == ("pending", 2) and "451" in str(job["last_error"])
    assert job["run_at"] == clock() + dt.timedelta(seconds=120)
    # A recipient refused with 550 is not retried.
    gone = await confirmation(refused)
    assert (gone["state"], gone["attempts"]) == ("failed", 2) and "550" in str(gone["last_error"])

    clock.set(clock() + dt.timedelta(seconds=119))
    assert await drain(worker) == 0
    clock.set(clock() + dt.timedelta(seconds=1))
    assert await drain(worker) == 1
    job = await confirmation(reg)
    assert (job["state"], job["attempts"]) == ("done", 3)
    assert kinds_to(smtp) == [("ada@example.com", "confirmation")]
    assert await db.fetchval("SELECT count(*) FROM emails_sent") == 1


async def test_moved_webinar_old_reminders_skipped_new_ones_sent_once(
        db: Database, smtp: SMTPSink, data_dir: Path) -> None:
    t0 = real_now()
    old_start = t0 + dt.timedelta(days=3)
    new_start = t0 + dt.timedelta(days=5)
    webinar_id = await make_webinar(db, old_start)
    reg, _ = await add_registration(db, webinar_id, "ada@example.com")
    clock = Clock(t0)
    await registered(db, reg, clock())
    worker = email_worker(db, mail_settings(smtp, data_dir), Signer(SECRET), clock=clock)
    assert await drain(worker) == 1

    clock.set(t0 + dt.timedelta(hours=1))
    async with db.acquire() as conn, conn.transaction():  # what a reschedule does, in one transaction
        await conn.execute("UPDATE webinars SET starts_at = $2, schedule_version = schedule_version + 1 WHERE id = $1",
                           webinar_id, new_start)
        await on_webinar_moved(conn, webinar_id, now=clock())
    assert await db.fetchval("SELECT count(*) FROM jobs WHERE dedupe_key LIKE '%:v1'") == 5  # rescheduled, D-1...D+2
    async with db.acquire() as conn, conn.transaction():
        await on_webinar_moved(conn, webinar_id, now=clock())
    assert await db.fetchval("SELECT count(*) FROM jobs") == 10
    old = await db.fetch("SELECT state, last_error FROM jobs WHERE dedupe_key LIKE '%:v0'")
    assert len(old) == 4 and {(r["state"], r["last_error"]) for r in old} == {("skipped", "webinar moved")}

    assert await drain(worker) == 1
    moved = smtp.messages[-1]
    assert subject_kind(str(moved["Subject"])) == "rescheduled" and moved["X-Webinar-Category"] == "transactional"
    ics = [p for p in moved.iter_attachments() if p.get_content_type() == "text/calendar"]
    assert len(ics) == 1 and "SEQUENCE:1" in ics[0].get_content()
    assert format_when(new_start, "Europe/Paris", "en") in text_of(moved)

    for moment in (old_start - dt.timedelta(days=1), old_start - dt.timedelta(minutes=30),
                   old_start - dt.timedelta(minutes=5)):
        clock.set(moment)
        assert await drain(worker) == 0
    for moment in (new_start - dt.timedelta(days=1), new_start - dt.timedelta(minutes=30),
                   new_start - dt.timedelta(minutes=5)):
        clock.set(moment)
        assert await drain(worker) == 1
    assert [k for _, k in kinds_to(smtp)] == ["confirmation", "rescheduled", "reminder_d1", "reminder_h30",
                                              "reminder_h5"]


async def test_a_reminder_running_during_a_move_is_skipped(db: Database, smtp: SMTPSink, data_dir: Path) -> None:
    t0 = real_now()
    start = t0 + dt.timedelta(days=3)
    webinar_id = await make_webinar(db, start)
    reg, _ = await add_registration(db, webinar_id, "ada@example.com")
    clock = Clock(start - dt.timedelta(days=1))
    await registered(db, reg, clock() - dt.timedelta(hours=1))
    settings = mail_settings(smtp, data_dir)
    mailer = Mailer(db, transport_from_settings(settings), Signer(SECRET), settings, clock=clock)
    moved = False

    async def move_first(job: Job) -> Skipped | None:
        nonlocal moved
        if job.kind == "email.reminder_d1" and not moved:  # claimed, then the webinar moves before it is sent
            moved = True
            await db.execute("UPDATE webinars SET starts_at = starts_at + interval '2 days', "
                             "schedule_version = schedule_version + 1 WHERE id = $1", webinar_id)
        return await mailer.handle(job)

    worker = JobWorker(db, {k: move_first for k in mailer.handlers()}, clock=clock)
    assert await drain(worker) == 2  # the confirmation (within its day) and the D-1 reminder
    assert [k for _, k in kinds_to(smtp)] == ["confirmation"]
    row = await db.fetchrow("SELECT state, last_error FROM jobs WHERE kind = 'email.reminder_d1'")
    assert row is not None and (row["state"], row["last_error"]) == ("skipped", "webinar moved")


async def test_cancelled_webinar(db: Database, smtp: SMTPSink, data_dir: Path) -> None:
    t0 = real_now()
    start = t0 + dt.timedelta(days=3)
    webinar_id = await make_webinar(db, start)
    for email in ("ada@example.com", "grace@example.com"):
        reg, _ = await add_registration(db, webinar_id, email)
        await registered(db, reg, t0)
    clock = Clock(t0 + dt.timedelta(hours=1))
    worker = email_worker(db, mail_settings(smtp, data_dir), Signer(SECRET), clock=clock)
    assert await drain(worker) == 2
    async with db.acquire() as conn, conn.transaction():
        await conn.execute("UPDATE webinars SET state = 'cancelled' WHERE id = $1", webinar_id)
        await on_webinar_cancelled(conn, webinar_id, now=clock())
    assert await db.fetchval("SELECT count(*) FROM jobs WHERE kind = 'email.cancelled'") == 2
    assert await db.fetchval("SELECT count(*) FROM jobs WHERE state = 'pending' AND kind <> 'email.cancelled'") == 0
    assert await drain(worker) == 2
    cancelled = smtp.messages[-2:]
    assert {m["To"] for m in cancelled} == {"ada@example.com", "grace@example.com"}
    assert {subject_kind(str(m["Subject"])) for m in cancelled} == {"cancelled"}
    ics = [p for p in cancelled[0].iter_attachments() if p.get_content_type() == "text/calendar"]
    assert ics and ics[0].get_param("method") == "CANCEL" and "STATUS:CANCELLED" in ics[0].get_content()
    for moment in (start - dt.timedelta(days=1), start - dt.timedelta(minutes=5), start + dt.timedelta(days=2)):
        clock.set(moment)
        assert await drain(worker) == 0
    assert len(smtp.messages) == 4


async def test_replay_invitation_respects_unsubscribe_and_erasure(db: Database, smtp: SMTPSink, data_dir: Path) -> None:
    t0 = real_now()
    start = t0 + dt.timedelta(days=3)
    webinar_id = await make_webinar(db, start)
    regs = {}
    for email in ("keeps@example.com", "unsub@example.com", "erased@example.com"):
        regs[email], _ = await add_registration(db, webinar_id, email)
        await registered(db, regs[email], t0)
    assert await unsubscribe(db, regs["unsub@example.com"], via="page", ip="127.0.0.1", user_agent="test") == \
        "unsubscribed"
    clock = Clock(start - dt.timedelta(minutes=5))
    worker = email_worker(db, mail_settings(smtp, data_dir), Signer(SECRET), clock=clock)
    assert await drain(worker) == 12  # confirmations, D-1 and H-30 are stale by now; H-5 goes to all three
    assert sorted(kinds_to(smtp)) == sorted((e, "reminder_h5") for e in regs)  # unsubscribing keeps reminders
    await db.execute("DELETE FROM registrations WHERE id = $1", regs["erased@example.com"])
    await db.execute("UPDATE webinars SET state = 'replay' WHERE id = $1", webinar_id)
    clock.set(start + dt.timedelta(days=2))
    assert await drain(worker) == 3
    assert kinds_to(smtp)[3:] == [("keeps@example.com", "replay")]
    reasons = {r["dedupe_key"].split(":")[1]: r["last_error"] for r in await db.fetch(
        "SELECT dedupe_key, last_error FROM jobs WHERE kind = 'email.replay' AND state = 'skipped'")}
    assert reasons == {str(regs["unsub@example.com"]): "unsubscribed",
                       str(regs["erased@example.com"]): "registration erased"}


async def test_outbox_transport_writes_parseable_eml_files(db: Database, data_dir: Path) -> None:
    settings = mail_settings(None, data_dir)
    transport = transport_from_settings(settings)
    assert isinstance(transport, OutboxTransport) and transport.folder == data_dir / "outbox"
    t0 = real_now()
    start = t0 + dt.timedelta(days=3)
    webinar_id = await make_webinar(db, start, title="Outbox <test>")
    reg, _ = await add_registration(db, webinar_id, "ada@example.com")
    await registered(db, reg, t0)
    clock = Clock(t0)
    worker = email_worker(db, settings, Signer(SECRET), clock=clock)
    assert await drain(worker) == 1
    await db.execute("UPDATE webinars SET state = 'replay' WHERE id = $1", webinar_id)
    late, _ = await add_registration(db, webinar_id, "late@example.com")
    assert await registered(db, late, start + dt.timedelta(days=1)) == 1  # after the live: confirmation only
    await db.execute("DELETE FROM jobs WHERE payload->>'registration_id' = $1", str(late))
    clock.set(start + dt.timedelta(days=2))
    assert await drain(worker) == 4  # D-1, H-30 and H-5 skipped (webinar is over), replay sent
    files = sorted((data_dir / "outbox").iterdir())
    assert len(files) == 2 and all(f.suffix == ".eml" for f in files)  # no temporary file left
    messages = [BytesParser(policy=policy.default).parsebytes(f.read_bytes()) for f in files]
    for path, msg in zip(files, messages, strict=True):
        assert path.stem == str(msg["Message-ID"]).strip("<>")
        assert msg["To"] == "ada@example.com" and msg["From"] == "Webinar <webinar@example.com>"
        html = msg.get_body(("html",))
        assert html is not None and "Outbox &lt;test&gt;" in html.get_content()
    categories = sorted(str(m["X-Webinar-Category"]) for m in messages)
    assert categories == ["marketing", "transactional"]
    marketing = next(m for m in messages if m["X-Webinar-Category"] == "marketing")
    assert marketing["List-Unsubscribe"] and marketing["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # Writing the same message again replaces its file.
    await transport.send(messages[0])
    assert sorted((data_dir / "outbox").iterdir()) == files
    assert await db.fetchval("SELECT count(*) FROM emails_sent") == 2


async def test_hooks_plug_into_registration_and_scheduling(db: Database, smtp: SMTPSink, data_dir: Path) -> None:
    """The hooks of server.registrations and server.scheduling are wired by the
    composition root (server/app.py) and run inside their transactions."""
    import server.app  # noqa: F401  (registers the hooks)
    from server import registrations, scheduling
    from server.notifications import on_registered

    assert on_registered in registrations.AFTER_REGISTER
    assert on_webinar_moved in scheduling.AFTER_MOVE and on_webinar_cancelled in scheduling.AFTER_CANCEL

    t0 = real_now()
    start = t0 + dt.timedelta(days=60)
    webinar_id = await make_webinar(db, start)
    worker = email_worker(db, mail_settings(smtp, data_dir), Signer(SECRET))  # the real clock
    try:
        config = await registrations.load_form_config(db, webinar_id)
        result = await registrations.register(
            db, webinar_id, {"email": "Hook@Example.com", "first_name": "Hook", "last_name": "Test",
                             "form_version": str(config.form_version), "wording_digest": config.wording_digest("en")},
            ip="127.0.0.1", user_agent="test", source="page", locale="en", time_zone="Europe/Paris")
        kinds = sorted(r["kind"] for r in await db.fetch(
            "SELECT kind FROM jobs WHERE payload->>'registration_id' = $1", str(result.registration_id)))
        assert kinds == ["email.confirmation", "email.reminder_d1", "email.reminder_h30", "email.reminder_h5",
                         "email.replay"]
        assert await drain(worker) == 1
        await scheduling.reschedule(db, webinar_id, start + dt.timedelta(days=2))
        assert await db.fetchval("SELECT count(*) FROM jobs WHERE dedupe_key LIKE '%:v1'") == 5
        assert await drain(worker) == 1
        await scheduling.cancel(db, webinar_id)
        assert await db.fetchval("SELECT count(*) FROM jobs WHERE state = 'pending' AND kind <> 'email.cancelled'") == 0
        assert await drain(worker) == 1
    finally:
        await worker.stop()
    assert [k for _, k in kinds_to(smtp)] == ["confirmation", "rescheduled", "cancelled"]
    assert {m["To"] for m in smtp.messages} == {"hook@example.com"}
