"""The glass-to-glass probe (benchmarks/g2g_probe.js) in Debian's Chromium: it reads the
same barcode the Python side paints (benchmarks/g2g.py), from a canvas and from every
frame of a real H.264 stream (encoded by the ffmpeg command line, played by a <video>),
and refuses nothing it should read."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from benchmarks.g2g import (
    LAYOUT,
    PROBE_JS,
    Background,
    drain,
    encode_bits,
    install_probe,
    paint_luma,
)
from tests.support.browser import Chromium, chromium_available, watch_errors

pytestmark = [
    pytest.mark.integration,
    pytest.mark.browser,
    pytest.mark.skipif(not chromium_available(), reason="Debian's chromium is needed"),
    pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="the ffmpeg command line is needed"),
]

ORIGIN = "http://127.0.0.1:9"
"""Pages are served by Playwright's router: nothing listens there, nothing leaves the browser."""
NOW_MS = 1_795_000_000_000
WIDTH, HEIGHT, FPS, FRAMES = 640, 360, 30, 60
PLAY_TIMEOUT_S = 60.0
"""Longest wall time for the 2 s clip to play to its end."""
STEP_TIMEOUT_MS = 20_000
"""Longest wait for the clip to be ready to play (milliseconds)."""


def encode_clip(path: Path, stamps: list[int]) -> None:
    """H.264 (libx264, 500 kbit/s CBR: blocks of 20 pixels at 360p) in MP4, one barcode per frame."""
    background = Background(WIDTH, HEIGHT, noise_frames=4)
    raw = bytearray()
    for index, stamp in enumerate(stamps):
        plane = background.luma(index)
        paint_luma(plane, WIDTH, HEIGHT, stamp)
        raw += plane + background.chroma
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
         "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{WIDTH}x{HEIGHT}", "-framerate", str(FPS), "-i", "pipe:0",
         "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-b:v", "500k", "-maxrate", "500k",
         "-bufsize", "500k", "-g", str(FPS), "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(path)],
        input=bytes(raw), check=True, timeout=120,
    )


async def test_js_paints_and_reads_the_code_python_defines(chromium: Chromium) -> None:
    page = await chromium.new_page("desktop")
    errors = watch_errors(page)
    await page.route(f"{ORIGIN}/blank.html", lambda route: route.fulfill(status=200, body="<!doctype html><p>g2g"))
    await page.goto(f"{ORIGIN}/blank.html")
    await page.evaluate(PROBE_JS)
    stamps = [0, 1, 255, 65_537, NOW_MS, NOW_MS + 33, 2**48 - 1]
    js_bits = await page.evaluate("(stamps) => stamps.map((ms) => window.__g2g.encodeBits(ms))", stamps)
    assert js_bits == [encode_bits(stamp) for stamp in stamps]
    decoded = await page.evaluate("(all) => all.map((bits) => window.__g2g.decodeBits(bits))", js_bits)
    assert decoded == stamps
    flipped = list(js_bits[4])
    flipped[40] ^= 1
    assert await page.evaluate("(bits) => window.__g2g.decodeBits(bits)", flipped) is None
    # paint on a canvas and read it back, at two sizes
    read = await page.evaluate(
        """([stamps, layout]) => [[1280, 720], [640, 360]].map(([w, h]) => stamps.map((ms) => {
            const canvas = document.createElement("canvas");
            canvas.width = w; canvas.height = h;
            const ctx = canvas.getContext("2d", { willReadFrequently: true });
            ctx.fillStyle = "#808080"; ctx.fillRect(0, 0, w, h);
            window.__g2g.paint(ctx, w, h, ms, layout);
            return window.__g2g.read(ctx, w, h, layout);
        }))""",
        [stamps, LAYOUT.as_js()],
    )
    assert read == [stamps, stamps]
    assert errors.unexpected() == []


async def test_probe_reads_the_frames_of_an_h264_stream(chromium: Chromium, tmp_path: Path) -> None:
    """Played through: every frame the probe is called for is read, as the time Python
    painted (how many frames a busy machine presents is not this test's business: at
    least one, in order, none unreadable)."""
    stamps = [NOW_MS + index * 1000 // FPS for index in range(FRAMES)]
    clip = tmp_path / "clip.mp4"
    await asyncio.to_thread(encode_clip, clip, stamps)
    page = await chromium.new_page("desktop")
    errors = watch_errors(page)
    html = '<!doctype html><video id="v" muted playsinline preload="auto" src="clip.mp4"></video>'
    await page.route(f"{ORIGIN}/g2g.html", lambda route: route.fulfill(status=200, body=html,
                                                                         content_type="text/html"))
    await page.route(f"{ORIGIN}/clip.mp4", lambda route: route.fulfill(status=200, path=str(clip),
                                                                         content_type="video/mp4"))
    await page.goto(f"{ORIGIN}/g2g.html")
    await page.wait_for_function("() => document.getElementById('v').readyState >= 2", timeout=STEP_TIMEOUT_MS)
    await install_probe(page, "#v")

    started = time.time() * 1000
    await page.evaluate("() => document.getElementById('v').play()")
    await page.wait_for_function("() => document.getElementById('v').ended", timeout=PLAY_TIMEOUT_S * 1000)
    samples, counters = await drain(page)
    assert counters["failed"] == 0, counters
    assert samples and counters["decoded"] == len(samples) <= counters["frames"], counters
    read = [int(sample.encoded_ms) for sample in samples]
    assert set(read) <= set(stamps)
    assert read == sorted(read) and len(set(read)) == len(read)
    for sample in samples:  # shown on this machine's clock, after the page started playing
        assert started - 1000 <= sample.shown_ms <= time.time() * 1000 + 1000
    assert errors.unexpected() == []
