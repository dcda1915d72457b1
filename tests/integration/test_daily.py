"""Daily housekeeping jobs: once a day, whatever the number of workers, each run queues the next."""

from __future__ import annotations

import datetime as dt

from server import daily
from server.db import Database
from server.jobs import JobWorker
from server.orders import BUSINESS_TZ


def test_next_run_is_the_coming_3am_paris() -> None:
    before = dt.datetime(2026, 3, 10, 1, 0, tzinfo=BUSINESS_TZ)
    after = dt.datetime(2026, 3, 10, 3, 0, tzinfo=BUSINESS_TZ)
    assert daily.next_run(before) == dt.datetime(2026, 3, 10, 3, 0, tzinfo=BUSINESS_TZ)
    assert daily.next_run(after) == dt.datetime(2026, 3, 11, 3, 0, tzinfo=BUSINESS_TZ)


async def test_daily_jobs_run_once_and_requeue(db: Database) -> None:
    now = dt.datetime(2026, 5, 4, 12, 0, tzinfo=dt.UTC)
    assert await daily.schedule(db, now) == 3
    assert await daily.schedule(db, now) == 0  # already queued: several workers, restarts
    clock_now = [now + dt.timedelta(days=1)]
    workers = [JobWorker(db, daily.handlers(db, lambda: clock_now[0]), clock=lambda: clock_now[0], worker_id=f"w{i}",
                         lease_s=60, poll_s=0.1, batch=5) for i in range(2)]
    for worker in workers:
        await worker.run_once()
    rows = await db.fetch("SELECT kind, state, dedupe_key FROM jobs ORDER BY run_at, kind")
    done = [r for r in rows if r["state"] == "done"]
    pending = [r for r in rows if r["state"] == "pending"]
    assert sorted(r["kind"] for r in done) == ["daily.invoices", "daily.lost", "daily.retention"]
    assert sorted(r["dedupe_key"] for r in pending) == [
        "daily.invoices:2026-05-06", "daily.lost:2026-05-06", "daily.retention:2026-05-06"]
