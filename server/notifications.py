"""Registrants' emails (R-REG-3, R-REG-4): what is scheduled when, and when a
scheduled mail is no longer sent.

Mails (:data:`KINDS`), each a durable job of kind ``email.<name>``
(:mod:`server.jobs`), one per registration and mail (and schedule version
where it says so), sent once:

============  ==============  =====================  =========  ==========================
mail          category        moment                 tolerance  sent while the webinar is
============  ==============  =====================  =========  ==========================
confirmation  transactional   on registration        1 day      not cancelled/removed
reminder_d1   transactional   start - 1 day          6 h        announced
reminder_h30  transactional   start - 30 min         15 min     announced or live
reminder_h5   transactional   start - 5 min          5 min      announced or live
replay        marketing       start + 2 days         7 days     ended or replay, and only
                                                                to registrants who did not
                                                                attend the live
rescheduled   transactional   when moved             1 day      draft or announced
cancelled     transactional   when cancelled         2 days     cancelled
============  ==============  =====================  =========  ==========================

Rules, checked when the mail is about to go out (the job's handler):

- **Registrant erased** (no registration row): skipped.
- **Moved webinar**: reminders, replay invitation and rescheduled mail carry
  the ``schedule_version`` they were made for and the moment they aimed at; a
  job whose version or moment no longer matches the webinar is skipped (the
  move enqueued fresh ones; :func:`on_webinar_moved` also marks the old
  pending ones skipped at once).
- **Too late**: a mail is sent between its moment and moment + tolerance;
  later (the workers were down, SMTP was failing) it is skipped as stale.
  And a reminder or invitation whose moment has already passed when it would
  be scheduled is not scheduled at all: someone registering 2 hours before
  the start gets the confirmation (which gives the date) and the H-30 and
  H-5 reminders, not a D-1 reminder; someone registering after the live
  (for the replay) gets the confirmation only.
- **Unsubscribed**: marketing mail (the replay invitation) is skipped once
  the registration is unsubscribed (:mod:`server.unsubscribe`).
  Transactional mail is what the person asked for by registering and is
  sent regardless; it carries no unsubscribe link.
- **Attended**: the replay invitation is skipped when the registrant's room
  participant connected while the webinar was live
  (``participants.first_seen_live_at``, set by the room WebSocket).

The replay invitation is sent without a marketing consent (the person
registered for this very webinar and expects it), but it is not needed for
the service they asked for, so it is sent as *marketing*: one-click
unsubscribe link and List-Unsubscribe header, and never after an unsubscribe.

Texts come from the catalogs (``email.*`` keys) in the registration's
language; dates are shown in the registration's time zone. The
confirmation, rescheduled and cancelled mails carry a calendar invite
(:mod:`server.ics`: same UID, SEQUENCE = schedule version; METHOD:CANCEL
when cancelled).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg

from server import ics
from server.db import Database
from server.i18n import LANGUAGES, translate
from server.jobs import (
    Clock,
    Handler,
    Job,
    JobWorker,
    NewJob,
    PermanentFailure,
    Skipped,
    enqueue_many,
    utc_now,
)
from server.mail import (
    Attachment,
    Category,
    PermanentMailError,
    Transport,
    Unsubscribe,
    already_sent,
    build_message,
    message_id,
    record_sent,
    render_email,
    transport_from_settings,
)
from server.registrations import JobsHook, WebinarSchedule, personal_links
from server.security import Signer
from server.settings import Settings
from server.unsubscribe import unsubscribe_url

JOB_PREFIX = "email."
DEFAULT_TZ = "Europe/Paris"


@dataclass(frozen=True)
class MailKind:
    name: str
    category: Category
    offset: dt.timedelta | None
    """Moment relative to the webinar's start; None: when the job is enqueued."""
    tolerance: dt.timedelta
    """How long after its moment the mail may still go out."""
    versioned: bool
    """One per schedule version (moves make new ones and void the old)."""
    states: tuple[str, ...]
    """Webinar states in which the mail is still relevant."""
    action: str | None
    """Button: ``join`` (personal join link), ``replay`` (same link, other words) or none."""
    calendar: bool
    """Attach the calendar invite."""

    @property
    def job_kind(self) -> str:
        return JOB_PREFIX + self.name


