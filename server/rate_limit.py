"""A per-key request limit in memory: at most ``limit`` hits per fixed window of ``window_s`` seconds.

Per process: with several workers each counts on its own (a client gets at
most ``limit`` x workers). Memory is bounded: past :data:`MAX_KEYS` keys,
expired windows are dropped, then the oldest keys. Not thread-safe (one
asyncio loop; :meth:`WindowLimiter.hit` does not await).
"""

from __future__ import annotations

import time
from collections.abc import Callable

MAX_KEYS = 100_000
"""Keys (client addresses) tracked at most at once."""


class WindowLimiter:
    def __init__(self, limit: int, window_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError("limit must be >= 1 and window_s > 0")
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._windows: dict[str, tuple[float, int]] = {}
        """key -> (window start, hits in it), in insertion order (oldest first)."""

    def hit(self, key: str) -> float:
        """Count one hit; 0.0 when allowed, else the seconds until the key may try again."""
        now = self._clock()
        start, count = self._windows.get(key, (now, 0))
        if now - start >= self.window_s:
            start, count = now, 0
        if count >= self.limit:
            return max(0.0, start + self.window_s - now)
        if key not in self._windows and len(self._windows) >= MAX_KEYS:
            self._evict(now)
        self._windows[key] = (start, count + 1)
        return 0.0

    def _evict(self, now: float) -> None:
        for key in [k for k, (s, _) in self._windows.items() if now - s >= self.window_s]:
            del self._windows[key]
        while len(self._windows) >= MAX_KEYS:
            del self._windows[next(iter(self._windows))]
