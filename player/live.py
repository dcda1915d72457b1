"""The life cycle of lives: start, publisher drop and reconnect, 4-hour cut, end, replay.

Sources (an RTMP/SRT publisher, the webcam compositor) ask :class:`LiveManager`
for a sink with :meth:`LiveManager.open_source`. Rules:

- **Start**: the live starts when the first publisher of an announced webinar
  connects (no separate "go live" button: the encoder going on air *is* the
  start; the moderator panel can end it). The webinar moves to ``live``.
- **One publisher**: a second source while one is on air is refused.
- **Drop and reconnect**: when the source goes away, the live waits
  ``grace_s`` seconds (default :data:`GRACE_S`). A source that comes back in
  time continues the same publication after an ``EXT-X-DISCONTINUITY``
  (viewers see "back in a moment"); after the grace window the live ends.
- **4-hour limit** (R-ROOM-2): warnings at :data:`WARN_BEFORE_S` before the
  cut (logged and published on the broker channel ``live:<webinar id>``); at
  ``max_live_s`` the live ends and the source is cut (its next unit raises
  :class:`SourceClosed`, which the listeners answer by closing it).
- **End**: the playlist gets EXT-X-ENDLIST, the VOD playlist is written (the
  replay is available at once, R-REP-1), the webinar goes ``ended`` then
  ``replay``, and the single MP4 is remuxed in the background.
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
from player.publication import PackagingOptions, Publication
from player.storage import MediaStore

log = logging.getLogger("player.live")

HEALTH_EVERY_S = 5.0
"""Stream health (input bitrate, segments, publisher drops) is announced this often."""
GRACE_S = 30.0
MAX_LIVE_S = 4 * 3600.0
WARN_BEFORE_S = (15 * 60.0, 5 * 60.0, 60.0)


class SourceClosed(Exception):
    """Raised into a source whose live was ended (4-hour cut, moderator, shutdown)."""


StateChange = Callable[[uuid.UUID, str], Awaitable[None]]
"""``(webinar_id, new_state)``: persist a webinar state change (``live``, ``ended``, ``replay``)."""
Announce = Callable[[uuid.UUID, dict[str, Any]], Awaitable[None]]
"""``(webinar_id, event)``: tell the room (broker) about the live: warnings, drop, resume, end."""
AfterEnd = Callable[[Publication], Awaitable[None]]


@dataclass
class _Live:
    publication: Publication
    started: float
    source: "SourceSession | None" = None
    grace_task: asyncio.Task[None] | None = None
    timer_task: asyncio.Task[None] | None = None
    health_task: asyncio.Task[None] | None = None
    drops: int = 0
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)


class SourceSession:
    """The sink a source writes into: forwards to the publication until the source
    goes away (``on_end``: a drop, not the end of the live) or the live is cut."""

    def __init__(self, manager: "LiveManager", webinar_id: uuid.UUID, publication: Publication) -> None:
        self._manager = manager
        self.webinar_id = webinar_id
        self._publication = publication
        self.closed = False
        self.ended = False

    def on_config(self, config: TrackConfig) -> None:
        if self.closed:
            raise SourceClosed("the live has ended")
        self._publication.on_config(config)

    def on_access_unit(self, unit: AccessUnit) -> None:
        if self.closed:
            raise SourceClosed("the live has ended")
        self._publication.on_access_unit(unit)

    def on_end(self) -> None:
        if self.ended:
            return
        self.ended = True
        self._manager._source_gone(self)


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
    ) -> None:
        self.store = store
        self.options = options
        self.grace_s = grace_s
        self.max_live_s = max_live_s
        self.warn_before_s = tuple(sorted(warn_before_s, reverse=True))
        self._set_state = set_state
        self._announce = announce
        self._after_end = after_end
        self._clock = clock
        self._lives: dict[uuid.UUID, _Live] = {}
        self._background: set[asyncio.Task[Any]] = set()

    # Queries -------------------------------------------------------------------
    def publication(self, webinar_id: uuid.UUID) -> Publication | None:
        live = self._lives.get(webinar_id)
        return live.publication if live else None

    def is_on_air(self, webinar_id: uuid.UUID) -> bool:
        live = self._lives.get(webinar_id)
        return live is not None and live.source is not None

    def live_ids(self) -> list[uuid.UUID]:
        return list(self._lives)

    # Sources -------------------------------------------------------------------
    async def open_source(self, webinar_id: uuid.UUID) -> MediaSink | str:
        """A sink for a new source, or the reason it is refused. The caller has
        already checked who may publish (stream key, room type, webinar state)."""
        live = self._lives.get(webinar_id)
        if live is not None:
            if live.source is not None:
                return "another publisher is already live for this webinar"
            if live.grace_task is not None:
                live.grace_task.cancel()
                live.grace_task = None
            session = SourceSession(self, webinar_id, live.publication)
            live.source = session
            log.info("webinar %s: publisher back, live continues", webinar_id)
            await self._say(webinar_id, {"type": "live.resumed"})
            return session
        publication = Publication(webinar_id, self.store, self.options)
        live = _Live(publication, self._clock())
        session = SourceSession(self, webinar_id, publication)
        live.source = session
        self._lives[webinar_id] = live
        try:
            await self._set_state(webinar_id, "live")
        except Exception as exc:
            del self._lives[webinar_id]
            log.warning("webinar %s: cannot go live: %s", webinar_id, exc)
            return f"the webinar cannot go live: {exc}"
        live.timer_task = self._spawn(self._limit_timer(webinar_id, live))
        live.health_task = self._spawn(self._health(webinar_id, live))
        log.info("webinar %s: live started", webinar_id)
        await self._say(webinar_id, {"type": "live.started"})
        return session

    def _source_gone(self, session: SourceSession) -> None:
        live = self._lives.get(session.webinar_id)
        if live is None or live.source is not session:
            return
        live.source = None
        if session.closed:
            return  # the live itself ended
        live.drops += 1
        live.publication.source_lost()
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
            await self._say(webinar_id, {
                "type": "live.health",
                "on_air": live.source is not None,
                "input_kbps": round((pub.bytes_in - last_bytes) * 8 / HEALTH_EVERY_S / 1000),
                "segments": len(pub.playlist.segments),
                "drops": live.drops,
                "long_parts": pub.clamped_parts,
                "codecs": pub.codecs,
                "live_seconds": round(self._clock() - live.started),
            })
            last_bytes = pub.bytes_in

    # End -------------------------------------------------------------------------
    async def end_live(self, webinar_id: uuid.UUID, reason: str) -> None:
        live = self._lives.pop(webinar_id, None)
        if live is None:
            return
        current = asyncio.current_task()
        for task in (live.grace_task, live.timer_task, live.health_task):
            if task is not None and task is not current:
                task.cancel()
        if live.source is not None:
            live.source.closed = True
            live.source = None
        live.publication.on_end()
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
