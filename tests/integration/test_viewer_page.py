"""The viewer page in a real browser: Debian's Chromium (Playwright) plays H.264 +
AAC in fMP4 from the real app on 127.0.0.1, on a desktop and a phone-sized context.

Two sources: an HLS folder written by the ffmpeg command line (its own HLS
muxer), mounted at ``/hls/{webinar_id}/`` in front of the origin so the test
controls the playlist (404 before the start, an outage, the end); and the
real path, ffmpeg publishing over RTMP to our ingest, packaged as LL-HLS
(parts, blocking reload) by our origin. The viewer routes are added in front
when server/app.py does not mount them yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Page
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from player import viewer
from server.i18n import translate
from server.webinars import Webinar, rotate_stream_key, set_state
from tests.conftest import LiveServer
from tests.support.browser import (
    Chromium,
    chromium_available,
    failed_resource,
    wait_video_advancing,
    watch_errors,
)
from tests.support.ffmpeg import FFMPEG, finish, publisher
from tests.world import make_side

pytestmark = [
    pytest.mark.integration,
    pytest.mark.browser,
    pytest.mark.skipif(not chromium_available(), reason="Debian's chromium is needed"),
    pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="the ffmpeg command line is needed"),
]

MAX_STREAM_SECONDS = 90
"""Upper bound of the generated live (wall-clock seconds, ffmpeg -re); the test
ends it earlier by sending ffmpeg "q", which writes #EXT-X-ENDLIST."""
FFMPEG_EXIT_TIMEOUT = 20.0
"""Longest wait for ffmpeg to finish after "q" (seconds)."""
STATE_TIMEOUT_MS = 30_000
"""Longest wait for the page to reach a state (milliseconds)."""
NO_FAVICON = "/favicon.ico"
"""The site has no favicon yet: Chromium logs the 404 of its automatic request."""


class PlaylistFiles(StaticFiles):
    """ffmpeg's HLS folder over HTTP, like a live origin: playlists read in one go
    (ffmpeg replaces them while we serve, so no stat-then-stream) and never cached.
    While ``outage`` is set, every request gets 503, as from a failing origin."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory=str(directory))
        self.folder = directory
        self.outage = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        name = self.get_path(scope)
        response: Response | None = None
        if self.outage:
            response = PlainTextResponse("origin down", status_code=503, headers={"cache-control": "no-store"})
        elif name.endswith(".m3u8") and "/" not in name:
            try:
                body = (self.folder / name).read_bytes()
            except FileNotFoundError:
                response = PlainTextResponse("no playlist", status_code=404, headers={"cache-control": "no-store"})
            else:
                response = Response(body, media_type="application/vnd.apple.mpegurl",
                                    headers={"cache-control": "no-cache"})
        if response is None:
            await super().__call__(scope, receive, send)
        else:
            await response(scope, receive, send)


def serve_viewer(live: LiveServer) -> None:
    """Add the viewer routes in front when server/app.py does not mount them yet."""
    if not any(getattr(route, "path", None) == "/w/{webinar_id}" for route in live.app.router.routes):
        live.app.router.routes[0:0] = viewer.routes


def serve_hls_folder(live: LiveServer, webinar_id: uuid.UUID, folder: Path) -> PlaylistFiles:
    """Serve ``folder`` at /hls/{webinar_id}/, in front of the real origin."""
    files = PlaylistFiles(folder)
    live.app.router.routes.insert(0, Mount(f"/hls/{webinar_id}", app=files))
    return files


async def announced_webinar(live: LiveServer) -> Webinar:
    side = await make_side(live.services.db, "V", dt.datetime.now(dt.UTC).replace(microsecond=0))
    return await set_state(live.services.db, side.webinar.id, "announced")


def ffmpeg_hls_command(folder: Path, seconds: int) -> list[str]:
    """A live H.264/AAC fMP4 HLS event playlist with 1 s segments, written in real time."""
    return [
        FFMPEG, "-hide_banner", "-loglevel", "error",
        "-re", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30",
        "-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        "-t", str(seconds),
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "30", "-keyint_min", "30",
        "-sc_threshold", "0",
        "-c:a", "aac", "-b:a", "64k",
        "-f", "hls", "-hls_segment_type", "fmp4", "-hls_time", "1", "-hls_playlist_type", "event",
        "-hls_flags", "program_date_time+temp_file",
        "-hls_fmp4_init_filename", "init.mp4", "-hls_segment_filename", str(folder / "seg%d.m4s"),
        str(folder / "index.m3u8"),
    ]


@contextlib.asynccontextmanager
async def ffmpeg_live(folder: Path, seconds: int) -> AsyncIterator[asyncio.subprocess.Process]:
    """Run ffmpeg in the background (stdin open for "q"); killed on exit if still running."""
    process = await asyncio.create_subprocess_exec(
        *ffmpeg_hls_command(folder, seconds), stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def end_live(process: asyncio.subprocess.Process) -> None:
    """Ask ffmpeg to stop ("q"): it finishes the playlist with #EXT-X-ENDLIST."""
    assert process.stdin is not None
    process.stdin.write(b"q")
    await process.stdin.drain()
    async with asyncio.timeout(FFMPEG_EXIT_TIMEOUT):
        _, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode(errors="replace")[-2000:]


