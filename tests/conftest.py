"""Shared fixtures: a real PostgreSQL for the session, a fresh database per test
module or test, and a real HTTP server (uvicorn on a free loopback port)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
import tempfile
from pathlib import Path
from typing import Any, AsyncIterator

import httpx
import pytest
import uvicorn

from server.app import create_app
from server.db import Database
from server.settings import Settings
from server.ws_protocol import uvicorn_options
from tests.support.browser import Chromium, launch_chromium
from tests.support.net import free_port, free_udp_port
from tests.support.postgres import PostgresForTests


@pytest.fixture(scope="session")
async def pg() -> AsyncIterator[PostgresForTests]:
    server = PostgresForTests()
    await server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def db(pg: PostgresForTests) -> AsyncIterator[Database]:
    """A fresh, migrated database for one test."""
    database = Database(await pg.new_database(), min_size=1, max_size=5)
    await database.connect()
    try:
        yield database
    finally:
        await database.close()


class LiveServer:
    """The real app served by uvicorn on 127.0.0.1, with an httpx client that keeps cookies."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = create_app(settings)
        self.server = uvicorn.Server(
            uvicorn.Config(self.app, host="127.0.0.1", port=settings.port, log_config=None, lifespan="on",
                           **uvicorn_options(settings))
        )
        self.task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}"

    @property
    def services(self) -> Any:
        return self.app.state.services

    async def start(self) -> None:
        self.task = asyncio.create_task(self.server.serve())
        async with asyncio.timeout(30):
            while not self.server.started:
                if self.task.done():
                    self.task.result()
                await asyncio.sleep(0.02)

    async def stop(self) -> None:
        self.server.should_exit = True
        if self.task:
            async with asyncio.timeout(30):
                await self.task

    def client(self) -> "Browser":
        return Browser(self.url)


class Browser(httpx.AsyncClient):
    """An httpx client that behaves like a browser for our forms: keeps cookies,
    and ``post_form`` adds the CSRF token the page gave it."""

    def __init__(self, base_url: str) -> None:
        super().__init__(base_url=base_url, follow_redirects=False, timeout=30, cookies={"wb_lang": "en"})

    @property
    def csrf(self) -> str:
        token = self.cookies.get("wb_csrf")
        assert token, "no CSRF cookie yet: GET a page first"
        return token

    async def post_form(self, url: str, data: dict[str, Any] | None = None, *, csrf: bool = True) -> httpx.Response:
        if "wb_csrf" not in self.cookies:
            await self.get("/login")
        body = dict(data or {})
        if csrf:
            body["csrf_token"] = self.csrf
        return await self.post(url, data=body)

    async def login(self, email: str, password: str) -> httpx.Response:
        await self.get("/login")
        response = await self.post_form("/login", {"email": email, "password": password})
        assert response.status_code == 303, f"login failed: {response.status_code} {response.text[:300]}"
        return response


@pytest.fixture
async def live(pg: PostgresForTests, request: pytest.FixtureRequest) -> AsyncIterator[LiveServer]:
    """A running server. ``@pytest.mark.settings(name=value, ...)`` on a test overrides settings."""
    marker = request.node.get_closest_marker("settings")
    overrides = dict(marker.kwargs) if marker else {}
    with tempfile.TemporaryDirectory(prefix="webinar-test-data-") as tmp:
        settings = Settings.from_env(
            {}, port=free_port(), rtmp_port=free_port(), srt_port=free_udp_port(), data_dir=Path(tmp),
            database_url=await pg.new_database(), secret_key="test-secret", login_max_failures=5, **overrides,
        )
        server = LiveServer(settings)
        await server.start()
        try:
            yield server
        finally:
            await server.stop()


@contextlib.asynccontextmanager
async def browser(live: LiveServer) -> AsyncIterator[Browser]:
    async with live.client() as client:
        yield client


@pytest.fixture(scope="module")
async def chromium_process(request: pytest.FixtureRequest) -> AsyncIterator[Chromium]:
    """One headless Debian Chromium per test module (browser tests). A module that sets
    ``CHROMIUM_FAKE_MEDIA = True`` gets a fake camera and microphone (``getUserMedia``
    without a prompt), and ``CHROMIUM_EXTRA_ARGS`` more command-line flags."""
    fake_media = bool(getattr(request.module, "CHROMIUM_FAKE_MEDIA", False))
    extra_args = tuple(getattr(request.module, "CHROMIUM_EXTRA_ARGS", ()))
    async with launch_chromium(fake_media=fake_media, extra_args=extra_args) as browser:
        yield browser


@pytest.fixture
async def chromium(chromium_process: Chromium) -> AsyncIterator[Chromium]:
    """The module's Chromium; the pages a test opens are closed after it (before its server stops)."""
    pages = Chromium(chromium_process.browser)
    try:
        yield pages
    finally:
        await pages.close()


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


def extract(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not found"
    return match.group(1)
