"""Mail building, relevance rules and queue helpers, without services."""

from __future__ import annotations

import datetime as dt
import uuid
from email import policy
from email.parser import BytesParser

import pytest

from server.jobs import NewJob, _check, backoff
from server.mail import Attachment, Unsubscribe, build_message, message_id, one_line, render_email
from server.notifications import KINDS, dedupe_key, format_when, why_not
from server.settings import Settings, SettingsError

START = dt.datetime(2030, 5, 14, 8, 0, tzinfo=dt.UTC)  # a Tuesday, 10:00 in Paris


def _mail(category: str, unsubscribe: Unsubscribe | None) -> bytes:
    text, html = render_email("en", subject="s", greeting="Hello,", paragraphs=["A <b>bold</b> claim"],
                              action={"label": "Join", "url": "https://x.example/w/1?token=a&b=c"},
                              footer="Footer", unsubscribe={"label": "Unsubscribe", "url": unsubscribe.url}
                              if unsubscribe else None)
    msg = build_message(sender="Webinar <webinar@example.com>", to="ada@example.com", subject="Hi\r\nBcc: x@evil",
                        text=text, html=html, category=category,  # type: ignore[arg-type]
                        message_id=message_id("webinar@example.com", "k", "1"), date=START, unsubscribe=unsubscribe,
                        attachments=[Attachment("invite.ics", "text/calendar", b"BEGIN:VCALENDAR\r\n",
                                                (("method", "REQUEST"),))])
    return msg.as_bytes()


def test_marketing_and_transactional_headers() -> None:
    unsub = Unsubscribe("https://x.example/unsubscribe/TOKEN", "unsubscribe@example.com")
    marketing = BytesParser(policy=policy.default).parsebytes(_mail("marketing", unsub))
    assert marketing["X-Webinar-Category"] == "marketing"
    assert marketing["List-Unsubscribe"] == \
        "<https://x.example/unsubscribe/TOKEN>, <mailto:unsubscribe@example.com?subject=unsubscribe>"
    assert marketing["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text = marketing.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = marketing.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "https://x.example/unsubscribe/TOKEN" in text and 'href="https://x.example/unsubscribe/TOKEN"' in html
    assert "A <b>bold</b> claim" in text and "A &lt;b&gt;bold&lt;/b&gt; claim" in html  # escaped in HTML only
    assert "token=a&amp;b=c" in html and "token=a&b=c" in text
    assert marketing["Subject"] == "Hi Bcc: x@evil" and marketing["Bcc"] is None  # no header injection
    ics = [p for p in marketing.iter_attachments() if p.get_content_type() == "text/calendar"]
    assert ics and ics[0].get_param("method") == "REQUEST" and ics[0].get_filename() == "invite.ics"

    plain = BytesParser(policy=policy.default).parsebytes(_mail("transactional", None))
    assert plain["X-Webinar-Category"] == "transactional"
    assert plain["List-Unsubscribe"] is None and plain["List-Unsubscribe-Post"] is None
    assert "unsubscribe" not in plain.get_body(("plain",)).get_content().lower()  # type: ignore[union-attr]


def test_category_and_unsubscribe_go_together() -> None:
    with pytest.raises(ValueError, match="marketing mail needs an unsubscribe"):
        _mail("marketing", None)
    with pytest.raises(ValueError, match="only marketing"):
        _mail("transactional", Unsubscribe("https://x/u/1"))
    with pytest.raises(ValueError, match="unknown mail category"):
        _mail("newsletter", None)


def test_message_id_is_deterministic_and_in_the_sender_domain() -> None:
    a = message_id("Webinar <webinar@example.com>", "email.reminder_d1:r:v0", "7")
    assert a == message_id("webinar@example.com", "email.reminder_d1:r:v0", "7")
    assert a != message_id("webinar@example.com", "email.reminder_d1:r:v0", "8")
    assert a.startswith("<") and a.endswith("@example.com>")
    assert one_line("a\n\tb  c", 4) == "a b…"


def test_dates_in_the_registrants_language_and_zone() -> None:
    assert format_when(START, "Europe/Paris", "fr") == "mardi 14 mai 2030 à 10:00 (Europe/Paris)"
    assert format_when(START, "America/New_York", "en") == "Tuesday 14 May 2030 at 04:00 (America/New_York)"
    assert format_when(START, "Not/AZone", "en").endswith("10:00 (Europe/Paris)")


def _row(**changes: object) -> dict[str, object]:
    row: dict[str, object] = {"state": "announced", "schedule_version": 0, "starts_at": START,
                              "unsubscribed_at": None, "first_seen_live_at": None}
    row.update(changes)
    return row


def _payload(kind: str, version: int = 0, moment: dt.datetime | None = None) -> dict[str, object]:
    offset = KINDS[kind].offset
    at = moment or (START + offset if offset is not None else START - dt.timedelta(days=3))
    return {"schedule_version": version, "moment": at.isoformat()}


def test_reminder_relevance() -> None:
    d1, h5 = KINDS["reminder_d1"], KINDS["reminder_h5"]
    moment = START - dt.timedelta(days=1)
    assert why_not(d1, _payload("reminder_d1"), _row(), moment) is None
    assert why_not(d1, _payload("reminder_d1"), _row(), moment + dt.timedelta(hours=6)) is None
    assert why_not(d1, _payload("reminder_d1"), _row(), moment + dt.timedelta(hours=6, seconds=1)) == "too late"
    assert why_not(d1, _payload("reminder_d1"), _row(schedule_version=1), moment) == "webinar moved"
    moved = _row(starts_at=START + dt.timedelta(days=2))  # moved without a version bump: the moment tells
    assert why_not(d1, _payload("reminder_d1"), moved, moment) == "webinar moved"
    assert why_not(d1, _payload("reminder_d1"), _row(state="cancelled"), moment) == "webinar is cancelled"
    assert why_not(h5, _payload("reminder_h5"), _row(state="live"), START) is None
    # Unsubscribing does not stop what the person asked for.
    assert why_not(d1, _payload("reminder_d1"), _row(unsubscribed_at=START), moment) is None


def test_replay_invitation_relevance() -> None:
    replay = KINDS["replay"]
    at = START + dt.timedelta(days=2)
    assert why_not(replay, _payload("replay"), _row(state="replay"), at) is None
    assert why_not(replay, _payload("replay"), _row(state="ended"), at) is None
    assert why_not(replay, _payload("replay"), _row(state="announced"), at) == "webinar is announced"
    assert why_not(replay, _payload("replay"), _row(state="replay", unsubscribed_at=START), at) == "unsubscribed"
    assert why_not(replay, _payload("replay"), _row(state="replay", first_seen_live_at=START), at) == \
        "attended the live"
    assert why_not(replay, _payload("replay"), _row(state="replay"), at + dt.timedelta(days=8)) == "too late"


def test_dedupe_keys() -> None:
    reg = uuid.UUID(int=1)
    assert dedupe_key(KINDS["reminder_h30"], reg, 2) == f"email.reminder_h30:{reg}:v2"
    assert dedupe_key(KINDS["confirmation"], reg, 2) == f"email.confirmation:{reg}"
    assert {k.category for k in KINDS.values()} == {"transactional", "marketing"}
    assert [k.name for k in KINDS.values() if k.category == "marketing"] == ["replay"]


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff(n, 60, 3600).total_seconds() for n in (1, 2, 3, 7, 8)] == [60, 120, 240, 3600, 3600]


