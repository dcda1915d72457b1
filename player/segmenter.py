"""Cut a source's access units into LL-HLS parts (CMAF chunks) and segments.

:class:`Segmenter` is sans-I/O: it is a :class:`player.media.MediaSink`
(``on_config``, ``on_access_unit``, ``on_end``) that queues events, drained
with :meth:`Segmenter.events`. No clock, no I/O: time is the media's own.

Events, in the order they are queued:

- :class:`InitSegment` before the first part of each init *generation*
  (generation 0 at the start, +1 at every config change);
- :class:`Part` per CMAF chunk (one moof+mdat holding every track's samples
  of that interval); a segment is the concatenation of its parts' ``data``;
- :class:`SegmentFinished` after the last part of a segment;
- :class:`Ended` once, after ``on_end``.

Timeline rules
--------------
- **Program time.** All tracks share one offset, so audio/video sync is kept:
  time 0 is the dts of the first video keyframe (or of the first audio unit
  of an audio-only live). Video decode times are the rebased dts, and the
  composition offsets ``pts - dts`` stay non-negative for a sane source, so
  with B-frames the first keyframe is *presented* at the reorder delay (e.g.
  2 frames), not at 0. Negative offsets (``trun`` version 1) are avoided on
  purpose: FFmpeg's mov demuxer shifts such a track's presentation by the
  most negative offset and would desync it from the audio.
- **Start.** Video units before the first keyframe are dropped, and so is
  audio that comes before it or is timed before it (the live starts on a
  keyframe, with audio from the same instant). When no video config is known,
  audio is held for up to :data:`AUDIO_ONLY_START_WAIT` seconds (of media
  time) in case a video config follows; then the live starts audio-only.
- **Audio timing** counts samples: each AAC frame lasts exactly its frame
  length (1024 samples, 960 or 2048 for HE-AAC, see
  :func:`player.fmp4.aac_info`) in the sample-rate timescale, from the first
  audio unit on. A unit more than one frame later than the count says starts
  a new count at its own time (a gap); a unit more than one frame earlier
  overlaps audio already written and is dropped. So timestamp jitter and
  rounding never accumulate and drift is bounded by one frame.
- **Video decode times** must increase: a unit whose dts does not (by less
  than :data:`BACKWARD_JUMP`) is written 1 tick after the previous one, its
  pts moved with it (``pts - dts`` is always kept).
- **Jumps** (publisher reconnect with a reset clock, 33-bit wrap, long
  freeze): when a unit's time lands more than :data:`BACKWARD_JUMP` before,
  or :data:`FORWARD_JUMP` after, the previous unit of its track, the shared
  offset is re-based so that unit lands at the end of what was written (the
  later of the two tracks' ends); the output timeline stays monotonic. Video
  then waits for a keyframe, which starts a new segment; the last frame
  written is held over the time of the dropped frames, so audio stays in
  step. A unit that still fits the previous offset (a straggler of the old
  clock) is dropped.
- **Config change** (``on_config`` with a config that differs from the
  current one of its kind, or a new kind after the start): the current part
  and segment are finished, and the next keyframe (or, audio-only, the next
  audio) opens a new generation: a new :class:`InitSegment` and a segment
  flagged ``discontinuity`` (the playlist writes EXT-X-DISCONTINUITY). A
  config that makes the same sample entry as the current one (same codec,
  record and resulting dimensions; audio: equal) is ignored.

Cutting rules
-------------
The *leading* track is the video track when the generation has one, else the
audio track; parts and segments are cut on its units, before the unit:

- a video keyframe starts a new segment when the segment has lasted at least
  ``segment_target - SEGMENT_SLACK`` (a GOP longer than the target makes a
  longer segment); audio-only, a part boundary does so under the same rule;
- a part is cut when adding the next unit (assumed to last as long as the
  previous interval) would take it past ``part_target``; so with regular
  frame intervals part durations never exceed ``part_target``;
- a part is also cut before a unit that would take its sample bytes past
  ``max_part_bytes``.

Durations are exact: a video sample's duration is the distance to the next
video unit, known when the part is cut. Only when nothing follows
(``on_end``, config change, interruption, byte-limit cut forced by audio)
the last video sample gets the previous frame interval (or
:data:`DEFAULT_FRAME_DURATION`). An audio frame lasts until the next frame
of its part, the last one of a part its frame length (a gap after it shows
in the next part's decode time).

A publisher drop that does not end the live is told with
:meth:`Segmenter.on_interruption`: the output is finished up to the drop and
the next source's units are placed after it, whatever their clock.

Bad input (a unit before its track's config, an oversize unit, a malformed
config, calls after ``on_end``) raises :class:`SegmenterError` and leaves
the segmenter as it was. Empty units are ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

from player.fmp4 import (
    Fmp4Error,
    Sample,
    TrackRun,
    aac_info,
    check_config,
    codec_string,
    fragment,
    init_segment,
    video_dimensions,
)
from player.media import (
    TIMESCALE,
    AccessUnit,
    AudioConfig,
    TrackConfig,
    TrackKind,
    VideoConfig,
)

__all__ = [
    "AUDIO_ONLY_START_WAIT",
    "BACKWARD_JUMP",
    "DEFAULT_FRAME_DURATION",
    "FORWARD_JUMP",
    "MAX_COMPOSITION_DELAY",
    "MAX_PART_BYTES",
    "MAX_UNIT_BYTES",
    "SEGMENT_SLACK",
    "Ended",
    "Event",
    "InitSegment",
    "Part",
    "SegmentFinished",
    "Segmenter",
    "SegmenterError",
]

MAX_UNIT_BYTES = 8 * 1024 * 1024
"""Largest access unit accepted, in bytes (a 4K intra frame is a few MB)."""

MAX_PART_BYTES = 16 * 1024 * 1024
"""Most sample bytes one part holds (its mdat payload; the moof adds ~16 bytes a sample)."""

MAX_COMPOSITION_DELAY = 10 * TIMESCALE
"""Largest accepted ``|pts - dts|`` of a video unit, in 90 kHz ticks (10 s)."""

BACKWARD_JUMP = TIMESCALE
"""A track going back by more than this (90 kHz ticks, 1 s) is a clock reset."""

FORWARD_JUMP = 10 * TIMESCALE
"""A track going forward by more than this (90 kHz ticks, 10 s) is a clock jump."""

SEGMENT_SLACK = Fraction(1, 10)
"""Seconds a segment may fall short of its target and still end at a keyframe."""

AUDIO_ONLY_START_WAIT = 1
"""Seconds of audio held, without any video config, before starting audio-only."""

DEFAULT_FRAME_DURATION = TIMESCALE // 30
"""Duration (90 kHz ticks) given to a lone last video frame whose interval is unknown."""


class SegmenterError(ValueError):
    """Input the segmenter refuses; the segmenter's state is unchanged."""


