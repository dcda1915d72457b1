"""Email: building messages and handing them to SMTP or to the outbox folder.

Messages
    :func:`render_email` renders ``server/templates/email/layout.txt`` and
    ``layout.html`` (the text part and its HTML alternative; autoescape on
    for HTML only). :func:`build_message` assembles an
    :class:`~email.message.EmailMessage` and states its category in
    ``X-Webinar-Category``:

    - ``transactional``: what the person asked for (confirmation, reminders,
      changes to a webinar they registered for). No unsubscribe header.
    - ``marketing``: anything else. Carries ``List-Unsubscribe`` with the
      one-click HTTPS link (and a ``mailto:`` when an unsubscribe mailbox is
      configured), ``List-Unsubscribe-Post: List-Unsubscribe=One-Click``
      (RFC 8058) and a visible unsubscribe link in both parts.

    The Message-ID is given by the caller (deterministic per job, see
    :mod:`server.jobs`), so a message sent twice is recognisable.

Transports (chosen by :func:`transport_from_settings`)
    - :class:`SMTPTransport` (aiosmtplib): ``smtp_host``/``smtp_port``,
      ``smtp_tls`` none/starttls/tls, optional credentials; the whole delivery
      is bounded by ``smtp_timeout_s`` seconds.
    - :class:`OutboxTransport` when ``smtp_host`` is unset (the embedded
      default): one ``.eml`` file per message in ``outbox_dir``, named after
      the Message-ID, written atomically (temporary file, fsync, rename); a
      message written twice replaces its own file.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.policy
import email.utils
import hashlib
import os
import re
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal, Protocol, Sequence

import aiosmtplib
import jinja2

from server.settings import Settings

Category = Literal["transactional", "marketing"]
CATEGORY_HEADER = "X-Webinar-Category"
WIRE_POLICY = email.policy.SMTP.clone(max_line_length=998)
"""How messages are written out (SMTP and outbox alike): CRLF lines, header lines up to
RFC 5322's hard limit of 998 characters, so a long subject stays on one line instead of
being folded after ``Subject:`` (which some readers show with a leading space)."""
MAX_SUBJECT_LEN = 250
_TEMPLATES = Path(__file__).with_name("templates") / "email"


class PermanentMailError(Exception):
    """The SMTP server refused this message for good (5xx on the recipient or the content)."""


@dataclass(frozen=True)
class Unsubscribe:
    """Where a marketing mail's recipient unsubscribes: an HTTPS (or HTTP) link accepting
    RFC 8058 one-click POSTs, and optionally a mailbox someone reads."""

    url: str
    mailto: str | None = None

    def header(self) -> str:
        links = [f"<{self.url}>"]
        if self.mailto:
            links.append(f"<mailto:{self.mailto}?subject=unsubscribe>")
        return ", ".join(links)


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    """``maintype/subtype``, e.g. ``text/calendar``."""
    data: bytes
    params: tuple[tuple[str, str], ...] = ()
    """Extra Content-Type parameters, e.g. ``(("method", "REQUEST"),)`` for calendars."""


_env: jinja2.Environment | None = None


def email_env() -> jinja2.Environment:
    """Templates of ``server/templates/email``: HTML autoescaped, text not."""
    global _env
    if _env is None:
        _env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(_TEMPLATES)),
            autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
    return _env


def render_email(lang: str, **context: Any) -> tuple[str, str]:
    """(text, html) of the layout with ``context`` (see the templates for the names they use)."""
    env = email_env()
    return env.get_template("layout.txt").render(lang=lang, **context), \
        env.get_template("layout.html").render(lang=lang, **context)


def one_line(text: str, max_len: int = MAX_SUBJECT_LEN) -> str:
    """Collapse white space and control characters (no header injection), cut to ``max_len``."""
    cleaned = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return cleaned if len(cleaned) <= max_len else cleaned[: max_len - 1] + "…"


def message_id(sender: str, *parts: str) -> str:
    """A Message-ID derived from ``parts`` (the same parts give the same id), in the sender's domain."""
    domain = email.utils.parseaddr(sender)[1].rpartition("@")[2] or "localhost"
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]
    return f"<{digest}@{domain}>"