async def wait_state(page: Page, state: str, timeout_ms: int = STATE_TIMEOUT_MS) -> None:
    """Wait until the player is in ``state`` and #viewer[data-state] says so too."""
    await page.wait_for_function(
        """state => window.webinarPlayer !== undefined && window.webinarPlayer.state === state
                    && document.getElementById("viewer").dataset.state === state""",
        arg=state, timeout=timeout_ms,
    )


async def test_debian_chromium_plays_h264_aac_fmp4_through_mse(chromium: Chromium) -> None:
    """Our whole playback story on Chromium rests on this: MSE with H.264 + AAC in fMP4."""
    page = await chromium.new_page()
    support = await page.evaluate(
        """() => ({
            mse: typeof MediaSource === "function",
            baseline: MediaSource.isTypeSupported('video/mp4; codecs="avc1.42E01E, mp4a.40.2"'),
            high: MediaSource.isTypeSupported('video/mp4; codecs="avc1.640028, mp4a.40.2"'),
            bogus: MediaSource.isTypeSupported('video/mp4; codecs="nope.1"'),
        })"""
    )
    assert support == {"mse": True, "baseline": True, "high": True, "bogus": False}


async def test_live_plays_on_desktop_and_phone_then_ends(live: LiveServer, chromium: Chromium) -> None:
    """waiting (404) -> live (ffmpeg publishes) -> the video advances -> stalled while the
    origin fails -> live again -> ended (ENDLIST) -> watch from the start; a late viewer gets the replay."""
    serve_viewer(live)
    webinar = await announced_webinar(live)
    hls_path = f"/hls/{webinar.id}/"
    allow = failed_resource(hls_path, NO_FAVICON, statuses=(404, 503))
    with tempfile.TemporaryDirectory(prefix="webinar-test-hls-") as tmp:
        folder = Path(tmp)
        origin = serve_hls_folder(live, webinar.id, folder)
        pages = {device: await chromium.new_page(device) for device in ("desktop", "mobile")}
        errors = {device: watch_errors(page) for device, page in pages.items()}
        for page in pages.values():
            response = await page.goto(f"{live.url}/w/{webinar.id}?lang=en")
            assert response is not None and response.status == 200
        for page in pages.values():
            await wait_state(page, "waiting")

        async with ffmpeg_live(folder, MAX_STREAM_SECONDS) as ffmpeg:
            for page in pages.values():
                await wait_state(page, "live")
            progress = await asyncio.gather(*(wait_video_advancing(page, 2.0, timeout=25) for page in pages.values()))
            assert all(p.advanced >= 2.0 for p in progress)

            for device, page in pages.items():
                stats = await page.evaluate("() => window.webinarPlayer.stats")
                assert stats["engine"] == "hls.js", device
                assert isinstance(stats["latencySeconds"], (int, float)) and stats["latencySeconds"] > 0, stats
                assert isinstance(stats["wallClockLatencySeconds"], (int, float)), stats  # ffmpeg writes PDT
                assert isinstance(stats["stalls"], int) and stats["stalls"] >= 0, stats
                assert await page.evaluate("() => window.webinarPlayer.hls !== null"), device
                assert await page.text_content("#viewer-status") == translate("en", "viewer.state.live"), device

            # The phone: the player spans the screen's width at 16:9 and nothing overflows sideways.
            mobile = pages["mobile"]
            box = await mobile.locator("#viewer-video").bounding_box()
            assert box is not None
            assert abs(box["width"] - 390) < 1 and abs(box["height"] - 390 * 9 / 16) < 1, box
            assert box["y"] + box["height"] <= 844
            assert await mobile.evaluate("() => document.documentElement.scrollWidth") <= 390

            # The desktop: the whole player, controls included, fits under the header.
            desktop = pages["desktop"]
            box = await desktop.locator("#viewer-video").bounding_box()
            assert box is not None and box["y"] > 0 and box["y"] + box["height"] <= 720, box
            assert abs(box["width"] / box["height"] - 16 / 9) < 0.01, box

            # Autoplay starts muted; the button turns the sound on and goes away.
            assert await desktop.evaluate("() => window.webinarPlayer.video.muted")
            await desktop.click("#viewer-unmute")
            assert not await desktop.evaluate("() => window.webinarPlayer.video.muted")
            assert await desktop.locator("#viewer-unmute").is_hidden()

            # The origin fails long enough for the players to give up and rebuild themselves:
            # "back in a moment", then live again on their own once it answers.
            origin.outage = True
            for page in pages.values():
                await wait_state(page, "stalled")
                assert await page.text_content("#viewer-status") == translate("en", "viewer.state.stalled")
                await page.wait_for_function("() => window.webinarPlayer.stats.reconnects >= 1",
                                             timeout=STATE_TIMEOUT_MS)
                assert await page.get_attribute("#viewer", "data-state") == "stalled"
            origin.outage = False
            for page in pages.values():
                await wait_state(page, "live")
            await asyncio.gather(*(wait_video_advancing(page, 1.0, timeout=25) for page in pages.values()))
            for device, page in pages.items():
                stats = await page.evaluate("() => window.webinarPlayer.stats")
                assert stats["stalls"] >= 1 and stats["stalledSeconds"] > 0, (device, stats)

            await end_live(ffmpeg)
        assert "#EXT-X-ENDLIST" in (folder / "index.m3u8").read_text()

        for page in pages.values():
            await wait_state(page, "ended")
            assert await page.text_content("#viewer-status") == translate("en", "viewer.state.ended")
        # After the end, the desktop viewer watches the recording from its start.
        await desktop.wait_for_selector("#viewer-restart", state="visible", timeout=STATE_TIMEOUT_MS)
        await desktop.click("#viewer-restart")
        await wait_state(desktop, "replay")
        assert (await wait_video_advancing(desktop, 1.0, timeout=20)).first_time < 5

        # A viewer arriving after the end gets the replay.
        late = await chromium.new_page("desktop")
        errors["late"] = watch_errors(late)
        await late.goto(f"{live.url}/w/{webinar.id}?lang=fr")
        await wait_state(late, "replay")
        assert await late.text_content("#viewer-status") == translate("fr", "viewer.state.replay")
        await wait_video_advancing(late, 1.0, timeout=20)
        assert await late.locator("#viewer-restart").is_hidden()

        for device, found in errors.items():
            assert found.unexpected(allow=allow) == [], device


