"""Per-participant rate limits (token buckets) and per-connection abuse counting.

Limits are per node (a participant's connection lives on one node). Rates are
events per second; ``burst`` is how many may come at once. Times are seconds on
the event loop's monotonic clock (``loop.time()``); the room WebSocket passes
the time each frame was *read from the socket* (see :mod:`server.ws_protocol`),
so a client that keeps to its rate is never refused because the server was
slow to process its frames.
"""

from __future__ import annotations

import time

LIMITS: dict[str, tuple[float, float]] = {
    "frames": (20.0, 60.0),   # any message, per connection
    "chat": (1.0, 5.0),       # one message a second, five at once
    "qa": (0.2, 3.0),         # a question every five seconds
    "vote": (2.0, 10.0),      # poll votes and question upvotes
    "cta": (5.0, 20.0),       # impressions and clicks
    "rating": (0.2, 3.0),
    "help": (0.2, 3.0),
    "moderation": (20.0, 60.0),
}
ABUSE_ERRORS = 20
"""Refused messages within :data:`ABUSE_WINDOW_S` after which the connection is closed (code 1008)."""
ABUSE_WINDOW_S = 10.0


class TokenBucket:
    """``rate`` tokens per second, at most ``burst``; starts full."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, stamp: float | None = None) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = time.monotonic() if stamp is None else stamp

    def take(self, now: float | None = None) -> bool:
        """One token at time ``now`` (default: now); an earlier ``now`` than the last adds nothing."""
        now = time.monotonic() if now is None else now
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class Limiter:
    """The buckets of one connection (made on first use: most viewers only send heartbeats)."""

    __slots__ = ("_buckets", "_errors")

    def __init__(self) -> None:
        self._buckets: dict[str, TokenBucket] = {}
        self._errors: list[float] = []

    def allow(self, category: str, now: float | None = None) -> bool:
        """Whether a message of ``category`` that arrived at ``now`` is within the limits."""
        now = time.monotonic() if now is None else now
        bucket = self._buckets.get(category)
        if bucket is None:
            rate, burst = LIMITS[category]
            bucket = self._buckets[category] = TokenBucket(rate, burst, stamp=now)
        return bucket.take(now)

    def note_error(self, now: float | None = None) -> bool:
        """Count a refused message; True when the connection should now be closed."""
        now = time.monotonic() if now is None else now
        self._errors = [t for t in self._errors if now - t < ABUSE_WINDOW_S]
        self._errors.append(now)
        return len(self._errors) >= ABUSE_ERRORS
