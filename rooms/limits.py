"""Per-participant rate limits (token buckets) and per-connection abuse counting.

Limits are per node (a participant's connection lives on one node). Rates are
events per second; ``burst`` is how many may come at once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    rate: float
    burst: float
    tokens: float = -1.0
    stamp: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = self.burst

    def take(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


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


class Limiter:
    """The buckets of one connection."""

    def __init__(self) -> None:
        self._buckets = {name: TokenBucket(rate, burst) for name, (rate, burst) in LIMITS.items()}
        self._errors: list[float] = []

    def allow(self, category: str) -> bool:
        return self._buckets[category].take()

    def note_error(self, now: float | None = None) -> bool:
        """Count a refused message; True when the connection should now be closed."""
        now = time.monotonic() if now is None else now
        self._errors = [t for t in self._errors if now - t < ABUSE_WINDOW_S]
        self._errors.append(now)
        return len(self._errors) >= ABUSE_ERRORS
