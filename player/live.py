"""The life cycle of lives: start, publisher drop and reconnect, 4-hour cut, end, replay.

Sources (an RTMP/SRT publisher, the webcam compositor) ask :class:`LiveManager`
for a sink with :meth:`LiveManager.open_source`. Rules:

- **Start**: the live starts when the first publisher of an announced webinar
  connects (no separate "go live" button: the encoder going on air *is* the
  start; the moderator panel can end it). The webinar moves to ``live``.
- **One publisher**: a second source while one is on air is refused.
- **Clean end**: a source that says it is done (``on_end(clean=True)``: the
  encoder's RTMP ``FCUnpublish``/``deleteStream``, what ffmpeg and OBS send when
  they stop streaming) ends the live at once: no grace window.
- **Drop and reconnect**: when the source goes away otherwise (connection
  lost or timed out, protocol error, an SRT publisher leaving — SRT cannot
  tell a stop from a drop), the live waits ``grace_s`` seconds (default
  :data:`GRACE_S`). A source that comes back in time continues the same
  publication after an ``EXT-X-DISCONTINUITY`` (viewers see "back in a
  moment"); after the grace window the live ends.
- **4-hour limit** (R-ROOM-2): warnings at :data:`WARN_BEFORE_S` before the
  cut (logged and published on the broker channel ``live:<webinar id>``); at
  ``max_live_s`` the live ends and the source is cut (its next unit raises
  :class:`SourceClosed`, which the listeners answer by closing it).
- **End**: the playlist gets EXT-X-ENDLIST, the VOD playlist is written (the
  replay is available at once, R-REP-1), the webinar goes ``ended`` then
  ``replay``, and the single MP4 is remuxed in the background.
- **Lower rendition** (opt-in per webinar, read once when the live starts
  through ``low_rendition``; passthrough when it is off or unknown): the
  source's sink tees into the source Publication and a
  :class:`player.transcode.Transcoder` feeding a second Publication, the
  ``480p`` rendition. Drops, reconnects, the grace window and the end apply
  to both; at the end the transcoder is flushed (at most
  :data:`TRANSCODER_CLOSE_S`), both VOD playlists are written and so is
  ``master.m3u8`` for the replay. The replay MP4 is made from the source
  rendition. A failed transcoder never stops the live: the 480p rendition
  just leaves the multivariant playlist.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from player.media import AccessUnit, MediaSink, TrackConfig
from player.publication import PackagingOptions, Publication, hls_prefix
from player.renditions import LOW_RENDITION, MASTER_PLAYLIST, MEDIA_PLAYLIST, render_master
from player.storage import MediaStore
from player.transcode import TranscodeOptions, Transcoder

log = logging.getLogger("player.live")

HEALTH_EVERY_S = 5.0
"""Stream health (input bitrate, segments, publisher drops) is announced this often."""
GRACE_S = 30.0
MAX_LIVE_S = 4 * 3600.0
WARN_BEFORE_S = (15 * 60.0, 5 * 60.0, 60.0)
TRANSCODER_CLOSE_S = 10.0
"""At the end of a live, longest wait (seconds) for the transcoder to flush its backlog."""
PART_LINGER_TARGETS = 3
"""After the end, the parts still in memory stay served this many target durations
(LL-HLS: a part stays available three target durations after its tag goes): a
player that read the final live playlist may still fetch its last parts."""


class SourceClosed(Exception):
    """Raised into a source whose live was ended (4-hour cut, moderator, shutdown)."""


StateChange = Callable[[uuid.UUID, str], Awaitable[None]]
"""``(webinar_id, new_state)``: persist a webinar state change (``live``, ``ended``, ``replay``)."""
Announce = Callable[[uuid.UUID, dict[str, Any]], Awaitable[None]]
"""``(webinar_id, event)``: tell the room (broker) about the live: warnings, drop, resume, end."""
AfterEnd = Callable[[Publication], Awaitable[None]]
LowRendition = Callable[[uuid.UUID], Awaitable[bool]]
"""``(webinar_id) -> bool``: whether the live gets the transcoded 480p rendition."""


@dataclass
class _Live:
    publication: Publication
    started: float
    low: Publication | None = None
    transcoder: Transcoder | None = None
    source: "SourceSession | None" = None
    grace_task: asyncio.Task[None] | None = None
    timer_task: asyncio.Task[None] | None = None
    health_task: asyncio.Task[None] | None = None
    drops: int = 0
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)


class SourceSession:
    """The sink a source writes into: forwards to the publication until the source
    goes away (``on_end``: the end of the live when ``clean``, else a drop that
    opens the grace window) or the live is cut."""

    def __init__(self, manager: "LiveManager", webinar_id: uuid.UUID, publication: Publication,
                 transcoder: Transcoder | None = None) -> None:
        self._manager = manager
        self.webinar_id = webinar_id
        self._publication = publication
        self.transcoder = transcoder
        """The lower rendition's transcoder, fed after the publication (never blocks)."""
        self.closed = False
        self.ended = False

    def on_config(self, config: TrackConfig) -> None:
        if self.closed:
            raise SourceClosed("the live has ended")
        self._publication.on_config(config)
        if self.transcoder is not None:
            self.transcoder.on_config(config)

    def on_access_unit(self, unit: AccessUnit) -> None:
        if self.closed:
            raise SourceClosed("the live has ended")
        self._publication.on_access_unit(unit)
        if self.transcoder is not None:
            self.transcoder.on_access_unit(unit)

    def seconds_to_next_part(self) -> float | None:
        """Media seconds until the packager can close its next part (:class:`~player.media.PartClock`)."""
        return None if self.closed else self._publication.seconds_to_next_part()

    def on_end(self, clean: bool = False) -> None:
        if self.ended:
            return
        self.ended = True
        self._manager._source_gone(self, clean)


