"""Chromium under Playwright for browser tests: Debian's ``/usr/bin/chromium``,
headless, loopback only, always closed.

Usage::

    async with launch_chromium() as chromium:
        page = await chromium.new_page("mobile")
        errors = watch_errors(page)
        await page.goto(url)
        progressed = await wait_video_advancing(page, 2.0, timeout=20)
        assert errors.unexpected(allow=failed_resource("/favicon.ico")) == []

Playwright cannot download browsers here (no network): we always launch the
system Chromium with :data:`CHROMIUM_ARGS`. Every context a :class:`Chromium`
opens is closed with it, even when the test fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Page, async_playwright

CHROMIUM_PATH = "/usr/bin/chromium"
CHROMIUM_ARGS: tuple[str, ...] = (
    "--no-sandbox",  # tests run as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
)
FAKE_MEDIA_ARGS: tuple[str, ...] = (
    "--use-fake-device-for-media-stream",  # a generated camera picture and a beep as microphone
    "--use-fake-ui-for-media-stream",  # camera/microphone permission granted without a prompt
)
LAUNCH_TIMEOUT_MS = 30_000
"""Longest wait for Chromium to start (milliseconds)."""

MOBILE_USER_AGENT = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Mobile Safari/537.36"
)
DeviceKind = Literal["desktop", "mobile"]
DEVICES: dict[str, dict[str, Any]] = {
    "desktop": {"viewport": {"width": 1280, "height": 720}},
    "mobile": {
        "viewport": {"width": 390, "height": 844},  # a 6.1" phone in portrait, CSS pixels
        "device_scale_factor": 3,
        "is_mobile": True,
        "has_touch": True,
        "user_agent": MOBILE_USER_AGENT,
    },
}
"""Context options per device kind. The mobile one is an Android phone: Chromium
is Blink, so it can pretend to be Chrome on Android but not iOS Safari."""


def chromium_available() -> bool:
    """Whether the system Chromium is installed (tests skip without it)."""
    return shutil.which(CHROMIUM_PATH) is not None


class Chromium:
    """A running headless Chromium; each page gets its own context (cookies, storage)."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.contexts: list[BrowserContext] = []

    async def new_page(self, device: DeviceKind = "desktop", **context_options: Any) -> Page:
        """A page in a fresh context sized like ``device``; ``context_options`` override
        or add Playwright ``new_context`` options (``locale``, ``permissions``, ...)."""
        context = await self.browser.new_context(**{**DEVICES[device], **context_options})
        self.contexts.append(context)
        return await context.new_page()

    async def close(self) -> None:
        contexts, self.contexts = self.contexts, []
        for context in contexts:
            with contextlib.suppress(Exception):  # already gone with a crashed browser
                await context.close()


@contextlib.asynccontextmanager
async def launch_chromium(*, fake_media: bool = False, extra_args: Sequence[str] = ()) -> AsyncIterator[Chromium]:
    """Start Playwright and Chromium; close both on exit. ``fake_media`` adds a fake
    camera and microphone that ``getUserMedia`` gets without a prompt."""
    args = [*CHROMIUM_ARGS, *(FAKE_MEDIA_ARGS if fake_media else ()), *extra_args]
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM_PATH, headless=True, args=args, timeout=LAUNCH_TIMEOUT_MS
        )
        chromium = Chromium(browser)
        try:
            yield chromium
        finally:
            await chromium.close()
            await browser.close()


@dataclass
class PageErrors:
    """What went wrong in a page: uncaught exceptions and console errors."""

    page_errors: list[str] = field(default_factory=list)
    console_errors: list[tuple[str, str]] = field(default_factory=list)
    """(text, url of the script or resource that logged it)."""

    def unexpected(self, allow: Callable[[str, str], bool] | None = None) -> list[str]:
        """Every uncaught exception, and the console errors ``allow(text, url)`` does not excuse."""
        found = [f"pageerror: {text}" for text in self.page_errors]
        found += [f"console: {text} ({url})" for text, url in self.console_errors if not (allow and allow(text, url))]
        return found


def watch_errors(page: Page) -> PageErrors:
    """Start collecting ``page``'s uncaught exceptions and console errors."""
    errors = PageErrors()

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.console_errors.append((message.text, str(message.location.get("url", ""))))

    page.on("pageerror", lambda error: errors.page_errors.append(f"{error.name}: {error.message}"))
    page.on("console", on_console)
    return errors


def failed_resource(*url_parts: str, statuses: Sequence[int] = (404,)) -> Callable[[str, str], bool]:
    """An ``allow`` for :meth:`PageErrors.unexpected`: the console line Chromium
    prints when a resource whose URL contains one of ``url_parts`` is answered
    with one of the HTTP ``statuses``."""

    def allow(text: str, url: str) -> bool:
        return (text.startswith("Failed to load resource: the server responded with a status of")
                and any(f"status of {status} " in text for status in statuses)
                and any(part in url for part in url_parts))

    return allow


@dataclass
class VideoProgress:
    """What :func:`wait_video_advancing` saw."""

    advanced: float
    """Seconds of media played while watching (jumps and seeks not counted)."""
    first_time: float
    last_time: float
    samples: int


async def video_time(page: Page, selector: str = "video") -> float:
    """``currentTime`` of the first element matching ``selector`` (seconds)."""
    value = await page.eval_on_selector(selector, "v => v.currentTime")
    return float(value)


async def wait_video_advancing(page: Page, seconds: float, timeout: float, *, selector: str = "video",
                               interval: float = 0.25) -> VideoProgress:
    """Poll the video's ``currentTime`` every ``interval`` s until it has advanced by
    ``seconds`` of playback, for at most ``timeout`` s of wall time.

    Only plausible playback counts: a step forward of at most four times the wall
    time elapsed since the previous sample, plus 0.5 s. Larger steps (seeks,
    catching up with the live edge) and steps back (a player rebuilt) are not
    counted. Returns what was seen; raises ``AssertionError`` (with the
    observations) when the video did not advance enough in time.
    """
    deadline = time.monotonic() + timeout
    first = previous = await video_time(page, selector)
    previous_at = time.monotonic()
    advanced = 0.0
    samples = 1
    while advanced < seconds:
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"video advanced {advanced:.2f} s of the {seconds} s expected within {timeout} s "
                f"(currentTime {first:.2f} -> {previous:.2f}, {samples} samples)"
            )
        await asyncio.sleep(interval)
        now = time.monotonic()
        current = await video_time(page, selector)
        samples += 1
        step = current - previous
        if 0 < step <= 4 * (now - previous_at) + 0.5:
            advanced += step
        previous, previous_at = current, now
    return VideoProgress(advanced=advanced, first_time=first, last_time=previous, samples=samples)
