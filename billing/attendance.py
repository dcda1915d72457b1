"""Attendance recording: heartbeats in, batched writes out.

The room WebSocket tells the :class:`AttendanceRecorder` when a viewer
connects, each heartbeat, and when it disconnects (``rooms/ws.py`` calls
:func:`viewer_connected`, :func:`viewer_heartbeat`, :func:`viewer_disconnected`).
The recorder keeps each connection's state in memory and applies the rules
of :mod:`billing.attention` (pure functions) at every beat; nothing touches
the database on the beat path except, rarely, reading a webinar's live
window (at most once per second per webinar, when a beat disagrees with the
cached one).

Every :attr:`AttendanceRecorder.flush_every_s` seconds (5 s) it writes what
changed in **one transaction of two multi-row statements** (``unnest`` of
arrays): the sessions that changed (upserted with their current figures) and
the per-participant increments (added to ``attendance``). So 10,000 viewers
beating every 15 s cost two statements every 5 s, not 667 per second. A beat
is durable at most ``flush_every_s`` + one flush later; a crash loses at
most that much viewing time. A flush that fails is merged back and retried at
the next tick.

Only viewers (role ``viewer``) are recorded: staff in the room are not
audience. Participants deleted meanwhile (erasure) are skipped by the flush.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Hashable

from prometheus_client import Counter, Histogram

from billing.attention import CLOSED, Beat, Clock, Connection, Mode, Phase, Rules, Session, Step, on_beat, on_close
from server.db import Database
from server.metrics import REGISTRY

log = logging.getLogger("billing.attendance")

HEARTBEATS = Counter("webinar_heartbeats_total", "Viewer heartbeats by outcome", ["outcome"], registry=REGISTRY)
FLUSH_SECONDS = Histogram("webinar_attendance_flush_seconds", "Duration of one attendance flush (s)",
                          registry=REGISTRY, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
EXTRAS_KEY = "attendance"
"""Key of the recorder in ``Services.extras``."""
PHASE_RETRY_S = 1.0
"""A beat refused by a cached live window re-reads the webinar at most this often (per webinar)."""

_SESSIONS_SQL = """
INSERT INTO attendance_sessions (id, webinar_id, participant_id, mode, started_at, last_beat_at, ended_at,
                                 seconds, attention_seconds, position)
SELECT t.id, t.webinar_id, t.participant_id, t.mode, to_timestamp(t.started), to_timestamp(t.last_beat),
       to_timestamp(t.ended), t.seconds, t.attention, t.position
FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::float8[], $6::float8[], $7::float8[],
            $8::float8[], $9::float8[], $10::float8[])
     AS t(id, webinar_id, participant_id, mode, started, last_beat, ended, seconds, attention, position)
WHERE EXISTS (SELECT 1 FROM participants p WHERE p.id = t.participant_id)
ON CONFLICT (id) DO UPDATE SET
    last_beat_at = EXCLUDED.last_beat_at, ended_at = EXCLUDED.ended_at, seconds = EXCLUDED.seconds,
    attention_seconds = EXCLUDED.attention_seconds, position = EXCLUDED.position
"""
_TOTALS_SQL = """
INSERT INTO attendance (participant_id, webinar_id, live_seconds, replay_seconds, attention_seconds,
                        first_seen_at, last_seen_at)
SELECT t.participant_id, t.webinar_id, t.live, t.replay, t.attention, to_timestamp(t.first_seen),
       to_timestamp(t.last_seen)
FROM unnest($1::uuid[], $2::uuid[], $3::float8[], $4::float8[], $5::float8[], $6::float8[], $7::float8[])
     AS t(participant_id, webinar_id, live, replay, attention, first_seen, last_seen)
WHERE EXISTS (SELECT 1 FROM participants p WHERE p.id = t.participant_id)
ORDER BY t.participant_id
ON CONFLICT (participant_id) DO UPDATE SET
    live_seconds = attendance.live_seconds + EXCLUDED.live_seconds,
    replay_seconds = attendance.replay_seconds + EXCLUDED.replay_seconds,
    attention_seconds = attendance.attention_seconds + EXCLUDED.attention_seconds,
    first_seen_at = LEAST(attendance.first_seen_at, EXCLUDED.first_seen_at),
    last_seen_at = GREATEST(attendance.last_seen_at, EXCLUDED.last_seen_at),
    updated_at = now()