class LiveManager:
    """Every live of this process. Lives are per process: the ingest of a webinar
    is pinned to one node, which serves its HLS (a CDN or proxy can front it)."""

    def __init__(
        self,
        store: MediaStore,
        *,
        set_state: StateChange,
        announce: Announce | None = None,
        after_end: AfterEnd | None = None,
        options: PackagingOptions = PackagingOptions(),
        grace_s: float = GRACE_S,
        max_live_s: float = MAX_LIVE_S,
        warn_before_s: tuple[float, ...] = WARN_BEFORE_S,
        clock: Callable[[], float] = time.monotonic,
        low_rendition: LowRendition | None = None,
        transcode_options: TranscodeOptions = TranscodeOptions(),
    ) -> None:
        self.store = store
        self.transcode_options = transcode_options
        self._low_rendition = low_rendition
        self.options = options
        self.grace_s = grace_s
        self.max_live_s = max_live_s
        self.warn_before_s = tuple(sorted(warn_before_s, reverse=True))
        self._set_state = set_state
        self._announce = announce
        self._after_end = after_end
        self._clock = clock
        self._lives: dict[uuid.UUID, _Live] = {}
        self._ending: dict[uuid.UUID, _Live] = {}  # lives whose end is being written (renditions still served)
        self._lingering: dict[uuid.UUID, _Live] = {}  # ended lives whose parts are still served
        self._background: set[asyncio.Task[Any]] = set()

    # Queries -------------------------------------------------------------------
    def publication(self, webinar_id: uuid.UUID) -> Publication | None:
        live = self._lives.get(webinar_id)
        return live.publication if live else None

    def rendition(self, webinar_id: uuid.UUID, name: str = "", *, lingering: bool = False) -> Publication | None:
        """The Publication of one rendition (``""``: the source) of a live that is
        running or being ended, or None. ``lingering=True`` also finds a live that
        ended less than :data:`PART_LINGER_TARGETS` target durations ago (for its
        parts: the publication is ended)."""
        live = self._lives.get(webinar_id) or self._ending.get(webinar_id)
        if live is None and lingering:
            live = self._lingering.get(webinar_id)
        if live is None:
            return None
        if not name:
            return live.publication
        return live.low if name == LOW_RENDITION else None

    def variants(self, webinar_id: uuid.UUID) -> list[tuple[Publication, str]] | None:
        """``(publication, uri relative to master.m3u8)`` of the renditions a multivariant
        playlist lists now, source first; None when the live has no lower rendition."""
        live = self._lives.get(webinar_id) or self._ending.get(webinar_id)
        if live is None or live.low is None:
            return None
        found = [(live.publication, MEDIA_PLAYLIST)]
        if live.transcoder is not None and not live.transcoder.failed:
            found.append((live.low, f"{LOW_RENDITION}/{MEDIA_PLAYLIST}"))
        return found

    def transcoder(self, webinar_id: uuid.UUID) -> Transcoder | None:
        live = self._lives.get(webinar_id) or self._ending.get(webinar_id)
        return live.transcoder if live is not None else None

    def is_on_air(self, webinar_id: uuid.UUID) -> bool:
        live = self._lives.get(webinar_id)
        return live is not None and live.source is not None

    def live_ids(self) -> list[uuid.UUID]:
        return list(self._lives)

    # Sources -------------------------------------------------------------------
    async def open_source(self, webinar_id: uuid.UUID) -> MediaSink | str:
        """A sink for a new source, or the reason it is refused. The caller has
        already checked who may publish (stream key, room type, webinar state)."""
        if webinar_id in self._ending:
            return "the live of this webinar is ending"
        live = self._lives.get(webinar_id)
        if live is not None:
            if live.source is not None:
                return "another publisher is already live for this webinar"
            if live.grace_task is not None:
                live.grace_task.cancel()
                live.grace_task = None
            session = SourceSession(self, webinar_id, live.publication, live.transcoder)
            live.source = session
            log.info("webinar %s: publisher back, live continues", webinar_id)
            await self._say(webinar_id, {"type": "live.resumed"})
            return session
        publication = Publication(webinar_id, self.store, self.options)
        live = _Live(publication, self._clock())
        session = SourceSession(self, webinar_id, publication)
        live.source = session
        self._lives[webinar_id] = live  # before any await: a second publisher is refused meanwhile
        if await self._wants_low_rendition(webinar_id):
            live.low = Publication(webinar_id, self.store, self.options, rendition=LOW_RENDITION,
                                   wall_clock=lambda: publication.started_at or time.time())
            live.transcoder = session.transcoder = Transcoder(live.low, self.transcode_options,
                                                              name=f"webinar {webinar_id} {LOW_RENDITION}")
        try:
            await self._set_state(webinar_id, "live")
        except Exception as exc:
            del self._lives[webinar_id]
            if live.transcoder is not None:
                await live.transcoder.wait_closed(0)
            log.warning("webinar %s: cannot go live: %s", webinar_id, exc)
            return f"the webinar cannot go live: {exc}"
        live.timer_task = self._spawn(self._limit_timer(webinar_id, live))
        live.health_task = self._spawn(self._health(webinar_id, live))
        log.info("webinar %s: live started%s", webinar_id, f" with a {LOW_RENDITION} rendition" if live.low else "")
        await self._say(webinar_id, {"type": "live.started"})
        return session

    async def _wants_low_rendition(self, webinar_id: uuid.UUID) -> bool:
        if self._low_rendition is None:
            return False
        try:
            return await self._low_rendition(webinar_id)
        except Exception as exc:  # passthrough by default: the live itself must start
            log.warning("webinar %s: cannot read the rendition switch (%s); passthrough only", webinar_id, exc)
            return False

    def _source_gone(self, session: SourceSession, clean: bool = False) -> None:
        live = self._lives.get(session.webinar_id)
        if live is None or live.source is not session:
            return
        live.source = None
        if session.closed:
            return  # the live itself ended
        if clean:
            log.info("webinar %s: the publisher ended the stream; ending the live now", session.webinar_id)
            self._start_end(session.webinar_id, "the publisher ended the stream")
            return
        live.drops += 1
        live.publication.source_lost()
        if live.transcoder is not None:
            live.transcoder.source_lost()
        log.info("webinar %s: publisher dropped; waiting %.0f s for it to come back", session.webinar_id, self.grace_s)
        live.grace_task = self._spawn(self._grace(session.webinar_id))
        self._spawn(self._say(session.webinar_id, {"type": "live.interrupted", "grace_s": self.grace_s}))

    async def _grace(self, webinar_id: uuid.UUID) -> None:
        await asyncio.sleep(self.grace_s)
        live = self._lives.get(webinar_id)
        if live is not None and live.source is None:
            live.grace_task = None
            await self.end_live(webinar_id, "the publisher did not come back")

    async def _limit_timer(self, webinar_id: uuid.UUID, live: _Live) -> None:
        for before in self.warn_before_s:
            delay = live.started + self.max_live_s - before - self._clock()
            if delay > 0:
                await asyncio.sleep(delay)
                log.warning("webinar %s: the live will be cut in %.0f s (4-hour limit)", webinar_id, before)
                await self._say(webinar_id, {"type": "live.limit_warning", "seconds_left": before})
        await asyncio.sleep(max(0.0, live.started + self.max_live_s - self._clock()))
        live.timer_task = None
        await self.end_live(webinar_id, "the 4-hour limit was reached")

    async def _health(self, webinar_id: uuid.UUID, live: _Live) -> None:
        last_bytes = 0
        while True:
            await asyncio.sleep(HEALTH_EVERY_S)
            pub = live.publication
            health: dict[str, Any] = {
                "type": "live.health",
                "on_air": live.source is not None,
                "input_kbps": round((pub.bytes_in - last_bytes) * 8 / HEALTH_EVERY_S / 1000),
                "segments": pub.playlist.segment_count,
                "drops": live.drops,
                "long_parts": pub.clamped_parts,
                "codecs": pub.codecs,
                "live_seconds": round(self._clock() - live.started),
            }
            if live.transcoder is not None:
                health["low_rendition"] = {**live.transcoder.stats.as_dict(), "failed": live.transcoder.failed}
            await self._say(webinar_id, health)
            last_bytes = pub.bytes_in

    # End -------------------------------------------------------------------------
    async def end_live(self, webinar_id: uuid.UUID, reason: str) -> None:
        live = self._lives.pop(webinar_id, None)
        if live is None:
            return
        self._ending[webinar_id] = live
        await self._finish(webinar_id, live, reason)

    def _start_end(self, webinar_id: uuid.UUID, reason: str) -> None:
        """End a live from synchronous code: it leaves the running lives now (a new
        publisher meanwhile starts nothing: the webinar is being ended), the
        rest runs in a background task."""
        live = self._lives.pop(webinar_id, None)
        if live is None:
            return
        self._ending[webinar_id] = live
        self._spawn(self._finish(webinar_id, live, reason))

    async def _finish(self, webinar_id: uuid.UUID, live: _Live, reason: str) -> None:
        try:
            await self._end(webinar_id, live, reason)
        finally:
            self._ending.pop(webinar_id, None)
            self._linger(webinar_id, live)

    def _linger(self, webinar_id: uuid.UUID, live: _Live) -> None:
        """Keep an ended live's parts served for a few target durations."""
        self._lingering[webinar_id] = live
        linger_s = PART_LINGER_TARGETS * live.publication.playlist.target_duration

        def forget() -> None:
            if self._lingering.get(webinar_id) is live:
                del self._lingering[webinar_id]

        asyncio.get_running_loop().call_later(linger_s, forget)

    async def _end(self, webinar_id: uuid.UUID, live: _Live, reason: str) -> None:
        current = asyncio.current_task()
        for task in (live.grace_task, live.timer_task, live.health_task):
            if task is not None and task is not current:
                task.cancel()
        if live.source is not None:
            live.source.closed = True
            live.source = None
        live.publication.on_end()
        if live.transcoder is not None:
            await live.transcoder.wait_closed(TRANSCODER_CLOSE_S)
            self._write_master(webinar_id, live)
        log.info("webinar %s: live ended: %s", webinar_id, reason)
        for state in ("ended", "replay"):
            try:
                await self._set_state(webinar_id, state)
            except Exception as exc:  # the state may have been moved by hand meanwhile
                log.warning("webinar %s: could not set state %s: %s", webinar_id, state, exc)
        await self._say(webinar_id, {"type": "live.ended", "reason": reason})
        if self._after_end is not None:
            self._spawn(self._after_end(live.publication))

    async def close(self) -> None:
        """Shutdown: end every live (their replays stay), wait for background work."""
        for webinar_id in list(self._lives):
            await self.end_live(webinar_id, "the server is shutting down")
        if self._background:
            await asyncio.wait(self._background, timeout=60)

    def _write_master(self, webinar_id: uuid.UUID, live: _Live) -> None:
        """The replay's multivariant playlist: the source VOD, and the 480p one when it
        is whole (the transcoder neither failed nor was cut)."""
        renditions: list[tuple[Publication, str, float | None]] = []
        transcoder = live.transcoder
        rate = transcoder.frame_rate if transcoder is not None else None
        if live.publication.playlist.segment_count:
            renditions.append((live.publication, MEDIA_PLAYLIST, rate))
            if (live.low is not None and live.low.playlist.segment_count and transcoder is not None
                    and not transcoder.failed and not transcoder.cut):
                renditions.append((live.low, f"{LOW_RENDITION}/{MEDIA_PLAYLIST}", rate))
        try:
            text = render_master(renditions)
        except ValueError as exc:
            log.warning("webinar %s: no multivariant playlist for the replay: %s", webinar_id, exc)
            return
        if text is not None:
            self.store.write(f"{hls_prefix(webinar_id)}/{MASTER_PLAYLIST}", text.encode())

    # Helpers -----------------------------------------------------------------------
    async def _say(self, webinar_id: uuid.UUID, event: dict[str, Any]) -> None:
        if self._announce is None:
            return
        try:
            await self._announce(webinar_id, event)
        except Exception as exc:
            log.warning("webinar %s: could not announce %s: %s", webinar_id, event.get("type"), exc)

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(_log_failure)
        return task


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("live background task failed", exc_info=task.exception())


def encode_event(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()
