"""What one registration writes, and the cached form configuration, against a real PostgreSQL.

:func:`server.registrations.register` writes a new registration, its participant,
consents, question and email jobs in one statement, with the webinar's configuration
taken from a per-process cache that the statement checks. These tests change the
webinar behind the cache's back (plain SQL, as another process would) and check
that no submission is ever accepted against a configuration no longer in force.
"""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg
import pytest

import server.app  # noqa: F401  (wires notifications.on_registered into AFTER_REGISTER)
from server import registrations
from server.db import Database
from server.jobs import NewJob, enqueue_args, enqueue_many, enqueue_sql
from server.notifications import on_registered
from server.registrations import (
    AFTER_REGISTER,
    FormConfig,
    JobsHook,
    RegistrationClosed,
    RegistrationInvalid,
    load_form_config,
    register,
)
from server.webinars import set_state
from tests.world import make_side

pytestmark = pytest.mark.integration

PERSON = {"first_name": "Ada", "last_name": "Lovelace", "company": "Analytical Engines",
          "question": "Will the slides be shared?", "consent_marketing": "1", "consent_sponsor_share": "1"}
EMAIL_KINDS = ["email.confirmation", "email.reminder_d1", "email.reminder_h30", "email.reminder_h5", "email.replay"]


def form(config: FormConfig, **fields: str) -> dict[str, str]:
    return {"form_version": str(config.form_version), "wording_digest": config.wording_digest("en"), **PERSON,
            **fields}


async def submit(db: Database, webinar_id: uuid.UUID, fields: dict[str, str]) -> registrations.RegistrationResult:
    return await register(db, webinar_id, fields, ip="192.0.2.7", user_agent="pytest", source="page", locale="en",
                          time_zone="Europe/Paris")


async def announced(db: Database, tag: str) -> FormConfig:
    side = await make_side(db, tag, dt.datetime.now(dt.UTC).replace(microsecond=0))
    await db.execute("UPDATE webinars SET sponsor_name = 'Acme', speaker_question = true WHERE id = $1",
                     side.webinar.id)
    await set_state(db, side.webinar.id, "announced")
    return await load_form_config(db, side.webinar.id)


async def jobs_of(db: Database, registration_id: uuid.UUID) -> list[str]:
    return sorted(r["kind"] for r in await db.fetch(
        "SELECT kind FROM jobs WHERE payload->>'registration_id' = $1", str(registration_id)))


async def test_a_new_registration_writes_everything_once(db: Database) -> None:
    assert on_registered in AFTER_REGISTER and isinstance(on_registered, JobsHook)
    config = await announced(db, "W")
    first = await submit(db, config.webinar_id, form(config, email="Ada@Example.com"))
    assert first.created
    row = await db.fetchrow("SELECT * FROM registrations WHERE id = $1", first.registration_id)
    assert row is not None and row["participant_id"] == first.participant.id and row["email"] == "ada@example.com"
    participant = await db.fetchrow("SELECT * FROM participants WHERE id = $1", first.participant.id)
    assert participant is not None
    assert (participant["webinar_id"], participant["display_name"], participant["email"]) == (
        config.webinar_id, "Ada L.", "ada@example.com")
    consents = await db.fetch("SELECT kind, granted, ip, form_version, wording, sponsor_name FROM consents "
                              "WHERE registration_id = $1 ORDER BY kind", first.registration_id)
    assert [(c["kind"], c["granted"], str(c["ip"]), c["form_version"], c["sponsor_name"]) for c in consents] == [
        ("marketing", True, "192.0.2.7", config.form_version, ""),
        ("sponsor_share", True, "192.0.2.7", config.form_version, "Acme")]
    assert [c["wording"] for c in consents] == [config.wording("en", "marketing"), config.wording("en", "sponsor_share")]
    assert await db.fetchval("SELECT count(*) FROM questions WHERE webinar_id = $1 AND source = 'registration'",
                             config.webinar_id) == 1
    assert await jobs_of(db, first.registration_id) == EMAIL_KINDS
    starts = await db.fetchval("SELECT run_at FROM jobs WHERE kind = 'email.reminder_d1' AND "
                               "payload->>'registration_id' = $1", str(first.registration_id))
    assert starts == config.starts_at - dt.timedelta(days=1)

    # Again, same email: the same row and participant, new names kept, no new job nor question.
    again = await submit(db, config.webinar_id, form(config, email="ada@example.com", first_name="Augusta",
                                                     question="Will the slides be shared?"))
    assert not again.created
    assert (again.registration_id, again.participant.id) == (first.registration_id, first.participant.id)
    assert again.participant.display_name == "Augusta L."
    assert await db.fetchval("SELECT display_name FROM participants WHERE id = $1", first.participant.id) == "Augusta L."
    assert await jobs_of(db, first.registration_id) == EMAIL_KINDS
    assert await db.fetchval("SELECT count(*) FROM jobs") == 5
    assert await db.fetchval("SELECT count(*) FROM questions") == 1
    assert await db.fetchval("SELECT count(*) FROM consents") == 4  # every submission leaves its proof

    # A registration whose participant was deleted gets a new one when it registers again.
    await db.execute("DELETE FROM participants WHERE id = $1", first.participant.id)
    third = await submit(db, config.webinar_id, form(config, email="ada@example.com"))
    assert not third.created and third.participant.id != first.participant.id
    assert await db.fetchval("SELECT participant_id FROM registrations WHERE id = $1",
                             first.registration_id) == third.participant.id


