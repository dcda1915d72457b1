"""player.segmenter: real H.264 + AAC cut into parts and segments, proven with PyAV and ffprobe."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from player.fmp4 import timescale_of
from player.media import TIMESCALE, AccessUnit, AudioConfig, TrackConfig, VideoConfig
from player.segmenter import (
    AUDIO_ONLY_START_WAIT,
    Ended,
    Event,
    InitSegment,
    Part,
    Segmenter,
    SegmenterError,
    SegmentFinished,
)
from tests.unit.player.encoded_media import (
    Decoded,
    audio,
    decode_file,
    interleave,
    read_fragment,
    shifted,
    video,
)

FFPROBE = shutil.which("ffprobe")
FRAME = 1 / 30


def feed(segmenter: Segmenter, configs: Iterable[TrackConfig], units: Iterable[AccessUnit]) -> list[Event]:
    for config in configs:
        segmenter.on_config(config)
    for unit in units:
        segmenter.on_access_unit(unit)
    return segmenter.events()


def run(configs: Sequence[TrackConfig], units: Iterable[AccessUnit], **options: float) -> list[Event]:
    segmenter = Segmenter(**options)  # type: ignore[arg-type]
    events = feed(segmenter, configs, units)
    segmenter.on_end()
    return events + segmenter.events()


def parts(events: Iterable[Event]) -> list[Part]:
    return [event for event in events if isinstance(event, Part)]


def segments(events: Iterable[Event]) -> list[SegmentFinished]:
    return [event for event in events if isinstance(event, SegmentFinished)]


def inits(events: Iterable[Event]) -> list[InitSegment]:
    return [event for event in events if isinstance(event, InitSegment)]


def write(path: Path, events: Iterable[Event], *, generation: int | None = None, msn: int | None = None) -> Path:
    """Init + parts (optionally of one generation / one segment) into one file."""
    out = bytearray()
    for event in events:
        if isinstance(event, InitSegment) and generation in (None, event.generation):
            out += event.data
        elif isinstance(event, Part) and generation in (None, event.generation) and msn in (None, event.msn):
            out += event.data
    path.write_bytes(out)
    return path


def ffprobe(path: Path) -> list[dict[str, object]]:
    assert FFPROBE is not None
    result = subprocess.run(
        [FFPROBE, "-v", "error", "-count_frames", "-show_entries",
         "stream=codec_name,width,height,nb_read_frames", "-of", "json", str(path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return list(json.loads(result.stdout)["streams"])


def assert_monotonic(decoded: Decoded) -> None:
    dts = [d for d, _, _ in decoded.video_packets]
    assert dts == sorted(dts) and len(set(dts)) == len(dts)
    video_pts = sorted(t for t, _ in decoded.video_frames)
    assert len(set(video_pts)) == len(video_pts)
    audio_times = [t for t, _ in decoded.audio_frames]
    assert audio_times == sorted(audio_times)


@dataclass(frozen=True)
class TrackTimeline:
    """Every run of one kind across all parts, in output order, in seconds."""

    runs: list[tuple[Fraction, Fraction]]  # (start, end)


def timelines(events: Iterable[Event]) -> dict[str, TrackTimeline]:
    kinds: dict[int, tuple[str, int]] = {}
    found: dict[str, TrackTimeline] = {}
    for event in events:
        if isinstance(event, InitSegment):
            kinds = {i + 1: (c.kind, timescale_of(c)) for i, c in enumerate(event.tracks)}
        elif isinstance(event, Part):
            _, runs, _ = read_fragment(event.data)
            for run in runs:
                kind, scale = kinds[run.track_id]
                start = Fraction(run.base_decode_time, scale)
                end = start + Fraction(sum(run.durations), scale)
                found.setdefault(kind, TrackTimeline([])).runs.append((start, end))
    return found


# --------------------------------------------------------------------------- audio + video


@pytest.fixture(scope="module")
def av_events() -> list[Event]:
    v = video(frames=180, gop=30)  # 6 s, keyframe every second, 2 B-frames
    a = audio(seconds=6.0)
    return run([v.config, a.config], interleave(v.units, a.units))


def test_parts_and_segments_follow_the_targets(av_events: list[Event]) -> None:
    assert isinstance(av_events[0], InitSegment) and av_events[0].generation == 0
    assert av_events[0].codecs.startswith("avc1.") and av_events[0].codecs.endswith(",mp4a.40.2")
    assert isinstance(av_events[-1], Ended)
    assert len(inits(av_events)) == 1
    finished = segments(av_events)
    assert [s.msn for s in finished] == [0, 1, 2]
    assert [s.duration for s in finished] == pytest.approx([2.0, 2.0, 2.0])
    assert [s.first_pts_seconds for s in finished] == pytest.approx([2 * FRAME, 2 + 2 * FRAME, 4 + 2 * FRAME])
    for segment in finished:
        own = [p for p in parts(av_events) if p.msn == segment.msn]
        assert [p.index for p in own] == list(range(segment.part_count))
        assert sum(p.duration for p in own) == pytest.approx(segment.duration)
        assert own[0].independent
        assert not any(p.independent for p in own[1:])  # the 1 s keyframe falls inside a part
        assert all(p.duration <= 0.333 + 1e-9 for p in own)
        assert all(p.duration >= 0.85 * 0.333 for p in own[:-1])
    # every part carries both tracks
    for part in parts(av_events):
        _, runs, _ = read_fragment(part.data)
        assert [run.track_id for run in runs] == [1, 2]


def test_the_live_decodes_with_pyav_and_ffprobe(av_events: list[Event], tmp_path: Path) -> None:
    path = write(tmp_path / "live.mp4", av_events)
    decoded = decode_file(path)
    assert len(decoded.video_frames) == 180
    keyframes = [t for t, key in decoded.video_frames if key]
    assert keyframes == pytest.approx([2 * FRAME + n for n in range(6)])
    last = max(t for t, _ in decoded.video_frames)
    assert last == pytest.approx(6 + FRAME, abs=FRAME)
    assert_monotonic(decoded)
    # audio: every unit timed at or after the first keyframe, counted sample-exactly
    a = audio(seconds=6.0)
    first_keyframe_dts = video(frames=180, gop=30).units[0].dts
    kept = [u for u in a.units if u.dts >= first_keyframe_dts]
    assert len(decoded.audio_frames) == len(kept)
    start = (kept[0].dts - first_keyframe_dts) / TIMESCALE
    assert [t for t, _ in decoded.audio_frames] == pytest.approx(
        [start + n * 1024 / 48000 for n in range(len(kept))], abs=1e-6
    )
    if FFPROBE:
        streams = ffprobe(path)
        assert [s["codec_name"] for s in streams] == ["h264", "aac"]
        assert int(str(streams[0]["nb_read_frames"])) == 180
        assert int(str(streams[1]["nb_read_frames"])) == len(kept)


def test_each_segment_decodes_alone(av_events: list[Event], tmp_path: Path) -> None:
    for segment in segments(av_events):
        decoded = decode_file(write(tmp_path / f"seg{segment.msn}.mp4", av_events, msn=segment.msn))
        assert len(decoded.video_frames) == 60
        assert decoded.video_packets[0][2], "a segment starts with a keyframe"
        assert sorted(decoded.video_frames)[0][1]
        assert decoded.audio_frames
        assert decoded.video_packets[0][1] == pytest.approx(segment.first_pts_seconds)


def test_output_timeline_is_contiguous(av_events: list[Event]) -> None:
    for kind, timeline in timelines(av_events).items():
        assert timeline.runs[0][0] >= 0, kind
        for (_, end), (start, _) in zip(timeline.runs, timeline.runs[1:], strict=False):
            assert start == end, kind


# --------------------------------------------------------------------------- GOP vs target


@pytest.mark.parametrize(
    ("gop", "target", "expected"),
    [
        (90, 1.0, [3.0, 3.0]),  # GOP longer than the target: a segment lasts a GOP
        (15, 1.0, [1.0] * 6),  # shorter GOP: cut at the first keyframe past the target
    ],
)
def test_segments_cut_on_keyframes(gop: int, target: float, expected: list[float], tmp_path: Path) -> None:
    v = video(frames=180, gop=gop, bframes=0)
    events = run([v.config], v.units, part_target=0.5, segment_target=target)
    assert [s.duration for s in segments(events)] == pytest.approx(expected)
    for segment in segments(events):
        own = [p for p in parts(events) if p.msn == segment.msn]
        assert own[0].independent
        assert all(p.duration <= 0.5 + 1e-9 for p in own)
    decoded = decode_file(write(tmp_path / "v.mp4", events))
    assert len(decoded.video_frames) == 180
    assert not decoded.audio_frames
    assert [t for t, key in decoded.video_frames if key] == pytest.approx([n * gop / 30 for n in range(180 // gop)])


# --------------------------------------------------------------------------- start


def test_units_before_the_first_keyframe_are_dropped(tmp_path: Path) -> None:
    v = video(frames=90, gop=30)
    a = audio(seconds=3.0)
    late = v.units[5:]  # starts inside the first GOP
    first_key = next(i for i, u in enumerate(late) if u.keyframe)
    events = run([v.config, a.config], interleave(late, a.units))
    first = parts(events)[0]
    assert first.independent and first.index == 0 and first.msn == 0
    _, runs, _ = read_fragment(first.data)
    assert runs[0].sync[0] and runs[0].base_decode_time == 0
    decoded = decode_file(write(tmp_path / "late.mp4", events))
    assert len(decoded.video_frames) == len(late) - first_key
    keyframe_dts = late[first_key].dts
    assert len(decoded.audio_frames) == sum(u.dts >= keyframe_dts for u in a.units)


def test_audio_only_counts_samples_without_drift(tmp_path: Path) -> None:
    a = audio(seconds=4.0, sample_rate=44100)  # 1024 samples = 2089.8 ticks: rounded timestamps
    segmenter = Segmenter(part_target=0.3, segment_target=1.0)
    segmenter.on_config(a.config)
    held = int(AUDIO_ONLY_START_WAIT * 44100 / 1024)
    for unit in a.units[:held]:
        segmenter.on_access_unit(unit)
    assert segmenter.events() == [], "audio is held while a video config may still come"
    events = feed(segmenter, [], a.units[held:])
    segmenter.on_end()
    events += segmenter.events()
    assert inits(events)[0].tracks == (a.config,)
    assert all(p.independent for p in parts(events))
    assert all(p.duration <= 0.3 + 1e-9 for p in parts(events))
    assert all(s.duration == pytest.approx(1.0, abs=0.15) for s in segments(events)[:-1])
    for part in parts(events):
        _, runs, _ = read_fragment(part.data)
        assert all(d == 1024 for d in runs[0].durations)
        assert runs[0].base_decode_time % 1024 == 0
    total = sum(len(read_fragment(p.data)[1][0].durations) for p in parts(events))
    assert total == len(a.units)
    decoded = decode_file(write(tmp_path / "a.mp4", events))
    assert not decoded.video_frames
    assert [t for t, _ in decoded.audio_frames] == pytest.approx(
        [n * 1024 / 44100 for n in range(len(a.units))], abs=1e-9
    )


def test_audio_gap_restarts_the_count_and_jitter_does_not(tmp_path: Path) -> None:
    a = audio(seconds=3.0)
    gap_start, gap_frames = 60, 20
    jittered = [
        AccessUnit("audio", u.dts + (90 if n % 3 == 0 else -45), u.pts, u.data, True)
        for n, u in enumerate(a.units)
    ]
    units = jittered[:gap_start] + jittered[gap_start + gap_frames :]
    events = run([a.config], units)
    starts = [
        start
        for part in parts(events)
        for run_ in read_fragment(part.data)[1]
        for start in _sample_starts(run_.base_decode_time, run_.durations)
    ]
    # counted through the jitter; after the gap the count restarts at the unit's own time
    origin = units[0].dts
    resync = round((units[gap_start].dts - origin) * 48000 / TIMESCALE)
    expected = [n * 1024 for n in range(gap_start)] + [
        resync + n * 1024 for n in range(len(units) - gap_start)
    ]
    assert resync - (gap_start + gap_frames) * 1024 in range(-1024, 1024)
    assert starts == expected
    decoded = decode_file(write(tmp_path / "gap.mp4", events))
    assert len(decoded.audio_frames) == len(units)


def _sample_starts(base: int, durations: list[int]) -> list[int]:
    starts = []
    for duration in durations:
        starts.append(base)
        base += duration
    return starts


# --------------------------------------------------------------------------- changes and resets


def test_config_change_starts_a_new_generation(tmp_path: Path) -> None:
    first = video(frames=90, gop=30)
    second = video(frames=90, gop=30, width=192, height=112)
    a = audio(seconds=5.0)
    switch = first.units[-1].dts + first.frame_ticks
    segmenter = Segmenter()
    events = feed(segmenter, [first.config, a.config], interleave(first.units, a.units[: len(a.units) * 3 // 5]))
    segmenter.on_config(first.config)  # the same config again: nothing happens
    segmenter.on_config(VideoConfig("h264", first.config.extradata, 160, 96))  # same record, sizes told
    assert segmenter.events() == []
    segmenter.on_config(second.config)
    events += segmenter.events()
    assert isinstance(events[-1], SegmentFinished), "the change finishes the current segment"
    shift = switch - second.units[0].dts
    later_audio = [u for u in a.units if u.dts >= switch]
    events += feed(segmenter, [], interleave(shifted(second.units, shift), later_audio))
    segmenter.on_end()
    events += segmenter.events()

    assert [i.generation for i in inits(events)] == [0, 1]
    new_init = events.index(inits(events)[1])
    following = events[new_init + 1]
    assert isinstance(following, Part)
    assert following.index == 0 and following.discontinuity and following.independent
    assert following.generation == 1
    assert following.msn == segments(events[:new_init])[-1].msn + 1
    assert sum(p.discontinuity for p in parts(events)) == 1
    assert [s.discontinuity for s in segments(events)].count(True) == 1

    old = decode_file(write(tmp_path / "g0.mp4", events, generation=0))
    new = decode_file(write(tmp_path / "g1.mp4", events, generation=1))
    assert (old.width, old.height, len(old.video_frames)) == (160, 96, 90)
    assert (new.width, new.height, len(new.video_frames)) == (192, 112, 90)
    assert [s.generation for s in segments(events)] == [0, 0, 1, 1]
    assert new.audio_frames
    assert min(t for t, _ in new.video_frames) > max(t for t, _ in old.video_frames)


@pytest.mark.parametrize("jump", [-(3 * TIMESCALE), 3600 * TIMESCALE], ids=["reset", "forward"])
def test_clock_jump_is_rebased_to_a_monotonic_timeline(jump: int, tmp_path: Path) -> None:
    v = video(frames=60, gop=30)
    a = audio(seconds=2.0)
    once = interleave(v.units, a.units)
    again = interleave(shifted(v.units, jump), shifted(a.units, jump))
    events = run([v.config, a.config], once + again)
    assert len(inits(events)) == 1
    for kind, timeline in timelines(events).items():
        for (_, end), (start, _) in zip(timeline.runs, timeline.runs[1:], strict=False):
            assert start >= end, kind
    # the second copy follows what was written (its audio ran a little past the video)
    video_runs = timelines(events)["video"].runs
    assert 4.0 <= video_runs[-1][1] <= 4.1
    decoded = decode_file(write(tmp_path / "jump.mp4", events))
    assert len(decoded.video_frames) == 120
    assert_monotonic(decoded)
    first, second = segments(events)
    assert first.first_pts_seconds == pytest.approx(2 * FRAME)
    assert 2 + 2 * FRAME <= second.first_pts_seconds <= 2.1 + 2 * FRAME
    assert all(parts(events)[i].independent for i in (0, len(parts(events)) // 2))


def test_after_a_jump_video_waits_for_a_keyframe_that_starts_a_segment(tmp_path: Path) -> None:
    v = video(frames=60, gop=30, bframes=0)
    before = v.units[:45]  # 1.5 s
    after = shifted(v.units[5:], -10 * TIMESCALE)  # reset clock, resumes 25 frames before a keyframe
    events = run([v.config], before + after, segment_target=4.0)
    first, second = segments(events)
    # the jump lands at 1.5 s; the frames before the keyframe are dropped and the
    # last frame is held over their time, so the keyframe keeps its place
    resume = 1.5 + 25 / 30
    assert first.duration == pytest.approx(resume)
    assert second.first_pts_seconds == pytest.approx(resume)
    assert second.duration == pytest.approx(1.0)
    assert parts(events)[first.part_count].independent
    decoded = decode_file(write(tmp_path / "jump.mp4", events))
    assert len(decoded.video_frames) == 45 + 30
    assert [t for t, key in decoded.video_frames if key] == pytest.approx([0.0, 1.0, resume])


def test_interruption_finishes_the_output_and_the_next_source_follows_it(tmp_path: Path) -> None:
    v = video(frames=60, gop=30)
    a = audio(seconds=2.0)
    segmenter = Segmenter()
    cut = 45  # 1.5 s of video, in decode order
    events = feed(
        segmenter, [v.config, a.config], interleave(v.units[:cut], [u for u in a.units if u.dts < v.units[cut].dts])
    )
    segmenter.on_interruption()
    dropped = segmenter.events()
    assert isinstance(dropped[-1], SegmentFinished) and dropped[-1].msn == 0
    assert dropped[-1].duration == pytest.approx(1.5)
    # the new publisher's clock restarts just 0.5 s behind the old one: no jump by itself
    back = v.units[cut].dts - TIMESCALE // 2 - v.units[0].dts
    again = feed(segmenter, [v.config, a.config], interleave(shifted(v.units, back), shifted(a.units, back)))
    segmenter.on_end()
    events += dropped + again + segmenter.events()
    assert len(inits(events)) == 1, "same configs: same generation"
    resumed = parts(again)[0]
    assert (resumed.msn, resumed.index, resumed.independent, resumed.discontinuity) == (1, 0, True, False)
    assert segments(events)[1].first_pts_seconds >= 1.5
    for kind, timeline in timelines(events).items():
        for (_, end), (start, _) in zip(timeline.runs, timeline.runs[1:], strict=False):
            assert start >= end, kind
    video_durations = {d for p in parts(events) for d in read_fragment(p.data)[1][0].durations}
    assert video_durations == {v.frame_ticks}, "re-based, not squeezed against the old clock"
    decoded = decode_file(write(tmp_path / "resumed.mp4", events))
    assert len(decoded.video_frames) == cut + 60
    assert_monotonic(decoded)


def test_held_audio_is_dropped_when_a_config_arrives_before_the_start(tmp_path: Path) -> None:
    old = audio(seconds=2.0)
    new = audio(seconds=2.0, sample_rate=44100)
    segmenter = Segmenter()
    feed(segmenter, [old.config], old.units[:20])  # held: less than 1 s
    events = feed(segmenter, [new.config], new.units)
    segmenter.on_end()
    events += segmenter.events()
    assert [i.tracks for i in inits(events)] == [(new.config,)]
    written = [frame for p in parts(events) for frame in read_fragment(p.data)[1][0].data]
    assert written == [u.data for u in new.units]
    decoded = decode_file(write(tmp_path / "a.mp4", events))
    assert len(decoded.audio_frames) == len(new.units)

    v = video(frames=60, gop=30)
    segmenter = Segmenter()
    feed(segmenter, [old.config], old.units[:20])
    events = feed(segmenter, [v.config], interleave(v.units, shifted(old.units, 6000)))
    segmenter.on_end()
    events += segmenter.events()
    decoded = decode_file(write(tmp_path / "av.mp4", events))
    assert len(decoded.audio_frames) == sum(u.dts + 6000 >= v.units[0].dts for u in old.units)
    assert len(decoded.video_frames) == 60


def test_part_byte_limit_cuts_early(tmp_path: Path) -> None:
    v = video(frames=90, gop=30)
    a = audio(seconds=3.0)
    largest = max(len(u.data) for u in v.units)
    limit = largest + 2000
    events = run(
        [v.config, a.config],
        interleave(v.units, a.units),
        max_part_bytes=limit,  # type: ignore[arg-type]
        max_unit_bytes=largest,  # type: ignore[arg-type]
    )
    payloads = [read_fragment(p.data)[2] for p in parts(events)]
    assert max(payloads) <= limit
    assert len(payloads) > len(parts(run([v.config, a.config], interleave(v.units, a.units))))
    decoded = decode_file(write(tmp_path / "small.mp4", events))
    assert len(decoded.video_frames) == 90


# --------------------------------------------------------------------------- errors


def test_bad_input_raises_segmenter_error_and_keeps_state() -> None:
    v = video(frames=30, gop=30)
    segmenter = Segmenter(max_unit_bytes=100_000)
    with pytest.raises(SegmenterError, match="before any video config"):
        segmenter.on_access_unit(v.units[0])
    with pytest.raises(SegmenterError, match="bad video config"):
        segmenter.on_config(VideoConfig("h264", b"\x00\x01"))
    with pytest.raises(SegmenterError, match="bad audio config"):
        segmenter.on_config(AudioConfig("aac", b"\x11", 48000, 2))
    segmenter.on_config(v.config)
    with pytest.raises(SegmenterError, match="exceeds"):
        segmenter.on_access_unit(AccessUnit("video", 0, 0, bytes(100_001), True))
    with pytest.raises(SegmenterError, match="pts - dts"):
        segmenter.on_access_unit(AccessUnit("video", 0, 11 * TIMESCALE, b"\x00", True))
    for unit in v.units:
        segmenter.on_access_unit(unit)
    segmenter.on_end()
    events = segmenter.events()
    assert sum(len(read_fragment(p.data)[1][0].durations) for p in parts(events)) == 30
    with pytest.raises(SegmenterError, match="ended"):
        segmenter.on_access_unit(v.units[0])
    with pytest.raises(SegmenterError, match="ended"):
        segmenter.on_end()
    with pytest.raises(SegmenterError):
        Segmenter(part_target=3.0, segment_target=2.0)


# --------------------------------------------------------------------------- property


AVC_A = bytes([1, 0x42, 0xC0, 0x1E, 0xFF, 0xE0, 0])  # structurally valid records, no SPS
AVC_B = bytes([1, 0x64, 0x00, 0x1F, 0xFF, 0xE0, 0])
CONFIGS: list[TrackConfig] = [
    VideoConfig("h264", AVC_A, 320, 180),
    VideoConfig("h264", AVC_B, 640, 360),
    AudioConfig("aac", bytes([0x11, 0x90]), 48000, 2),
    AudioConfig("aac", bytes([0x12, 0x10]), 44100, 2),
]
MAX_PART = 4000
MAX_UNIT = 1500

def _mostly(
    common: st.SearchStrategy[object], rare: st.SearchStrategy[object], percent: int
) -> st.SearchStrategy[object]:
    """``rare`` about ``percent`` % of the time (drawn by a selector, not by ``one_of`` order)."""
    return st.tuples(st.integers(1, 100), common, rare).map(lambda t: t[2] if t[0] <= percent else t[1])


config_op = st.tuples(st.just("config"), st.sampled_from(range(len(CONFIGS))))
unit_op = st.tuples(
    st.just("unit"),
    st.sampled_from(["video", "video", "audio"]),
    _mostly(
        st.integers(1000, 4000),  # usual steps
        st.one_of(
            st.integers(-3000, 6000),  # jitter, reorder, small gaps
            st.sampled_from([-50 * TIMESCALE, 20 * TIMESCALE, 2**33]),  # resets and jumps
        ),
        8,
    ),
    st.integers(-3000, 9000),  # pts - dts
    _mostly(st.integers(1, 400), st.integers(0, MAX_UNIT + 10), 10),
    st.integers(1, 4).map(lambda n: n == 1),  # keyframe
)
operation = _mostly(unit_op, st.one_of(config_op, st.just(("interrupt",))), 4)
first_configs = st.sampled_from([(0, 2), (2, 0), (0,), (2,), (1, 3)])
TARGETS = [(0.05, 0.2), (0.1, 0.5), (0.2, 0.2), (0.333, 2.0)]


class Checker:
    """Invariants over the event stream of one segmenter."""

    def __init__(self) -> None:
        self.generation = -1
        self.kinds: dict[int, tuple[str, int]] = {}
        self.last: tuple[int, int] | None = None  # (msn, index) of the last part
        self.finished = -1
        self.ends: dict[str, Fraction] = {}
        self.segment_duration = 0.0
        self.ended = False

    def check(self, events: list[Event]) -> None:
        for event in events:
            assert not self.ended
            if isinstance(event, InitSegment):
                assert event.generation == self.generation + 1
                self.generation = event.generation
                self.kinds = {i + 1: (c.kind, timescale_of(c)) for i, c in enumerate(event.tracks)}
            elif isinstance(event, Part):
                self.check_part(event)
            elif isinstance(event, SegmentFinished):
                assert self.last is not None and event.msn == self.last[0]
                assert event.part_count == self.last[1] + 1
                assert event.duration == pytest.approx(self.segment_duration)
                assert event.msn == self.finished + 1
                self.finished = event.msn
            else:
                assert isinstance(event, Ended)
                assert self.last is None or self.finished == self.last[0]
                self.ended = True

    def check_part(self, part: Part) -> None:
        assert part.generation == self.generation >= 0
        if self.last is None or part.index == 0:
            assert part.index == 0
            assert self.last is None or (part.msn == self.last[0] + 1 and self.finished == self.last[0])
            self.segment_duration = 0.0
        else:
            assert (part.msn, part.index) == (self.last[0], self.last[1] + 1)
        self.last = (part.msn, part.index)
        self.segment_duration += part.duration
        assert part.duration >= 0
        _, runs, payload = read_fragment(part.data)
        assert 0 < payload <= MAX_PART
        assert {run.track_id for run in runs} <= set(self.kinds)
        has_video = any(kind == "video" for kind, _ in self.kinds.values())
        for run in runs:
            kind, scale = self.kinds[run.track_id]
            start = Fraction(run.base_decode_time, scale)
            assert start >= self.ends.get(kind, Fraction(0)), "a track never overlaps itself"
            assert all(d > 0 for d in run.durations)
            self.ends[kind] = start + Fraction(sum(run.durations), scale)
            if kind == "video" and part.index == 0 and run is runs[0]:
                assert run.sync[0], "a segment starts with a keyframe"
            if kind == "video":
                assert part.independent == (run is runs[0] and run.sync[0])
        if not has_video:
            assert part.independent


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first_configs, st.lists(operation, min_size=30, max_size=200), st.sampled_from(TARGETS))
def test_random_sources_keep_the_invariants(
    configs: tuple[int, ...], ops: list[tuple], targets: tuple[float, float]
) -> None:
    segmenter = Segmenter(*targets, max_part_bytes=MAX_PART, max_unit_bytes=MAX_UNIT)
    checker = Checker()
    clock = {"video": 0, "audio": 0}
    for index in configs:
        segmenter.on_config(CONFIGS[index])
    for op in ops:
        try:
            if op[0] == "config":
                segmenter.on_config(CONFIGS[op[1]])
            elif op[0] == "interrupt":
                segmenter.on_interruption()
            else:
                _, kind, step, cto, size, key = op
                clock[kind] += step
                dts = clock[kind]
                pts = dts + cto if kind == "video" else dts
                segmenter.on_access_unit(AccessUnit(kind, dts, pts, bytes([7]) * size, key or kind == "audio"))
        except SegmenterError:
            pass
        checker.check(segmenter.events())
    segmenter.on_end()
    events = segmenter.events()
    checker.check(events)
    assert isinstance(events[-1], Ended)


@pytest.mark.parametrize(("gop", "bframes"), [(60, 0), (45, 2)])
def test_seconds_to_next_part_is_the_time_to_the_unit_that_closes_the_part(gop: int, bframes: int) -> None:
    """What the RTMP listener times its reads by: after each video unit, the media time to the
    video unit whose arrival lets the next part out (a part boundary or a new segment)."""
    v = video(frames=150, gop=gop, bframes=bframes)
    a = audio(seconds=5.0)
    segmenter = Segmenter(part_target=0.3, segment_target=2.0)
    for config in (v.config, a.config):
        segmenter.on_config(config)
    assert segmenter.seconds_to_next_part() is None
    video_seen: list[AccessUnit] = []
    predicted: list[tuple[int, float | None]] = []  # (index among video units, seconds)
    closers: list[int] = []  # video units whose arrival released a part
    for unit in interleave(v.units, a.units):
        segmenter.on_access_unit(unit)
        released = any(isinstance(e, Part) for e in segmenter.events())
        if unit.kind != "video":
            continue
        if released:
            closers.append(len(video_seen))
        video_seen.append(unit)
        predicted.append((len(video_seen) - 1, segmenter.seconds_to_next_part()))
    assert len(closers) > 10
    checked = 0
    second_gop = next(i for i, u in enumerate(v.units) if u.keyframe and i > 0)
    for index, seconds in predicted[second_gop:]:  # the keyframe interval is known from the second GOP on
        later = [c for c in closers if c > index]
        if not later:
            break
        assert seconds is not None
        expected = (v.units[later[0]].dts - v.units[index].dts) / TIMESCALE
        assert seconds == pytest.approx(expected, abs=1e-9), (index, later[0])
        checked += 1
    assert checked > 60
