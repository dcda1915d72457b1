"""Daily housekeeping on the durable job queue (server/jobs.py).

Each kind runs once a day at :data:`RUN_AT` (Europe/Paris): its job's dedupe key
is ``<kind>:<date>``, so however many workers or restarts there are, a day's
run happens once; when it has run it enqueues the next day's. The server
enqueues the coming run of each kind at start-up (a no-op when it exists).

- ``daily.lost``: R-SCH-5, webinars not delivered 12 months after the order.
- ``daily.invoices``: deposits, balances, fees, extras and metering invoices due.
- ``daily.retention``: R-GDPR-1, participant data erased after contract end + retention.
- ``daily.backup`` (only with ``WEBINAR_BACKUP_DAILY=1``): R-OPS-1, a backup generation
  (server/backup.py) of the database and media into ``settings.backups_dir``. Only workers
  whose settings enable it have its handler, so only they claim it: enable it on the node
  that holds the media folder. Cut after ``job_lease_s / 2`` like every handler; a cut or
  failed run leaves the existing generations untouched and is retried with backoff.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from billing.invoices import issue_due_invoices
from billing.retention import run_retention
from server.db import Database
from server.jobs import Handler, Job, NewJob, Result, enqueue_many
from server.orders import BUSINESS_TZ
from server.scheduling import mark_lost

if TYPE_CHECKING:
    from server.settings import Settings

log = logging.getLogger("server.daily")

RUN_AT = dt.time(3, 0)
"""Local time (Europe/Paris) of the daily runs: a quiet hour."""

Task = Callable[[Database, dt.datetime], Awaitable[Any]]


def _tasks(settings: Settings | None = None) -> dict[str, Task]:
    tasks: dict[str, Task] = {
        "daily.lost": lambda db, now: mark_lost(db, now),
        "daily.invoices": lambda db, now: issue_due_invoices(db, now.astimezone(BUSINESS_TZ).date()),
        "daily.retention": lambda db, now: run_retention(db, now),
    }
    if settings is not None and settings.backup_daily:
        tasks["daily.backup"] = lambda db, now: _backup(db, settings)
    return tasks


async def _backup(db: Database, settings: Settings) -> str:
    from server.backup import run_backup

    result = await run_backup(db.dsn, settings.media_dir, settings.backups_dir, keep=settings.backup_keep,
                              secret_key_file=settings.data_dir / "secret_key")
    return f"generation {result.generation.name}, removed {result.removed}"


def next_run(now: dt.datetime) -> dt.datetime:
    """The next :data:`RUN_AT` strictly after ``now``."""
    local = now.astimezone(BUSINESS_TZ)
    candidate = dt.datetime.combine(local.date(), RUN_AT, BUSINESS_TZ)
    if candidate <= local:
        candidate = dt.datetime.combine(local.date() + dt.timedelta(days=1), RUN_AT, BUSINESS_TZ)
    return candidate.astimezone(dt.UTC)


def _job(kind: str, run_at: dt.datetime) -> NewJob:
    return NewJob(kind, f"{kind}:{run_at.astimezone(BUSINESS_TZ).date().isoformat()}", run_at, {})


async def schedule(db: Database, now: dt.datetime, settings: Settings | None = None) -> int:
    """Make sure the coming run of every daily kind is queued (``daily.backup`` too when
    ``settings.backup_daily``); returns how many were added."""
    return await enqueue_many(db, [_job(kind, next_run(now)) for kind in _tasks(settings)])


def handlers(db: Database, clock: Callable[[], dt.datetime], settings: Settings | None = None) -> dict[str, Handler]:
    def make(kind: str, task: Task) -> Handler:
        async def run(job: Job) -> Result:
            now = clock()
            result = await task(db, now)
            log.info("%s done", kind, extra={"result": repr(result)[:500]})
            await enqueue_many(db, [_job(kind, next_run(max(now, job.run_at)))])
            return None

        return run

    return {kind: make(kind, task) for kind, task in _tasks(settings).items()}
