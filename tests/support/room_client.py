"""A room WebSocket client for tests (the real ``websockets`` library over loopback)."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Callable

import websockets


class RoomClient:
    def __init__(self, url: str, *, token: str | None = None, cookie: str | None = None, origin: str | None = None) -> None:
        self.url = url + (f"?token={token}" if token else "")
        self.headers: dict[str, str] = {}
        if cookie:
            self.headers["Cookie"] = cookie
        self.origin = origin
        self.ws: Any = None
        self.welcome: dict[str, Any] | None = None
        self.events: list[dict[str, Any]] = []
        self.replies: dict[int, dict[str, Any]] = {}
        self.errors: list[dict[str, Any]] = []
        self.notices: list[dict[str, Any]] = []
        self.frames = 0
        self._ref = 0
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()
        self.closed_code: int | None = None

    @property
    def last_event_id(self) -> int:
        if self.events:
            return int(self.events[-1]["id"])
        return int(self.welcome["last_event_id"]) if self.welcome else 0

    async def connect(self, last_event_id: int = 0) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"additional_headers": self.headers, "max_size": 2**22, "open_timeout": 10}
        if self.origin:
            kwargs["origin"] = self.origin
        self.ws = await websockets.connect(self.url, **kwargs)
        await self.ws.send(json.dumps({"type": "hello", "v": 1, "last_event_id": last_event_id}))
        self._reader = asyncio.create_task(self._read())
        await self.wait(lambda: self.welcome is not None or self.closed_code is not None, 10)
        assert self.welcome is not None, f"no welcome (closed {self.closed_code})"
        return self.welcome

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                message = json.loads(raw)
                self.frames += 1
                async with self._changed:
                    kind = message["type"]
                    if kind == "welcome":
                        self.welcome = message
                    elif kind == "events":
                        self.events.extend(message["events"])
                    elif kind == "notice":
                        self.notices.append(message)
                    elif kind in ("ack", "error"):
                        if message.get("ref") is not None:
                            self.replies[message["ref"]] = message
                        if kind == "error":
                            self.errors.append(message)
                    self._changed.notify_all()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed_code = self.ws.close_code if self.ws.close_code is not None else -1
            async with self._changed:
                self._changed.notify_all()

    async def wait(self, predicate: Callable[[], bool], timeout: float = 5) -> None:
        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(predicate)

    async def send(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Send a message and wait for its ack or error."""
        self._ref += 1
        ref = self._ref
        await self.ws.send(json.dumps({"type": kind, "ref": ref, **fields}))
        await self.wait(lambda: ref in self.replies or self.closed_code is not None, 10)
        return self.replies.get(ref, {"type": "closed"})

    async def send_raw(self, data: str | bytes) -> None:
        await self.ws.send(data)

    async def event(self, kind: str, predicate: Callable[[dict[str, Any]], bool] = lambda e: True,
                    timeout: float = 5) -> dict[str, Any]:
        found: list[dict[str, Any]] = []

        def check() -> bool:
            found[:] = [e for e in self.events if e["kind"] == kind and predicate(e)]
            return bool(found)

        await self.wait(check, timeout)
        return found[0]

    def kinds(self) -> list[str]:
        return [e["kind"] for e in self.events]

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            try:
                await asyncio.wait_for(self._reader, 5)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                pass