"""
_PHASES_SQL = """
SELECT id, state, extract(epoch FROM live_started_at)::float8 AS started, extract(epoch FROM live_ended_at)::float8 AS ended
FROM webinars WHERE id = ANY($1::uuid[])
"""


@dataclass
class _Viewer:
    participant_id: uuid.UUID
    webinar_id: uuid.UUID
    conn: Connection = field(default_factory=Connection)
    session_id: uuid.UUID | None = None


@dataclass
class _Pending:
    """Totals to add for one participant at the next flush."""

    webinar_id: uuid.UUID
    live: float = 0.0
    replay: float = 0.0
    attention: float = 0.0
    first_seen: float = float("inf")
    last_seen: float = float("-inf")

    def merge(self, other: "_Pending") -> None:
        self.live += other.live
        self.replay += other.replay
        self.attention += other.attention
        self.first_seen = min(self.first_seen, other.first_seen)
        self.last_seen = max(self.last_seen, other.last_seen)


@dataclass(frozen=True)
class FlushStats:
    sessions: int
    participants: int
    duration_s: float
    oldest_beat_age_s: float
    """Age of the oldest beat made durable by this flush, when it committed (s): the ingestion lag."""


class AttendanceRecorder:
    """In-memory attendance state of this process, flushed to PostgreSQL in batches.

    ``clock`` returns the server wall time (epoch seconds); tests pass their own.
    Memory: a few hundred bytes per open connection and per participant with
    pending totals.
    """

    def __init__(self, db: Database, *, rules: Rules = Rules(), flush_every_s: float = 5.0,
                 clock: Callable[[], float] = time.time) -> None:
        if not 0.05 <= flush_every_s <= 60:
            raise ValueError("flush_every_s must be between 0.05 and 60 s")
        self.db = db
        self.rules = rules
        self.flush_every_s = flush_every_s
        self.clock = clock
        self._viewers: dict[Hashable, _Viewer] = {}
        self._clocks: dict[uuid.UUID, Clock] = {}
        self._refs: dict[uuid.UUID, int] = {}
        self._phases: dict[uuid.UUID, tuple[Phase, float]] = {}
        self._dirty: dict[uuid.UUID, tuple[uuid.UUID, uuid.UUID, Session]] = {}
        self._totals: dict[uuid.UUID, _Pending] = {}
        self._oldest_pending: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()
        self._closed = False
        self.flushes: list[FlushStats] = []
        """The last flushes (at most 1000), newest last."""

    # The room's side -----------------------------------------------------------
    def connect(self, key: Hashable, participant_id: uuid.UUID, webinar_id: uuid.UUID) -> None:
        """A viewer's connection opened; ``key`` names it until :meth:`disconnect`."""
        if self._closed or key in self._viewers:
            return
        self._viewers[key] = _Viewer(participant_id, webinar_id)
        self._refs[participant_id] = self._refs.get(participant_id, 0) + 1

    async def beat(self, key: Hashable, *, playing: bool, visible: bool, mode: Mode, position: float = 0.0) -> bool:
        """Apply one heartbeat of connection ``key``; True when it was counted (rules in :mod:`billing.attention`)."""
        viewer = self._viewers.get(key)
        if viewer is None or self._closed:
            HEARTBEATS.labels("ignored").inc()
            return False
        beat = Beat(self.clock(), playing, visible, mode, position)
        phase = await self._phase(viewer.webinar_id, beat)
        if key not in self._viewers:  # disconnected while the phase was read
            return False
        clock = self._clocks.get(viewer.participant_id, Clock())
        step = on_beat(viewer.conn, clock, beat, phase, self.rules)
        HEARTBEATS.labels(step.outcome).inc()
        if step.outcome != "counted":
            return False
        self._apply(viewer, step, beat.at)
        return True

    def disconnect(self, key: Hashable) -> None:
        """The connection closed: credit its tail and end its session (no I/O)."""
        viewer = self._viewers.pop(key, None)
        if viewer is None:
            return
        self._close_viewer(viewer, self.clock())
        left = self._refs.get(viewer.participant_id, 1) - 1
        if left <= 0:
            self._refs.pop(viewer.participant_id, None)
            self._clocks.pop(viewer.participant_id, None)
        else:
            self._refs[viewer.participant_id] = left

    @property
    def connections(self) -> int:
        return len(self._viewers)

    @property
    def pending(self) -> int:
        """Session rows waiting for the next flush."""
        return len(self._dirty)

    # State -----------------------------------------------------------------------
    def _close_viewer(self, viewer: _Viewer, at: float) -> None:
        phase = self._phases.get(viewer.webinar_id, (CLOSED, 0.0))[0]
        clock = self._clocks.get(viewer.participant_id, Clock())
        self._apply(viewer, on_close(viewer.conn, clock, at, phase, self.rules), at)

    def _apply(self, viewer: _Viewer, step: Step, now: float) -> None:
        if step.ended is not None and viewer.session_id is not None:
            self._dirty[viewer.session_id] = (viewer.participant_id, viewer.webinar_id, step.ended)
            viewer.session_id = None
        current = step.connection.session
        if current is not None:
            if viewer.session_id is None:
                viewer.session_id = uuid.uuid4()
            self._dirty[viewer.session_id] = (viewer.participant_id, viewer.webinar_id, current)
        viewer.conn = step.connection
        self._clocks[viewer.participant_id] = step.clock
        touched = [s for s in (step.ended, current) if s is not None]
        if touched:
            pending = self._totals.get(viewer.participant_id)
            if pending is None:
                pending = self._totals[viewer.participant_id] = _Pending(viewer.webinar_id)
            pending.live += step.credit.live_seconds
            pending.replay += step.credit.replay_seconds
            pending.attention += step.credit.attention_seconds
            pending.first_seen = min(pending.first_seen, *(s.started_at for s in touched))
            pending.last_seen = max(pending.last_seen, *(s.ended_at or s.last_beat_at for s in touched))
            if self._oldest_pending is None:
                self._oldest_pending = time.monotonic()

    async def _phase(self, webinar_id: uuid.UUID, beat: Beat) -> Phase:
        cached = self._phases.get(webinar_id)
        if cached is not None and (cached[0].accepts(beat.mode, beat.at) or time.monotonic() - cached[1] < PHASE_RETRY_S):
            return cached[0]
        await self.refresh_phases([webinar_id])
        return self._phases.get(webinar_id, (CLOSED, 0.0))[0]

    async def refresh_phases(self, webinar_ids: list[uuid.UUID] | None = None) -> None:
        """Re-read the live windows of ``webinar_ids`` (default: every webinar with a connection)."""
        ids = list({v.webinar_id for v in self._viewers.values()}) if webinar_ids is None else webinar_ids
        if not ids:
            self._phases.clear()
            return
        rows = await self.db.fetch(_PHASES_SQL, ids)
        now = time.monotonic()
        found = {r["id"]: Phase.of(r["state"], r["started"], r["ended"]) for r in rows}
        for wid in ids:
            self._phases[wid] = (found.get(wid, CLOSED), now)
        if webinar_ids is None:  # forget webinars nobody watches any more
            for wid in [w for w in self._phases if w not in found]:
                del self._phases[wid]

    # Writing -----------------------------------------------------------------------
    async def flush(self) -> FlushStats | None:
        """Write every change since the last flush (two statements, one transaction); None when idle."""
        async with self._flush_lock:
            if not self._dirty and not self._totals:
                return None
            dirty, self._dirty = self._dirty, {}
            totals, self._totals = self._totals, {}
            oldest, self._oldest_pending = self._oldest_pending, None
            t0 = time.monotonic()
            try:
                async with self.db.acquire() as conn, conn.transaction():
                    if dirty:
                        await conn.execute(_SESSIONS_SQL, *_session_columns(dirty))
                    if totals:
                        await conn.execute(_TOTALS_SQL, *_total_columns(totals))
            except BaseException:
                self._merge_back(dirty, totals, oldest)
                raise
            done = time.monotonic()
            FLUSH_SECONDS.observe(done - t0)
            stats = FlushStats(len(dirty), len(totals), done - t0, done - oldest if oldest is not None else 0.0)
            self.flushes.append(stats)
            del self.flushes[:-1000]
            return stats

    def _merge_back(self, dirty: dict[uuid.UUID, tuple[uuid.UUID, uuid.UUID, Session]],
                    totals: dict[uuid.UUID, _Pending], oldest: float | None) -> None:
        for sid, row in dirty.items():
            self._dirty.setdefault(sid, row)  # a newer state of the session wins
        for pid, pending in totals.items():
            if pid in self._totals:
                self._totals[pid].merge(pending)
            else:
                self._totals[pid] = pending
        if oldest is not None:
            self._oldest_pending = min(oldest, self._oldest_pending or oldest)

    async def run(self) -> None:
        """Refresh live windows and flush every :attr:`flush_every_s` until cancelled."""
        while True:
            await asyncio.sleep(self.flush_every_s)
            try:
                await self.refresh_phases()
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("attendance flush failed; retrying at the next tick")

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="attendance-flush")

    async def close(self, timeout_s: float = 10.0) -> None:
        """Stop the periodic flush, end every open session now and write everything (at most ``timeout_s``)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        now = self.clock()
        for viewer in list(self._viewers.values()):
            self._close_viewer(viewer, now)
        self._viewers.clear()
        self._refs.clear()
        self._clocks.clear()
        self._closed = True
        try:
            async with asyncio.timeout(timeout_s):
                await self.flush()
        except Exception:
            log.exception("last attendance flush failed: %d sessions not written", len(self._dirty))


def _session_columns(dirty: dict[uuid.UUID, tuple[uuid.UUID, uuid.UUID, Session]]) -> list[list[Any]]:
    cols: list[list[Any]] = [[] for _ in range(10)]
    for sid, (pid, wid, s) in dirty.items():
        for col, value in zip(cols, (sid, wid, pid, s.mode, s.started_at, s.last_beat_at, s.ended_at, s.seconds,
                                     s.attention_seconds, s.position)):
            col.append(value)
    return cols


def _total_columns(totals: dict[uuid.UUID, _Pending]) -> list[list[Any]]:
    cols: list[list[Any]] = [[] for _ in range(7)]
    for pid in sorted(totals):  # one lock order for every node: no deadlock between flushes
        p = totals[pid]
        for col, value in zip(cols, (pid, p.webinar_id, p.live, p.replay, p.attention, p.first_seen, p.last_seen)):
            col.append(value)
    return cols


# Wiring ----------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def attendance_service(services: Any, *, flush_every_s: float = 5.0) -> AsyncIterator[AttendanceRecorder]:
    """Run a recorder for the app's lifetime, as ``services.extras["attendance"]``; the last flush on exit."""
    recorder = AttendanceRecorder(services.db, flush_every_s=flush_every_s)
    services.extras[EXTRAS_KEY] = recorder
    recorder.start()
    try:
        yield recorder
    finally:
        await recorder.close()
        services.extras.pop(EXTRAS_KEY, None)