@dataclass(frozen=True, slots=True)
class InitSegment:
    """A new init segment (ftyp+moov) that every following part needs.

    ``generation`` counts from 0 and grows by one per config change.
    ``tracks`` are in track-ID order (ID = index + 1); ``codecs`` is the
    RFC 6381 CODECS attribute value for the playlist.
    """

    data: bytes
    generation: int
    tracks: tuple[TrackConfig, ...]
    codecs: str


@dataclass(frozen=True, slots=True)
class Part:
    """One CMAF chunk (moof+mdat) of segment ``msn``.

    ``msn`` (media sequence number) counts segments from 0 over the whole
    live; ``index`` counts parts from 0 within the segment. ``duration`` is in
    seconds on the leading track's timeline (for a part that holds only
    audio in a video live, after a video stall, the audio's extent). ``independent`` is True when the
    part's first video sample is a keyframe (always for audio-only).
    ``discontinuity`` is True on the first part of the first segment of a
    generation after the first.
    """

    msn: int
    index: int
    duration: float
    independent: bool
    data: bytes
    generation: int
    discontinuity: bool = False


@dataclass(frozen=True, slots=True)
class SegmentFinished:
    """Segment ``msn`` is complete: its parts are the ``part_count`` last ones.

    ``duration`` (seconds) is the sum of its parts' durations;
    ``first_pts_seconds`` is the program time at which it starts (the
    presentation time of its first keyframe, or of its first audio frame).
    """

    msn: int
    duration: float
    first_pts_seconds: float
    part_count: int
    generation: int
    discontinuity: bool


