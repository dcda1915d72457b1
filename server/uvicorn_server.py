"""uvicorn's server with a once-a-second housekeeping tick instead of ten.

``uvicorn.Server.main_loop`` wakes the event loop every 0.1 s to refresh the
``Date`` header (once a second) and to notice that a signal asked it to exit.
Those ten wakeups per second were most of an idle server's CPU (about 1.5 ms
per second on our 2-core test machine). :class:`Server` ticks once a second,
which is all the ``Date`` header needs (its resolution is one second), and
wakes at once when a signal arrives, so shutdown starts as promptly as before.
Everything else is uvicorn's own code.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import FrameType

import uvicorn

TICK_S = 1.0
"""Seconds between housekeeping ticks (``Date`` header refresh, request limit check)."""

_UVICORN_TICKS_PER_TICK = 10
"""uvicorn's ``on_tick`` counts 0.1 s ticks and refreshes the header when the count is a
multiple of 10: each of our ticks stands for ten of its."""


class Server(uvicorn.Server):
    """A :class:`uvicorn.Server` whose main loop sleeps between 1 s ticks or until a signal."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def main_loop(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), TICK_S)
            counter = (counter + _UVICORN_TICKS_PER_TICK) % 864000
            should_exit = await self.on_tick(counter)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(wake.set)
