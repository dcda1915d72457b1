"""Access-log lines of the media path, aggregated instead of one per request.

uvicorn writes one access-log line per request (logger ``uvicorn.access``,
formatted as JSON by :mod:`server.logs`). LL-HLS viewers send about seven
requests a second each, so a thousand viewers would write 7,000 lines a
second for nothing anyone reads. :class:`AggregateMediaAccessLog`, a filter
on that logger, drops the lines of paths under :data:`MEDIA_PREFIX` and
turns one of them, every :data:`SUMMARY_EVERY_S` seconds, into a summary::

    {"logger": "uvicorn.access", "msg": "media requests: 41234 in 60 s (200: 41200, 404: 34)",
     "media_requests": 41234, "media_statuses": "200:41200,404:34", ...}

Server errors (5xx other than 503, which the origin answers on purpose:
"not yet available", "too many waiting requests") keep their own line. The
summary is written when a media request arrives after the interval: a
quiet server writes none, and the last interval before it fell quiet is
reported with the next request.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

__all__ = ["MEDIA_PREFIX", "SUMMARY_EVERY_S", "AggregateMediaAccessLog", "install_media_access_log"]

MEDIA_PREFIX = "/hls/"
"""Request paths whose access-log lines are aggregated."""
SUMMARY_EVERY_S = 60.0
"""Seconds between two summary lines (at most one per interval)."""
ACCESS_LOGGER = "uvicorn.access"


class AggregateMediaAccessLog(logging.Filter):
    """Drops uvicorn's per-request lines for :data:`MEDIA_PREFIX`, counts them by
    status, and rewrites one line per ``every_s`` seconds into their summary.

    uvicorn logs ``'%s - "%s %s HTTP/%s" %d'`` with ``(client, method, path with
    query, http version, status)``; records of any other shape pass unchanged.
    """

    def __init__(self, prefix: str = MEDIA_PREFIX, every_s: float = SUMMARY_EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.prefix = prefix
        self.every_s = every_s
        self._clock = clock
        self._since = clock()
        self._counts: Counter[int] = Counter()

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if not isinstance(args, tuple) or len(args) != 5:
            return True
        path, status = args[2], args[4]
        if not isinstance(path, str) or not path.startswith(self.prefix) or not isinstance(status, int):
            return True
        if status >= 500 and status != 503:
            return True
        self._counts[status] += 1
        now = self._clock()
        elapsed = now - self._since
        if elapsed < self.every_s:
            return False
        counts, self._counts, self._since = self._counts, Counter(), now
        statuses = sorted(counts.items())
        total = sum(counts.values())
        record.msg = "media requests: %d in %.0f s (%s)"
        record.args = (total, elapsed, ", ".join(f"{code}: {n}" for code, n in statuses))
        record.media_requests = total
        record.media_statuses = ",".join(f"{code}:{n}" for code, n in statuses)
        return True


def install_media_access_log() -> AggregateMediaAccessLog:
    """Put the filter on uvicorn's access logger once per process (idempotent)."""
    logger = logging.getLogger(ACCESS_LOGGER)
    for existing in logger.filters:
        if isinstance(existing, AggregateMediaAccessLog):
            return existing
    installed = AggregateMediaAccessLog()
    logger.addFilter(installed)
    return installed
