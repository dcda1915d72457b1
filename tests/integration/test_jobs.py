"""The durable job queue on a real PostgreSQL: dedupe, leases, takeover, retries,
several workers. Time is a controllable clock."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from typing import AsyncIterator

import pytest

from server.db import Database
from server.jobs import Job, JobWorker, PermanentFailure, Skipped, enqueue
from tests.support.mail_world import Clock
from tests.support.postgres import PostgresForTests

T0 = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
async def second_pool(db: Database) -> AsyncIterator[Database]:
    """Another pool on the same database: what a second process would have."""
    other = Database(db.dsn, min_size=1, max_size=5)
    await other.connect()
    try:
        yield other
    finally:
        await other.close()


async def row(db: Database, key: str) -> dict[str, object]:
    record = await db.fetchrow("SELECT * FROM jobs WHERE dedupe_key = $1", key)
    assert record is not None
    return dict(record)


async def test_enqueue_is_idempotent_on_the_key(db: Database) -> None:
    assert await enqueue(db, "t", "k1", T0, {"n": 1})
    assert not await enqueue(db, "t", "k1", T0 + dt.timedelta(hours=1), {"n": 2})
    ran: list[dict[str, object]] = []

    async def handler(job: Job) -> None:
        ran.append(job.payload)

    worker = JobWorker(db, {"t": handler}, clock=Clock(T0))
    assert await worker.run_once() == 1
    assert not await enqueue(db, "t", "k1", T0, {"n": 3})  # a done job's key stays taken
    assert await worker.run_once() == 0
    assert ran == [{"n": 1}]
    assert (await row(db, "k1"))["state"] == "done"


async def test_due_time_outcomes_and_unknown_kinds(db: Database) -> None:
    clock = Clock(T0)
    for key in ("done", "skip", "perm"):
        await enqueue(db, "t", key, T0 + dt.timedelta(minutes=5), {"do": key})
    await enqueue(db, "other", "other", T0, {})

    async def handler(job: Job) -> Skipped | None:
        if job.payload["do"] == "skip":
            return Skipped("no longer relevant")
        if job.payload["do"] == "perm":
            raise PermanentFailure("550 no such mailbox")
        return None

    worker = JobWorker(db, {"t": handler}, clock=clock)
    assert await worker.run_once() == 0  # not due yet; "other" has no handler here
    clock.advance(minutes=5)
    assert await worker.run_once() == 3
    assert [(await row(db, k))["state"] for k in ("done", "skip", "perm")] == ["done", "skipped", "failed"]
    assert (await row(db, "skip"))["last_error"] == "no longer relevant"
    perm = await row(db, "perm")
    assert perm["attempts"] == 1 and "550" in str(perm["last_error"])
    assert (await row(db, "other"))["state"] == "pending"


async def test_failures_back_off_exponentially_then_fail(db: Database) -> None:
    clock = Clock(T0)
    await db.execute("INSERT INTO jobs (kind, dedupe_key, run_at, max_attempts) VALUES ('t', 'flaky', $1, 3)", T0)
    calls = 0

    async def handler(job: Job) -> None:
        nonlocal calls
        calls += 1
        raise ConnectionRefusedError("smtp down")

    worker = JobWorker(db, {"t": handler}, clock=clock, backoff_s=60)
    assert await worker.run_once() == 1
    job = await row(db, "flaky")
    assert (job["state"], job["attempts"], job["run_at"]) == ("pending", 1, T0 + dt.timedelta(seconds=60))
    assert "smtp down" in str(job["last_error"])
    clock.advance(seconds=59)
    assert await worker.run_once() == 0
    clock.advance(seconds=1)
    assert await worker.run_once() == 1
    assert (await row(db, "flaky"))["run_at"] == clock.now + dt.timedelta(seconds=120)
    clock.advance(seconds=120)
    assert await worker.run_once() == 1
    job = await row(db, "flaky")
    assert (job["state"], job["attempts"], calls) == ("failed", 3, 3)
    clock.advance(days=1)
    assert await worker.run_once() == 0


async def test_a_claimed_job_is_not_claimed_again_and_an_expired_lease_is_taken_over(
        db: Database, second_pool: Database) -> None:
    clock = Clock(T0)
    await enqueue(db, "t", "slow", T0, {})
    await enqueue(db, "t", "quick", T0 + dt.timedelta(seconds=1), {})
    started = asyncio.Event()
    runs: list[tuple[str, str]] = []

    async def hanging(job: Job) -> None:
        runs.append(("a", job.dedupe_key))
        started.set()
        await asyncio.Event().wait()  # the process "dies" here

    async def quick(job: Job) -> None:
        runs.append(("b", job.dedupe_key))

    a = JobWorker(db, {"t": hanging}, clock=clock, worker_id="a", lease_s=60, batch=1)
    b = JobWorker(second_pool, {"t": quick}, clock=clock, worker_id="b", lease_s=60, batch=5)
    task = asyncio.create_task(a.run_once())
    async with asyncio.timeout(30):
        await started.wait()
    clock.advance(seconds=1)
    assert await b.run_once() == 1  # only the other job: "slow" is leased to a
    assert runs == [("a", "slow"), ("b", "quick")]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    slow = await row(db, "slow")
    assert (slow["state"], slow["locked_by"]) == ("running", "a")
    assert await b.run_once() == 0  # lease still valid
    clock.advance(seconds=60)
    assert await b.run_once() == 1
    slow = await row(db, "slow")
    assert (slow["state"], slow["locked_by"], slow["attempts"]) == ("done", "b", 2)
    assert runs[-1] == ("b", "slow")


async def test_a_job_that_keeps_killing_workers_ends_failed(db: Database) -> None:
    clock = Clock(T0)
    await db.execute("INSERT INTO jobs (kind, dedupe_key, run_at, max_attempts, state, attempts, locked_by, "
                     "locked_until) VALUES ('t', 'poison', $1, 2, 'running', 2, 'dead', $1)", T0)
    ran = []

    async def handler(job: Job) -> None:
        ran.append(job.id)

    clock.advance(seconds=1)
    assert await JobWorker(db, {"t": handler}, clock=clock).run_once() == 0
    job = await row(db, "poison")
    assert (job["state"], job["attempts"], ran) == ("failed", 3, [])


async def test_many_workers_run_each_job_once(db: Database, pg: PostgresForTests) -> None:
    clock = Clock(T0)
    for n in range(60):
        await enqueue(db, "t", f"j{n}", T0, {"n": n})
    seen: Counter[int] = Counter()
    by_worker: Counter[str] = Counter()

    def handler_for(name: str):  # type: ignore[no-untyped-def]
        async def handler(job: Job) -> None:
            seen[job.payload["n"]] += 1
            by_worker[name] += 1
            await asyncio.sleep(0.001)
        return handler

    pools = [db]
    for _ in range(2):
        extra = Database(db.dsn, min_size=1, max_size=3)
        await extra.connect()
        pools.append(extra)
    try:
        workers = [JobWorker(p, {"t": handler_for(f"w{i}")}, clock=clock, worker_id=f"w{i}", batch=4)
                   for i, p in enumerate(pools)]

        async def drain(worker: JobWorker) -> None:
            for _ in range(100):
                if await worker.run_once() == 0 and await db.fetchval(
                        "SELECT count(*) FROM jobs WHERE state <> 'done'") == 0:
                    return

        async with asyncio.timeout(120):
            await asyncio.gather(*(drain(w) for w in workers))
    finally:
        for extra in pools[1:]:
            await extra.close()
    assert sorted(seen) == list(range(60)) and set(seen.values()) == {1}
    assert sum(by_worker.values()) == 60
    assert await db.fetchval("SELECT count(*) FROM jobs WHERE state = 'done' AND attempts = 1") == 60


async def test_handler_timeout_and_bounded_stop(db: Database) -> None:
    clock = Clock(T0)
    await enqueue(db, "t", "stuck", T0, {})

    async def stuck(job: Job) -> None:
        await asyncio.sleep(3600)

    # A handler is cancelled after half the lease: counted as a failure, retried later.
    worker = JobWorker(db, {"t": stuck}, clock=clock, lease_s=0.4)
    assert await worker.run_once() == 1
    job = await row(db, "stuck")
    assert (job["state"], job["attempts"]) == ("pending", 1) and "TimeoutError" in str(job["last_error"])

    # stop() waits for the running job a bounded time, then leaves it to lease expiry.
    clock.advance(hours=1)
    looping = JobWorker(db, {"t": stuck}, clock=clock, lease_s=600, poll_s=0.01, stop_timeout_s=0.2)
    await looping.start()
    async with asyncio.timeout(30):
        while (await row(db, "stuck"))["state"] != "running":
            await asyncio.sleep(0.01)
    async with asyncio.timeout(30):
        await looping.stop()
    job = await row(db, "stuck")
    assert (job["state"], job["attempts"]) == ("running", 2)