def test_bad_jobs_are_refused() -> None:
    now = dt.datetime.now(dt.UTC)
    with pytest.raises(ValueError, match="job kind"):
        _check(NewJob("", "k", now, {}))
    with pytest.raises(ValueError, match="dedupe_key"):
        _check(NewJob("k", "x" * 501, now, {}))
    with pytest.raises(ValueError, match="aware"):
        _check(NewJob("k", "k", now.replace(tzinfo=None), {}))
    with pytest.raises(ValueError, match="not JSON"):
        _check(NewJob("k", "k", now, {"x": object()}))


def test_mail_settings_are_checked() -> None:
    s = Settings.from_env({"WEBINAR_SMTP_HOST": "smtp.example.com", "WEBINAR_SMTP_TLS": "TLS",
                           "WEBINAR_SMTP_USERNAME": "u", "WEBINAR_SMTP_PASSWORD": "p", "WEBINAR_JOB_POLL_S": "2"})
    assert (s.smtp_tls, s.smtp_username, s.job_poll_s, s.run_jobs) == ("tls", "u", 2.0, True)
    for env, message in (
        ({"WEBINAR_SMTP_TLS": "ssl"}, "WEBINAR_SMTP_TLS"),
        ({"WEBINAR_SMTP_USERNAME": "u"}, "go together"),
        ({"WEBINAR_SMTP_HOST": "smtp.example.com", "WEBINAR_SMTP_TLS": "none", "WEBINAR_SMTP_USERNAME": "u",
          "WEBINAR_SMTP_PASSWORD": "p"}, "unencrypted"),
        ({"WEBINAR_SMTP_TIMEOUT_S": "200", "WEBINAR_JOB_LEASE_S": "300"}, "half of"),
        ({"WEBINAR_JOB_POLL_S": "0"}, "WEBINAR_JOB_POLL_S"),
    ):
        with pytest.raises(SettingsError, match=message):
            Settings.from_env(env)
