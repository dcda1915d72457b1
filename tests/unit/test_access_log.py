"""The /hls/ access-log lines are summed into one line per interval (unit: no server)."""

from __future__ import annotations

import logging

from server.access_log import AggregateMediaAccessLog, install_media_access_log


def access_record(path: str, status: int) -> logging.LogRecord:
    """A record shaped as uvicorn's access logger makes it."""
    return logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                             ("127.0.0.1:5000", "GET", path, "1.1", status), None)


def test_media_lines_are_summed_other_lines_pass() -> None:
    now = [0.0]
    log_filter = AggregateMediaAccessLog(every_s=60.0, clock=lambda: now[0])
    assert log_filter.filter(access_record("/login", 200)), "pages keep their line"
    assert log_filter.filter(access_record("/hls/x/index.m3u8", 500)), "server errors keep their line"
    passed = [log_filter.filter(access_record(f"/hls/x/seg1.{i}.m4s", 200)) for i in range(5)]
    passed.append(log_filter.filter(access_record("/hls/x/seg9.0.m4s", 404)))
    passed.append(log_filter.filter(access_record("/hls/x/index.m3u8?_HLS_msn=3", 503)))
    assert passed == [False] * 7
    now[0] = 61.0
    summary = access_record("/hls/x/index.m3u8", 200)
    assert log_filter.filter(summary) is True
    assert summary.getMessage() == "media requests: 8 in 61 s (200: 6, 404: 1, 503: 1)"
    assert summary.media_requests == 8 and summary.media_statuses == "200:6,404:1,503:1"  # type: ignore[attr-defined]
    assert log_filter.filter(access_record("/hls/x/index.m3u8", 200)) is False, "counting starts again"


def test_installed_once() -> None:
    first, second = install_media_access_log(), install_media_access_log()
    assert first is second
    assert sum(isinstance(f, AggregateMediaAccessLog) for f in logging.getLogger("uvicorn.access").filters) == 1
