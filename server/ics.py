"""Calendar invites (RFC 5545 / iTIP RFC 5546) for registrants, built with ``icalendar``.

One event per registration, with a stable ``UID`` (``{webinar_id}.{registration_id}@{host}``)
and ``SEQUENCE`` = ``webinars.schedule_version``: when the webinar moves, the
version goes up and calendar programs update the event they already have
instead of adding a second one. Times are UTC (``DTSTART``/``DTEND`` with
``Z``). The event's ``URL`` is the registrant's personal join link.
``METHOD:REQUEST`` normally; a cancelled webinar gives ``METHOD:CANCEL``
with ``STATUS:CANCELLED`` for the same UID.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import icalendar

PRODID = "-//webinar//registration//EN"
MEDIA_TYPE = "text/calendar"


def event_uid(webinar_id: uuid.UUID, registration_id: uuid.UUID, host: str) -> str:
    """Stable across reschedules and re-downloads: one UID per registration."""
    return f"{webinar_id}.{registration_id}@{host}"


@dataclass(frozen=True)
class Invite:
    """What the invite says. Times must be timezone-aware (converted to UTC)."""

    webinar_id: uuid.UUID
    registration_id: uuid.UUID
    host: str
    """Host name of the server (the UID's domain part)."""
    title: str
    description: str
    starts_at: dt.datetime
    ends_at: dt.datetime
    sequence: int
    join_url: str
    organizer_name: str
    organizer_email: str
    attendee_email: str
    attendee_name: str
    cancelled: bool = False


def invite_ics(invite: Invite, *, now: dt.datetime | None = None) -> bytes:
    """The ``.ics`` file (UTF-8, CRLF lines, folded at 75 octets by icalendar)."""
    if invite.starts_at.tzinfo is None or invite.ends_at.tzinfo is None:
        raise ValueError("invite times must be timezone-aware")
    calendar = icalendar.Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", "CANCEL" if invite.cancelled else "REQUEST")
    event = icalendar.Event()
    event.add("uid", event_uid(invite.webinar_id, invite.registration_id, invite.host))
    event.add("sequence", invite.sequence)
    event.add("dtstamp", (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(microsecond=0))
    event.add("dtstart", invite.starts_at.astimezone(dt.UTC))
    event.add("dtend", invite.ends_at.astimezone(dt.UTC))
    event.add("summary", invite.title)
    event.add("description", f"{invite.description}\n\n{invite.join_url}".strip())
    event.add("url", invite.join_url)
    event.add("location", invite.join_url)
    event.add("status", "CANCELLED" if invite.cancelled else "CONFIRMED")
    event.add("transp", "OPAQUE")
    organizer = icalendar.vCalAddress(f"mailto:{invite.organizer_email}")
    if invite.organizer_name:
        organizer.params["cn"] = icalendar.vText(invite.organizer_name)
    event.add("organizer", organizer)
    attendee = icalendar.vCalAddress(f"mailto:{invite.attendee_email}")
    attendee.params["role"] = icalendar.vText("REQ-PARTICIPANT")
    attendee.params["partstat"] = icalendar.vText("ACCEPTED")
    attendee.params["rsvp"] = icalendar.vText("FALSE")
    if invite.attendee_name:
        attendee.params["cn"] = icalendar.vText(invite.attendee_name)
    event.add("attendee", attendee)
    calendar.add_component(event)
    return bytes(calendar.to_ical())