@dataclass(frozen=True, slots=True)
class Ended:
    """The source ended; nothing follows."""


Event = InitSegment | Part | SegmentFinished | Ended


@dataclass(slots=True)
class _OpenVideo:
    """The last video sample, whose duration the next video unit will tell."""

    data: bytes
    decode: int
    pts: int
    keyframe: bool


@dataclass(slots=True)
class _PartBuffer:
    """Samples of the part being built. ``start`` is in leading-track units."""

    start: int | None = None
    video_base: int | None = None
    video: list[Sample] = field(default_factory=list)
    audio: list[tuple[int, bytes]] = field(default_factory=list)  # (start in samples, frame)
    size: int = 0


@dataclass(slots=True)
class _SegmentState:
    msn: int
    start: int  # leading-track units
    first_pts: Fraction  # seconds
    discontinuity: bool
    parts: int = 0
    duration: Fraction = Fraction(0)


def _same_output(old: TrackConfig, new: TrackConfig) -> bool:
    """True when both configs make the same sample entry (fields the init segment ignores may differ)."""
    if isinstance(old, VideoConfig) and isinstance(new, VideoConfig):
        return (old.codec, old.extradata) == (new.codec, new.extradata) and video_dimensions(
            old
        ) == video_dimensions(new)
    return old == new


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def _round_div(numerator: int, denominator: int) -> int:
    return (2 * numerator + denominator) // (2 * denominator)


