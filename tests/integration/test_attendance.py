"""The attendance recorder against a real PostgreSQL: batched writes, clamping, failures."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from billing.attendance import AttendanceRecorder
from server.db import Database
from server.webinars import set_state
from tests.world import make_world


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class CountingDB:
    """The real database, counting the statements the recorder sends (and able to fail once)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.statements = 0
        self.fail_next = False

    async def fetch(self, query: str, *args: Any) -> Any:
        self.statements += 1
        return await self.db.fetch(query, *args)

    def acquire(self) -> Any:
        outer = self

        class Conn:
            async def __aenter__(self) -> Any:
                if outer.fail_next:
                    outer.fail_next = False
                    raise ConnectionError("database went away")
                self.cm = outer.db.acquire()
                self.conn = await self.cm.__aenter__()
                return self

            async def __aexit__(self, *exc: Any) -> None:
                await self.cm.__aexit__(*exc)

            def transaction(self) -> Any:
                return self.conn.transaction()

            async def execute(self, query: str, *args: Any) -> Any:
                outer.statements += 1
                return await self.conn.execute(query, *args)

        return Conn()


async def live_webinar(db: Database) -> tuple[uuid.UUID, float]:
    """A webinar live since an hour ago (so simulated time stays in the past); its start as epoch seconds."""
    world = await make_world(db)
    wid = world.a.webinar.id
    await set_state(db, wid, "announced")
    await set_state(db, wid, "live")
    started = await db.fetchval(
        "UPDATE webinars SET live_started_at = now() - interval '1 hour' WHERE id = $1 "
        "RETURNING extract(epoch FROM live_started_at)::float8", wid)
    return wid, started


async def new_participants(db: Database, webinar_id: uuid.UUID, n: int) -> list[uuid.UUID]:
    rows = await db.fetch(
        "INSERT INTO participants (webinar_id, display_name) SELECT $1, 'viewer ' || i FROM generate_series(1, $2) i "
        "RETURNING id", webinar_id, n)
    return [r["id"] for r in rows]


async def test_thousand_viewers_cost_two_statements_per_flush(db: Database) -> None:
    wid, started = await live_webinar(db)
    people = await new_participants(db, wid, 1000)
    counting = CountingDB(db)
    clock = FakeClock(started + 10)
    recorder = AttendanceRecorder(counting, clock=clock)  # type: ignore[arg-type]
    for pid in people:
        recorder.connect(pid, pid, wid)
    for round_ in range(4):
        for pid in people:
            assert await recorder.beat(pid, playing=True, visible=round_ < 2, mode="live", position=15.0 * round_)
        clock.now += 15
    assert counting.statements == 1  # the webinar's live window, read once
    stats = await recorder.flush()
    assert stats is not None and stats.sessions == 1000 and stats.participants == 1000
    assert counting.statements == 3  # + one multi-row statement per table
    row = await db.fetchrow(
        "SELECT count(*) AS n, min(live_seconds) AS lo, max(live_seconds) AS hi, max(attention_seconds) AS att "
        "FROM attendance WHERE webinar_id = $1", wid)
    assert (row["n"], row["lo"], row["hi"], row["att"]) == (1000, 45, 45, 30)
    assert await db.fetchval("SELECT count(*) FROM attendance_sessions WHERE webinar_id = $1 AND ended_at IS NULL",
                             wid) == 1000
    # Nothing changed: nothing to write.
    assert await recorder.flush() is None and counting.statements == 3
    # Everyone leaves 5 s after the last beat: the tails, and the sessions end.
    clock.now += 5 - 15
    for pid in people:
        recorder.disconnect(pid)
    await recorder.flush()
    assert counting.statements == 5
    row = await db.fetchrow(
        "SELECT min(seconds) AS lo, max(seconds) AS hi, count(*) FILTER (WHERE ended_at IS NULL) AS open, "
        "max(extract(epoch FROM ended_at))::float8 AS ended FROM attendance_sessions WHERE webinar_id = $1", wid)
    assert (row["lo"], row["hi"], row["open"]) == (50, 50, 0)
    assert row["ended"] == pytest.approx(started + 10 + 45 + 5)
    assert await db.fetchval("SELECT max(attention_seconds) FROM attendance WHERE webinar_id = $1", wid) == 30


