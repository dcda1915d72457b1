"""The attendance recorder of a test server (started by the app's lifespan).

``async with billing_on(live) as recorder:`` hands back the running app's own
recorder, so tests can flush it.
"""

from __future__ import annotations

import contextlib
from typing import Any, AsyncIterator

from billing.attendance import AttendanceRecorder, recorder_of


@contextlib.asynccontextmanager
async def billing_on(live: Any) -> AsyncIterator[AttendanceRecorder]:
    recorder = recorder_of(live.services)
    assert recorder is not None, "server/app.py starts the attendance recorder in its lifespan"
    yield recorder