@pytest.mark.settings(live_grace_s=1.0)
async def test_rtmp_live_through_our_ll_hls_origin(live: LiveServer, chromium: Chromium) -> None:
    """ffmpeg -> RTMP ingest -> LL-HLS origin -> hls.js in low-latency mode, desktop and phone."""
    serve_viewer(live)
    webinar = await announced_webinar(live)
    key = await rotate_stream_key(live.services.db, webinar.id)
    pages = {device: await chromium.new_page(device) for device in ("desktop", "mobile")}
    errors = {device: watch_errors(page) for device, page in pages.items()}
    for page in pages.values():
        await page.goto(f"{live.url}/w/{webinar.id}?lang=fr")
        await wait_state(page, "waiting")
    url = f"rtmp://127.0.0.1:{live.settings.rtmp_port}/live/{key}"
    async with publisher(url, 12) as ffmpeg:
        for page in pages.values():
            await wait_state(page, "live")
        await asyncio.gather(*(wait_video_advancing(page, 2.0, timeout=25) for page in pages.values()))
        for device, page in pages.items():
            details = await page.evaluate(
                """() => {
                    const hls = window.webinarPlayer.hls;
                    const d = hls.levels[hls.currentLevel].details;
                    return {lowLatency: hls.lowLatencyMode, canBlockReload: d.canBlockReload,
                            partTarget: d.partTarget, parts: d.partList ? d.partList.length : 0};
                }"""
            )
            assert details["lowLatency"] and details["canBlockReload"], (device, details)
            assert details["partTarget"] > 0 and details["parts"] > 0, (device, details)
            stats = await page.evaluate("() => window.webinarPlayer.stats")
            assert stats["latencySeconds"] is not None and stats["latencySeconds"] > 0, (device, stats)
            assert await page.text_content("#viewer-status") == translate("fr", "viewer.state.live")
        status, stderr = await finish(ffmpeg, 40)
        assert status == 0, stderr
    for page in pages.values():
        await wait_state(page, "ended")
    allow = failed_resource(f"/hls/{webinar.id}/index.m3u8", NO_FAVICON)
    for device, found in errors.items():
        assert found.unexpected(allow=allow) == [], device