async def test_a_failing_hook_rolls_back_the_jobs_too(db: Database) -> None:
    config = await announced(db, "F")

    async def fail(conn: asyncpg.Connection, registration_id: uuid.UUID, created: bool) -> None:
        raise RuntimeError("down")

    AFTER_REGISTER.append(fail)
    try:
        with pytest.raises(RuntimeError):
            await submit(db, config.webinar_id, form(config, email="rolled@example.com"))
    finally:
        AFTER_REGISTER.remove(fail)
    for table in ("registrations", "participants", "consents", "questions", "jobs"):
        assert await db.fetchval(f"SELECT count(*) FROM {table}") == 0, table


async def test_changes_made_elsewhere_apply_to_the_next_submission(db: Database) -> None:
    config = await announced(db, "C")
    assert (await submit(db, config.webinar_id, form(config, email="one@example.com"))).created  # cached now

    # Another process renames the sponsor: the form showing the old wording is refused, nothing written.
    await db.execute("UPDATE webinars SET sponsor_name = 'Globex', form_version = form_version + 1 WHERE id = $1",
                     config.webinar_id)
    with pytest.raises(RegistrationInvalid) as refused:
        await submit(db, config.webinar_id, form(config, email="two@example.com"))
    assert refused.value.errors == {"_form": "form_changed"}
    assert refused.value.config.sponsor_name == "Globex" and refused.value.values["email"] == "two@example.com"
    assert await db.fetchval("SELECT count(*) FROM registrations WHERE email = 'two@example.com'") == 0
    renamed = refused.value.config
    result = await submit(db, config.webinar_id, form(renamed, email="two@example.com"))
    assert await db.fetchval("SELECT sponsor_name FROM consents WHERE registration_id = $1 AND kind = 'sponsor_share'",
                             result.registration_id) == "Globex"

    # A field made required elsewhere is required at once.
    await db.execute("UPDATE webinars SET required_fields = required_fields || '{phone}' WHERE id = $1",
                     config.webinar_id)
    with pytest.raises(RegistrationInvalid) as missing:
        await submit(db, config.webinar_id, form(renamed, email="three@example.com"))
    assert missing.value.errors == {"phone": "required"}

    # A change the form does not show (title) is picked up by the writing statement itself: the
    # submission is accepted and the answer shows the new title.
    await db.execute("UPDATE webinars SET title = 'Renamed', required_fields = '{email}' WHERE id = $1",
                     config.webinar_id)
    registrations._config_cache[config.webinar_id] = renamed  # a stale entry (as left by a race)
    result = await submit(db, config.webinar_id, form(renamed, email="four@example.com"))
    assert result.created and result.webinar.title == "Renamed"

    # A move made elsewhere: the new registration's reminders follow the new date and version.
    moved_to = config.starts_at + dt.timedelta(days=2)
    await db.execute("UPDATE webinars SET starts_at = $2, schedule_version = schedule_version + 1 WHERE id = $1",
                     config.webinar_id, moved_to)
    result = await submit(db, config.webinar_id, form(renamed, email="five@example.com"))
    rows = await db.fetch("SELECT dedupe_key, run_at FROM jobs WHERE kind = 'email.reminder_d1' AND "
                          "payload->>'registration_id' = $1", str(result.registration_id))
    assert [(r["dedupe_key"].rsplit(":", 1)[1], r["run_at"]) for r in rows] == [("v1", moved_to - dt.timedelta(days=1))]

    # Cancelled elsewhere: closed at once; a webinar deleted elsewhere: not found.
    await db.execute("UPDATE webinars SET state = 'cancelled' WHERE id = $1", config.webinar_id)
    with pytest.raises(RegistrationClosed):
        await submit(db, config.webinar_id, form(renamed, email="six@example.com"))
    assert await db.fetchval("SELECT count(*) FROM registrations WHERE email = 'six@example.com'") == 0


async def test_enqueue_sql_is_the_enqueue_of_enqueue_many(db: Database) -> None:
    """The INSERT a statement embeds (enqueue_sql) keeps enqueue_many's rules: keys are unique
    and kept, bad jobs are refused before anything is sent, and ``only_if`` gates it."""
    at = dt.datetime(2031, 1, 1, tzinfo=dt.UTC)
    jobs = [NewJob("t", "k1", at, {"n": 1}), NewJob("t", "k2", at, {"n": 2})]
    assert await enqueue_many(db, jobs) == 2
    sql = f"WITH j AS ({enqueue_sql(2, only_if='$1::boolean')} RETURNING id) SELECT count(*) FROM j"
    assert await db.fetchval(sql, False, *enqueue_args([NewJob("t", "k3", at, {})])) == 0
    assert await db.fetchval(sql, True, *enqueue_args([NewJob("t", "k3", at, {}), NewJob("t", "k1", at, {})])) == 1
    assert await db.fetchval("SELECT payload FROM jobs WHERE dedupe_key = 'k1'") == '{"n": 1}'
    with pytest.raises(ValueError):
        enqueue_args([NewJob("t", "k4", dt.datetime(2031, 1, 1), {})])  # naive time
    with pytest.raises(ValueError):
        enqueue_args([NewJob("t", "k5", at, {"x": object()})])  # not JSON
    assert await db.fetchval("SELECT count(*) FROM jobs") == 3
