"""A live program being published: segmenter → LL-HLS playlist + stored media.

:class:`Publication` is the :class:`player.media.MediaSink` every source
feeds (an RTMP or SRT publisher, the webcam compositor). It turns access
units into CMAF parts and segments (:mod:`player.segmenter`), keeps the
LL-HLS media playlist (:mod:`player.playlist`), wakes blocked playlist and
preload-hint requests (:mod:`player.blocking`), keeps recent parts in memory
and writes init sections and whole segments to the media store, where the
replay finds them.

Everything runs on the event loop; nothing here blocks for long.

Memory bound: parts are kept for the last :data:`PARTS_KEPT_SEGMENTS`
segments (and the open one); a 6 Mbit/s live holds about 6 MB of parts.

A live may have several renditions (see :mod:`player.renditions`): one
Publication each. The source rendition's files go under ``hls/<id>/``, a
named rendition's under ``hls/<id>/<name>/`` (:func:`rendition_prefix`).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

from player.blocking import PlaylistWaiter
from player.media import AccessUnit, TrackConfig
from player.playlist import MediaPlaylist, PlaylistError, RenditionReport
from player.segmenter import Ended, InitSegment, Part, Segmenter, SegmenterError, SegmentFinished
from player.storage import MediaStore

log = logging.getLogger("player.publication")

PARTS_KEPT_SEGMENTS = 4
VOD_PLAYLIST = "vod.m3u8"


@dataclass(frozen=True)
class PackagingOptions:
    """Timing of the LL-HLS output, in seconds.

    The segmenter aims at ``part_target``; the playlist announces
    ``playlist_part_target`` (PART-TARGET, which no part may exceed), a little
    longer so that a late frame does not break the rule. PART-HOLD-BACK is
    three times the announced target: the main term of the viewers' latency.
    """

    part_target: float = 0.3
    playlist_part_target: float = 0.4
    segment_target: float = 2.0
    window_segments: int | None = None
    """Finished segments listed in the live playlist; None = all (the replay needs them)."""


def hls_prefix(webinar_id: uuid.UUID) -> str:
    return f"hls/{webinar_id}"


def rendition_prefix(webinar_id: uuid.UUID, rendition: str = "") -> str:
    """Storage folder of one rendition: ``hls/<id>`` for the source (``""``), else ``hls/<id>/<name>``."""
    return f"{hls_prefix(webinar_id)}/{rendition}" if rendition else hls_prefix(webinar_id)


class Publication:
    """The program of one webinar's live, one rendition of it (a reconnecting
    publisher continues the same publication after a discontinuity).

    ``rendition`` is ``""`` for the source rendition, else the name of a
    transcoded one (its files go to ``hls/<id>/<rendition>/``).
    ``wall_clock`` gives the program date-time of the first sample (seconds
    since the epoch); renditions of one live share the source's.
    """

    def __init__(
        self,
        webinar_id: uuid.UUID,
        store: MediaStore,
        options: PackagingOptions = PackagingOptions(),
        *,
        wall_clock: Callable[[], float] = time.time,
        rendition: str = "",
    ) -> None:
        self.webinar_id = webinar_id
        self.store = store
        self.options = options
        self.rendition = rendition
        self.prefix = rendition_prefix(webinar_id, rendition)
        self.segmenter = Segmenter(options.part_target, options.segment_target)
        self.playlist = MediaPlaylist(
            part_target=options.playlist_part_target,
            segment_target=options.segment_target,
            window=options.window_segments,
        )
        self.waiter = PlaylistWaiter(self.playlist)
        self._wall_clock = wall_clock
        self._start_wall: float | None = None
        self._parts: OrderedDict[tuple[int, int], bytes] = OrderedDict()
        self._segment_parts: list[bytes] = []
        self._inits: dict[int, bytes] = {}
        self.codecs = ""
        self.tracks: tuple[TrackConfig, ...] = ()
        """Tracks of the current init segment (empty before the first one)."""
        self.ended = False
        self.started_at: float | None = None
        self.bytes_in = 0
        self.clamped_parts = 0
        """Parts longer than PART-TARGET (announced at the target; should stay 0)."""
        self._discontinuity_next = False
        # bit rate measurement (bytes of moof+mdat, seconds of media)
        self._open_bytes = 0
        self._open_seconds = 0.0
        self._peak_bps = 0
        self._segments_bytes = 0
        self._segments_seconds = 0.0
        self._playlist_cache: dict[bool, tuple[tuple[int, tuple[RenditionReport, ...]], bytes]] = {}

    # MediaSink ---------------------------------------------------------------
    def on_config(self, config: TrackConfig) -> None:
        if self.ended:
            return
        try:
            self.segmenter.on_config(config)
        except SegmenterError as exc:
            log.warning("webinar %s: config refused: %s", self.webinar_id, exc)
            return
        self._drain()

    def on_access_unit(self, unit: AccessUnit) -> None:
        if self.ended:
            return
        self.bytes_in += len(unit.data)
        try:
            self.segmenter.on_access_unit(unit)
        except SegmenterError as exc:
            log.warning("webinar %s: access unit refused: %s", self.webinar_id, exc)
            return
        self._drain()

    def seconds_to_next_part(self) -> float | None:
        """See :meth:`player.segmenter.Segmenter.seconds_to_next_part`."""
        return self.segmenter.seconds_to_next_part()

    def on_end(self) -> None:
        """The program is over (not a publisher drop: see :mod:`player.live`)."""
        if self.ended:
            return
        self.segmenter.on_end()
        self._drain()

    def source_lost(self) -> None:
        """The source dropped but the live goes on: publish everything received so
        far now; whatever comes next starts a segment after EXT-X-DISCONTINUITY."""
        if self.ended:
            return
        self.segmenter.on_interruption()
        self._drain()
        self._discontinuity_next = True

    # Events -------------------------------------------------------------------
    def _drain(self) -> None:
        changed = False
        for event in self.segmenter.events():
            changed = True
            if isinstance(event, InitSegment):
                self._on_init(event)
            elif isinstance(event, Part):
                self._on_part(event)
            elif isinstance(event, SegmentFinished):
                self._on_segment(event)
            elif isinstance(event, Ended):
                self._on_ended()
        if changed:
            self.waiter.notify()

    def _on_init(self, event: InitSegment) -> None:
        if self._start_wall is None:
            self._start_wall = self._wall_clock()
            self.started_at = self._start_wall
        if event.generation > 0:
            self.playlist.discontinuity(init_uri_changes=True)
            self._discontinuity_next = False
        self._inits[event.generation] = event.data
        self.codecs = event.codecs
        self.tracks = event.tracks
        self.store.write(f"{self.prefix}/{self.playlist.init_uri}", event.data)

    def _on_part(self, event: Part) -> None:
        duration = event.duration
        if duration > self.options.playlist_part_target:
            self.clamped_parts += 1
            log.warning("webinar %s: part %d.%d lasts %.3f s > PART-TARGET", self.webinar_id, event.msn, event.index, duration)
            duration = self.options.playlist_part_target
        if self._discontinuity_next and event.index == 0:
            self.playlist.discontinuity(init_uri_changes=False)
            self._discontinuity_next = False
        if self.playlist.next_msn != event.msn:
            log.error("webinar %s: segmenter msn %d != playlist msn %d", self.webinar_id, event.msn, self.playlist.next_msn)
        ref = self.playlist.add_part(duration, event.independent)
        self._parts[(ref.msn, ref.index)] = event.data
        self._segment_parts.append(event.data)
        self._open_bytes += len(event.data)
        self._open_seconds += event.duration

    def _on_segment(self, event: SegmentFinished) -> None:
        pdt = None
        if self._start_wall is not None:
            pdt = dt.datetime.fromtimestamp(self._start_wall + event.first_pts_seconds, dt.UTC)
        try:
            ref = self.playlist.finish_segment(pdt)
        except PlaylistError:
            ref = self.playlist.finish_segment(None)
        data = b"".join(self._segment_parts)
        self.store.write(f"{self.prefix}/{ref.uri}", data)
        self._segment_parts = []
        if event.duration > 0:
            self._peak_bps = max(self._peak_bps, round(len(data) * 8 / event.duration))
            self._segments_bytes += len(data)
            self._segments_seconds += event.duration
        self._open_bytes = 0
        self._open_seconds = 0.0
        oldest_kept = ref.msn - PARTS_KEPT_SEGMENTS + 1
        while self._parts and next(iter(self._parts))[0] < oldest_kept:
            self._parts.popitem(last=False)

    def _on_ended(self) -> None:
        if self._segment_parts:
            log.error("webinar %s: parts left outside a segment at the end", self.webinar_id)
        if not self.playlist.ended:
            self.playlist.end()
        self.ended = True
        if self.playlist.segment_count:
            self.store.write(f"{self.prefix}/{VOD_PLAYLIST}", self.playlist.render_vod().encode())
        self.waiter.close()

    # Reading -------------------------------------------------------------------
    def bitrate(self) -> tuple[int, int]:
        """``(peak, average)`` bit rate of what was published, in bits/s.

        Peak: the highest segment bit rate (segment bytes, moof boxes
        included, over its duration); average: over every finished segment.
        Before the first segment both are the rate of the parts so far;
        ``(0, 0)`` before any part.
        """
        if self._segments_seconds > 0:
            average = round(self._segments_bytes * 8 / self._segments_seconds)
            return max(self._peak_bps, average), average
        if self._open_seconds > 0:
            rate = round(self._open_bytes * 8 / self._open_seconds)
            return rate, rate
        return 0, 0

    def live_playlist(self, skip: bool, reports: tuple[RenditionReport, ...] = ()) -> bytes:
        """The live playlist (full, or the delta update for ``skip``) as the UTF-8
        bytes of a response body, with ``EXT-X-RENDITION-REPORT`` lines for the
        other renditions.

        Rendered and encoded once per change of the playlist (its
        :attr:`~player.playlist.MediaPlaylist.revision`) or of the reports, per
        ``skip``: the text depends on nothing else (not on the ``_HLS_msn``/
        ``_HLS_part`` a blocking request waited for), so all the requests a new
        part wakes share one render.
        """
        key = (self.playlist.revision, reports)
        cached = self._playlist_cache.get(skip)
        if cached is not None and cached[0] == key:
            return cached[1]
        body = self.playlist.render(skip=skip, rendition_reports=reports).encode()
        self._playlist_cache[skip] = (key, body)
        return body

    def part(self, msn: int, index: int) -> bytes | None:
        return self._parts.get((msn, index))

    def init(self, generation: int) -> bytes | None:
        return self._inits.get(generation)
