"""Blocking playlist reload: park playlist requests until what they ask for exists.

A thin asyncio layer over :meth:`player.playlist.MediaPlaylist.has`
(RFC 8216bis §6.2.5.2). The packager calls :meth:`PlaylistWaiter.notify`
after each change to the playlist (a part added, a segment finished, the
end); the HTTP layer awaits :meth:`PlaylistWaiter.wait_for` for a request
carrying ``_HLS_msn`` (and maybe ``_HLS_part``), then renders the playlist.

Limits
    At most ``max_waiters`` requests wait at once per waiter (one per media
    playlist; :data:`DEFAULT_MAX_WAITERS` unless told). One more raises
    :class:`TooManyWaiters`, which the HTTP layer answers with 503. A request
    that is already satisfied never waits and takes no slot.

How the HTTP layer uses it, for one media playlist request::

    directives = parse_delivery_directives(query)        # PlaylistRequestError -> 400
    if directives.blocking:
        playlist.validate_request(directives.msn, directives.part)   # -> 400
        timeout = 3 * playlist.target_duration          # the spec's bound
        if not await waiter.wait_for(directives.msn, directives.part, timeout):
            ...                                           # -> 503 (TooManyWaiters too)
    body = playlist.render(skip=directives.skip)

Waiters are grouped by what they wait for, so a notify costs one
``has()`` call per distinct ``(msn, part)`` waited on, not one per viewer,
and wakes a group in one pass (one ``set_result`` per waiting request).

Timeouts use no timer per request: deadlines are rounded *up* to the next
multiple of :data:`TIMEOUT_TICK_S` on the loop clock and requests sharing a
tick share one timer, so a thousand viewers waiting for the same part cost a
handful of timers, not a thousand. A request may therefore wait up to
:data:`TIMEOUT_TICK_S` longer than its timeout before it is answered False.
Must be used from one event loop; ``notify`` is a plain (non-async) call.
"""

from __future__ import annotations

import asyncio
import math
from typing import Protocol

__all__ = ["DEFAULT_MAX_WAITERS", "TIMEOUT_TICK_S", "PlaylistWaiter", "SupportsHas", "TooManyWaiters"]

DEFAULT_MAX_WAITERS = 10_000
"""Default bound on requests waiting on one media playlist."""

TIMEOUT_TICK_S = 0.05
"""Granularity of wait timeouts (seconds): one timer per tick, shared by every
request whose deadline falls in it."""


class TooManyWaiters(RuntimeError):
    """The waiter bound is reached; answer 503 Service Unavailable."""


class SupportsHas(Protocol):
    """What the waiter needs of a playlist (:class:`~player.playlist.MediaPlaylist` fits)."""

    def has(self, msn: int, part: int | None = None) -> bool: ...


_Key = tuple[int, int | None, bool]  # (msn, part, first)


class PlaylistWaiter:
    """Wakes blocked playlist requests when the playlist changes.

    ``max_waiters`` (> 0) bounds the requests waiting at once.
    """

    def __init__(self, playlist: SupportsHas, max_waiters: int = DEFAULT_MAX_WAITERS) -> None:
        if isinstance(max_waiters, bool) or not isinstance(max_waiters, int) or max_waiters <= 0:
            raise ValueError(f"max_waiters must be a positive integer, got {max_waiters!r}")
        self._playlist = playlist
        self._max_waiters = max_waiters
        # Insertion-ordered sets (dict keys): O(1) removal when a request leaves.
        self._waiting: dict[_Key, dict[asyncio.Future[None], None]] = {}
        self._expiring: dict[int, dict[asyncio.Future[None], None]] = {}  # tick -> requests due then
        self._timers: dict[int, asyncio.TimerHandle] = {}  # tick -> its one timer
        self._count = 0
        self._closed = False

    @property
    def waiting(self) -> int:
        """Number of requests waiting now."""
        return self._count

    @property
    def max_waiters(self) -> int:
        """The bound on waiting requests."""
        return self._max_waiters

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    def notify(self) -> None:
        """Wake the requests the playlist can now answer. Call after each change."""
        keys = [k for k in self._waiting if self._playlist.has(k[0], k[1])]
        keys.sort(key=lambda k: not k[2])  # requests that asked to go first are woken first
        for key in keys:
            for future in self._waiting.pop(key):
                if not future.done():
                    future.set_result(None)

    @property
    def timers(self) -> int:
        """Timers armed now for the waiting requests' deadlines (one per tick)."""
        return len(self._timers)

    def _expire(self, tick: int) -> None:
        """A tick's deadline passed: answer the requests still waiting on it."""
        self._timers.pop(tick, None)
        for future in self._expiring.pop(tick, {}):
            if not future.done():
                future.set_result(None)

    def close(self) -> None:
        """Wake every waiting request (the live is gone); later waits do not block.

        The woken requests answer False unless the playlist has what they
        asked for.
        """
        self._closed = True
        waiting, self._waiting = self._waiting, {}
        for futures in waiting.values():
            for future in futures:
                if not future.done():
                    future.set_result(None)

    async def wait_for(self, msn: int, part: int | None, timeout: float, *, first: bool = False) -> bool:
        """Wait until the playlist has segment ``msn`` (part ``part``) or later.

        ``first=True`` puts the request ahead of the others in the wake-up
        order of a notify (the origin uses it for part requests: media bytes
        are what a late viewer misses; its playlist reload may follow).

        Returns True as soon as it does (at once if it already does), False
        when ``timeout`` seconds (finite, >= 0; rounded up to the next
        :data:`TIMEOUT_TICK_S` tick of the loop clock) pass first or the
        waiter is closed. Raises :class:`TooManyWaiters` when the bound is reached,
        ``ValueError`` for a bad timeout, and whatever the playlist's
        ``has()`` raises for bad numbers. Cancelling the caller removes its
        entry: nothing is left behind.
        """
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not math.isfinite(timeout):
            raise ValueError(f"timeout must be a finite number of seconds, got {timeout!r}")
        if timeout < 0:
            raise ValueError(f"timeout must not be negative, got {timeout!r}")
        if self._playlist.has(msn, part):
            return True
        if self._closed or timeout == 0:
            return False
        if self._count >= self._max_waiters:
            raise TooManyWaiters(f"{self._count} playlist requests are already waiting")

        key: _Key = (msn, part, first)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        group = self._waiting.get(key)
        if group is None:
            group = self._waiting[key] = {}
        group[future] = None
        tick = math.ceil((loop.time() + timeout) / TIMEOUT_TICK_S)
        expiring = self._expiring.get(tick)
        if expiring is None:
            expiring = self._expiring[tick] = {}
            self._timers[tick] = loop.call_at(tick * TIMEOUT_TICK_S, self._expire, tick)
        expiring[future] = None
        self._count += 1
        try:
            await future
        finally:
            self._count -= 1
            group = self._waiting.get(key)
            if group is not None:
                group.pop(future, None)
                if not group:
                    del self._waiting[key]
            expiring = self._expiring.get(tick)
            if expiring is not None:
                expiring.pop(future, None)
                if not expiring:  # the last request of its tick: its timer goes too
                    del self._expiring[tick]
                    timer = self._timers.pop(tick, None)
                    if timer is not None:
                        timer.cancel()
            if not future.done():
                future.cancel()
        # Ask again rather than trust the wake-up: a notify racing the
        # timeout is not lost, and a close answers with the truth.
        return self._playlist.has(msn, part)
