"""server.uvicorn_server.Server: a 1 s housekeeping tick, and a signal still ends it at once."""

from __future__ import annotations

import asyncio
import signal
import threading
import time

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from server import uvicorn_server
from tests.support.net import free_port

pytestmark = pytest.mark.timeout(60)


async def _hello(request: object) -> PlainTextResponse:
    return PlainTextResponse("hi")


def test_signal_ends_the_server_without_waiting_for_a_tick(monkeypatch: pytest.MonkeyPatch) -> None:
    # With a tick far longer than the test's bound, only the signal's wake-up can end it in time.
    monkeypatch.setattr(uvicorn_server, "TICK_S", 120.0)
    port = free_port()
    server = uvicorn_server.Server(uvicorn.Config(Starlette(routes=[Route("/", _hello)]), host="127.0.0.1",
                                                  port=port, log_config=None, lifespan="off"))
    # not the main thread: uvicorn installs no signal handlers there, we call handle_exit ourselves
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    assert server.started
    response = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
    assert response.text == "hi" and response.headers["date"].endswith("GMT")
    server.handle_exit(signal.SIGTERM, None)
    thread.join(timeout=30)
    assert not thread.is_alive(), "the server waited for its 120 s tick instead of the signal"