_H = dt.timedelta(hours=1)
_M = dt.timedelta(minutes=1)
_D = dt.timedelta(days=1)
KINDS: dict[str, MailKind] = {k.name: k for k in (
    MailKind("confirmation", "transactional", None, _D, False, ("draft", "announced", "live", "ended", "replay"),
             "join", True),
    MailKind("reminder_d1", "transactional", -_D, 6 * _H, True, ("announced",), "join", False),
    MailKind("reminder_h30", "transactional", -30 * _M, 15 * _M, True, ("announced", "live"), "join", False),
    MailKind("reminder_h5", "transactional", -5 * _M, 5 * _M, True, ("announced", "live"), "join", False),
    MailKind("replay", "marketing", 2 * _D, 7 * _D, True, ("ended", "replay"), "replay", False),
    MailKind("rescheduled", "transactional", None, _D, True, ("draft", "announced"), "join", True),
    MailKind("cancelled", "transactional", None, 2 * _D, False, ("cancelled",), None, True),
)}
SCHEDULED = ("reminder_d1", "reminder_h30", "reminder_h5", "replay")
"""Mails tied to the start time, (re)scheduled on registration and on every move."""


def dedupe_key(kind: MailKind, registration_id: uuid.UUID, schedule_version: int) -> str:
    base = f"{kind.job_kind}:{registration_id}"
    return f"{base}:v{schedule_version}" if kind.versioned else base


def _job(kind: MailKind, registration_id: uuid.UUID, webinar_id: uuid.UUID, version: int,
         moment: dt.datetime) -> NewJob:
    payload = {"registration_id": str(registration_id), "webinar_id": str(webinar_id),
               "schedule_version": version, "moment": moment.isoformat()}
    return NewJob(kind.job_kind, dedupe_key(kind, registration_id, version), moment, payload)


def _scheduled_jobs(registration_id: uuid.UUID, webinar_id: uuid.UUID, starts_at: dt.datetime, version: int,
                    now: dt.datetime) -> list[NewJob]:
    jobs = []
    for name in SCHEDULED:
        kind = KINDS[name]
        assert kind.offset is not None
        moment = starts_at + kind.offset
        if moment >= now:
            jobs.append(_job(kind, registration_id, webinar_id, version, moment))
    return jobs


# Scheduling hooks (run inside the caller's transaction) ----------------------
class OnRegistered(JobsHook):
    """Enqueue the confirmation (now) and the reminders and replay invitation whose
    moment is still ahead; someone registering once the live is over (to watch
    the replay) gets the confirmation only. Registering again enqueues nothing
    new (every key exists already). A :class:`~server.registrations.JobsHook`: the
    registration writes these jobs in its own statement; ``await
    on_registered(conn, registration_id, created, now=...)`` enqueues them in the
    caller's transaction."""

    def jobs(self, registration_id: uuid.UUID, webinar: WebinarSchedule, now: dt.datetime) -> list[NewJob]:
        if webinar.state in ("cancelled", "removed"):
            return []
        jobs = [_job(KINDS["confirmation"], registration_id, webinar.webinar_id, webinar.schedule_version, now)]
        if webinar.state not in ("ended", "replay"):
            jobs += _scheduled_jobs(registration_id, webinar.webinar_id, webinar.starts_at, webinar.schedule_version,
                                    now)
        return jobs


on_registered = OnRegistered()
"""The :data:`server.registrations.AFTER_REGISTER` hook of registrants' emails."""


async def _skip_pending(conn: asyncpg.Connection, webinar_id: uuid.UUID, reason: str, now: dt.datetime,
                        *, older_than_version: int | None = None) -> int:
    status = await conn.execute(
        """UPDATE jobs SET state = 'skipped', last_error = $2, done_at = $3
           WHERE state = 'pending' AND payload->>'webinar_id' = $1 AND kind LIKE 'email.%'
             AND ($4::int IS NULL OR (payload->>'schedule_version')::int < $4)""",
        str(webinar_id), reason, now, older_than_version)
    return int(status.rsplit(" ", 1)[1])


async def on_webinar_moved(conn: asyncpg.Connection, webinar_id: uuid.UUID, *, now: dt.datetime | None = None) -> None:
    """After a move (``starts_at`` changed and ``schedule_version`` raised, same
    transaction): mark the old version's pending mails skipped, enqueue a
    "rescheduled" mail and the new reminders for every registrant. Calling it again
    for the same version adds nothing."""
    now = now or utc_now()
    webinar = await conn.fetchrow("SELECT id, starts_at, schedule_version, state FROM webinars WHERE id = $1",
                                  webinar_id)
    if webinar is None:
        return
    await _skip_pending(conn, webinar_id, "webinar moved", now, older_than_version=webinar["schedule_version"])
    jobs: list[NewJob] = []
    for reg in await conn.fetch("SELECT id FROM registrations WHERE webinar_id = $1", webinar_id):
        jobs.append(_job(KINDS["rescheduled"], reg["id"], webinar_id, webinar["schedule_version"], now))
        jobs += _scheduled_jobs(reg["id"], webinar_id, webinar["starts_at"], webinar["schedule_version"], now)
    await enqueue_many(conn, jobs)