async def test_forged_beats_refused_beats_and_erased_participants(db: Database) -> None:
    wid, started = await live_webinar(db)
    forger, honest, erased = await new_participants(db, wid, 3)
    clock = FakeClock(started + 100)
    recorder = AttendanceRecorder(db, clock=clock)
    for pid in (forger, honest, erased):
        recorder.connect(pid, pid, wid)
    for _ in range(500):  # a flood in the same second
        await recorder.beat(forger, playing=True, visible=True, mode="live")
    clock.now += 1
    assert await recorder.beat(forger, playing=True, visible=True, mode="live")
    # Replay beats while the webinar is live are refused.
    assert not await recorder.beat(honest, playing=True, visible=True, mode="replay")
    await recorder.beat(honest, playing=True, visible=True, mode="live")
    await recorder.beat(erased, playing=True, visible=True, mode="live")
    clock.now += 15
    await recorder.beat(honest, playing=True, visible=True, mode="live")
    await recorder.beat(erased, playing=True, visible=True, mode="live")
    await db.execute("DELETE FROM participants WHERE id = $1", erased)  # erasure between beat and flush
    await recorder.flush()
    figures = {r["participant_id"]: r["live_seconds"] for r in await db.fetch(
        "SELECT participant_id, live_seconds FROM attendance WHERE webinar_id = $1", wid)}
    assert figures == {forger: pytest.approx(1.0), honest: 15}
    # A beat for an unknown connection is ignored.
    assert not await recorder.beat("nobody", playing=True, visible=True, mode="live")


async def test_a_failed_flush_is_retried_without_loss_and_two_nodes_add_up(db: Database) -> None:
    wid, started = await live_webinar(db)
    (pid,) = await new_participants(db, wid, 1)
    counting = CountingDB(db)
    clock = FakeClock(started + 10)
    node_a = AttendanceRecorder(counting, clock=clock)  # type: ignore[arg-type]
    node_b = AttendanceRecorder(db, clock=FakeClock(started + 500))
    node_a.connect("a", pid, wid)
    node_b.connect("b", pid, wid)
    for _ in range(3):
        await node_a.beat("a", playing=True, visible=True, mode="live")
        clock.now += 15
    counting.fail_next = True
    with pytest.raises(ConnectionError):
        await node_a.flush()
    assert node_a.pending == 1
    await node_a.beat("a", playing=True, visible=False, mode="live")
    await node_a.flush()
    await node_b.beat("b", playing=True, visible=True, mode="live")
    node_b.clock.now += 10  # type: ignore[attr-defined]
    await node_b.beat("b", playing=True, visible=True, mode="live")
    await node_b.flush()
    row = await db.fetchrow("SELECT live_seconds, attention_seconds, first_seen_at, last_seen_at FROM attendance "
                            "WHERE participant_id = $1", pid)
    assert (row["live_seconds"], row["attention_seconds"]) == (45 + 10, 45 + 10)
    assert row["first_seen_at"].timestamp() == pytest.approx(started + 10)
    assert row["last_seen_at"].timestamp() == pytest.approx(started + 510)
    assert await db.fetchval("SELECT count(*) FROM attendance_sessions WHERE participant_id = $1", pid) == 2


async def test_close_ends_every_open_session_and_writes_it(db: Database) -> None:
    wid, started = await live_webinar(db)
    people = await new_participants(db, wid, 5)
    clock = FakeClock(started + 10)
    recorder = AttendanceRecorder(db, clock=clock, flush_every_s=0.05)
    recorder.start()
    for pid in people:
        recorder.connect(pid, pid, wid)
        await recorder.beat(pid, playing=True, visible=True, mode="live")
    clock.now += 12
    deadline = time.monotonic() + 10
    while await db.fetchval("SELECT count(*) FROM attendance_sessions WHERE webinar_id = $1", wid) < 5:
        assert time.monotonic() < deadline, "the periodic flush did not write the sessions"
        await asyncio.sleep(0.05)
    await recorder.close()
    rows = await db.fetch("SELECT seconds, ended_at FROM attendance_sessions WHERE webinar_id = $1", wid)
    assert len(rows) == 5 and all(r["ended_at"] is not None and r["seconds"] == 12 for r in rows)
    assert recorder.connections == 0
    recorder.connect("late", people[0], wid)  # after close: ignored
    assert recorder.connections == 0
