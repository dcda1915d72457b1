"""Viewing time and attention from player heartbeats: a sans-I/O core.

The viewer page sends a ``heartbeat`` over the room WebSocket about every
15 s: ``playing``, ``visible`` (tab shown), ``mode`` (``live`` or
``replay``) and ``position``. This module turns the heartbeats of one
connection into credited seconds and viewing sessions. It has no clock, no
socket and no database: every function takes the server time at which a beat
*arrived* (seconds since the epoch) and returns new immutable state, so the
rules are tested without a network (``billing/attendance.py`` does the I/O).

Rules (all times are the server's; what the client says about time is never
trusted, the position is only recorded):

1. **A beat's state holds until the next beat.** The interval between two
   accepted beats of a connection is credited with the state the *earlier*
   beat reported: playing → viewing time (live or replay seconds, by the
   earlier beat's mode); playing and visible → attention time too. A
   connection's first accepted beat opens a session and credits nothing.
2. **Clamping.** One interval credits at most :attr:`Rules.max_credit_s`
   (20 s; the page beats every 15 s), so a silent or frozen connection cannot
   accumulate time, and beats sent faster than every 15 s credit only the wall
   time that really passed. On close (disconnect, server stop), the interval
   from the last beat to the close is credited the same way (at most 20 s).
3. **Phase.** A ``live`` beat is accepted only while the webinar is live
   (``live_started_at`` ≤ t, before ``live_ended_at``); a ``replay`` beat only
   after the live ended (states ``ended``, ``replay``). Other beats are
   refused: they change nothing and are not acknowledged as counted. Credit is
   also cut at the window's edges (an interval that crosses the end of the
   live is credited as live up to the end only).
4. **One person, one timeline.** Credit of one participant never overlaps
   itself: two tabs (two connections) credit the same wall time once. Each
   participant has a :class:`Clock` (``credited_until`` for viewing,
   ``attention_until`` for attention); an interval only credits the part after
   it. So a participant's viewing time never exceeds the wall time elapsed.
5. **Sessions.** A session is one connection in one mode without a silence
   longer than :attr:`Rules.session_gap_s` (60 s). A mode change or a longer
   silence ends the session (its end: the last beat plus the credited tail)
   and the beat opens a new one. Sessions carry join and leave times for the
   attendance table.

Limits: a participant connected to two *server processes* at once is clamped
per process only; readers clamp the totals once more to the live's duration
(``billing/figures.py``). Wall clock steps backwards are treated as no time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal, Sequence

Mode = Literal["live", "replay"]
MODES: tuple[Mode, ...] = ("live", "replay")
INFINITY = math.inf


@dataclass(frozen=True, slots=True)
class Rules:
    """Knobs of the crediting rules (seconds)."""

    max_credit_s: float = 20.0
    """Most one interval between beats (or the tail at close) may credit."""
    session_gap_s: float = 60.0
    """A silence longer than this ends the session; the next beat opens another."""

    def __post_init__(self) -> None:
        if not 0 < self.max_credit_s <= self.session_gap_s <= 3600:
            raise ValueError("need 0 < max_credit_s <= session_gap_s <= 3600")


@dataclass(frozen=True, slots=True)
class Beat:
    """One heartbeat as the server received it."""

    at: float
    """Server arrival time, seconds since the epoch."""
    playing: bool
    visible: bool
    mode: Mode
    position: float = 0.0
    """Player position (s) as the client reported it; recorded, never used for credit."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}")
        if not math.isfinite(self.at) or not math.isfinite(self.position):
            raise ValueError("beat time and position must be finite")


@dataclass(frozen=True, slots=True)
class Phase:
    """When a webinar accepts beats of each mode: half-open windows [start, end) in epoch seconds."""

    live: tuple[float, float] | None
    replay: tuple[float, float] | None

    @classmethod
    def of(cls, state: str, live_started_at: float | None, live_ended_at: float | None) -> "Phase":
        """From the webinar row: ``state`` and its live start/end (epoch seconds or None)."""
        live: tuple[float, float] | None = None
        if live_started_at is not None:
            if live_ended_at is not None:
                live = (live_started_at, live_ended_at)
            elif state == "live":
                live = (live_started_at, INFINITY)
        replay: tuple[float, float] | None = None
        if state in ("ended", "replay"):
            replay = (live_ended_at if live_ended_at is not None else -INFINITY, INFINITY)
        return cls(live, replay)

    def window(self, mode: Mode) -> tuple[float, float] | None:
        return self.live if mode == "live" else self.replay

    def accepts(self, mode: Mode, at: float) -> bool:
        window = self.window(mode)
        return window is not None and window[0] <= at < window[1]


CLOSED = Phase(None, None)
"""A webinar that accepts no beat (draft, cancelled, removed, unknown)."""


@dataclass(frozen=True, slots=True)
class Clock:
    """One participant's credit so far, shared by its connections (rule 4)."""

    credited_until: float = -INFINITY
    attention_until: float = -INFINITY


@dataclass(frozen=True, slots=True)
class Session:
    number: int
    """1, 2, ... within its connection."""
    mode: Mode
    started_at: float
    last_beat_at: float
    ended_at: float | None = None
    seconds: float = 0.0
    """Viewing (playing) seconds credited."""
    attention_seconds: float = 0.0
    """Playing-and-visible seconds credited."""
    position: float = 0.0