async def on_webinar_cancelled(conn: asyncpg.Connection, webinar_id: uuid.UUID, *,
                               now: dt.datetime | None = None) -> None:
    """After a cancellation (state ``cancelled``, same transaction): mark every pending
    mail of the webinar skipped and enqueue a "cancelled" mail per registrant."""
    now = now or utc_now()
    webinar = await conn.fetchrow("SELECT id, schedule_version FROM webinars WHERE id = $1", webinar_id)
    if webinar is None:
        return
    await _skip_pending(conn, webinar_id, "webinar cancelled", now)
    regs = await conn.fetch("SELECT id FROM registrations WHERE webinar_id = $1", webinar_id)
    await enqueue_many(conn, [_job(KINDS["cancelled"], r["id"], webinar_id, webinar["schedule_version"], now)
                                     for r in regs])


# Relevance ---------------------------------------------------------------------
def why_not(kind: MailKind, payload: dict[str, Any], row: asyncpg.Record | dict[str, Any],
            now: dt.datetime) -> str | None:
    """The reason this mail is no longer sent, or None. ``row``: the registration joined
    with its webinar (``state``, ``starts_at``, ``schedule_version``,
    ``unsubscribed_at``, ``first_seen_live_at``)."""
    moment = dt.datetime.fromisoformat(payload["moment"])
    if row["state"] not in kind.states:
        return f"webinar is {row['state']}"
    if kind.versioned and payload["schedule_version"] != row["schedule_version"]:
        return "webinar moved"
    if kind.offset is not None and row["starts_at"] + kind.offset != moment:
        return "webinar moved"
    if now > moment + kind.tolerance:
        return "too late"
    if kind.category == "marketing" and row["unsubscribed_at"] is not None:
        return "unsubscribed"
    if kind.name == "replay" and row["first_seen_live_at"] is not None:
        return "attended the live"
    return None


# Sending -----------------------------------------------------------------------
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(DEFAULT_TZ)


def format_when(at: dt.datetime, time_zone: str, lang: str) -> str:
    """"Tuesday 14 May 2030 at 10:00 (Europe/Paris)" in ``lang``, in ``time_zone``."""
    zone = _zone(time_zone)
    local = at.astimezone(zone)
    weekdays = translate(lang, "date.weekdays").split(",")
    months = translate(lang, "date.months").split(",")
    return translate(lang, "email.when", weekday=weekdays[local.weekday()], day=local.day,
                     month=months[local.month - 1], year=local.year, time=local.strftime("%H:%M"), tz=zone.key)


_LOAD_SQL = """
SELECT r.id, r.email, r.first_name, r.last_name, r.locale, r.time_zone, r.unsubscribed_at, r.participant_id,
       p.first_seen_live_at,
       w.id AS webinar_id, w.title, w.description, w.starts_at, w.duration_minutes, w.state, w.schedule_version,
       a.name AS organizer_name
FROM registrations r
JOIN webinars w ON w.id = r.webinar_id
JOIN accounts a ON a.id = w.account_id
LEFT JOIN participants p ON p.id = r.participant_id
WHERE r.id = $1
"""


