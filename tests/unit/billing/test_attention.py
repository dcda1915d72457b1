"""The crediting rules of billing/attention.py, without a network or a clock."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.attention import (
    CLOSED,
    Beat,
    Clock,
    Connection,
    Phase,
    Rules,
    on_beat,
    on_close,
    totals_of,
)

T0 = 1_800_000_000.0
LIVE = Phase.of("live", T0, None)
"""Live since T0, still running."""


def beats(times: list[float], *, playing: bool = True, visible: bool = True, mode: str = "live") -> list[Beat]:
    return [Beat(T0 + t, playing, visible, mode) for t in times]  # type: ignore[arg-type]


def test_every_15_s_for_a_minute_credits_the_intervals_and_the_first_beat_nothing() -> None:
    totals = totals_of(beats([0, 15, 30, 45, 60]), LIVE)
    assert totals.live_seconds == 60 and totals.attention_seconds == 60 and totals.replay_seconds == 0
    (session,) = totals.sessions
    assert (session.started_at, session.last_beat_at, session.ended_at) == (T0, T0 + 60, None)


def test_the_tail_after_the_last_beat_is_credited_on_close_but_at_most_20_s() -> None:
    assert totals_of(beats([0, 15]), LIVE, closed_at=T0 + 25).live_seconds == 25
    closed = totals_of(beats([0, 15]), LIVE, closed_at=T0 + 600)
    assert closed.live_seconds == 35
    assert closed.sessions[0].ended_at == T0 + 35  # presence ends where credit ends


def test_state_holds_until_the_next_beat_paused_and_hidden_intervals() -> None:
    seq = [Beat(T0, True, True, "live"), Beat(T0 + 15, False, True, "live"), Beat(T0 + 30, True, False, "live"),
           Beat(T0 + 45, True, True, "live"), Beat(T0 + 60, True, True, "live")]
    totals = totals_of(seq, LIVE)
    # [0,15] playing+visible, [15,30] paused, [30,45] playing hidden, [45,60] playing+visible
    assert totals.live_seconds == 45
    assert totals.attention_seconds == 30


def test_a_silent_connection_gains_at_most_20_s_and_a_long_silence_splits_the_session() -> None:
    totals = totals_of(beats([0, 50]), LIVE)  # 50 s gap: same session, 20 s credited
    assert totals.live_seconds == 20 and len(totals.sessions) == 1
    totals = totals_of(beats([0, 15, 300, 315]), LIVE)  # 285 s gap: a new session
    assert totals.live_seconds == 15 + 20 + 15
    first, second = totals.sessions
    assert first.ended_at == T0 + 35 and first.seconds == 35
    assert second.started_at == T0 + 300 and second.seconds == 15 and second.number == 2


def test_beats_faster_than_every_15_s_only_credit_the_wall_time() -> None:
    flood = beats([i * 0.1 for i in range(601)])  # 10 beats per second for 60 s
    assert totals_of(flood, LIVE).live_seconds == pytest.approx(60.0)


def test_a_live_beat_while_the_webinar_is_not_live_is_refused() -> None:
    announced = Phase.of("announced", None, None)
    step = on_beat(Connection(), Clock(), Beat(T0, True, True, "live"), announced)
    assert step.outcome == "refused_phase" and step.connection == Connection()
    ended = Phase.of("ended", T0, T0 + 100)
    assert on_beat(Connection(), Clock(), Beat(T0 + 101, True, True, "live"), ended).outcome == "refused_phase"
    assert on_beat(Connection(), Clock(), Beat(T0 + 50, True, True, "replay"), LIVE).outcome == "refused_phase"
    assert on_beat(Connection(), Clock(), Beat(T0, True, True, "replay"), CLOSED).outcome == "refused_phase"


def test_credit_stops_at_the_end_of_the_live_and_replay_starts_after_it() -> None:
    ended = Phase.of("ended", T0, T0 + 40)
    seq = beats([0, 15, 30]) + beats([45, 60, 75], mode="replay")
    totals = totals_of(seq, ended, closed_at=T0 + 80)
    assert totals.live_seconds == 40  # [30, 45] credited as live only up to 40
    assert totals.replay_seconds == 15 + 15 + 5
    live, replay = totals.sessions
    assert (live.mode, live.ended_at) == ("live", T0 + 40)
    assert (replay.mode, replay.started_at, replay.ended_at) == ("replay", T0 + 45, T0 + 80)


def test_two_tabs_of_one_participant_count_the_same_time_once() -> None:
    clock = Clock()
    a, b = Connection(), Connection()
    credited = 0.0
    for t in range(0, 61, 15):
        for which in ("a", "b"):
            conn = a if which == "a" else b
            step = on_beat(conn, clock, Beat(T0 + t + (0 if which == "a" else 7), True, True, "live"), LIVE)
            clock, credited = step.clock, credited + step.credit.seconds
            if which == "a":
                a = step.connection
            else:
                b = step.connection
    for conn in (a, b):
        step = on_close(conn, clock, T0 + 70, LIVE)
        clock, credited = step.clock, credited + step.credit.seconds
    assert credited == pytest.approx(70 - 0)  # from the first beat to the close, once


def test_a_clock_stepping_back_credits_nothing_for_that_interval() -> None:
    seq = [Beat(T0 + 30, True, True, "live"), Beat(T0 + 10, True, True, "live"), Beat(T0 + 45, True, True, "live")]
    assert totals_of(seq, LIVE).live_seconds == 15


def test_bad_input_is_refused_clearly() -> None:
    with pytest.raises(ValueError):
        Beat(T0, True, True, "vod")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Beat(math.nan, True, True, "live")
    with pytest.raises(ValueError):
        Rules(max_credit_s=90, session_gap_s=60)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 400), st.booleans(), st.booleans(), st.sampled_from(["live", "replay"])),
                max_size=60),
       st.floats(0, 500))
def test_never_more_than_wall_time_whatever_the_beats(raw: list[tuple[float, bool, bool, str]], close: float) -> None:
    """Forged or shuffled beats cannot credit more than the time from the first accepted beat to the close."""
    phase = Phase.of("ended", T0, T0 + 200)
    seq = [Beat(T0 + t, p, v, m) for t, p, v, m in raw]  # type: ignore[arg-type]
    totals = totals_of(seq, phase, closed_at=T0 + close)
    accepted = [b.at for b in seq if phase.accepts(b.mode, b.at)]
    if not accepted:
        assert totals.live_seconds == totals.replay_seconds == totals.attention_seconds == 0
        return
    span = max(max(accepted), T0 + close) - accepted[0] + 20
    assert totals.live_seconds + totals.replay_seconds <= span + 1e-6
    assert totals.live_seconds <= 200 + 1e-6
    assert totals.attention_seconds <= totals.live_seconds + totals.replay_seconds + 1e-6
    assert all(s.seconds >= 0 and s.attention_seconds <= s.seconds + 1e-6 for s in totals.sessions)