@dataclass(frozen=True, slots=True)
class Connection:
    """What the server remembers of one connection between beats."""

    last: Beat | None = None
    """The last accepted beat."""
    session: Session | None = None
    """The open session (None before the first accepted beat and after close)."""
    sessions_opened: int = 0


@dataclass(frozen=True, slots=True)
class Credit:
    """Seconds one beat (or a close) credited to the participant."""

    mode: Mode | None = None
    seconds: float = 0.0
    attention_seconds: float = 0.0

    @property
    def live_seconds(self) -> float:
        return self.seconds if self.mode == "live" else 0.0

    @property
    def replay_seconds(self) -> float:
        return self.seconds if self.mode == "replay" else 0.0


NO_CREDIT = Credit()

Outcome = Literal["counted", "refused_phase", "closed"]


@dataclass(frozen=True, slots=True)
class Step:
    """The result of one beat or close."""

    connection: Connection
    clock: Clock
    credit: Credit
    ended: Session | None
    """A session that ended here, with its final figures."""
    outcome: Outcome


def _credit(last: Beat, until: float, clock: Clock, phase: Phase, rules: Rules) -> tuple[Credit, Clock, float]:
    """Credit the interval [last.at, until] with ``last``'s state (rules 1-4).

    Returns the credit, the participant's new clock and the end of presence
    (the last time the connection is believed to have been there).
    """
    end = min(until, last.at + rules.max_credit_s)
    window = phase.window(last.mode)
    if window is None:
        return NO_CREDIT, clock, last.at
    lo, hi = max(last.at, window[0]), min(end, window[1])
    present_until = max(last.at, min(end, window[1]))
    if hi <= lo or not last.playing:
        return Credit(last.mode), clock, present_until
    watch_from = max(lo, clock.credited_until)
    seconds = max(0.0, hi - watch_from)
    attention = 0.0
    attention_until = clock.attention_until
    if last.visible:
        attention_from = max(lo, clock.attention_until)
        attention = max(0.0, hi - attention_from)
        attention_until = max(clock.attention_until, hi)
    return (Credit(last.mode, seconds, attention),
            Clock(max(clock.credited_until, hi), attention_until),
            present_until)


def _add(session: Session, credit: Credit) -> Session:
    return replace(session, seconds=session.seconds + credit.seconds,
                   attention_seconds=session.attention_seconds + credit.attention_seconds)


def on_beat(conn: Connection, clock: Clock, beat: Beat, phase: Phase, rules: Rules = Rules()) -> Step:
    """Apply one heartbeat that arrived at ``beat.at`` (rules 1-5)."""
    if not phase.accepts(beat.mode, beat.at):
        return Step(conn, clock, NO_CREDIT, None, "refused_phase")
    last, session = conn.last, conn.session
    if last is not None and beat.at < last.at:
        beat = replace(beat, at=last.at)  # the wall clock stepped back: no time passed
    credit, ended = NO_CREDIT, None
    if last is not None and session is not None:
        credit, clock, present_until = _credit(last, beat.at, clock, phase, rules)
        session = _add(session, credit)
        if beat.mode != session.mode or beat.at - last.at > rules.session_gap_s:
            ended = replace(session, ended_at=present_until)
            session = None
    if session is None:
        number = conn.sessions_opened + 1
        session = Session(number, beat.mode, beat.at, beat.at, position=beat.position)
        conn = Connection(beat, session, number)
    else:
        conn = Connection(beat, replace(session, last_beat_at=beat.at, position=beat.position), conn.sessions_opened)
    return Step(conn, clock, credit, ended, "counted")


def on_close(conn: Connection, clock: Clock, at: float, phase: Phase, rules: Rules = Rules()) -> Step:
    """The connection closed at ``at`` (server time): credit the tail, end the open session."""
    last, session = conn.last, conn.session
    if last is None or session is None:
        return Step(Connection(None, None, conn.sessions_opened), clock, NO_CREDIT, None, "closed")
    credit, clock, present_until = _credit(last, max(at, last.at), clock, phase, rules)
    ended = replace(_add(session, credit), ended_at=present_until)
    return Step(Connection(None, None, conn.sessions_opened), clock, credit, ended, "closed")


@dataclass(frozen=True, slots=True)
class Totals:
    live_seconds: float = 0.0
    replay_seconds: float = 0.0
    attention_seconds: float = 0.0
    sessions: tuple[Session, ...] = ()


def totals_of(beats: Sequence[Beat], phase: Phase, closed_at: float | None = None, rules: Rules = Rules()) -> Totals:
    """The figures one connection's beats produce (then a close at ``closed_at``, if given).

    The reference for the rules above; the recorder applies the same steps one beat at a time.
    """
    conn, clock = Connection(), Clock()
    live = replay = attention = 0.0
    sessions: list[Session] = []
    steps: list[Step] = []
    for beat in beats:
        step = on_beat(conn, clock, beat, phase, rules)
        steps.append(step)
        conn, clock = step.connection, step.clock
    if closed_at is not None:
        step = on_close(conn, clock, closed_at, phase, rules)
        steps.append(step)
        conn, clock = step.connection, step.clock
    for step in steps:
        live += step.credit.live_seconds
        replay += step.credit.replay_seconds
        attention += step.credit.attention_seconds
        if step.ended is not None:
            sessions.append(step.ended)
    if conn.session is not None:
        sessions.append(conn.session)
    return Totals(live, replay, attention, tuple(sessions))