def build_message(*, sender: str, to: str, subject: str, text: str, html: str, category: Category,
                  message_id: str, date: dt.datetime, unsubscribe: Unsubscribe | None = None,
                  attachments: Sequence[Attachment] = ()) -> EmailMessage:
    """A complete message. Marketing mail needs ``unsubscribe``; transactional mail must not have it."""
    if category not in ("transactional", "marketing"):
        raise ValueError(f"unknown mail category {category!r}")
    if (category == "marketing") != (unsubscribe is not None):
        raise ValueError("marketing mail needs an unsubscribe link, and only marketing mail has one")
    if "@" not in to or any(c in to for c in "\r\n<>,;"):
        raise ValueError(f"bad recipient address {to!r}")
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = one_line(subject)
    msg["Date"] = email.utils.format_datetime(date.astimezone(dt.UTC))
    msg["Message-ID"] = message_id
    msg["Auto-Submitted"] = "auto-generated"
    msg[CATEGORY_HEADER] = category
    if unsubscribe is not None:
        msg["List-Unsubscribe"] = unsubscribe.header()
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    for item in attachments:
        maintype, _, subtype = item.content_type.partition("/")
        msg.add_attachment(item.data, maintype=maintype, subtype=subtype, filename=item.filename,
                           params=dict(item.params))
    return msg


# Transports ------------------------------------------------------------------
class Transport(Protocol):
    async def send(self, message: EmailMessage) -> None:
        """Deliver or raise. :class:`PermanentMailError` means retrying cannot help."""


class SMTPTransport:
    """One SMTP connection per message (simple, no idle connection to keep alive)."""

    def __init__(self, host: str, port: int, *, tls: str = "starttls", username: str | None = None,
                 password: str | None = None, timeout_s: float = 30.0) -> None:
        if tls not in ("none", "starttls", "tls"):
            raise ValueError(f"tls must be none, starttls or tls, got {tls!r}")
        self.host = host
        self.port = port
        self.tls = tls
        self.username = username
        self.password = password
        self.timeout_s = timeout_s

    async def send(self, message: EmailMessage) -> None:
        sender = email.utils.parseaddr(str(message["From"]))[1]
        recipients = [addr for _, addr in email.utils.getaddresses([str(v) for v in message.get_all("To", [])])]
        try:
            async with asyncio.timeout(self.timeout_s):
                await aiosmtplib.send(
                    message.as_bytes(policy=WIRE_POLICY), sender=sender, recipients=recipients,
                    hostname=self.host, port=self.port, username=self.username, password=self.password,
                    use_tls=self.tls == "tls", start_tls=True if self.tls == "starttls" else False,
                    timeout=self.timeout_s,
                )
        except (aiosmtplib.SMTPRecipientsRefused, aiosmtplib.SMTPRecipientRefused) as exc:
            codes = [e.code for e in getattr(exc, "recipients", [exc])]
            if all(500 <= c < 600 for c in codes):
                raise PermanentMailError(f"recipient refused: {exc}") from exc
            raise
        except aiosmtplib.SMTPDataError as exc:
            if 500 <= exc.code < 600:
                raise PermanentMailError(f"message refused: {exc.code} {exc.message}") from exc
            raise


class OutboxTransport:
    """Writes each message as ``<folder>/<message id>.eml``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path_for(self, message: EmailMessage) -> Path:
        mid = str(message["Message-ID"] or "")
        name = re.sub(r"[^A-Za-z0-9._@-]", "_", mid.strip("<>"))[:200]
        if not name:
            raise ValueError("a message needs a Message-ID to go to the outbox")
        return self.folder / f"{name}.eml"

    async def send(self, message: EmailMessage) -> None:
        await asyncio.to_thread(self._write, self.path_for(message), message.as_bytes(policy=WIRE_POLICY))

    def _write(self, path: Path, data: bytes) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)


def transport_from_settings(settings: Settings) -> Transport:
    if settings.smtp_host:
        return SMTPTransport(settings.smtp_host, settings.smtp_port, tls=settings.smtp_tls,
                             username=settings.smtp_username, password=settings.smtp_password,
                             timeout_s=settings.smtp_timeout_s)
    return OutboxTransport(settings.outbox_dir)


# The record of what was sent --------------------------------------------------
async def already_sent(db: Any, job_id: int) -> bool:
    """True when ``emails_sent`` holds the mail of this job (it went out before a crash)."""
    return bool(await db.fetchval("SELECT 1 FROM emails_sent WHERE job_id = $1", job_id))


async def record_sent(db: Any, *, job_id: int | None, registration_id: Any, kind: str, to: str, message: EmailMessage,
                      at: dt.datetime) -> None:
    """Log one mail handed to the transport (``db``: a Database or a connection)."""
    await db.execute(
        """INSERT INTO emails_sent (job_id, registration_id, kind, to_email, message_id, marketing, sent_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        job_id, registration_id, kind, to, str(message["Message-ID"]), message[CATEGORY_HEADER] == "marketing", at,
    )
