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

Cost per call (the registration burst): one read of the webinar, then one
transaction of 3 to 5 statements (upsert, participant, consents in one
``unnest`` insert, optional question). Compiled data (translation table,
time-zone names) is built once per process.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import ipaddress
import unicodedata
import uuid
from dataclasses import dataclass
from functools import cache
from typing import Any, Awaitable, Callable, Mapping
from urllib.parse import quote, urlsplit
from zoneinfo import available_timezones

import asyncpg
import phonenumbers
from email_validator import EmailNotValidError, validate_email

from rooms.participants import Participant, join_token
from server.db import Database
from server.errors import NotFound, RuleViolation
from server.i18n import LANGUAGES, translate
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
(confirmation, reminders) plugs in here: ``notifications.on_registered``. An
exception rolls the registration back."""


# Cleaning ----------------------------------------------------------------
_BIDI_CONTROLS = [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A), 0xFEFF]
_STRIP_LINE: dict[int, Any] = {c: None for c in [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0), *_BIDI_CONTROLS]}
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

    @property
    def ends_at(self) -> dt.datetime:
        return self.starts_at + dt.timedelta(minutes=self.duration_minutes)

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
        text = "\x1f".join(f"{kind}={self.wording(lang, kind)}" for kind in self.consent_kinds)
        return hashlib.sha256(text.encode()).hexdigest()[:24]


_CONFIG_SQL = """SELECT w.id, w.account_id, a.name AS organizer_name, w.title, w.description, w.language, w.starts_at,
           w.duration_minutes, w.room_type, w.state, w.required_fields, w.speaker_question, w.speakers,
           w.sponsor_name, w.sponsor_logo_url, w.form_version, w.schedule_version
    FROM webinars w JOIN accounts a ON a.id = w.account_id WHERE w.id = $1"""


def _config(row: asyncpg.Record) -> FormConfig:
    values = dict(row)
    values["webinar_id"] = values.pop("id")
    values["required_fields"] = frozenset(values["required_fields"] or ())
    return FormConfig(**values)


async def load_form_config(db: Database | asyncpg.Connection, webinar_id: uuid.UUID) -> FormConfig:
    row = await db.fetchrow(_CONFIG_SQL, webinar_id)
    if row is None:
        raise NotFound("webinar")
    return _config(row)


def consent_wording(lang: str, kind: str, *, sponsor_name: str, organizer_name: str) -> str:
    """The exact sentence next to a consent box: shown on the form and stored as proof."""
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


_UPSERT_SQL = """
WITH old AS (SELECT question FROM registrations WHERE webinar_id = $1 AND email = $2)
INSERT INTO registrations (webinar_id, email, first_name, last_name, phone, job_function, company, company_size,
                           department, industry, question, source, locale, time_zone)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
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
RETURNING id, participant_id, first_name, last_name, (xmax = 0) AS created, (SELECT question FROM old) AS old_question
"""
_NEW_PARTICIPANT_SQL = """
WITH p AS (INSERT INTO participants (webinar_id, display_name, email) VALUES ($1, $2, $3) RETURNING id)
UPDATE registrations SET participant_id = (SELECT id FROM p) WHERE id = $4 RETURNING participant_id
"""
_CONSENTS_SQL = """
INSERT INTO consents (registration_id, kind, granted, ip, user_agent, form_version, wording, sponsor_name)
SELECT $1, t.kind, t.granted, $2::inet, $3, $4, t.wording, t.sponsor
FROM unnest($5::text[], $6::boolean[], $7::text[], $8::text[]) AS t(kind, granted, wording, sponsor)
"""


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
    """
    if source not in SOURCES:
        raise ValueError(f"unknown registration source {source!r}")
    lang = locale if locale in LANGUAGES else "fr"
    async with db.acquire() as conn:
        config = await load_form_config(conn, webinar_id)
        if not config.is_open:
            raise RegistrationClosed(config)
        form = clean_form(config, form_data, lang)
        v = form.values
        kinds = list(form.consents)
        async with conn.transaction():
            row = await conn.fetchrow(
                _UPSERT_SQL, webinar_id, v["email"], v["first_name"], v["last_name"], v["phone"], v["job_function"],
                v["company"], v["company_size"], v["department"], v["industry"], v["question"], source, lang,
                valid_time_zone(time_zone),
            )
            assert row is not None
            registration_id: uuid.UUID = row["id"]
            name = display_name(row["first_name"], row["last_name"], v["email"])
            participant_id: uuid.UUID | None = row["participant_id"]
            if participant_id is None:
                participant_id = await conn.fetchval(_NEW_PARTICIPANT_SQL, webinar_id, name, v["email"], registration_id)
            else:
                await conn.execute("UPDATE participants SET display_name = $2, email = $3 WHERE id = $1",
                                   participant_id, name, v["email"])
            assert participant_id is not None
            await conn.execute(
                _CONSENTS_SQL, registration_id, _ip(ip), clean_line(user_agent)[:MAX_USER_AGENT], config.form_version,
                kinds, [form.consents[k] for k in kinds], [config.wording(lang, k) for k in kinds],
                [config.sponsor_name if k == "sponsor_share" else "" for k in kinds],
            )
            if v["question"] and v["question"] != row["old_question"]:
                await conn.execute(
                    """INSERT INTO questions (webinar_id, participant_id, anonymous, text, source)
                       VALUES ($1, NULL, false, $2, 'registration')""", webinar_id, v["question"])
            for hook in AFTER_REGISTER:
                await hook(conn, registration_id, bool(row["created"]))
    return RegistrationResult(registration_id, Participant(participant_id, webinar_id, name, "viewer"),
                              bool(row["created"]), config)


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
