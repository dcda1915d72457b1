"""Durable jobs: a queue in the ``jobs`` table that survives restarts and is
shared by any number of workers (processes or machines) on one database.

Enqueueing
    :func:`enqueue` / :func:`enqueue_many` insert jobs identified by a
    ``dedupe_key``. Enqueueing a key that already exists does nothing
    (``ON CONFLICT DO NOTHING``), whatever the state of the existing job: a
    key names one job forever. So the key must hold everything that makes the
    job distinct (for a reminder: registration, kind and the webinar's
    ``schedule_version``); a job that became wrong is not edited, a new key is
    enqueued and the old job is skipped by its handler. Enqueue in the same
    transaction as the change that calls for the job, and the job exists
    exactly when the change committed. A caller whose change is one statement
    can put the same INSERT in it (:func:`enqueue_sql`, :func:`enqueue_args`):
    registration does, to save round trips.

Running
    :class:`JobWorker` claims due jobs with ``SELECT ... FOR UPDATE SKIP
    LOCKED`` and takes a *lease*: ``state = 'running'``, ``locked_by`` (the
    worker id) and ``locked_until`` (now + ``lease_s``). The claim commits at
    once; the handler runs outside any transaction. Then the job becomes
    ``done``, ``skipped`` (the handler returned :class:`Skipped`: no longer
    relevant), ``failed`` (:class:`PermanentFailure`, or ``max_attempts``
    used) or ``pending`` again with an exponential backoff
    (``backoff_s * 2**(attempts-1)``, at most ``max_backoff_s``). Every update
    that ends a run checks the lease is still ours, so a worker whose lease
    was taken over cannot overwrite the new owner's result.

    A worker that dies leaves its jobs ``running``; once ``locked_until`` has
    passed, any worker takes them over (the attempt counts). A handler is
    cancelled after ``lease_s / 2`` seconds (counted as a failure), so a lease
    does not expire under a live handler unless the event loop itself stalls
    for that long.

Exactly once
    The queue runs a job once per claim and, with leases, at least once
    overall; *exactly once* needs the handler's side effect to be idempotent
    or recorded. The email handler (:mod:`server.notifications`) records each
    mail in ``emails_sent`` (one row per job, unique) right after SMTP accepted
    it and checks that record first, so the only window for a duplicate is a
    crash between SMTP's "250 OK" and that one INSERT. Such a duplicate carries
    the same Message-ID (derived from the job), so mail systems and people can
    recognise it.

Time comes from ``clock`` (aware datetimes; tests pass a controllable one).
Workers compare ``run_at`` and leases with their own clock: keep machines'
clocks in sync (NTP); a skew shortens or lengthens leases by as much.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from prometheus_client import Counter

from server.db import Database
from server.metrics import REGISTRY

log = logging.getLogger("server.jobs")

Clock = Callable[[], dt.datetime]
MAX_KIND_LEN = 100
MAX_KEY_LEN = 500
MAX_ERROR_LEN = 2000
"""Characters of an error message kept in ``jobs.last_error``."""

JOBS_FINISHED = Counter("webinar_jobs_total", "Job runs by kind and outcome", ["kind", "outcome"], registry=REGISTRY)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def default_worker_id() -> str:
    """``host:pid:random``: unique per worker, readable in ``jobs.locked_by``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class Job:
    """A claimed job, as its handler sees it. ``attempts`` counts this run."""

    id: int
    kind: str
    dedupe_key: str
    run_at: dt.datetime
    attempts: int
    max_attempts: int
    payload: dict[str, Any]
    locked_by: str
    locked_until: dt.datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Job:
        payload = row["payload"]
        return cls(row["id"], row["kind"], row["dedupe_key"], row["run_at"], row["attempts"], row["max_attempts"],
                   json.loads(payload) if isinstance(payload, str) else dict(payload), row["locked_by"],
                   row["locked_until"])


@dataclass(frozen=True)
class NewJob:
    kind: str
    dedupe_key: str
    run_at: dt.datetime
    payload: Mapping[str, Any]


@dataclass(frozen=True)
class Skipped:
    """A handler's answer when the job is no longer relevant (state ``skipped``, reason kept)."""

    reason: str


class PermanentFailure(Exception):
    """Raised by a handler when retrying cannot help (state ``failed`` at once)."""


Result = Skipped | None
"""What a handler returns: ``None`` when the job is done, :class:`Skipped` otherwise."""
Handler = Callable[[Job], Awaitable[Result]]


