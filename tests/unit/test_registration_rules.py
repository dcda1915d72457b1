"""Registration rules without services: cleaning, form checks, consent wording,
the rate limiter and the ICS invite."""

from __future__ import annotations

import datetime as dt
import uuid

import icalendar
import pytest

from server.i18n import translate
from server.ics import Invite, event_uid, invite_ics
from server.rate_limit import WindowLimiter
from server.registrations import (
    FormConfig,
    FormSettings,
    RegistrationInvalid,
    SettingsInvalid,
    check_settings,
    clean_form,
    clean_line,
    clean_text,
    display_name,
    valid_time_zone,
)

START = dt.datetime(2031, 3, 4, 9, 30, tzinfo=dt.UTC)


def config(**changes: object) -> FormConfig:
    values: dict[str, object] = dict(
        webinar_id=uuid.uuid4(), account_id=uuid.uuid4(), organizer_name="Client SA", title="T", description="",
        language="fr", starts_at=START, duration_minutes=60, room_type="webcam", state="announced",
        required_fields=frozenset({"first_name", "last_name", "email"}), speaker_question=True, speakers="",
        sponsor_name="Acme", sponsor_logo_url="", form_version=3, schedule_version=0,
    )
    values.update(changes)
    return FormConfig(**values)  # type: ignore[arg-type]


def posted(cfg: FormConfig, lang: str = "en", **fields: str) -> dict[str, str]:
    return {"form_version": str(cfg.form_version), "wording_digest": cfg.wording_digest(lang), **fields}


def test_cleaning_removes_controls_and_bidi_overrides() -> None:
    assert clean_line("  Jean\x00ne\t \n Du\u202epont\x7f ") == "Jeanne Dupont"
    assert clean_line("e\u0301") == "\u00e9", "NFC"
    assert clean_text("a\r\n\r\n\r\n\r\nb\x1b[31m\n  c  ") == "a\n\nb[31m\nc"
    assert clean_line("<script>") == "<script>", "markup is text, escaped on output"


def test_clean_form_reports_every_error_and_keeps_values() -> None:
    cfg = config()
    with pytest.raises(RegistrationInvalid) as caught:
        clean_form(cfg, posted(cfg, first_name="Ann", email="nope", phone="1", company_size="x",
                               consent_marketing="true"), "en")
    assert caught.value.errors == {"last_name": "required", "email": "email_invalid", "phone": "phone_invalid",
                                   "company_size": "choice_invalid", "consent_marketing": "choice_invalid"}
    assert caught.value.values["first_name"] == "Ann" and caught.value.values["email"] == "nope"
    ok = clean_form(cfg, posted(cfg, first_name="Ann", last_name="Lee", email="Ann.Lee@Example.ORG",
                                phone="+1 415-555-2671", consent_sponsor_share="1"), "en")
    assert ok.values["email"] == "ann.lee@example.org" and ok.values["phone"] == "+14155552671"
    assert ok.consents == {"sponsor_share": True, "marketing": False}


def test_form_must_match_the_wording_shown() -> None:
    cfg = config()
    form = posted(cfg, "fr", first_name="A", last_name="B", email="a@example.com")
    clean_form(cfg, form, "fr")
    with pytest.raises(RegistrationInvalid) as other_lang:
        clean_form(cfg, form, "en")
    assert other_lang.value.errors == {"_form": "form_changed"}
    with pytest.raises(RegistrationInvalid) as new_sponsor:
        clean_form(config(sponsor_name="Globex", form_version=3), form, "fr")
    assert new_sponsor.value.errors == {"_form": "form_changed"}
    with pytest.raises(RegistrationInvalid):
        clean_form(config(form_version=4), form, "fr")


def test_consent_boxes_and_wording() -> None:
    assert config().consent_kinds == ("sponsor_share", "marketing")
    assert config(sponsor_name="").consent_kinds == ("marketing",)
    assert config().wording("fr", "sponsor_share") == translate("fr", "register.consent.sponsor_share", sponsor="Acme")
    assert "Client SA" in config().wording("en", "marketing")


def test_display_name_and_time_zone() -> None:
    assert display_name("Jeanne", "Dupont", "j@x.fr") == "Jeanne D."
    assert display_name("", "Dupont", "j@x.fr") == "Dupont"
    assert display_name("", "", "jd@x.fr") == "jd"
    assert len(display_name("x" * 100, "y", "a@b.fr")) == 80
    assert valid_time_zone("Asia/Tokyo") == "Asia/Tokyo"
    assert valid_time_zone("../../etc/passwd") == valid_time_zone(None) == "Europe/Paris"


def test_settings_check() -> None:
    clean = check_settings(FormSettings(frozenset({"phone", "nope"}), True, " Ada \x00", " Acme ", "https://a.example/l.png"))
    assert clean.required_fields == frozenset({"phone", "email"}) and clean.speakers == "Ada"
    assert clean.sponsor_name == "Acme"
    with pytest.raises(SettingsInvalid) as caught:
        check_settings(FormSettings(frozenset(), False, "s" * 2001, "n" * 201, "ftp://x/logo.png"))
    assert caught.value.errors == {"speakers": "too_long", "sponsor_name": "too_long", "sponsor_logo_url": "url_invalid"}


def test_window_limiter() -> None:
    now = [100.0]
    limiter = WindowLimiter(3, 60.0, clock=lambda: now[0])
    assert [limiter.hit("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.hit("a") == pytest.approx(60.0)
    assert limiter.hit("b") == 0.0, "per key"
    now[0] += 45
    assert limiter.hit("a") == pytest.approx(15.0)
    now[0] += 15
    assert limiter.hit("a") == 0.0, "a new window"
    with pytest.raises(ValueError):
        WindowLimiter(0, 60)


def test_invite_is_stable_across_moves() -> None:
    wid, rid = uuid.uuid4(), uuid.uuid4()
    base = Invite(webinar_id=wid, registration_id=rid, host="webinar.example", title="Launch; with, commas",
                  description="Line 1\nLine 2", starts_at=START.astimezone(dt.timezone(dt.timedelta(hours=2))),
                  ends_at=START + dt.timedelta(hours=1), sequence=0, join_url="https://webinar.example/w/x?token=abc",
                  organizer_name="Client SA", organizer_email="noreply@webinar.example", attendee_email="a@b.fr",
                  attendee_name="Ann Lee")
    first = icalendar.Calendar.from_ical(invite_ics(base))
    event = first.walk("VEVENT")[0]
    assert str(first["method"]) == "REQUEST"
    assert str(event["uid"]) == event_uid(wid, rid, "webinar.example") == f"{wid}.{rid}@webinar.example"
    assert event.decoded("dtstart") == START and event.decoded("dtstart").utcoffset() == dt.timedelta(0)
    assert str(event["summary"]) == "Launch; with, commas" and str(event["url"]) == base.join_url
    moved = Invite(**{**base.__dict__, "starts_at": START + dt.timedelta(days=1),
                      "ends_at": START + dt.timedelta(days=1, hours=1), "sequence": 1})
    second = icalendar.Calendar.from_ical(invite_ics(moved)).walk("VEVENT")[0]
    assert str(second["uid"]) == str(event["uid"]) and second.decoded("sequence") == 1
    with pytest.raises(ValueError):
        invite_ics(Invite(**{**base.__dict__, "starts_at": START.replace(tzinfo=None)}))
