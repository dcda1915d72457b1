"""Structured logs: one JSON object per line on stderr (``WEBINAR_LOG_JSON=0`` for plain text).

Fields: ``ts`` (ISO 8601 UTC), ``level``, ``logger``, ``msg``, and any
``extra={...}`` values given at the call site; exceptions under ``exc``.
uvicorn's own loggers go through the same formatter.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys
from typing import Any

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "color_message"}


_SECRET_PARAM = re.compile(r"((?:^|[?&;])(?:token|key)=)[^&\s\"']+")


class RedactSecrets(logging.Filter):
    """Masks ``token=`` and ``key=`` query values (join tokens, sponsor keys) in every
    log line: uvicorn logs WebSocket and request paths with their query string."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _SECRET_PARAM.sub(r"\1***", message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str = "INFO", json_lines: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if json_lines else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