class Segmenter:
    """Sans-I/O CMAF segmenter; a :class:`player.media.MediaSink`.

    ``part_target`` and ``segment_target`` are in seconds
    (``0 < part_target <= segment_target``). ``max_part_bytes`` and
    ``max_unit_bytes`` default to :data:`MAX_PART_BYTES` and
    :data:`MAX_UNIT_BYTES` (``max_unit_bytes <= max_part_bytes``). Calls
    queue events; :meth:`events` returns and clears them.
    """

    def __init__(
        self,
        part_target: float = 0.333,
        segment_target: float = 2.0,
        *,
        max_part_bytes: int = MAX_PART_BYTES,
        max_unit_bytes: int = MAX_UNIT_BYTES,
    ) -> None:
        if not (math.isfinite(segment_target) and 0 < part_target <= segment_target):
            raise SegmenterError("need 0 < part_target <= segment_target (finite seconds)")
        if not 0 < max_unit_bytes <= max_part_bytes:
            raise SegmenterError("need 0 < max_unit_bytes <= max_part_bytes")
        self._part_target = Fraction(part_target)
        self._segment_target = Fraction(segment_target)
        # Per-unit cut tests compare integers: for an integer n and a rational
        # limit L, ``n > L`` is ``n > floor(L)`` and ``n >= L`` is ``n >= ceil(L)``.
        self._part_limit_video = math.floor(self._part_target * TIMESCALE)
        self._segment_min_video = math.ceil((self._segment_target - SEGMENT_SLACK) * TIMESCALE)
        self._audio_limits: tuple[int, int, int] = (0, 0, 0)  # (rate, part limit, segment minimum)
        self._max_part_bytes = max_part_bytes
        self._max_unit_bytes = max_unit_bytes
        self._queue: list[Event] = []
        self._configs: dict[TrackKind, TrackConfig] = {}
        self._ended = False
        # generation
        self._generation = -1
        self._generation_written = False  # a Part of the current generation was queued
        self._tracks: tuple[TrackConfig, ...] | None = None  # None: waiting to (re)start
        self._held_audio: list[AccessUnit] = []
        self._held_bytes = 0
        # program clock
        self._offset: int | None = None
        self._previous_offset: int | None = None
        self._last_time: dict[TrackKind, int] = {}
        self._await_keyframe = False
        self._rebase_next = False  # set by on_interruption: the next unit starts a new clock
        # video (decode times in 90 kHz program time)
        self._open: _OpenVideo | None = None
        self._video_floor: int | None = None
        self._interval: int | None = None
        self._last_keyframe: int | None = None  # decode time
        self._keyframe_gap: int | None = None  # between the last two keyframes
        # audio (sample counts in the audio timescale)
        self._audio_rate: int | None = None
        self._audio_frame = 1024
        self._audio_next: int | None = None
        # output
        self._sequence = 0
        self._msn = -1
        self._segment: _SegmentState | None = None
        self._part = _PartBuffer()

    # ------------------------------------------------------------------ API

    def events(self) -> list[Event]:
        """Return the events queued since the last call, oldest first, and forget them."""
        queued, self._queue = self._queue, []
        return queued

    def on_config(self, config: TrackConfig) -> None:
        """Take a track's decoder config; a different one later starts a new generation."""
        self._check_open()
        if not isinstance(config, VideoConfig | AudioConfig):
            raise SegmenterError(f"not a track config: {type(config).__name__}")
        try:
            check_config(config)
        except Fmp4Error as exc:
            raise SegmenterError(f"bad {config.kind} config: {exc}") from None
        current = self._configs.get(config.kind)
        self._configs[config.kind] = config
        if current is not None and _same_output(current, config):
            return
        if self._tracks is None:
            # held audio was for the previous configs (or, with a video
            # config now known, comes before the first keyframe): drop it
            self._drop_held_audio()
            return
        self._close_generation()

    def on_access_unit(self, unit: AccessUnit) -> None:
        """Take one access unit (see :class:`player.media.AccessUnit`)."""
        self._check_unit(unit)
        if not unit.data:
            return
        if self._tracks is None:
            self._before_start(unit)
            return
        time = self._program_time(unit.kind, unit.dts)
        if time is not None:
            self._feed(unit, time)

    def on_interruption(self) -> None:
        """The source dropped but the live goes on (a publisher may reconnect).

        Finishes the current part and segment now (the last video frame gets
        the previous frame interval). The next unit, whatever its clock, is
        placed right after what was written (no gap for the outage: a
        sans-I/O core has no wall clock), and video resumes at a keyframe
        that starts a new segment. Configs are kept: a reconnecting source
        that sends the same ones continues the same generation, different
        ones start a new one.
        """
        self._check_open()
        self._drop_held_audio()
        if self._tracks is not None:
            self._force_cut()
            self._finish_segment()
        if self._offset is not None:
            self._rebase_next = True
            self._await_keyframe = "video" in self._configs

    def on_end(self) -> None:
        """Finish the last part and segment, then queue :class:`Ended`."""
        self._check_open()
        if self._tracks is None and self._held_audio:
            self._start_audio_only()
        if self._tracks is not None:
            self._close_generation()
        self._ended = True
        self._queue.append(Ended())

    # ------------------------------------------------------------------ validation

    def _check_open(self) -> None:
        if self._ended:
            raise SegmenterError("the source has ended")

    def _check_unit(self, unit: AccessUnit) -> None:
        self._check_open()
        if not isinstance(unit, AccessUnit):
            raise SegmenterError(f"not an access unit: {type(unit).__name__}")
        if unit.kind not in ("video", "audio"):
            raise SegmenterError(f"unknown track kind {unit.kind!r}")
        if unit.kind not in self._configs:
            raise SegmenterError(f"{unit.kind} unit before any {unit.kind} config")
        if not isinstance(unit.data, bytes):
            raise SegmenterError("unit data must be bytes")
        for value in (unit.dts, unit.pts):
            if not isinstance(value, int) or isinstance(value, bool):
                raise SegmenterError("dts/pts must be integers")
        if len(unit.data) > self._max_unit_bytes:
            raise SegmenterError(f"unit of {len(unit.data)} bytes exceeds {self._max_unit_bytes}")
        if unit.kind == "video" and abs(unit.pts - unit.dts) > MAX_COMPOSITION_DELAY:
            raise SegmenterError("video pts - dts exceeds MAX_COMPOSITION_DELAY")

    # ------------------------------------------------------------------ start

    def _before_start(self, unit: AccessUnit) -> None:
        if "video" in self._configs:
            if unit.kind != "video" or not unit.keyframe:
                if self._offset is not None:  # keep following the clock while waiting
                    self._program_time(unit.kind, unit.dts)
                return
            if self._offset is None:
                self._offset = -unit.dts
                self._last_time["video"] = time = 0
            else:
                maybe = self._program_time("video", unit.dts)
                if maybe is None:
                    return
                time = maybe
            self._start_generation()
            self._feed(unit, time)
            return
        self._held_audio.append(unit)
        self._held_bytes += len(unit.data)
        first = self._held_audio[0]
        if (
            abs(unit.dts - first.dts) >= AUDIO_ONLY_START_WAIT * TIMESCALE
            or self._held_bytes >= self._max_part_bytes
        ):
            self._start_audio_only()

    def _drop_held_audio(self) -> None:
        self._held_audio = []
        self._held_bytes = 0

    def _start_audio_only(self) -> None:
        held = self._held_audio
        self._drop_held_audio()
        if self._offset is None:
            self._offset = -held[0].dts
            self._last_time["audio"] = 0
        self._start_generation()
        for unit in held:
            time = self._program_time("audio", unit.dts)
            if time is not None:
                self._feed(unit, time)

    def _start_generation(self) -> None:
        tracks = tuple(
            self._configs[kind] for kind in ("video", "audio") if kind in self._configs
        )
        self._generation += 1
        self._generation_written = False
        self._tracks = tracks
        self._drop_held_audio()
        audio = self._configs.get("audio")
        if isinstance(audio, AudioConfig) and "audio" in {t.kind for t in tracks}:
            if self._audio_next is not None and self._audio_rate not in (None, audio.sample_rate):
                assert self._audio_rate is not None
                self._audio_next = _ceil_div(self._audio_next * audio.sample_rate, self._audio_rate)
            self._audio_rate = audio.sample_rate
            self._audio_frame = aac_info(audio.extradata).frame_duration(audio.sample_rate)
        try:
            data = init_segment(tracks)
            codecs = ",".join(codec_string(config) for config in tracks)
        except Fmp4Error as exc:  # configs were checked in on_config
            raise SegmenterError(str(exc)) from None
        self._queue.append(InitSegment(data, self._generation, tracks, codecs))

    def seconds_to_next_part(self) -> float | None:
        """Media seconds from the newest video unit fed to the one whose arrival will close
        the open part: the part's length limit, or the keyframe that starts the next
        segment (expected one keyframe interval after the last, as encoders keep a fixed
        GOP), assuming the frame interval stays what it was. None before the first video
        interval is known, or when audio leads. A source reading in batches can wait
        about this long without delaying a part (:mod:`ingest.rtmp_listener`); a GOP
        that changes makes one part wait at most one part's length more."""
        opened, part, interval = self._open, self._part, self._interval
        if opened is None or part.start is None or not interval or not self._video_leads:
            return None
        # the unit decoded at D closes the part when D - start + interval > limit
        bound = part.start + self._part_limit_video - interval
        segment, gap, last_key = self._segment, self._keyframe_gap, self._last_keyframe
        if segment is not None and gap is not None and last_key is not None:
            # the first keyframe at or after segment.start + min starts a segment
            due = segment.start + self._segment_min_video
            keyframe = last_key + max(1, -(-(due - last_key) // gap)) * gap
            bound = min(bound, keyframe - 1)
        frames = max(1, (bound - opened.decode) // interval + 1)
        return frames * interval / TIMESCALE

    @property
    def _video_leads(self) -> bool:
        return self._tracks is not None and any(t.kind == "video" for t in self._tracks)

    def _track_id(self, kind: TrackKind) -> int:
        assert self._tracks is not None
        for index, config in enumerate(self._tracks):
            if config.kind == kind:
                return index + 1
        raise AssertionError(kind)

    # ------------------------------------------------------------------ clock

    def _timeline_end(self) -> int:
        """End of everything written so far, in program 90 kHz ticks."""
        ends = [0]
        if self._open is not None:
            ends.append(self._open.decode + (self._interval or DEFAULT_FRAME_DURATION))
        elif self._video_floor is not None:
            ends.append(self._video_floor)
        if self._audio_next is not None and self._audio_rate:
            ends.append(_ceil_div(self._audio_next * TIMESCALE, self._audio_rate))
        return max(ends)

    def _program_time(self, kind: TrackKind, source_time: int) -> int | None:
        """Map a source dts to program time, re-basing on a jump; None drops the unit."""
        assert self._offset is not None
        if self._rebase_next:
            self._rebase_next = False
            self._previous_offset = None  # the old source is gone: no stragglers
            end = self._timeline_end()
            self._offset = end - source_time
            self._last_time = {kind: end}
            return end
        time = source_time + self._offset
        reference = self._last_time.get(kind)
        if reference is None:
            reference = self._timeline_end()
        if -BACKWARD_JUMP <= time - reference <= FORWARD_JUMP:
            self._last_time[kind] = time
            return time
        if self._previous_offset is not None and kind in self._last_time:
            old = source_time + self._previous_offset
            if -BACKWARD_JUMP <= old - reference <= FORWARD_JUMP:
                return None  # straggler of the clock before the last re-base
        end = self._timeline_end()
        self._previous_offset = self._offset
        self._offset = end - source_time
        self._last_time[kind] = end
        if "video" in self._configs:
            self._await_keyframe = True
        return end

    # ------------------------------------------------------------------ feeding

    def _feed(self, unit: AccessUnit, time: int) -> None:
        if unit.kind == "video":
            if self._video_leads:
                self._feed_video(unit, time)
        elif any(t.kind == "audio" for t in self._tracks or ()):
            self._feed_audio(unit, time)

    def _feed_video(self, unit: AccessUnit, time: int) -> None:
        if self._await_keyframe and not unit.keyframe:
            return
        decode = time
        if self._open is not None:
            decode = max(decode, self._open.decode + 1)
        else:
            decode = max(decode, self._video_floor or 0)
        pts = decode + unit.pts - unit.dts
        segment = self._segment
        new_segment = unit.keyframe and (
            segment is None
            or self._await_keyframe
            or decode - segment.start >= self._segment_min_video
        )
        interval = 0
        if self._open is not None:
            interval = decode - self._open.decode
            self._close_open_video(interval)
        part = self._part
        if part.start is not None and (
            new_segment
            or decode - part.start + interval > self._part_limit_video
            or part.size + len(unit.data) > self._max_part_bytes
        ):
            self._flush_part(decode)
        if new_segment:
            self._finish_segment()
            self._begin_segment(decode, Fraction(pts, TIMESCALE))
        self._await_keyframe = False
        if unit.keyframe:
            if self._last_keyframe is not None and decode > self._last_keyframe:
                self._keyframe_gap = decode - self._last_keyframe
            self._last_keyframe = decode
        self._open = _OpenVideo(unit.data, decode, pts, unit.keyframe)
        part = self._part
        if part.start is None:
            part.start = decode
        part.size += len(unit.data)

    def _close_open_video(self, duration: int) -> None:
        """Give the open video sample its duration and move it into the part."""
        opened = self._open
        assert opened is not None
        part = self._part
        if part.video_base is None:
            part.video_base = opened.decode
        part.video.append(Sample(opened.data, duration, opened.keyframe, opened.pts - opened.decode))
        if duration > 0:
            self._interval = duration
        self._video_floor = opened.decode + duration
        self._open = None

    def _feed_audio(self, unit: AccessUnit, time: int) -> None:
        if time < 0:
            return  # before the live's first instant
        rate = self._audio_rate
        frame = self._audio_frame
        assert rate is not None
        exact = time * rate  # in 1 / (TIMESCALE * rate) s
        if self._audio_next is None:
            start = _round_div(exact, TIMESCALE)
        else:
            drift = exact - self._audio_next * TIMESCALE
            if abs(drift) <= frame * TIMESCALE:
                start = self._audio_next
            elif drift > 0:
                start = _round_div(exact, TIMESCALE)
            else:
                return  # overlaps audio already written
        size = len(unit.data)
        if self._video_leads:
            if self._segment is None:
                return  # after an interruption: audio before the keyframe that resumes
            if self._part.start is not None and self._part.size + size > self._max_part_bytes:
                self._force_cut()
            part = self._part
            if part.start is None:
                part.start = self._open.decode if self._open else (self._video_floor or 0)
        else:
            segment = self._segment
            part = self._part
            limits = self._audio_limits
            if limits[0] != rate:
                limits = self._audio_limits = (
                    rate,
                    math.floor(self._part_target * rate),
                    math.ceil((self._segment_target - SEGMENT_SLACK) * rate),
                )
            if part.start is not None and (
                start - part.start + frame > limits[1]
                or part.size + size > self._max_part_bytes
            ):
                self._flush_part(start)
                if segment is not None and start - segment.start >= limits[2]:
                    self._finish_segment()
            if self._segment is None:
                self._begin_segment(start, Fraction(start, rate))
            part = self._part
            if part.start is None:
                part.start = start
        part.audio.append((start, unit.data))
        part.size += size
        self._audio_next = start + frame

    # ------------------------------------------------------------------ output

    def _force_cut(self) -> None:
        """Cut the part now, estimating the open video sample's duration."""
        if self._open is not None:
            self._close_open_video(self._interval or DEFAULT_FRAME_DURATION)
        end = self._video_floor if self._video_leads else self._audio_next
        self._flush_part(end or 0)

    def _flush_part(self, end: int) -> None:
        """Queue the buffered samples as one Part ending at ``end`` (leading units)."""
        part = self._part
        self._part = _PartBuffer()
        segment = self._segment
        if part.start is None or segment is None:
            return
        runs: list[TrackRun] = []
        if part.video:
            assert part.video_base is not None
            runs.append(TrackRun(self._track_id("video"), part.video_base, part.video))
        audio_extent = 0
        if part.audio:
            starts = [start for start, _ in part.audio]
            ends = starts[1:] + [starts[-1] + self._audio_frame]
            samples = [
                Sample(data, end_ - start) for (start, data), end_ in zip(part.audio, ends, strict=True)
            ]
            runs.append(TrackRun(self._track_id("audio"), starts[0], samples))
            audio_extent = ends[-1] - starts[0]
        if not runs:
            return
        assert self._audio_rate is not None or not part.audio
        if self._video_leads:
            if part.video:
                duration = Fraction(end - part.start, TIMESCALE)
            else:
                duration = Fraction(audio_extent, self._audio_rate or 1)
            independent = bool(part.video) and part.video[0].sync
        else:
            assert self._audio_rate is not None
            duration = Fraction(end - part.start, self._audio_rate)
            independent = True
        self._sequence += 1
        try:
            data = fragment(self._sequence, runs)
        except Fmp4Error as exc:  # values are bounded by the checks above
            raise SegmenterError(f"cannot write fragment: {exc}") from None
        self._queue.append(
            Part(
                segment.msn,
                segment.parts,
                float(duration),
                independent,
                data,
                self._generation,
                segment.discontinuity and segment.parts == 0,
            )
        )
        segment.parts += 1
        segment.duration += duration
        self._generation_written = True

    def _begin_segment(self, start: int, first_pts: Fraction) -> None:
        self._msn += 1
        self._segment = _SegmentState(
            self._msn, start, first_pts, self._generation > 0 and not self._generation_written
        )

    def _finish_segment(self) -> None:
        segment = self._segment
        self._segment = None
        if segment is None or segment.parts == 0:
            if segment is not None:
                self._msn -= 1  # nothing was written under this number
            return
        self._queue.append(
            SegmentFinished(
                segment.msn,
                float(segment.duration),
                float(segment.first_pts),
                segment.parts,
                self._generation,
                segment.discontinuity,
            )
        )

    def _close_generation(self) -> None:
        """Finish the current part and segment; the next start opens a new generation."""
        self._force_cut()
        self._finish_segment()
        self._tracks = None