def _check(job: NewJob) -> str:
    if not job.kind or len(job.kind) > MAX_KIND_LEN:
        raise ValueError(f"job kind must be 1 to {MAX_KIND_LEN} characters, got {job.kind!r}")
    if not job.dedupe_key or len(job.dedupe_key) > MAX_KEY_LEN:
        raise ValueError(f"dedupe_key must be 1 to {MAX_KEY_LEN} characters")
    if job.run_at.tzinfo is None:
        raise ValueError("run_at must be an aware datetime")
    try:
        return json.dumps(dict(job.payload), separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"job payload is not JSON: {exc}") from None


def enqueue_sql(first_param: int = 1, *, only_if: str = "TRUE") -> str:
    """The INSERT of :func:`enqueue_many`, its four array parameters numbered from
    ``first_param`` (values: :func:`enqueue_args`), for a caller that writes its jobs
    within a statement of its own (as a data-modifying ``WITH`` part: one round
    trip). ``only_if``: an SQL condition of that statement; no job is inserted when
    it is false. Keys that exist already are left as they are."""
    k, d, r, p = (f"${first_param + i}" for i in range(4))
    return (f"INSERT INTO jobs (kind, dedupe_key, run_at, payload) "
            f"SELECT t.k, t.d, t.r, t.p::jsonb FROM unnest({k}::text[], {d}::text[], {r}::timestamptz[], {p}::text[]) "
            f"AS t(k, d, r, p) WHERE {only_if} ON CONFLICT (dedupe_key) DO NOTHING")


def enqueue_args(jobs: Sequence[NewJob]) -> list[list[Any]]:
    """The four arrays :func:`enqueue_sql` takes (kinds, keys, times, JSON payloads), after the
    checks of :func:`enqueue_many` (:class:`ValueError` for a bad job)."""
    payloads = [_check(j) for j in jobs]
    return [[j.kind for j in jobs], [j.dedupe_key for j in jobs], [j.run_at for j in jobs], payloads]


async def enqueue_many(conn: asyncpg.Connection | Database, jobs: Sequence[NewJob]) -> int:
    """Insert jobs in one statement; keys that exist already are left as they are.
    Returns how many were created."""
    if not jobs:
        return 0
    rows = await conn.fetch(enqueue_sql() + " RETURNING id", *enqueue_args(jobs))
    return len(rows)


async def enqueue(conn: asyncpg.Connection | Database, kind: str, dedupe_key: str, run_at: dt.datetime,
                  payload: Mapping[str, Any]) -> bool:
    """Insert one job; False when ``dedupe_key`` exists already (nothing changes then)."""
    return await enqueue_many(conn, [NewJob(kind, dedupe_key, run_at, payload)]) == 1


def backoff(attempts: int, base_s: float, max_s: float) -> dt.timedelta:
    """Delay before the next try after ``attempts`` failed runs: base, 2*base, 4*base... capped."""
    return dt.timedelta(seconds=min(max_s, base_s * 2 ** max(0, attempts - 1)))


