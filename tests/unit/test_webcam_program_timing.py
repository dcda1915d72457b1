"""Program timing toward the LL-HLS packager (rooms/webcam/program.py ``picture_pts``,
rooms/webcam/room.py ``WebcamRoom._release_video``): part and segment durations the
playlist can write exactly, and video fed only once the audio of its instant is.

Why both matter is in benchmarks/RESULTS.md (note of webcam_glass_to_glass_p95_s): hls.js
stalled at segment boundaries when a segment's announced end passed its buffered end."""

from __future__ import annotations

import itertools
import types
import uuid
from fractions import Fraction

import av
import numpy as np

from player.media import TIMESCALE, AccessUnit, AudioConfig
from player.playlist import UNITS_PER_SECOND
from player.segmenter import Part, Segmenter, SegmentFinished
from rooms.webcam.compositor import FPS
from rooms.webcam.program import VideoEncoder, picture_pts
from rooms.webcam.room import MAX_HELD_PICTURES, WebcamRoom


def test_picture_pts_is_a_millisecond_grid_with_whole_seconds() -> None:
    times = [picture_pts(i, FPS) for i in range(3 * FPS + 1)]
    assert times[0] == 0 and times[FPS] == TIMESCALE and times[3 * FPS] == 3 * TIMESCALE
    assert all(t % (TIMESCALE // 1000) == 0 for t in times)
    steps = {b - a for a, b in itertools.pairwise(times)}
    assert steps == {33 * 90, 34 * 90}  # 33 or 34 ms a picture


def test_program_parts_and_segments_are_exact_in_playlist_units() -> None:
    """The real encoder's pictures on the program clock, cut by the packager's segmenter:
    every part and segment lasts a whole number of the playlist's 10 µs units, so the
    EXTINF it writes (the sum of its rounded parts) is the segment's true duration."""
    encoder = VideoEncoder(320, 180, FPS)
    segmenter = Segmenter(0.3, 2.0)
    luma = np.full((180, 320), 90, np.uint8)
    chroma = np.full((90, 320), 128, np.uint8)
    for index in range(5 * FPS + 1):
        luma[:, index % 320] = 200  # something moves
        frame = av.VideoFrame.from_ndarray(np.concatenate((luma, chroma)), format="yuv420p")
        for picture in encoder.encode(frame, picture_pts(index, FPS)):
            config, unit = encoder.access_units(picture)
            if config is not None:
                segmenter.on_config(config)
            if unit is not None:
                segmenter.on_access_unit(unit)
    events = segmenter.events()
    parts = [e for e in events if isinstance(e, Part)]
    segments = [e for e in events if isinstance(e, SegmentFinished)]
    assert len(segments) >= 2 and parts
    for duration in [p.duration for p in parts] + [s.duration for s in segments]:
        units = Fraction(duration) * UNITS_PER_SECOND
        assert abs(units - round(units)) < Fraction(1, 1000), duration
    assert all(abs(s.duration - 2.0) < 1e-9 for s in segments)


class _Sink:
    """Records what the room feeds the packager."""

    def __init__(self) -> None:
        self.fed: list[tuple[str, int]] = []

    def on_config(self, config: object) -> None:
        self.fed.append(("config", -1))

    def on_access_unit(self, unit: AccessUnit) -> None:
        self.fed.append((unit.kind, unit.pts))

    def on_end(self) -> None:
        self.fed.append(("end", -1))


def _room() -> tuple[WebcamRoom, _Sink]:
    room = WebcamRoom(types.SimpleNamespace(), uuid.uuid4())  # type: ignore[arg-type]
    sink = _Sink()
    room._sink = sink  # type: ignore[assignment]
    room._sink_video_started = True
    return room, sink


def _video(index: int) -> AccessUnit:
    pts = picture_pts(index, FPS)
    return AccessUnit("video", pts, pts, b"\x00\x00\x00\x01\x41", False)


def test_video_waits_for_the_audio_of_its_instant_in_order() -> None:
    room, sink = _room()
    config = AudioConfig("aac", b"\x11\x90", 48_000, 1)
    room._held.extend([_video(0), config, _video(1)])
    room._release_video()
    assert sink.fed == []  # no audio yet
    room._audio_fed_end = picture_pts(1, FPS) - 1  # covers picture 0 only up to 1 tick short of its end
    room._release_video()
    assert sink.fed == []
    room._audio_fed_end = picture_pts(1, FPS) + 100
    room._release_video()
    assert sink.fed == [("video", 0), ("config", -1)]  # picture 1 (ends at 2 frames) still waits
    room._audio_fed_end = picture_pts(3, FPS)
    room._release_video()
    assert sink.fed == [("video", 0), ("config", -1), ("video", picture_pts(1, FPS))]
    assert not room._held


def test_video_goes_without_audio_beyond_the_bound_and_at_the_end() -> None:
    room, sink = _room()
    room._held.extend(_video(i) for i in range(MAX_HELD_PICTURES + 2))
    room._release_video()
    assert [pts for _, pts in sink.fed] == [picture_pts(0, FPS), picture_pts(1, FPS)]
    assert len(room._held) == MAX_HELD_PICTURES
    room._end_live_source()
    assert [kind for kind, _ in sink.fed] == ["video"] * (MAX_HELD_PICTURES + 2) + ["end"]
    assert room._sink is None and not room._held
