"""LL-HLS media playlist: the state a packager drives, and its text (sans-I/O).

:class:`MediaPlaylist` holds what one rendition of a live has published —
finished segments, the parts of the segment in progress, discontinuities, the
end — and renders it as an Apple Low-Latency HLS media playlist
(draft-pantos-hls-rfc8216bis, "HLS 2nd edition"). It has no clock and does no
I/O: the packager calls :meth:`MediaPlaylist.add_part` /
:meth:`~MediaPlaylist.finish_segment` as media is cut, the HTTP layer calls
:meth:`~MediaPlaylist.render`, :meth:`~MediaPlaylist.has` and
:meth:`~MediaPlaylist.validate_request`.

Units and precision
    Every duration is in **seconds** (``float`` in, ``float`` out). Durations
    are kept internally as integers of 10 µs (:data:`UNITS_PER_SECOND`), the
    precision they are written with: 5 decimals (``#EXTINF:2.00000,``). A
    segment's ``EXTINF`` is the exact sum of its parts' listed durations, so
    a playlist never disagrees with itself. Within a segment, part ends are
    placed on that grid counted from the segment's start and rounded *down*
    (a part lists the difference of its rounded end and start): the listed
    durations never add up to more media than the segment holds, by less than
    10 µs. hls.js takes a segment's end as its start + ``EXTINF`` and, when its
    buffered end falls short of that, loads that segment again instead of the
    next one (a 2-4 s stall, measured: benchmarks/RESULTS.md,
    webcam_glass_to_glass_p95_s); 30 fps on a 90 kHz clock gives 0.2666... s
    parts, which rounded to nearest announced 2.00002 s segments.

Choices made here (and why)
    - The program date-time of a segment is the wall-clock time of its first
      sample, given when the segment is finished
      (:meth:`~MediaPlaylist.finish_segment`): the packager notes it when it
      starts a segment. It must be timezone-aware and is written in UTC with
      milliseconds.
    - ``EXT-X-TARGETDURATION`` starts at the configured segment target
      rounded up, and only grows: the spec forbids changing it (§6.2.1) but
      also forbids listing a segment whose duration, rounded to the nearest
      second, exceeds it. If the source forces a longer segment (a keyframe
      interval longer than the target), validity of the segment wins and the
      target grows to that rounded duration; it never shrinks back.
    - Parts of finished segments are listed while the segment *starts* no
      more than three target durations before the live edge (the end of the
      last part); the spec says part tags should go once they are more than
      three target durations from the end (§6.2.2). A segment's parts are
      listed whole or not at all. The parts of the segment in progress are
      always listed. The packager must keep serving a part for three target
      durations after its tag goes.
    - Delta updates (``_HLS_skip``) replace the finished segments whose end is
      more than the Skip Boundary (``CAN-SKIP-UNTIL``, six target durations)
      before the end of the last finished segment with ``EXT-X-SKIP``. When
      nothing is old enough, the full playlist is sent without an
      ``EXT-X-SKIP`` tag (parsers reject ``SKIPPED-SEGMENTS=0``).
    - ``EXT-X-VERSION`` is 6 (fMP4 ``EXT-X-MAP``), 9 in a delta update.
    - A playlist that keeps every segment (``window=None``) is a growing
      event: it carries ``EXT-X-PLAYLIST-TYPE:EVENT`` so players may seek
      back to the start; a sliding window must not carry a playlist type.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

__all__ = [
    "DECIMALS",
    "UNITS_PER_SECOND",
    "DeliveryDirectives",
    "MediaPlaylist",
    "PartRef",
    "PlaylistError",
    "PlaylistRequestError",
    "RenditionReport",
    "SegmentRef",
    "UriNaming",
    "parse_delivery_directives",
]

UNITS_PER_SECOND = 100_000
"""Internal duration unit: 10 µs. Durations are rounded to this on input (part
durations: their ends within the segment, rounded down; see the module docstring)."""
_FLOOR_TOLERANCE = 1e-6
"""Units a part end may fall short of a grid line by float error and still be on it
(10 ps: a 0.3 s part given as 0.29999999999999999 lists 0.30000)."""

DECIMALS = 5
"""Decimals written for every duration in a playlist (matches the unit)."""

_PDT_OVERLAP_TOLERANCE = timedelta(seconds=1)
"""How far a segment's program date-time may step back into the previous
segment (the spec allows sub-second overlaps for clock drift)."""

_MAX_DIRECTIVE_DIGITS = 20
"""A ``_HLS_msn``/``_HLS_part`` longer than this (more than 2**64) is refused."""


class PlaylistError(ValueError):
    """The packager drove the playlist wrongly (bad duration, part after the
    end, discontinuity inside a segment, ...). A programming error upstream;
    the playlist is left unchanged."""


class PlaylistRequestError(ValueError):
    """A client's playlist request is malformed or asks too far ahead.

    The HTTP layer answers it with 400 Bad Request (RFC 8216bis §6.2.5.2).
    """


# -- public records ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PartRef:
    """A published partial segment: part ``index`` (from 0) of segment ``msn``.

    ``duration`` is in seconds, rounded to 10 µs.
    """

    msn: int
    index: int
    uri: str
    duration: float
    independent: bool


@dataclass(frozen=True, slots=True)
class SegmentRef:
    """A finished media segment.

    ``duration`` is in seconds (the exact sum of its parts' rounded
    durations); ``program_date_time`` is the wall time of its first sample
    (UTC) or None; ``discontinuity`` is True when it starts after a
    reconnect; ``init_uri`` is the initialization section it needs.
    """

    msn: int
    uri: str
    duration: float
    parts: tuple[PartRef, ...]
    program_date_time: datetime | None
    discontinuity: bool
    init_uri: str


@dataclass(frozen=True, slots=True)
class RenditionReport:
    """Where another rendition's live edge is (``EXT-X-RENDITION-REPORT``).

    ``uri`` is that rendition's media playlist, relative to this one;
    ``last_msn``/``last_part`` name its last published part.
    """

    uri: str
    last_msn: int
    last_part: int | None


@dataclass(frozen=True, slots=True)
class DeliveryDirectives:
    """The ``_HLS_msn``, ``_HLS_part`` and ``_HLS_skip`` of a playlist request.

    ``msn``/``part`` are None when absent; ``skip`` is True for
    ``_HLS_skip=YES`` or ``v2`` (this server has no date ranges, so both ask
    for the same delta update).
    """

    msn: int | None = None
    part: int | None = None
    skip: bool = False

    @property
    def blocking(self) -> bool:
        """True when the request asks to wait for a segment or part."""
        return self.msn is not None


def _decimal_integer(name: str, value: str) -> int:
    if not value or len(value) > _MAX_DIRECTIVE_DIGITS or not value.isascii() or not value.isdigit():
        raise PlaylistRequestError(f"{name} must be a decimal integer, got {value[:32]!r}")
    return int(value)


def parse_delivery_directives(query: Mapping[str, str]) -> DeliveryDirectives:
    """Read the LL-HLS delivery directives from a request's query parameters.

    Other parameters are ignored. Raises :class:`PlaylistRequestError` when
    ``_HLS_msn``/``_HLS_part`` is not a decimal integer (at most 20 digits),
    when ``_HLS_part`` comes without ``_HLS_msn`` (the spec requires 400), or
    when ``_HLS_skip`` is neither ``YES`` nor ``v2``.
    """
    raw_msn = query.get("_HLS_msn")
    raw_part = query.get("_HLS_part")
    raw_skip = query.get("_HLS_skip")
    msn = None if raw_msn is None else _decimal_integer("_HLS_msn", raw_msn)
    part = None if raw_part is None else _decimal_integer("_HLS_part", raw_part)
    if part is not None and msn is None:
        raise PlaylistRequestError("_HLS_part requires _HLS_msn")
    if raw_skip is not None and raw_skip not in ("YES", "v2"):
        raise PlaylistRequestError(f"_HLS_skip must be YES or v2, got {raw_skip[:32]!r}")
    return DeliveryDirectives(msn=msn, part=part, skip=raw_skip is not None)


# -- URI naming --------------------------------------------------------------

InitName = str | Callable[[int], str]
PartName = str | Callable[[int, int], str]
SegmentName = str | Callable[[int], str]


def _checked_uri(uri: object) -> str:
    if not isinstance(uri, str) or not uri:
        raise PlaylistError(f"a URI must be a non-empty string, got {uri!r}")
    if any(ch in uri for ch in '"\r\n') or uri.startswith("#") or uri != uri.strip():
        raise PlaylistError(f"URI {uri!r} cannot be written in a playlist")
    return uri


@dataclass(frozen=True, slots=True)
class UriNaming:
    """How the playlist names resources, relative to the playlist's own URI.

    Each field is a :meth:`str.format` template or a callable:

    - ``init``: fields ``{n}``, the init generation (0, then +1 at each
      discontinuity whose init changes) — or ``f(n)``;
    - ``part``: fields ``{msn}`` and ``{part}`` — or ``f(msn, part)``;
    - ``segment``: field ``{msn}`` — or ``f(msn)``.

    A name must be non-empty, without quotes, line breaks or surrounding
    blanks, and not start with ``#``; otherwise :class:`PlaylistError`.
    """

    init: InitName = "init{n}.mp4"
    part: PartName = "seg{msn}.{part}.m4s"
    segment: SegmentName = "seg{msn}.m4s"

    def init_uri(self, n: int) -> str:
        """Name of the init section of generation ``n``."""
        if callable(self.init):
            return _checked_uri(self.init(n))
        return _checked_uri(self._format(self.init, n=n))

    def part_uri(self, msn: int, index: int) -> str:
        """Name of part ``index`` of segment ``msn``."""
        if callable(self.part):
            return _checked_uri(self.part(msn, index))
        return _checked_uri(self._format(self.part, msn=msn, part=index))

    def segment_uri(self, msn: int) -> str:
        """Name of segment ``msn``."""
        if callable(self.segment):
            return _checked_uri(self.segment(msn))
        return _checked_uri(self._format(self.segment, msn=msn))

    @staticmethod
    def _format(template: str, **fields: int) -> str:
        try:
            return template.format(**fields)
        except (KeyError, IndexError, ValueError, AttributeError) as exc:
            raise PlaylistError(f"bad URI template {template!r}: {exc}") from None


# -- internal state ----------------------------------------------------------


@dataclass(slots=True)
class _Part:
    index: int
    uri: str
    units: int
    independent: bool


@dataclass(slots=True)
class _Segment:
    msn: int
    start: int  # units from the start of the live
    parts: list[_Part] = field(default_factory=list)
    init_gen: int = 0
    discontinuity: bool = False
    uri: str = ""
    program_date_time: datetime | None = None
    text: str = ""  # its lines when listed without parts after its predecessor
    units: int = 0  # sum of its parts' units, kept as parts are added
    seconds: float = 0.0  # sum of its parts' durations as given (the media they hold)


def _to_units(seconds: float, what: str) -> int:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        raise PlaylistError(f"{what} must be a finite number of seconds, got {seconds!r}")
    units = round(seconds * UNITS_PER_SECOND)
    if units <= 0:
        raise PlaylistError(f"{what} must be at least 10 µs, got {seconds!r}")
    return units


def _fmt(units: int) -> str:
    """``units`` of 10 µs as seconds with :data:`DECIMALS` decimals, exactly."""
    return f"{units // UNITS_PER_SECOND}.{units % UNITS_PER_SECOND:0{DECIMALS}d}"


def _fmt_date(when: datetime) -> str:
    text = when.astimezone(timezone.utc).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def _as_timedelta(units: int) -> timedelta:
    return timedelta(microseconds=units * (1_000_000 // UNITS_PER_SECOND))


def _round_half_up_seconds(units: int) -> int:
    return (units + UNITS_PER_SECOND // 2) // UNITS_PER_SECOND


def _part_ref(msn: int, part: _Part) -> PartRef:
    return PartRef(msn, part.index, part.uri, part.units / UNITS_PER_SECOND, part.independent)


# -- the playlist ------------------------------------------------------------


class MediaPlaylist:
    """One rendition's live media playlist, driven by the packager.

    Parameters (keyword-only):

    - ``part_target``: Part Target Duration in seconds (``PART-TARGET``);
      every part must be at most this long. Typically 0.2–0.5 s.
    - ``segment_target``: planned segment duration in seconds, at least
      ``part_target``; ``EXT-X-TARGETDURATION`` starts at it rounded up.
    - ``window``: how many finished segments stay listed (a sliding window);
      ``None`` or ``0`` keeps every segment (an event whose replay needs them
      all). The window is stretched when removing a segment would leave less
      than three target durations listed (§6.2.2).
    - ``naming``: :class:`UriNaming` for init sections, parts and segments.
    - ``part_hold_back``: ``PART-HOLD-BACK`` in seconds; default and minimum
      three times ``part_target``.

    Raises :class:`PlaylistError` for a bad parameter.

    Not thread-safe: drive it from the event loop only.
    """

    def __init__(
        self,
        *,
        part_target: float,
        segment_target: float,
        window: int | None = None,
        naming: UriNaming | None = None,
        part_hold_back: float | None = None,
    ) -> None:
        self._part_target = _to_units(part_target, "part_target")
        segment_units = _to_units(segment_target, "segment_target")
        if segment_units < self._part_target:
            raise PlaylistError("segment_target must be at least part_target")
        if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window < 0):
            raise PlaylistError(f"window must be a non-negative integer or None, got {window!r}")
        self._window = window or None
        self._naming = naming if naming is not None else UriNaming()
        if part_hold_back is None:
            self._part_hold_back = 3 * self._part_target
        else:
            self._part_hold_back = _to_units(part_hold_back, "part_hold_back")
            if self._part_hold_back < 3 * self._part_target:
                raise PlaylistError("part_hold_back must be at least three times part_target")
        self._target_duration = -(-segment_units // UNITS_PER_SECOND)

        self._segments: list[_Segment] = []  # finished and listed, oldest first
        self._ends: list[int] = []  # end (units) of each listed segment, for bisect
        # Full renders of a growing event (window=None): the lines of segments listed
        # without parts (all but the last few) joined once, with the offset where each
        # segment's lines start, so a render slices them instead of walking every segment.
        self._frozen_text = ""
        self._frozen_offsets: list[int] = [0, 0]  # [i]: start of segment i's lines (i >= 1)
        self._frozen_td = 0  # the target duration the frozen lines were chosen under
        self._evicted: list[SegmentRef] = []
        self._media_sequence = 0
        self._discontinuity_sequence = 0
        self._init_gen = 0
        self._open = _Segment(msn=0, start=0)
        self._pending_discontinuity = False
        self._published_any = False
        self._pdt_floor: datetime | None = None  # earliest PDT allowed next
        self._ended = False
        self._revision = 0
        self._rendered: dict[bool, str] = {}
        # Check the naming once, now, rather than in the middle of a live.
        self._naming.init_uri(0)
        self._naming.part_uri(0, 0)
        self._naming.segment_uri(0)

    # -- state, read-only ---------------------------------------------------

    @property
    def part_target(self) -> float:
        """Part Target Duration, seconds."""
        return self._part_target / UNITS_PER_SECOND

    @property
    def target_duration(self) -> int:
        """``EXT-X-TARGETDURATION``, whole seconds (only ever grows)."""
        return self._target_duration

    @property
    def media_sequence(self) -> int:
        """Media sequence number of the first listed segment."""
        return self._media_sequence

    @property
    def discontinuity_sequence(self) -> int:
        """``EXT-X-DISCONTINUITY-SEQUENCE``: discontinuities slid out of the window."""
        return self._discontinuity_sequence

    @property
    def next_msn(self) -> int:
        """Media sequence number of the segment in progress (parts go there)."""
        return self._open.msn

    @property
    def init_uri(self) -> str:
        """Name of the init section the next part needs."""
        return self._naming.init_uri(self._init_gen)

    @property
    def next_part_uri(self) -> str:
        """Name of the next part (the one ``EXT-X-PRELOAD-HINT`` announces)."""
        return self._naming.part_uri(self._open.msn, len(self._open.parts))

    @property
    def segments(self) -> tuple[SegmentRef, ...]:
        """The finished segments currently listed, oldest first.

        Builds one record per segment: O(segments), 1,800 of them after an
        hour. For inspection and the end of a live; per-request code uses
        :attr:`segment_count` and :attr:`published`, which are O(1).
        """
        return tuple(self._segment_ref(s) for s in self._segments)

    @property
    def segment_count(self) -> int:
        """Number of finished segments listed now (O(1))."""
        return len(self._segments)

    @property
    def published(self) -> bool:
        """True when something is listed: a finished segment or a part (O(1))."""
        return bool(self._segments) or bool(self._open.parts)

    @property
    def open_parts(self) -> tuple[PartRef, ...]:
        """The parts of the segment in progress (at most a segment's worth)."""
        return tuple(_part_ref(self._open.msn, p) for p in self._open.parts)

    @property
    def ended(self) -> bool:
        """True once :meth:`end` was called."""
        return self._ended

    @property
    def revision(self) -> int:
        """A counter bumped by every change (usable as an ETag)."""
        return self._revision

    def take_evicted(self) -> list[SegmentRef]:
        """Segments that slid out of the window since the last call.

        The packager may delete them once their availability duration has
        passed (§6.2.2); the playlist no longer lists them.
        """
        evicted, self._evicted = self._evicted, []
        return evicted

    def rendition_report(self, uri: str) -> RenditionReport:
        """This playlist's live edge as seen from another rendition's playlist."""
        _checked_uri(uri)
        if self._open.parts:
            return RenditionReport(uri, self._open.msn, len(self._open.parts) - 1)
        if self._segments:
            last = self._segments[-1]
            return RenditionReport(uri, last.msn, len(last.parts) - 1)
        return RenditionReport(uri, self._open.msn, None)

    # -- driving it -----------------------------------------------------------

    def add_part(self, duration: float, independent: bool) -> PartRef:
        """Publish the next part of the segment in progress.

        ``duration`` in seconds, at most the part target (after rounding to
        10 µs); ``independent`` is True when the part starts with a picture a
        decoder can start from (``INDEPENDENT=YES``). Call this once the
        part's bytes can be served. Raises :class:`PlaylistError` after
        :meth:`end` or for a bad duration.
        """
        self._check_live()
        _to_units(duration, "part duration")  # checks it
        seg = self._open
        end = seg.seconds + duration
        units = max(1, math.floor(end * UNITS_PER_SECOND + _FLOOR_TOLERANCE) - seg.units)
        if units > self._part_target:
            raise PlaylistError(
                f"part duration {_fmt(units)} s exceeds the part target {_fmt(self._part_target)} s"
            )
        if not seg.parts:
            seg.init_gen = self._init_gen
            seg.discontinuity = self._pending_discontinuity
        part = _Part(len(seg.parts), self._naming.part_uri(seg.msn, len(seg.parts)), units, bool(independent))
        seg.parts.append(part)
        seg.units += units
        seg.seconds = end
        self._pending_discontinuity = False
        self._published_any = True
        self._changed()
        return _part_ref(seg.msn, part)

    def finish_segment(self, program_date_time: datetime | None = None) -> SegmentRef:
        """Close the segment in progress: its parts become one listed segment.

        ``program_date_time`` is the wall-clock time of the segment's first
        sample (timezone-aware) or None for no ``EXT-X-PROGRAM-DATE-TIME``.
        It may not step back more than 1 s into the previous segment.
        Then the sliding window drops the oldest segments it no longer keeps.
        Raises :class:`PlaylistError` when the segment has no part, after
        :meth:`end`, or for a bad date.
        """
        self._check_live()
        seg = self._open
        if not seg.parts:
            raise PlaylistError("cannot finish a segment that has no part")
        units = seg.units
        uri = self._naming.segment_uri(seg.msn)
        if program_date_time is not None:
            if not isinstance(program_date_time, datetime) or program_date_time.utcoffset() is None:
                raise PlaylistError("program_date_time must be a timezone-aware datetime")
            if self._pdt_floor is not None and program_date_time < self._pdt_floor - _PDT_OVERLAP_TOLERANCE:
                raise PlaylistError("program_date_time goes back into an earlier segment")
            program_date_time = program_date_time.astimezone(timezone.utc)
            self._pdt_floor = program_date_time + _as_timedelta(units)
        elif self._pdt_floor is not None:
            self._pdt_floor += _as_timedelta(units)
        seg.program_date_time = program_date_time
        seg.uri = uri
        lines: list[str] = []
        self._segment_head(lines, seg, self._segments[-1].init_gen if self._segments else None)
        lines += [f"#EXTINF:{_fmt(units)},", seg.uri]
        seg.text = "\n".join(lines)

        self._segments.append(seg)
        self._ends.append(seg.start + units)
        self._open = _Segment(msn=seg.msn + 1, start=seg.start + units)
        self._target_duration = max(self._target_duration, _round_half_up_seconds(units))
        self._slide_window()
        self._changed()
        return self._segment_ref(seg)

    def discontinuity(self, init_uri_changes: bool) -> None:
        """Mark that the next segment follows a break (a publisher reconnect).

        Call it between segments (finish the segment in progress first). The
        next segment gets ``EXT-X-DISCONTINUITY``; when ``init_uri_changes``
        the init generation goes up, so it gets a new ``EXT-X-MAP`` too (read
        :attr:`init_uri` for the name to write the new init section under).
        Before anything was published, only the init change applies. Several
        calls in a row make one discontinuity. Raises :class:`PlaylistError`
        while a segment is in progress or after :meth:`end`.
        """
        self._check_live()
        if self._open.parts:
            raise PlaylistError("finish the segment in progress before a discontinuity")
        if init_uri_changes:
            self._init_gen += 1
        if self._published_any:
            self._pending_discontinuity = True
        self._changed()

    def end(self, program_date_time: datetime | None = None) -> SegmentRef | None:
        """End the live: ``EXT-X-ENDLIST``.

        Parts still in progress are first finished as a last segment (with
        ``program_date_time``, as in :meth:`finish_segment`), which is
        returned; otherwise None. Raises :class:`PlaylistError` if already
        ended.
        """
        self._check_live()
        last = self.finish_segment(program_date_time) if self._open.parts else None
        self._ended = True
        self._changed()
        return last

    # -- blocking reload ------------------------------------------------------

    def has(self, msn: int, part: int | None = None) -> bool:
        """Whether a blocking request for ``_HLS_msn=msn[&_HLS_part=part]`` can be answered.

        Without ``part``: a finished segment with MSN ``msn`` or later
        exists. With ``part``: that part of segment ``msn``, or a later part,
        exists; a part index past the last part of a finished segment means
        part 0 of the next segment (§6.2.5.2). Segments that slid out of the
        window count as published. Always True once ended (the directives are
        then ignored). Raises :class:`PlaylistRequestError` for negative
        numbers.
        """
        _check_numbers(msn, part)
        if self._ended:
            return True
        open_msn = self._open.msn
        if part is None:
            return msn < open_msn
        if msn < open_msn:
            if msn < self._media_sequence:
                return True  # slid out: later segments exist
            if part < len(self._segments[msn - self._media_sequence].parts):
                return True
            msn, part = msn + 1, 0
            if msn < open_msn:
                return True
        return msn == open_msn and part < len(self._open.parts)

    def validate_request(self, msn: int, part: int | None = None) -> None:
        """Refuse a blocking request that asks too far ahead.

        Raises :class:`PlaylistRequestError` (→ HTTP 400) when ``msn`` is more
        than two beyond the MSN of the last finished segment, or when
        ``part`` lies more than the Advance Part Limit beyond the last
        published part (3 / PART-TARGET parts when the part target is under a
        second, rounded up; else 3). Parts of segments not begun yet are
        counted as few as possible (one per intermediate segment), so only
        requests that are surely too far are refused. Negative numbers are
        refused too. Nothing is refused once ended.
        """
        _check_numbers(msn, part)
        if self._ended:
            return
        open_msn = self._open.msn
        last_finished = open_msn - 1
        if msn > last_finished + 2:
            raise PlaylistRequestError(
                f"_HLS_msn={msn} is more than two segments beyond the last one ({last_finished})"
            )
        if part is None or msn < open_msn:
            return  # a finished segment: past its last part means part 0 of the next
        published = len(self._open.parts)
        if msn == open_msn:
            ahead = part - published + 1
        else:
            # As few parts as possible: the segment in progress still needs at
            # least one if it has none, each segment between needs one.
            ahead = max(0, 1 - published) + (msn - open_msn - 1) + part + 1
        if ahead > self._advance_part_limit():
            raise PlaylistRequestError(
                f"_HLS_part={part} of segment {msn} is {ahead} parts beyond the last published part"
            )

    def _advance_part_limit(self) -> int:
        if self._part_target < UNITS_PER_SECOND:
            return -(-3 * UNITS_PER_SECOND // self._part_target)
        return 3

    # -- rendering -----------------------------------------------------------

    def render(self, skip: bool = False, rendition_reports: tuple[RenditionReport, ...] = ()) -> str:
        """The live media playlist as text (lines end with ``\\n``).

        ``skip=True`` renders a Playlist Delta Update (``_HLS_skip=YES``/
        ``v2``); it is ignored once ended (§6.2.5.1). ``rendition_reports``
        adds ``EXT-X-RENDITION-REPORT`` lines for the other renditions of a
        multivariant playlist. Renders without reports are cached until the
        next change.
        """
        skip = skip and not self._ended
        if not rendition_reports and skip in self._rendered:
            return self._rendered[skip]
        text = self._render_live(skip, rendition_reports)
        if not rendition_reports:
            self._rendered[skip] = text
        return text

    def render_vod(self) -> str:
        """The replay: every kept segment as a VOD playlist, no parts or hints.

        With ``window=None`` that is the whole live. Raises
        :class:`PlaylistError` before :meth:`end` (a VOD playlist must never
        change) or when no segment was published.
        """
        if not self._ended:
            raise PlaylistError("a VOD playlist can only be rendered once the live has ended")
        if not self._segments:
            raise PlaylistError("the live published no segment")
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:6",
            f"#EXT-X-TARGETDURATION:{self._target_duration}",
            "#EXT-X-PLAYLIST-TYPE:VOD",
            f"#EXT-X-MEDIA-SEQUENCE:{self._media_sequence}",
            f"#EXT-X-DISCONTINUITY-SEQUENCE:{self._discontinuity_sequence}",
        ]
        first = self._segments[0]
        self._segment_head(lines, first, None)
        lines += [f"#EXTINF:{_fmt(first.units)},", first.uri]
        lines += [seg.text for seg in self._segments[1:]]
        lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"

    def _render_live(self, skip: bool, reports: tuple[RenditionReport, ...]) -> str:
        """The live playlist text.

        Python-level work is O(segments with parts + skipped count via bisect):
        the finished segments listed without parts come from one cached
        string (:meth:`_frozen_slice`), so a delta update costs the same at
        any age of the live, and a full one only copies the cached text.
        """
        td = self._target_duration
        skip_boundary = 6 * td * UNITS_PER_SECOND
        skipped = self._skippable(skip_boundary) if skip else 0
        control = (
            f"CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={_fmt(self._part_hold_back)},"
            f"CAN-SKIP-UNTIL={_fmt(skip_boundary)}"
        )
        lines = [
            "#EXTM3U",
            f"#EXT-X-VERSION:{9 if skipped else 6}",
            f"#EXT-X-TARGETDURATION:{td}",
        ]
        if self._window is None:
            lines.append("#EXT-X-PLAYLIST-TYPE:EVENT")
        lines += [
            f"#EXT-X-SERVER-CONTROL:{control}",
            f"#EXT-X-PART-INF:PART-TARGET={_fmt(self._part_target)}",
            f"#EXT-X-MEDIA-SEQUENCE:{self._media_sequence}",
            f"#EXT-X-DISCONTINUITY-SEQUENCE:{self._discontinuity_sequence}",
        ]
        if skipped:
            lines.append(f"#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}")

        edge = self._open.start + self._open.units
        parts_from = edge - 3 * td * UNITS_PER_SECOND
        segments = self._segments
        count = len(segments)
        # Segments [skipped, with_parts) are listed without parts; the first one
        # listed always carries its EXT-X-MAP (rendered here), the rest reuse
        # their text. Starts increase, so the boundary is found by bisection.
        with_parts = bisect_left(self._ends, parts_from, lo=skipped)  # first ending at/after it
        if with_parts < count and segments[with_parts].start < parts_from:
            with_parts += 1  # it straddles the boundary: listed without parts
        init_gen: int | None = None
        index = skipped
        if index < count:
            seg = segments[index]
            self._segment_head(lines, seg, None)
            if index >= with_parts:
                self._part_lines(lines, seg)
            lines += [f"#EXTINF:{_fmt(seg.units)},", seg.uri]
            init_gen = seg.init_gen
            index += 1
        if index < with_parts:
            lines.append(self._frozen_slice(index, with_parts))
            init_gen = segments[with_parts - 1].init_gen
            index = with_parts
        for seg in segments[index:]:
            self._segment_head(lines, seg, init_gen)
            self._part_lines(lines, seg)
            lines += [f"#EXTINF:{_fmt(seg.units)},", seg.uri]
            init_gen = seg.init_gen
        if self._open.parts:
            self._segment_head(lines, self._open, init_gen)
            self._part_lines(lines, self._open)
        if self._ended:
            lines.append("#EXT-X-ENDLIST")
        else:
            lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{self.next_part_uri}"')
        for report in reports:
            lines.append(_report_line(report))
        return "\n".join(lines) + "\n"

    def _frozen_slice(self, first: int, stop: int) -> str:
        """The lines of listed segments ``first`` .. ``stop - 1`` (``first`` >= 1
        after the first listed one), each as listed without parts, as one string.

        With a sliding window the segments are few: they are joined directly.
        Otherwise the text of every segment that ever left the parts zone is
        appended once to :attr:`_frozen_text`, and a render slices it.
        """
        segments = self._segments
        if self._window is not None:
            return "\n".join(seg.text for seg in segments[first:stop])
        if self._frozen_td != self._target_duration:
            # A grown target duration moves the parts zone back: start over (rare).
            self._frozen_text, self._frozen_offsets, self._frozen_td = "", [0, 0], self._target_duration
        offsets = self._frozen_offsets
        known = len(offsets) - 1  # segments 1 .. known - 1 are in the text
        if stop > known:
            added = "".join(seg.text + "\n" for seg in segments[known:stop])
            position = offsets[-1]
            for seg in segments[known:stop]:
                position += len(seg.text) + 1
                offsets.append(position)
            self._frozen_text += added
        return self._frozen_text[offsets[first]:offsets[stop] - 1]

    def _skippable(self, boundary: int) -> int:
        """How many leading listed segments end more than ``boundary`` units
        before the end of the last finished segment (bisection: O(log n))."""
        if not self._segments:
            return 0
        return bisect_left(self._ends, self._open.start - boundary)

    def _segment_head(self, lines: list[str], seg: _Segment, prev_init: int | None) -> int:
        """Tags that precede a segment's first part or URI; returns its init."""
        if seg.discontinuity:
            lines.append("#EXT-X-DISCONTINUITY")
        if seg.init_gen != prev_init:
            lines.append(f'#EXT-X-MAP:URI="{self._naming.init_uri(seg.init_gen)}"')
        if seg.program_date_time is not None:
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_fmt_date(seg.program_date_time)}")
        return seg.init_gen

    @staticmethod
    def _part_lines(lines: list[str], seg: _Segment) -> None:
        for part in seg.parts:
            independent = ",INDEPENDENT=YES" if part.independent else ""
            lines.append(f'#EXT-X-PART:DURATION={_fmt(part.units)},URI="{part.uri}"{independent}')

    # -- internals -----------------------------------------------------------

    def _check_live(self) -> None:
        if self._ended:
            raise PlaylistError("the playlist has ended")

    def _changed(self) -> None:
        self._revision += 1
        self._rendered.clear()

    def _slide_window(self) -> None:
        if self._window is None:
            return
        floor = 3 * self._target_duration * UNITS_PER_SECOND
        listed = sum(s.units for s in self._segments)
        while len(self._segments) > self._window:
            oldest = self._segments[0]
            if listed - oldest.units < floor:
                break
            self._segments.pop(0)
            self._ends.pop(0)
            listed -= oldest.units
            self._media_sequence += 1
            if oldest.discontinuity:
                self._discontinuity_sequence += 1
            self._evicted.append(self._segment_ref(oldest))

    def _segment_ref(self, seg: _Segment) -> SegmentRef:
        return SegmentRef(
            msn=seg.msn,
            uri=seg.uri,
            duration=seg.units / UNITS_PER_SECOND,
            parts=tuple(_part_ref(seg.msn, p) for p in seg.parts),
            program_date_time=seg.program_date_time,
            discontinuity=seg.discontinuity,
            init_uri=self._naming.init_uri(seg.init_gen),
        )


def _check_numbers(msn: int, part: int | None) -> None:
    if isinstance(msn, bool) or not isinstance(msn, int) or msn < 0:
        raise PlaylistRequestError(f"_HLS_msn must be a non-negative integer, got {msn!r}")
    if part is not None and (isinstance(part, bool) or not isinstance(part, int) or part < 0):
        raise PlaylistRequestError(f"_HLS_part must be a non-negative integer, got {part!r}")


def _report_line(report: RenditionReport) -> str:
    _checked_uri(report.uri)
    line = f'#EXT-X-RENDITION-REPORT:URI="{report.uri}",LAST-MSN={report.last_msn}'
    if report.last_part is not None:
        line += f",LAST-PART={report.last_part}"
    return line
