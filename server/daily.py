"""Daily housekeeping on the durable job queue (server/jobs.py).

Each kind runs once a day at :data:`RUN_AT` (Europe/Paris): its job's dedupe key
is ``<kind>:<date>``, so however many workers or restarts there are, a day's
run happens once; when it has run it enqueues the next day's. The server
enqueues the coming run of each kind at start-up (a no-op when it exists).

- ``daily.lost``: R-SCH-5, webinars not delivered 12 months after the order.
- ``daily.invoices``: deposits, balances, fees, extras and metering invoices due.
- ``daily.retention``: R-GDPR-1, participant data erased after contract end + retention.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Awaitable, Callable

from billing.invoices import issue_due_invoices
from billing.retention import run_retention
from server.db import Database
from server.jobs import Handler, Job, NewJob, Result, enqueue_many
from server.orders import BUSINESS_TZ
from server.scheduling import mark_lost

log = logging.getLogger("server.daily")

RUN_AT = dt.time(3, 0)
"""Local time (Europe/Paris) of the daily runs: a quiet hour."""

Task = Callable[[Database, dt.datetime], Awaitable[Any]]


def _tasks() -> dict[str, Task]:
    return {
        "daily.lost": lambda db, now: mark_lost(db, now),
        "daily.invoices": lambda db, now: issue_due_invoices(db, now.astimezone(BUSINESS_TZ).date()),
        "daily.retention": lambda db, now: run_retention(db, now),
    }


def next_run(now: dt.datetime) -> dt.datetime:
    """The next :data:`RUN_AT` strictly after ``now``."""
    local = now.astimezone(BUSINESS_TZ)
    candidate = dt.datetime.combine(local.date(), RUN_AT, BUSINESS_TZ)
    if candidate <= local:
        candidate = dt.datetime.combine(local.date() + dt.timedelta(days=1), RUN_AT, BUSINESS_TZ)
    return candidate.astimezone(dt.UTC)


def _job(kind: str, run_at: dt.datetime) -> NewJob:
    return NewJob(kind, f"{kind}:{run_at.astimezone(BUSINESS_TZ).date().isoformat()}", run_at, {})


async def schedule(db: Database, now: dt.datetime) -> int:
    """Make sure the coming run of every daily kind is queued; returns how many were added."""
    return await enqueue_many(db, [_job(kind, next_run(now)) for kind in _tasks()])


def handlers(db: Database, clock: Callable[[], dt.datetime]) -> dict[str, Handler]:
    def make(kind: str, task: Task) -> Handler:
        async def run(job: Job) -> Result:
            now = clock()
            result = await task(db, now)
            log.info("%s done", kind, extra={"result": repr(result)[:500]})
            await enqueue_many(db, [_job(kind, next_run(max(now, job.run_at)))])
            return None

        return run

    return {kind: make(kind, task) for kind, task in _tasks().items()}
