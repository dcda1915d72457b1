"""Registration to a webinar (R-REG-1, R-REG-2, R-REG-4, R-ANA-2).

One registration per person (email, lower-cased) and webinar: registering
again updates the row (``created=False``) and keeps the same room participant,
so the person's join link names the same identity. Empty optional fields of a
second submission never erase what the first one gave.

Fields (R-REG-2): :data:`FIELDS`; the organizer picks the required ones
(``webinars.required_fields``; the email is always required: it is the
identity). Limits are the migration's (:data:`MAX_LENGTHS`, characters).
Values are cleaned of control and bidi-override characters (NFC); they are
stored as typed and escaped on output (the templates autoescape). Email
syntax is checked with ``email-validator`` without DNS (no network wait in a
registration burst); phones are parsed with ``phonenumbers`` (default region
FR) and stored in E.164.

Consent (R-REG-4, R-ANA-2): two separate boxes, never pre-ticked: sharing
data with the named sponsor (shown only when the webinar has a sponsor) and
marketing email from the organizer. Every accepted submission adds one
``consents`` row per box shown, granted or refused, with the time, IP, user
agent, ``form_version``, the exact wording shown and the sponsor name. Older
rows are never deleted: the latest row per kind is the person's current
choice. The form carries ``form_version`` and a digest of the wording it
showed; when either no longer matches (the organizer changed the sponsor
meanwhile), the submission is refused with ``form_changed`` and the form is
shown again with the new wording and the person's values, so a proof always
records what the person really saw.

The speaker question (when ``webinars.speaker_question``) goes to the Q&A as a
``questions`` row with ``source = 'registration'``.

Cost per call (the registration burst): a new registration is ONE statement
(registration, participant, consents, question and the email jobs of the
:class:`JobsHook` hooks together, see :data:`_REGISTER_SQL`), with no
transaction around it unless plain :data:`AFTER_REGISTER` hooks need one;
registering again adds one short transaction for the participant. The
webinar's form configuration is cached per process and checked by that
statement (see :func:`register`). Compiled data (translation table, time-zone
names, consent wordings) is built once per process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import ipaddress
import unicodedata
import uuid
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any
from urllib.parse import quote, urlsplit
from zoneinfo import available_timezones

import asyncpg
import phonenumbers
from email_validator import EmailNotValidError, validate_email

from rooms.participants import Participant, join_token
from server.db import Database
from server.errors import NotFound, RuleViolation
from server.i18n import LANGUAGES, translate
from server.jobs import NewJob, enqueue_args, enqueue_many, enqueue_sql, utc_now
from server.security import Signer

FIELDS: tuple[str, ...] = (
    "first_name", "last_name", "email", "phone", "job_function", "company", "company_size", "department", "industry",
)
"""The qualification fields of R-REG-2, in form order."""
MAX_LENGTHS: dict[str, int] = {
    "first_name": 100, "last_name": 100, "email": 254, "phone": 40, "job_function": 100, "company": 200,
    "company_size": 40, "department": 100, "industry": 100, "question": 500,
}
"""Longest value per field, in characters (the CHECKs of migration 0003)."""
ALWAYS_REQUIRED = frozenset({"email"})
COMPANY_SIZES: tuple[str, ...] = ("1-9", "10-49", "50-249", "250-999", "1000-4999", "5000+")
"""Choices of the company size field (employees)."""
CONSENT_KINDS: tuple[str, ...] = ("sponsor_share", "marketing")
OPEN_STATES = frozenset({"announced", "live", "ended", "replay"})
"""Webinar states that accept registrations (ended/replay: registration to the replay)."""
SOURCES = ("page", "iframe", "import")
DEFAULT_TIME_ZONE = "Europe/Paris"
DEFAULT_REGION = "FR"
"""Phone numbers without an international prefix are read as French."""
MAX_USER_AGENT = 500
"""Characters of the User-Agent header kept as consent proof."""
SETTINGS_LIMITS = {"speakers": 2000, "sponsor_name": 200, "sponsor_logo_url": 2000}
"""Characters, per organizer setting (migration 0003)."""

AfterRegister = Callable[[asyncpg.Connection, uuid.UUID, bool], Awaitable[None]]
AFTER_REGISTER: list[AfterRegister] = []
"""Called inside the registration transaction with (conn, registration_id, created),
in order, after the registration, its consents and question are written. Email
(confirmation, reminders) plugs in here: ``notifications.on_registered``, a
:class:`JobsHook`, whose jobs are written by the registration statement itself
(before any other hook runs). An exception rolls the registration back."""


@dataclass(frozen=True)
class WebinarSchedule:
    """What job planning needs of a webinar."""

    webinar_id: uuid.UUID
    state: str
    starts_at: dt.datetime
    schedule_version: int


_SCHEDULE_SQL = """SELECT w.id AS webinar_id, w.state, w.starts_at, w.schedule_version
    FROM registrations r JOIN webinars w ON w.id = r.webinar_id WHERE r.id = $1"""


class JobsHook(ABC):
    """An :data:`AFTER_REGISTER` hook whose whole effect is enqueueing durable jobs
    (:mod:`server.jobs`) computed from the registration and its webinar, and that
    gives them as data (:meth:`jobs`, no I/O). :func:`register` writes them in the
    registration's own statement (one round trip for all of it) and then does not
    call the hook. Called as a plain hook (``await hook(conn, registration_id,
    created)``, inside the caller's transaction), it reads the webinar and
    enqueues them itself."""

    @abstractmethod
    def jobs(self, registration_id: uuid.UUID, webinar: WebinarSchedule, now: dt.datetime) -> list[NewJob]:
        """The jobs of this registration; keys that exist already are left as they are."""

    async def __call__(self, conn: asyncpg.Connection, registration_id: uuid.UUID, created: bool = True, *,
                       now: dt.datetime | None = None) -> None:
        row = await conn.fetchrow(_SCHEDULE_SQL, registration_id)
        if row is not None:
            await enqueue_many(conn, self.jobs(registration_id, WebinarSchedule(**dict(row)), now or utc_now()))


# Cleaning ----------------------------------------------------------------
_BIDI_CONTROLS = [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A), 0xFEFF]
_STRIP_LINE: dict[int, Any] = {c: None for c in [*range(0x20), 0x7F, *range(0x80, 0xA0), *_BIDI_CONTROLS]}
_STRIP_LINE.update({0x09: " ", 0x0A: " ", 0x0D: " "})
_STRIP_TEXT = {**_STRIP_LINE, 0x0A: "\n", 0x0D: None}
"""Translation tables (built once): C0/C1 controls and bidi overrides removed; tabs
become spaces; the multi-line table keeps line feeds (``\\r`` goes)."""


def clean_line(value: str) -> str:
    """One-line text: NFC, controls removed, white space runs collapsed, trimmed."""
    return " ".join(unicodedata.normalize("NFC", value).translate(_STRIP_LINE).split())


def clean_text(value: str) -> str:
    """Multi-line text: like :func:`clean_line` but line breaks are kept (at most two in a row)."""
    lines = [" ".join(line.split()) for line in unicodedata.normalize("NFC", value).translate(_STRIP_TEXT).split("\n")]
    text = "\n".join(lines).strip()
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text


@cache
def _time_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def valid_time_zone(name: str | None) -> str:
    """``name`` when it is an IANA time zone, else :data:`DEFAULT_TIME_ZONE`."""
    return name if name and len(name) <= 64 and name in _time_zones() else DEFAULT_TIME_ZONE


# The webinar's form --------------------------------------------------------
@dataclass(frozen=True)
class FormConfig:
    """What the registration page shows and :func:`register` checks, for one webinar."""

    webinar_id: uuid.UUID
    account_id: uuid.UUID
    organizer_name: str
    """The client account's name (who sends marketing email)."""
    title: str
    description: str
    language: str
    starts_at: dt.datetime
    duration_minutes: int
    room_type: str
    state: str
    required_fields: frozenset[str]
    speaker_question: bool
    speakers: str
    sponsor_name: str
    sponsor_logo_url: str
    form_version: int
    schedule_version: int
    fingerprint: str = ""
    """Digest of every column above as stored (:data:`_FINGERPRINT_SQL`): the registration
    statement writes only while the stored webinar still has this digest."""

    @property
    def ends_at(self) -> dt.datetime:
        return self.starts_at + dt.timedelta(minutes=self.duration_minutes)

    @property
    def schedule(self) -> WebinarSchedule:
        return WebinarSchedule(self.webinar_id, self.state, self.starts_at, self.schedule_version)

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    @property
    def consent_kinds(self) -> tuple[str, ...]:
        """Boxes shown: the sponsor one only when the webinar names a sponsor."""
        return CONSENT_KINDS if self.sponsor_name else ("marketing",)

    def required(self, field: str) -> bool:
        return field in ALWAYS_REQUIRED or field in self.required_fields

    def wording(self, lang: str, kind: str) -> str:
        return consent_wording(lang, kind, sponsor_name=self.sponsor_name, organizer_name=self.organizer_name)

    def wording_digest(self, lang: str) -> str:
        """Short digest of every consent wording shown in ``lang`` (sent back by the form)."""
        return _wording_digest(lang, self.consent_kinds, self.sponsor_name, self.organizer_name)


_FINGERPRINT_SQL = """md5(ROW(w.id, w.account_id, a.name, w.title, w.description, w.language, w.starts_at,
    w.duration_minutes, w.room_type, w.state, w.required_fields, w.speaker_question, w.speakers, w.sponsor_name,
    w.sponsor_logo_url, w.form_version, w.schedule_version)::text)"""
"""The digest of a webinar's form configuration (``w``: webinars, ``a``: its account)."""
_CONFIG_SQL = f"""SELECT w.id, w.account_id, a.name AS organizer_name, w.title, w.description, w.language, w.starts_at,
           w.duration_minutes, w.room_type, w.state, w.required_fields, w.speaker_question, w.speakers,
           w.sponsor_name, w.sponsor_logo_url, w.form_version, w.schedule_version, {_FINGERPRINT_SQL} AS fingerprint
    FROM webinars w JOIN accounts a ON a.id = w.account_id WHERE w.id = $1"""
CONFIG_CACHE_SIZE = 1024
"""Webinars whose form configuration a process keeps for :func:`register` (see there)."""
_config_cache: dict[uuid.UUID, FormConfig] = {}


def _config(row: asyncpg.Record) -> FormConfig:
    values = dict(row)
    values["webinar_id"] = values.pop("id")
    values["required_fields"] = frozenset(values["required_fields"] or ())
    return FormConfig(**values)


async def load_form_config(db: Database | asyncpg.Connection, webinar_id: uuid.UUID) -> FormConfig:
    """The webinar's current form configuration, read from the database (never cached)."""
    row = await db.fetchrow(_CONFIG_SQL, webinar_id)
    if row is None:
        _config_cache.pop(webinar_id, None)
        raise NotFound("webinar")
    config = _config(row)
    if webinar_id not in _config_cache and len(_config_cache) >= CONFIG_CACHE_SIZE:
        _config_cache.clear()  # simple bound; a miss costs one query
    _config_cache[webinar_id] = config
    return config


@lru_cache(maxsize=4096)
def _wording_digest(lang: str, kinds: tuple[str, ...], sponsor_name: str, organizer_name: str) -> str:
    text = "\x1f".join(f"{kind}={consent_wording(lang, kind, sponsor_name=sponsor_name, organizer_name=organizer_name)}"
                       for kind in kinds)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


@lru_cache(maxsize=4096)
def consent_wording(lang: str, kind: str, *, sponsor_name: str, organizer_name: str) -> str:
    """The exact sentence next to a consent box: shown on the form and stored as proof
    (remembered per process: the catalogs do not change while it runs)."""
    if kind not in CONSENT_KINDS:
        raise ValueError(f"unknown consent kind {kind!r}")
    return translate(lang, f"register.consent.{kind}", sponsor=sponsor_name, organizer=organizer_name)


# Validation ----------------------------------------------------------------
class RegistrationInvalid(Exception):
    """The form has errors: ``errors`` maps a field (or ``_form``) to an error code
    (``register.error.<code>`` in the catalogs); ``values`` are the cleaned values to
    show again; ``config`` the webinar's current form (to show it again)."""

    def __init__(self, errors: dict[str, str], values: dict[str, str], config: FormConfig) -> None:
        super().__init__(", ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors
        self.values = values
        self.config = config


class RegistrationClosed(RuleViolation):
    """The webinar is a draft, cancelled or removed: no registration (code ``registration_closed``)."""

    def __init__(self, config: FormConfig) -> None:
        super().__init__("registration_closed", state=config.state)
        self.config = config


@dataclass(frozen=True)
class CleanForm:
    values: dict[str, str]
    """Every field of :data:`FIELDS` plus ``question``, cleaned (phone in E.164, email lower-cased)."""
    consents: dict[str, bool]
    """Granted or refused, per box shown."""


def _raw(form: Mapping[str, Any], name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def clean_form(config: FormConfig, form: Mapping[str, Any], lang: str) -> CleanForm:
    """Check a submitted form against the webinar's settings (no I/O).
    Raises :class:`RegistrationInvalid` with every field's error at once."""
    errors: dict[str, str] = {}
    values: dict[str, str] = {}
    for name in (*FIELDS, "question"):
        raw = _raw(form, name)
        value = clean_text(raw) if name == "question" else clean_line(raw)
        values[name] = value
        if name == "question" and not config.speaker_question:
            values[name] = ""
            continue
        if len(value) > MAX_LENGTHS[name]:
            errors[name] = "too_long"
        elif not value:
            if name != "question" and config.required(name):
                errors[name] = "required"
        elif name == "email":
            try:
                normalized = validate_email(value, check_deliverability=False).normalized.lower()
            except EmailNotValidError:
                errors[name] = "email_invalid"
            else:
                if len(normalized) > MAX_LENGTHS["email"]:
                    errors[name] = "too_long"
                else:
                    values[name] = normalized
        elif name == "phone":
            try:
                number = phonenumbers.parse(value, DEFAULT_REGION)
            except phonenumbers.NumberParseException:
                errors[name] = "phone_invalid"
            else:
                if phonenumbers.is_valid_number(number):
                    values[name] = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
                else:
                    errors[name] = "phone_invalid"
        elif name == "company_size" and value not in COMPANY_SIZES:
            errors[name] = "choice_invalid"
    consents: dict[str, bool] = {}
    for kind in config.consent_kinds:
        raw = _raw(form, f"consent_{kind}")
        if raw not in ("", "1"):
            errors[f"consent_{kind}"] = "choice_invalid"
        consents[kind] = raw == "1"
    if _raw(form, "form_version") != str(config.form_version) or _raw(form, "wording_digest") != config.wording_digest(lang):
        errors["_form"] = "form_changed"
    if errors:
        raise RegistrationInvalid(errors, {**values, **{f"consent_{k}": "1" if v else "" for k, v in consents.items()}},
                                  config)
    return CleanForm(values, consents)


def display_name(first_name: str, last_name: str, email: str) -> str:
    """The name shown in the room: "Jeanne D." / "Jeanne" / the email's local part (1 to 80 characters)."""
    if first_name:
        name = f"{first_name} {last_name[0]}." if last_name else first_name
    elif last_name:
        name = last_name
    else:
        name = email.split("@", 1)[0]
    return name[:80].strip() or "?"


# Registering -----------------------------------------------------------------
@dataclass(frozen=True)
class RegistrationResult:
    registration_id: uuid.UUID
    participant: Participant
    """The room participant of this registration: its join token is the personal link."""
    created: bool
    """False when this email was already registered (the row was updated)."""
    webinar: FormConfig


_REGISTER_SQL = f"""
WITH current AS (
    SELECT w.id FROM webinars w JOIN accounts a ON a.id = w.account_id
    WHERE w.id = $1 AND {_FINGERPRINT_SQL} = $15
), old AS (
    SELECT question FROM registrations WHERE webinar_id = $1 AND email = $2
), reg AS (
    INSERT INTO registrations (id, participant_id, webinar_id, email, first_name, last_name, phone, job_function,
                               company, company_size, department, industry, question, source, locale, time_zone)
    SELECT $16, $17, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14 FROM current
    ON CONFLICT (webinar_id, email) DO UPDATE SET
        first_name = COALESCE(NULLIF(EXCLUDED.first_name, ''), registrations.first_name),
        last_name = COALESCE(NULLIF(EXCLUDED.last_name, ''), registrations.last_name),
        phone = COALESCE(NULLIF(EXCLUDED.phone, ''), registrations.phone),
        job_function = COALESCE(NULLIF(EXCLUDED.job_function, ''), registrations.job_function),
        company = COALESCE(NULLIF(EXCLUDED.company, ''), registrations.company),
        company_size = COALESCE(NULLIF(EXCLUDED.company_size, ''), registrations.company_size),
        department = COALESCE(NULLIF(EXCLUDED.department, ''), registrations.department),
        industry = COALESCE(NULLIF(EXCLUDED.industry, ''), registrations.industry),
        question = COALESCE(NULLIF(EXCLUDED.question, ''), registrations.question),
        locale = EXCLUDED.locale, time_zone = EXCLUDED.time_zone, updated_at = now()
    RETURNING id, participant_id, first_name, last_name, (xmax = 0) AS created
), participant AS (
    INSERT INTO participants (id, webinar_id, display_name, email)
    SELECT $17, $1, $18, $2 FROM reg WHERE reg.created
), consent AS (
    INSERT INTO consents (registration_id, kind, granted, ip, user_agent, form_version, wording, sponsor_name)
    SELECT reg.id, t.kind, t.granted, $19::inet, $20, $21, t.wording, t.sponsor
    FROM reg, unnest($22::text[], $23::boolean[], $24::text[], $25::text[]) AS t(kind, granted, wording, sponsor)
), question AS (
    INSERT INTO questions (webinar_id, participant_id, anonymous, text, source)
    SELECT $1, NULL, false, $11, 'registration' FROM reg
    WHERE $11 <> '' AND $11 IS DISTINCT FROM (SELECT question FROM old)
), job AS (
    {enqueue_sql(26, only_if="EXISTS (SELECT FROM reg WHERE reg.created)")}
)
SELECT reg.* FROM reg
"""
"""One statement for the registration, its consents and question, and for a new registration
its participant and the jobs of the :class:`JobsHook` hooks (``$26..$29``); ids are chosen
beforehand so that the rows can name each other (foreign keys are checked at the end of the
statement). It writes nothing (no row returned) when the webinar's configuration no longer has
the digest the form was checked against."""
_NEW_PARTICIPANT_SQL = """
WITH p AS (INSERT INTO participants (webinar_id, display_name, email) VALUES ($1, $2, $3) RETURNING id)
UPDATE registrations SET participant_id = (SELECT id FROM p) WHERE id = $4 RETURNING participant_id
"""
REGISTER_ATTEMPTS = 3
"""Times :func:`register` re-reads a configuration that changed under it before answering
``form_changed`` (the form is shown again with the person's values)."""


def _ip(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


async def register(
    db: Database,
    webinar_id: uuid.UUID,
    form_data: Mapping[str, Any],
    *,
    ip: str | None,
    user_agent: str,
    source: str,
    locale: str,
    time_zone: str | None,
) -> RegistrationResult:
    """Register (or update the registration of) the person described by ``form_data``.

    ``form_data``: the posted fields (:data:`FIELDS`, ``question``,
    ``consent_sponsor_share``/``consent_marketing`` = ``"1"`` when ticked,
    ``form_version``, ``wording_digest``). ``locale`` is the language the form
    was shown in (the consent wording is taken in it); ``time_zone`` an IANA
    name (anything else: Europe/Paris). Raises :class:`NotFound` (no such
    webinar), :class:`RegistrationClosed` (draft, cancelled, removed) or
    :class:`RegistrationInvalid`.

    The webinar's configuration comes from a per-process cache (at most
    :data:`CONFIG_CACHE_SIZE` webinars) and is never trusted: the writing
    statement checks the stored configuration still has the digest the form was
    validated against, and writes nothing otherwise; then, as after a refusal
    (closed, invalid) decided on a cached configuration, the configuration is
    read again and the form checked again. So a setting changed by another
    process (sponsor, required fields, state, date) applies to the next
    submission, and a consent proof always records the wording in force.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown registration source {source!r}")
    lang = locale if locale in LANGUAGES else "fr"
    user_agent = clean_line(user_agent)[:MAX_USER_AGENT]
    async with db.acquire() as conn:
        config = _config_cache.get(webinar_id)
        fresh = config is None
        if config is None:
            config = await load_form_config(conn, webinar_id)
        for attempt in range(REGISTER_ATTEMPTS):
            try:
                if not config.is_open:
                    raise RegistrationClosed(config)
                form = clean_form(config, form_data, lang)
            except (RegistrationClosed, RegistrationInvalid):
                if fresh:
                    raise
                config, fresh = await load_form_config(conn, webinar_id), True
                continue
            result = await _write(conn, config, form, ip=ip, user_agent=user_agent, source=source, lang=lang,
                                  time_zone=valid_time_zone(time_zone))
            if result is not None:
                return result
            config, fresh = await load_form_config(conn, webinar_id), True  # changed meanwhile
        values = {**form.values, **{f"consent_{k}": "1" if v else "" for k, v in form.consents.items()}}
        raise RegistrationInvalid({"_form": "form_changed"}, values, config)


async def _write(conn: asyncpg.Connection, config: FormConfig, form: CleanForm, *, ip: str | None, user_agent: str,
                 source: str, lang: str, time_zone: str) -> RegistrationResult | None:
    """Write the registration; None (nothing written) when ``config`` is no longer current.

    A new registration is one statement, so it needs no transaction of its own
    unless plain :data:`AFTER_REGISTER` hooks must run in one (then everything
    below runs in a single transaction). Registering again writes the
    registration, consents and question in that statement, then the participant
    (and re-enqueues the :class:`JobsHook` jobs, which exist already) in a
    second transaction; should that one fail, the person gets an error and the
    data they sent stays accepted (sending again completes it)."""
    v = form.values
    kinds = list(form.consents)
    webinar_id = config.webinar_id
    new_registration, new_participant = uuid.uuid4(), uuid.uuid4()
    jobs_hooks = [h for h in AFTER_REGISTER if isinstance(h, JobsHook)]
    plain_hooks = [h for h in AFTER_REGISTER if not isinstance(h, JobsHook)]
    now = utc_now()
    new_jobs = [job for hook in jobs_hooks for job in hook.jobs(new_registration, config.schedule, now)]
    async with conn.transaction() if plain_hooks else contextlib.nullcontext():
        row = await conn.fetchrow(
            _REGISTER_SQL, webinar_id, v["email"], v["first_name"], v["last_name"], v["phone"], v["job_function"],
            v["company"], v["company_size"], v["department"], v["industry"], v["question"], source, lang, time_zone,
            config.fingerprint, new_registration, new_participant,
            display_name(v["first_name"], v["last_name"], v["email"]), _ip(ip), user_agent, config.form_version,
            kinds, [form.consents[k] for k in kinds], [config.wording(lang, k) for k in kinds],
            [config.sponsor_name if k == "sponsor_share" else "" for k in kinds],
            *enqueue_args(new_jobs),
        )
        if row is None:
            return None
        registration_id: uuid.UUID = row["id"]
        created = bool(row["created"])
        name = display_name(row["first_name"], row["last_name"], v["email"])
        participant_id: uuid.UUID | None = row["participant_id"]
        if created:
            assert registration_id == new_registration and participant_id == new_participant
        else:  # registered again: this registration's own participant and jobs
            async with contextlib.nullcontext() if plain_hooks else conn.transaction():
                if participant_id is None:  # its participant was deleted: a new one
                    participant_id = await conn.fetchval(_NEW_PARTICIPANT_SQL, webinar_id, name, v["email"],
                                                         registration_id)
                else:
                    await conn.execute("UPDATE participants SET display_name = $2, email = $3 WHERE id = $1",
                                       participant_id, name, v["email"])
                again = [job for hook in jobs_hooks for job in hook.jobs(registration_id, config.schedule, now)]
                await enqueue_many(conn, again)
        assert participant_id is not None
        for hook in plain_hooks:
            await hook(conn, registration_id, created)
    return RegistrationResult(registration_id, Participant(participant_id, webinar_id, name, "viewer"), created,
                              config)


# Personal links ----------------------------------------------------------------
def join_url(base_url: str, webinar_id: uuid.UUID, token: str) -> str:
    """The personal join link: the viewer page with the participant's join token."""
    return f"{base_url}/w/{webinar_id}?token={quote(token, safe='')}"


def calendar_url(base_url: str, webinar_id: uuid.UUID, token: str) -> str:
    """The registrant's calendar invite (ICS), authorised by the same join token."""
    return f"{base_url}/w/{webinar_id}/calendar.ics?token={quote(token, safe='')}"


@dataclass(frozen=True)
class PersonalLinks:
    token: str
    join_url: str
    calendar_url: str


def personal_links(base_url: str, signer: Signer, webinar_id: uuid.UUID, participant_id: uuid.UUID) -> PersonalLinks:
    """Join and calendar links of a registrant (for pages and emails). Each call signs a
    fresh token (its expiry restarts); every token names the same participant."""
    token = join_token(signer, Participant(participant_id, webinar_id, "", "viewer"))
    return PersonalLinks(token, join_url(base_url, webinar_id, token), calendar_url(base_url, webinar_id, token))


# Organizer settings ----------------------------------------------------------------
@dataclass(frozen=True)
class FormSettings:
    """What the organizer chooses for the registration form."""

    required_fields: frozenset[str]
    speaker_question: bool
    speakers: str
    sponsor_name: str
    sponsor_logo_url: str


class SettingsInvalid(Exception):
    """``errors`` maps a setting to an error code (``register.error.<code>``)."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(", ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def check_settings(settings: FormSettings) -> FormSettings:
    """Cleaned settings, or :class:`SettingsInvalid`. Unknown field names are dropped;
    the email is always required; the logo must be an http(s) URL."""
    errors: dict[str, str] = {}
    cleaned = dataclasses.replace(
        settings,
        required_fields=frozenset(f for f in settings.required_fields if f in FIELDS) | ALWAYS_REQUIRED,
        speakers=clean_text(settings.speakers),
        sponsor_name=clean_line(settings.sponsor_name),
        sponsor_logo_url=clean_line(settings.sponsor_logo_url),
    )
    for name, limit in SETTINGS_LIMITS.items():
        if len(getattr(cleaned, name)) > limit:
            errors[name] = "too_long"
    url = cleaned.sponsor_logo_url
    if url and "sponsor_logo_url" not in errors:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            errors["sponsor_logo_url"] = "url_invalid"
    if errors:
        raise SettingsInvalid(errors)
    return cleaned


async def update_form_settings(db: Database, webinar_id: uuid.UUID, settings: FormSettings) -> FormConfig:
    """Save the organizer's choices. A new sponsor name changes the consent wording,
    so it bumps ``form_version`` (consents record the version they were given under)."""
    clean = check_settings(settings)
    async with db.acquire() as conn:
        updated = await conn.fetchval(
            """UPDATE webinars SET required_fields = $2, speaker_question = $3, speakers = $4, sponsor_name = $5,
                   sponsor_logo_url = $6, updated_at = now(),
                   form_version = form_version + CASE WHEN sponsor_name IS DISTINCT FROM $5 THEN 1 ELSE 0 END
               WHERE id = $1 RETURNING id""",
            webinar_id, sorted(clean.required_fields, key=FIELDS.index), clean.speaker_question, clean.speakers,
            clean.sponsor_name, clean.sponsor_logo_url,
        )
        if updated is None:
            raise NotFound("webinar")
        return await load_form_config(conn, webinar_id)