class Mailer:
    """The job handler of every ``email.*`` kind: checks relevance, composes, sends, records."""

    def __init__(self, db: Database, transport: Transport, signer: Signer, settings: Settings, *,
                 clock: Clock = utc_now) -> None:
        self.db = db
        self.transport = transport
        self.signer = signer
        self.settings = settings
        self.clock = clock

    def handlers(self) -> dict[str, Handler]:
        return {kind.job_kind: self.handle for kind in KINDS.values()}

    async def handle(self, job: Job) -> Skipped | None:
        kind = KINDS[job.kind.removeprefix(JOB_PREFIX)]
        if await already_sent(self.db, job.id):
            return None  # handed to SMTP by a worker that died before recording the job done
        row = await self.db.fetchrow(_LOAD_SQL, uuid.UUID(job.payload["registration_id"]))
        if row is None:
            return Skipped("registration erased")
        now = self.clock()
        reason = why_not(kind, job.payload, row, now)
        if reason is not None:
            return Skipped(reason)
        message = self.compose(kind, job, row, now)
        try:
            await self.transport.send(message)
        except PermanentMailError as exc:
            raise PermanentFailure(str(exc)) from exc
        await record_sent(self.db, job_id=job.id, registration_id=row["id"], kind=kind.name, to=row["email"],
                          message=message, at=self.clock())
        return None

    def compose(self, kind: MailKind, job: Job, row: asyncpg.Record, now: dt.datetime) -> EmailMessage:
        """The message of ``kind`` for the registration ``row`` (see ``_LOAD_SQL``)."""
        lang = row["locale"] if row["locale"] in LANGUAGES else "fr"
        title = row["title"]
        when = format_when(row["starts_at"], row["time_zone"], lang)
        base = self.settings.base_url
        join = (personal_links(base, self.signer, row["webinar_id"], row["participant_id"]).join_url
                if row["participant_id"] else f"{base}/w/{row['webinar_id']}")
        subject = translate(lang, f"email.{kind.name}.subject", title=title, when=when)
        unsubscribe = None
        if kind.category == "marketing":
            unsubscribe = Unsubscribe(unsubscribe_url(base, self.signer, row["id"]),
                                      self.settings.unsubscribe_mailbox)
        name = row["first_name"].strip()
        greeting = (translate(lang, "email.greeting", name=name) if name
                    else translate(lang, "email.greeting_anonymous"))
        text, html = render_email(
            lang,
            subject=subject,
            greeting=greeting,
            paragraphs=[translate(lang, f"email.{kind.name}.body", title=title, when=when)],
            action={"label": translate(lang, f"email.action.{kind.action}"), "url": join} if kind.action else None,
            footer=translate(lang, f"email.footer.{kind.category}", title=title),
            unsubscribe=({"label": translate(lang, "email.unsubscribe"), "url": unsubscribe.url}
                         if unsubscribe else None),
        )
        attachments = [self._invite(kind, row, join, now)] if kind.calendar else []
        return build_message(
            sender=self.settings.mail_from, to=row["email"], subject=subject, text=text, html=html,
            category=kind.category, message_id=message_id(self.settings.mail_from, job.dedupe_key, str(job.id)),
            date=now, unsubscribe=unsubscribe, attachments=attachments)

    def _invite(self, kind: MailKind, row: asyncpg.Record, join: str, now: dt.datetime) -> Attachment:
        """The calendar invite: REQUEST (SEQUENCE = schedule version), CANCEL for a cancelled webinar."""
        invite = ics.Invite(
            webinar_id=row["webinar_id"], registration_id=row["id"],
            host=urlsplit(self.settings.base_url).hostname or "localhost", title=row["title"],
            description=row["description"], starts_at=row["starts_at"],
            ends_at=row["starts_at"] + dt.timedelta(minutes=row["duration_minutes"]),
            sequence=row["schedule_version"], join_url=join, organizer_name=row["organizer_name"],
            organizer_email=_address(self.settings.mail_from), attendee_email=row["email"],
            attendee_name=f"{row['first_name']} {row['last_name']}".strip(), cancelled=kind.name == "cancelled")
        method = "CANCEL" if invite.cancelled else "REQUEST"
        return Attachment("invite.ics", ics.MEDIA_TYPE, ics.invite_ics(invite, now=now), (("method", method),))


def _address(sender: str) -> str:
    return email.utils.parseaddr(sender)[1] or sender


def email_worker(db: Database, settings: Settings, signer: Signer, *, clock: Clock = utc_now,
                 transport: Transport | None = None, worker_id: str | None = None, batch: int = 10,
                 extra_handlers: Mapping[str, Handler] | None = None) -> JobWorker:
    """The worker the server runs: every ``email.*`` kind (plus ``extra_handlers``, e.g. the
    daily housekeeping of server/daily.py), the transport the settings choose (SMTP, or
    the outbox folder), lease and poll interval from the settings."""
    mailer = Mailer(db, transport or transport_from_settings(settings), signer, settings, clock=clock)
    return JobWorker(db, {**mailer.handlers(), **(extra_handlers or {})}, clock=clock, worker_id=worker_id,
                     lease_s=settings.job_lease_s, poll_s=settings.job_poll_s, batch=batch)