def recorder_of(services: Any) -> AttendanceRecorder | None:
    recorder = services.extras.get(EXTRAS_KEY)
    return recorder if isinstance(recorder, AttendanceRecorder) else None


def viewer_connected(services: Any, key: Hashable, participant: Any) -> None:
    """From the room WebSocket: ``participant`` (a :class:`rooms.participants.Participant`) connected.
    Staff (speakers, moderators) are not audience and are not recorded."""
    recorder = recorder_of(services)
    if recorder is not None and participant.role == "viewer":
        recorder.connect(key, participant.id, participant.webinar_id)


async def viewer_heartbeat(services: Any, key: Hashable, message: Any) -> bool:
    """From the room WebSocket: a :class:`rooms.messages.Heartbeat`; True when counted.
    Never raises (a database hiccup while reading a live window costs one beat, not the socket)."""
    recorder = recorder_of(services)
    if recorder is None:
        return False
    try:
        return await recorder.beat(key, playing=message.playing, visible=message.visible, mode=message.mode,
                                   position=message.position)
    except Exception:
        HEARTBEATS.labels("error").inc()
        log.exception("attendance: heartbeat not recorded")
        return False


def viewer_disconnected(services: Any, key: Hashable) -> None:
    """From the room WebSocket, once, whatever ended the connection. Never raises."""
    recorder = recorder_of(services)
    if recorder is not None:
        try:
            recorder.disconnect(key)
        except Exception:  # never let audience data break a socket's clean-up
            log.exception("attendance: disconnect failed")