class JobWorker:
    """Claims and runs due jobs of the kinds it has handlers for.

    ``run_once()`` claims up to ``batch`` due jobs and runs them concurrently
    (``batch`` is also the concurrency); ``start()`` loops on it, sleeping
    ``poll_s`` seconds whenever nothing was due; ``stop()`` lets the running
    batch finish for at most ``stop_timeout_s`` seconds, then cancels it (its
    jobs stay ``running`` and are taken over when their lease expires).
    """

    def __init__(self, db: Database, handlers: Mapping[str, Handler], *, clock: Clock = utc_now,
                 worker_id: str | None = None, lease_s: float = 300.0, poll_s: float = 5.0, batch: int = 10,
                 backoff_s: float = 60.0, max_backoff_s: float = 3600.0, stop_timeout_s: float | None = None) -> None:
        if not handlers:
            raise ValueError("a worker needs at least one handler")
        if lease_s <= 0 or poll_s <= 0 or batch < 1 or backoff_s < 0 or max_backoff_s < backoff_s:
            raise ValueError("lease_s and poll_s must be positive, batch >= 1, 0 <= backoff_s <= max_backoff_s")
        self.db = db
        self.handlers = dict(handlers)
        self.clock = clock
        self.worker_id = worker_id or default_worker_id()
        self.lease = dt.timedelta(seconds=lease_s)
        self.handler_timeout_s = lease_s / 2
        self.poll_s = poll_s
        self.batch = batch
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.stop_timeout_s = lease_s / 2 if stop_timeout_s is None else stop_timeout_s
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    # One round -------------------------------------------------------------
    async def run_once(self) -> int:
        """Claim due jobs (at most ``batch``), run them, record the outcomes; returns how many ran."""
        jobs = await self._claim()
        if jobs:
            await asyncio.gather(*(self._run(job) for job in jobs))
        return len(jobs)

    async def _claim(self) -> list[Job]:
        now = self.clock()
        rows = await self.db.fetch(
            """WITH due AS (
                   SELECT id FROM jobs
                   WHERE kind = ANY($1::text[])
                     AND ((state = 'pending' AND run_at <= $2) OR (state = 'running' AND locked_until < $2))
                   ORDER BY run_at, id
                   LIMIT $3
                   FOR UPDATE SKIP LOCKED)
               UPDATE jobs SET state = 'running', locked_by = $4, locked_until = $5, attempts = jobs.attempts + 1
               FROM due WHERE jobs.id = due.id
               RETURNING jobs.*""",
            list(self.handlers), now, self.batch, self.worker_id, now + self.lease,
        )
        jobs = [Job.from_row(r) for r in rows]
        runnable = []
        for job in jobs:
            if job.attempts > job.max_attempts:  # taken over once too often: it keeps killing workers
                await self._finish(job, "failed", "lease expired on the last attempt")
            else:
                runnable.append(job)
        return runnable

    async def _run(self, job: Job) -> None:
        handler = self.handlers[job.kind]
        try:
            async with asyncio.timeout(self.handler_timeout_s):
                result = await handler(job)
        except PermanentFailure as exc:
            log.warning("job %s (%s) failed for good: %s", job.id, job.kind, exc)
            await self._finish(job, "failed", str(exc) or type(exc).__name__)
            return
        except Exception as exc:  # noqa: BLE001  (any other failure is retried)
            error = f"{type(exc).__name__}: {exc}"
            if job.attempts >= job.max_attempts:
                log.warning("job %s (%s) failed after %d attempts: %s", job.id, job.kind, job.attempts, error)
                await self._finish(job, "failed", error)
            else:
                delay = backoff(job.attempts, self.backoff_s, self.max_backoff_s)
                log.info("job %s (%s) attempt %d failed, retry in %s: %s", job.id, job.kind, job.attempts, delay, error)
                await self._finish(job, "pending", error, retry_at=self.clock() + delay)
            return
        if isinstance(result, Skipped):
            await self._finish(job, "skipped", result.reason)
        elif result is None:
            await self._finish(job, "done", "")
        else:
            await self._finish(job, "failed", f"handler returned {result!r}, expected None or Skipped")

    async def _finish(self, job: Job, state: str, error: str, *, retry_at: dt.datetime | None = None) -> None:
        """Record an outcome if the lease is still ours; the worker id stays in ``locked_by`` for the record."""
        now = self.clock()
        status = await self.db.execute(
            """UPDATE jobs SET state = $3::text, last_error = $4, locked_until = NULL,
                   run_at = coalesce($5::timestamptz, run_at),
                   done_at = CASE WHEN $3::text IN ('done', 'skipped', 'failed') THEN $6::timestamptz END
               WHERE id = $1 AND locked_by = $2 AND state = 'running'""",
            job.id, self.worker_id, state, error[:MAX_ERROR_LEN], retry_at, now,
        )
        JOBS_FINISHED.labels(job.kind, "retry" if state == "pending" else state).inc()
        if status.endswith(" 0"):
            log.warning("job %s (%s): lease lost before recording %s", job.id, job.kind, state)

    # Life cycle --------------------------------------------------------------
    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("worker already started")
        self._stopping.clear()
        self._task = asyncio.create_task(self._loop(), name=f"jobs:{self.worker_id}")

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                ran = await self.run_once()
            except Exception:  # database unreachable and the like: try again later
                log.exception("job worker round failed")
                ran = 0
            if ran < self.batch:
                try:
                    await asyncio.wait_for(self._stopping.wait(), self.poll_s)
                except TimeoutError:
                    pass

    async def stop(self) -> None:
        """Finish the running batch (at most ``stop_timeout_s`` seconds), then stop."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), self.stop_timeout_s)
        except TimeoutError:
            log.warning("job worker %s: running jobs did not finish in %.0f s; their leases will expire",
                        self.worker_id, self.stop_timeout_s)
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