async def test_missing_playlist_keeps_waiting_and_polling_in_the_page_language(
    live: LiveServer, chromium: Chromium
) -> None:
    serve_viewer(live)
    webinar = await announced_webinar(live)
    playlist_path = f"/hls/{webinar.id}/index.m3u8"
    allow = failed_resource(playlist_path, NO_FAVICON)
    for lang in ("fr", "en"):
        page = await chromium.new_page("mobile")
        errors = watch_errors(page)
        looks: list[int] = []
        page.on("response", lambda r: looks.append(r.status) if r.url.endswith(playlist_path) else None)
        response = await page.goto(f"{live.url}/w/{webinar.id}?lang={lang}")
        assert response is not None and response.status == 200
        assert await page.get_attribute("html", "lang") == lang
        assert await page.text_content("header a[href='/login']") == translate(lang, "nav.login")
        await wait_state(page, "waiting")
        assert await page.text_content("#viewer-status") == translate(lang, "viewer.state.waiting")
        # It keeps looking (every few seconds) and stays calm: no unmute button, no error.
        async with asyncio.timeout(20):
            while len(looks) < 2:
                await asyncio.sleep(0.2)
        assert set(looks) == {404}
        assert await page.get_attribute("#viewer", "data-state") == "waiting"
        assert await page.locator("#viewer-unmute").is_hidden()
        assert await page.evaluate("() => window.webinarPlayer.hls") is None
        assert errors.unexpected(allow=allow) == []


async def test_viewer_page_exists_only_for_public_webinars(live: LiveServer) -> None:
    serve_viewer(live)
    db = live.services.db
    side = await make_side(db, "P", dt.datetime.now(dt.UTC).replace(microsecond=0))
    async with live.client() as http:
        assert (await http.get(f"/w/{uuid.uuid4()}")).status_code == 404
        assert (await http.get("/w/not-a-uuid")).status_code == 404
        assert (await http.get(f"/w/{side.webinar.id}")).status_code == 404  # draft: not announced

        await set_state(db, side.webinar.id, "announced")
        page = await http.get(f"/w/{side.webinar.id}?lang=fr")
        assert page.status_code == 200
        html = page.text
        assert '<html lang="fr">' in html
        assert f'data-hls-url="/hls/{side.webinar.id}/index.m3u8"' in html
        assert "<video id=\"viewer-video\" playsinline muted autoplay controls" in html
        assert '<aside id="interaction" class="viewer-interaction"' in html and "hidden></aside>" in html
        assert side.webinar.title in html
        for asset in ("viewer.js", "modules/player.js", "modules/health.js", "modules/playlist-probe.js",
                      "vendor/hls.min.mjs", "viewer.css"):
            served = await http.get(f"/static/player/{asset}")
            assert served.status_code == 200, asset
            expected = "text/css" if asset.endswith(".css") else "javascript"
            assert expected in served.headers["content-type"], (asset, served.headers["content-type"])

        other = await make_side(db, "Q", dt.datetime.now(dt.UTC).replace(microsecond=0))
        await set_state(db, other.webinar.id, "cancelled")
        assert (await http.get(f"/w/{other.webinar.id}")).status_code == 404
        for state in ("live", "ended", "removed"):
            await set_state(db, side.webinar.id, state)
            expected_status = 404 if state == "removed" else 200
            assert (await http.get(f"/w/{side.webinar.id}")).status_code == expected_status, state
