"""Glass-to-glass latency measurement, reusable by every room benchmark.

The idea: the capture wall-clock time of every frame is *burnt into the
picture* as a barcode; the browser that shows the stream reads the barcode of
each frame it presents and subtracts it from its own clock (same machine, same
clock: ``time.time()`` in Python and ``Date.now()`` in Chromium both read
``CLOCK_REALTIME``). Nothing is trusted between the two ends: encoder, ingest,
packager, origin, player buffer, decoder and compositor are all counted.

Pieces:

- The barcode (:class:`BarcodeLayout`, :func:`encode_bits`, :func:`decode_bits`,
  :func:`paint_luma`, :func:`read_luma`): sans-I/O, pure Python. The same
  layout is painted by the JS probe on a canvas (``paint``), so a webcam room
  benchmark can feed a ``canvas.captureStream()`` as its camera.
- :class:`FrameSource`: a thread writing raw 1280x720 yuv420p frames at 30 fps
  with the time painted at capture (the "camera").
- :func:`encoder_command`: ``ffmpeg`` reading those frames on stdin, libx264
  ``-tune zerolatency``, published over RTMP to one or several servers at once
  (the tee muxer: every server gets the same encoded bytes).
- ``g2g_probe.js`` (:data:`PROBE_JS`, :func:`install_probe`, :func:`drain`):
  the page script. ``video.requestVideoFrameCallback`` draws the barcode band
  of each presented frame to a canvas, decodes it and records
  ``(encoded ms, shown ms)`` where *shown* is the frame's
  ``expectedDisplayTime`` on the ``Date.now()`` clock.
- :func:`player_page_html`: a minimal hls.js page (the vendored hls.js) for
  peers and for trying hls.js settings.

Barcode format (version 1): ``rows x columns`` (2 x 32) square-ish blocks in a
band across the top of the picture, each ``width / columns`` wide and
``height / 18`` high (40 x 40 pixels at 1280x720; 20 x 20 at 640x360). Bit
``i`` is block ``(i // columns, i % columns)``, row-major, most significant
first; white (luma 235) is 1, black (luma 16) is 0. The 64 bits are a 48-bit
unsigned timestamp (milliseconds since the Unix epoch, modulo 2**48: good
until the year 10889) followed by the CRC-16/CCITT-FALSE of its 6 big-endian
bytes. A reader averages the middle half (in each direction) of every block
and thresholds at mid-grey; a frame whose CRC does not match is discarded
(counted as a decode failure, never a sample).

Limits: the band must reach the viewer unscaled in aspect (any resolution is
fine, the layout is in fractions of the picture); 40-pixel blocks survive
x264 at any sane bit rate, but not a picture scaled below about 1/8 of 720p.
Frame times are milliseconds, so one sample is exact to about 1 ms plus the
browser's display-time estimate (one vsync, 16.7 ms at 60 Hz).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

PROBE_JS_PATH = Path(__file__).with_name("g2g_probe.js")
PROBE_JS = PROBE_JS_PATH.read_text()
"""The page script: defines ``window.__g2g`` (install, drain, counters, paint)."""
HLSJS_PATH = Path(__file__).resolve().parents[1] / "player" / "static" / "vendor" / "hls.min.mjs"
"""The hls.js build our viewer page uses (vendored), for the minimal player page."""
FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"

TIMESTAMP_BITS = 48
CRC_BITS = 16
TOTAL_BITS = TIMESTAMP_BITS + CRC_BITS
TIMESTAMP_MODULUS = 1 << TIMESTAMP_BITS
BLACK_LUMA = 16
WHITE_LUMA = 235
"""Limited-range (BT.601/709) luma of the blocks."""
THRESHOLD_LUMA = (BLACK_LUMA + WHITE_LUMA) // 2


# ---------------------------------------------------------------- the code


def crc16_ccitt(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final xor)."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def encode_bits(timestamp_ms: int) -> list[int]:
    """The 64 bits (0/1, most significant first) for ``timestamp_ms`` (taken modulo 2**48).

    Raises ``ValueError`` for a negative timestamp."""
    if timestamp_ms < 0:
        raise ValueError(f"timestamp must be >= 0 ms, got {timestamp_ms}")
    value = timestamp_ms % TIMESTAMP_MODULUS
    crc = crc16_ccitt(value.to_bytes(6, "big"))
    word = (value << CRC_BITS) | crc
    return [(word >> (TOTAL_BITS - 1 - i)) & 1 for i in range(TOTAL_BITS)]


def decode_bits(bits: Sequence[int]) -> int | None:
    """The timestamp (ms) carried by 64 bits, or None when the checksum does not match.

    Raises ``ValueError`` when ``bits`` is not 64 values of 0 or 1."""
    if len(bits) != TOTAL_BITS or any(b not in (0, 1) for b in bits):
        raise ValueError(f"expected {TOTAL_BITS} bits of 0/1, got {len(bits)} values")
    word = 0
    for bit in bits:
        word = (word << 1) | bit
    value, crc = word >> CRC_BITS, word & 0xFFFF
    return value if crc16_ccitt(value.to_bytes(6, "big")) == crc else None


def unwrap_timestamp(value_ms: int, near_ms: float) -> int:
    """The full timestamp whose low 48 bits are ``value_ms``, closest to ``near_ms`` (now)."""
    base = int(near_ms) - int(near_ms) % TIMESTAMP_MODULUS
    candidates = (base - TIMESTAMP_MODULUS + value_ms, base + value_ms, base + TIMESTAMP_MODULUS + value_ms)
    return min(candidates, key=lambda c: abs(c - near_ms))


# ---------------------------------------------------------------- the picture


@dataclass(frozen=True)
class BarcodeLayout:
    """Where the blocks are, as fractions of the picture (any resolution).

    ``columns x rows`` blocks fill the band ``[0, 1] x [0, rows / height_divisions]``:
    each block is ``1 / columns`` of the width and ``1 / height_divisions`` of the
    height. ``columns * rows`` must be :data:`TOTAL_BITS`.
    """

    columns: int = 32
    rows: int = 2
    height_divisions: int = 18

    def __post_init__(self) -> None:
        if self.columns * self.rows != TOTAL_BITS:
            raise ValueError(f"columns x rows must be {TOTAL_BITS}, got {self.columns} x {self.rows}")
        if self.rows > self.height_divisions:
            raise ValueError("the band cannot be taller than the picture")

    def band_height(self, height: int) -> int:
        """Pixel rows the band covers in a picture ``height`` pixels high."""
        return round(self.rows * height / self.height_divisions)

    def block(self, index: int, width: int, height: int) -> tuple[int, int, int, int]:
        """Pixel box ``(x0, y0, x1, y1)`` (end exclusive) of bit ``index``."""
        row, column = divmod(index, self.columns)
        return (round(column * width / self.columns), round(row * height / self.height_divisions),
                round((column + 1) * width / self.columns), round((row + 1) * height / self.height_divisions))

    def as_js(self) -> dict[str, int]:
        """The layout for the JS probe (``install({layout})``)."""
        return {"columns": self.columns, "rows": self.rows, "heightDivisions": self.height_divisions}


LAYOUT = BarcodeLayout()


def paint_luma(plane: bytearray, width: int, height: int, timestamp_ms: int,
               layout: BarcodeLayout = LAYOUT) -> None:
    """Paint the barcode of ``timestamp_ms`` into an 8-bit luma plane (``width * height``
    bytes, row-major, no padding), in place. Only the band's rows are written."""
    if len(plane) != width * height:
        raise ValueError(f"plane is {len(plane)} bytes, expected {width} x {height}")
    bits = encode_bits(timestamp_ms)
    for row in range(layout.rows):
        line = bytearray()
        for column in range(layout.columns):
            x0, y0, x1, y1 = layout.block(row * layout.columns + column, width, height)
            line += bytes([WHITE_LUMA if bits[row * layout.columns + column] else BLACK_LUMA]) * (x1 - x0)
        _, y0, _, y1 = layout.block(row * layout.columns, width, height)
        for y in range(y0, y1):
            plane[y * width : (y + 1) * width] = line


def read_bits(plane: bytes | bytearray | memoryview, width: int, height: int,
              layout: BarcodeLayout = LAYOUT) -> list[int]:
    """The 64 bits seen in a luma plane: the mean of each block's middle half vs mid-grey."""
    if len(plane) != width * height:
        raise ValueError(f"plane is {len(plane)} bytes, expected {width} x {height}")
    bits = []
    for index in range(TOTAL_BITS):
        x0, y0, x1, y1 = layout.block(index, width, height)
        bx0, bx1 = x0 + (x1 - x0) // 4, x1 - (x1 - x0) // 4
        by0, by1 = y0 + (y1 - y0) // 4, y1 - (y1 - y0) // 4
        total = count = 0
        for y in range(by0, max(by1, by0 + 1)):
            row = plane[y * width + bx0 : y * width + max(bx1, bx0 + 1)]
            total += sum(row)
            count += len(row)
        bits.append(1 if total > THRESHOLD_LUMA * count else 0)
    return bits


def read_luma(plane: bytes | bytearray | memoryview, width: int, height: int,
              layout: BarcodeLayout = LAYOUT) -> int | None:
    """The timestamp (ms, modulo 2**48) in a luma plane, or None when unreadable."""
    return decode_bits(read_bits(plane, width, height, layout))


# ---------------------------------------------------------------- the camera


class Background:
    """Moving picture content under the barcode, so the encoder has real work: a
    diagonal gradient scrolling 4 pixels a frame and a 320x180 patch of noise that
    changes every frame and moves across the picture (precomputed; ~2 ms a frame)."""

    def __init__(self, width: int, height: int, noise_frames: int = 30) -> None:
        self.width, self.height = width, height
        period = 256
        ramp = bytes(32 + (i * 192 // period) for i in range(period))
        self._pattern = ramp * (-(-(width + height + period) // period) + 1)
        self._period = period
        self.noise_w, self.noise_h = min(320, width // 2), min(180, height // 2)
        self._noise = [os.urandom(self.noise_w * self.noise_h) for _ in range(noise_frames)]
        self.chroma = bytes([128]) * ((width // 2) * (height // 2) * 2)

    def luma(self, frame: int) -> bytearray:
        w, h = self.width, self.height
        shift = (frame * 4) % self._period
        pattern = self._pattern
        plane = bytearray(b"".join(pattern[shift + y % self._period : shift + y % self._period + w] for y in range(h)))
        noise = self._noise[frame % len(self._noise)]
        nx = (frame * 6) % (w - self.noise_w)
        ny = h // 3 + (frame * 2) % (h - h // 3 - self.noise_h)
        for row in range(self.noise_h):
            start = (ny + row) * w + nx
            plane[start : start + self.noise_w] = noise[row * self.noise_w : (row + 1) * self.noise_w]
        return plane


@dataclass
class FrameSource:
    """A camera: a thread writing raw yuv420p frames (``width x height``, ``fps``) to
    ``sink`` (ffmpeg's stdin), paced by the monotonic clock. Frame ``k`` is the sensor's
    capture at ``t0 + k / fps`` (wall clock, ``t0`` = the first frame's ``time.time()``):
    that time, in ms, is painted into it. Every slot gets its frame, so media time
    (ffmpeg counts frames at ``fps``) stays wall time and keyframes stay evenly spaced;
    a frame written late (a busy machine, an encoder that blocks) still carries its
    capture time, so the delay counts in the latency, as a slow capture path would.
    ``late_frames``: frames written more than one frame interval after their capture;
    ``max_lag_s``: the largest such delay; ``max_write_s``: the longest blocking write."""

    width: int = 1280
    height: int = 720
    fps: int = 30
    layout: BarcodeLayout = LAYOUT
    frames: int = 0
    late_frames: int = 0
    max_lag_s: float = 0.0
    max_write_s: float = 0.0
    error: BaseException | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self, sink: Any) -> FrameSource:
        if self.width % 2 or self.height % 2:
            raise ValueError("yuv420p needs an even width and height")
        self._thread = threading.Thread(target=self._run, args=(sink,), name="g2g-camera", daemon=True)
        self._thread.start()
        return self

    def _run(self, sink: Any) -> None:
        background = Background(self.width, self.height)
        interval = 1.0 / self.fps
        start_mono, start_wall = time.monotonic(), time.time()
        try:
            while not self._stop.is_set():
                plane = background.luma(self.frames)
                slot = self.frames * interval
                lag = time.monotonic() - start_mono - slot
                if lag < 0:
                    time.sleep(-lag)
                elif lag > interval:
                    self.late_frames += 1
                    self.max_lag_s = max(self.max_lag_s, lag)
                paint_luma(plane, self.width, self.height, round((start_wall + slot) * 1000), self.layout)
                t0 = time.monotonic()
                sink.write(plane)
                sink.write(background.chroma)
                sink.flush()
                self.max_write_s = max(self.max_write_s, time.monotonic() - t0)
                self.frames += 1
        except (BrokenPipeError, ValueError, OSError) as error:
            if not self._stop.is_set():
                self.error = error

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


def encoder_command(urls: Sequence[str], *, width: int = 1280, height: int = 720, fps: int = 30,
                    keyframe_s: float = 2.0, video_kbps: int = 2500, preset: str = "veryfast") -> list[str]:
    """ffmpeg reading raw yuv420p frames on stdin and publishing them over RTMP to
    every URL of ``urls`` (one encode; the tee muxer when several).

    Encoder settings, OBS-like where OBS has a default: libx264 ``preset`` (OBS:
    veryfast), CBR ``video_kbps`` (OBS simple mode: 2500), ``-tune zerolatency`` (no
    B-frames, no look-ahead: OBS's default has neither tune nor this: it adds
    look-ahead frames of delay), a keyframe every ``keyframe_s`` seconds (OBS's
    default "0 = auto" is x264's 250 frames, ~8.3 s at 30 fps; streaming services ask
    for 2 s), AAC 128 kbit/s of a 440 Hz tone (paced by ``-re``). Video timestamps
    are the frame count at ``fps`` (constant frame rate, like OBS's video clock)."""
    gop = max(1, round(fps * keyframe_s))
    cmd = [
        FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin",
        "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{width}x{height}", "-framerate", str(fps), "-i", "pipe:0",
        "-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        "-map", "0:v", "-map", "1:a",
        "-c:v", "libx264", "-preset", preset, "-tune", "zerolatency", "-profile:v", "high", "-pix_fmt", "yuv420p",
        "-b:v", f"{video_kbps}k", "-maxrate", f"{video_kbps}k", "-bufsize", f"{video_kbps}k",
        "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0",
        "-c:a", "aac", "-b:a", "128k", "-ar", "48000", "-ac", "2",
    ]
    if len(urls) == 1:
        return [*cmd, "-f", "flv", urls[0]]
    outputs = "|".join(f"[f=flv:onfail=ignore]{url}" for url in urls)
    return [*cmd, "-flags:v", "+global_header", "-flags:a", "+global_header", "-f", "tee", outputs]


class Camera:
    """:class:`FrameSource` piped into :func:`encoder_command`; ``with`` stops both."""

    def __init__(self, urls: Sequence[str], **encoder: Any) -> None:
        self.command = encoder_command(urls, **encoder)
        self.source = FrameSource(width=encoder.get("width", 1280), height=encoder.get("height", 720),
                                  fps=encoder.get("fps", 30))
        self.proc: subprocess.Popen[bytes] | None = None
        self._stderr_path: Path | None = None

    def start(self, stderr_path: Path) -> Camera:
        self._stderr_path = stderr_path
        with open(stderr_path, "wb") as err:
            # same session as the caller: its scheduler autogroup (and so its --nice) applies
            self.proc = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
        assert self.proc.stdin is not None
        self.source.start(self.proc.stdin)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and self.source.error is None

    def stderr_tail(self) -> str:
        if self._stderr_path is None or not self._stderr_path.exists():
            return ""
        return "\n".join(self._stderr_path.read_text(errors="replace").splitlines()[-10:])

    def stop(self) -> None:
        self.source.stop()
        proc, self.proc = self.proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            assert proc.stdin is not None
            proc.stdin.close()  # end of input: ffmpeg flushes and closes the RTMP streams
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------- the browser side


@dataclass(frozen=True)
class Sample:
    """One presented frame: its capture time and when the browser showed it (ms, wall clock)."""

    encoded_ms: float
    shown_ms: float
    callback_ms: float

    @property
    def latency_s(self) -> float:
        return (self.shown_ms - self.encoded_ms) / 1000


async def install_probe(page: Any, selector: str = "video", layout: BarcodeLayout = LAYOUT) -> None:
    """Load the probe script into ``page`` (a Playwright page) and start reading every
    frame the first element matching ``selector`` presents."""
    await page.evaluate(PROBE_JS)
    await page.evaluate("([selector, layout]) => window.__g2g.install({selector, layout})",
                        [selector, layout.as_js()])


async def drain(page: Any) -> tuple[list[Sample], dict[str, int]]:
    """The samples recorded since the last drain, and the probe's counters since it was
    installed: ``frames`` presented, ``decoded``, ``failed`` (unreadable), ``missedFrames``
    (presented without a callback: a busy page), ``stalls`` ("waiting" after the first frame)."""
    raw = await page.evaluate("() => window.__g2g.drain()")
    samples = [Sample(float(e), float(s), float(c)) for e, s, c in raw["samples"]]
    return samples, {k: int(v) for k, v in raw["counters"].items()}


def unwrap(samples: Sequence[Sample]) -> list[Sample]:
    """Samples with their 48-bit timestamps unwrapped against the time they were shown."""
    return [Sample(float(unwrap_timestamp(int(s.encoded_ms), s.shown_ms)), s.shown_ms, s.callback_ms)
            for s in samples]


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q * len(ordered) / 100)))
    return float(ordered[rank - 1])


@dataclass(frozen=True)
class LatencySummary:
    """Glass-to-glass latency over a window, seconds."""

    samples: int
    p50: float
    p95: float
    p99: float
    minimum: float
    maximum: float

    @classmethod
    def of(cls, samples: Sequence[Sample]) -> LatencySummary:
        values = [s.latency_s for s in samples]
        return cls(len(values), percentile(values, 50), percentile(values, 95), percentile(values, 99),
                   min(values, default=float("nan")), max(values, default=float("nan")))

    def line(self) -> str:
        return (f"p50 {self.p50:.3f} s, p95 {self.p95:.3f} s, p99 {self.p99:.3f} s "
                f"(min {self.minimum:.3f}, max {self.maximum:.3f}, {self.samples} frames)")


PLAYER_PAGE_PATH = "/__g2g/player.html"
PLAYER_HLSJS_PATH = "/__g2g/hls.min.mjs"


def player_page_html() -> str:
    """A minimal hls.js player: ``?src=PLAYLIST&config=JSON`` (hls.js options over
    ``{enableWorker: false}``, the ES-module build has no inline worker). Fatal
    network errors reload, fatal media errors recover, like any sane player.
    ``window.hls`` is the instance."""
    return """<!doctype html>
<html><head><meta charset="utf-8"><title>g2g player</title></head>
<body style="margin:0;background:#000">
<video id="video" muted autoplay playsinline style="width:640px;height:360px"></video>
<script type="module">
import Hls from "./hls.min.mjs";
const params = new URLSearchParams(location.search);
const video = document.getElementById("video");
const hls = new Hls({ enableWorker: false, ...JSON.parse(params.get("config") || "{}") });
window.hls = hls;
hls.on(Hls.Events.MANIFEST_PARSED, () => video.play().catch(() => {}));
hls.on(Hls.Events.ERROR, (_event, data) => {
  if (!data.fatal) return;
  if (data.type === Hls.ErrorTypes.MEDIA_ERROR) hls.recoverMediaError();
  else setTimeout(() => hls.startLoad(), 500);
});
hls.loadSource(params.get("src"));
hls.attachMedia(video);
</script></body></html>
"""


async def route_player_page(page: Any, origin: str) -> None:
    """Serve the minimal player page and the vendored hls.js at ``origin`` + ``/__g2g/...``
    from Playwright (same origin as the playlist, so no CORS is needed)."""
    html = player_page_html()
    hlsjs = HLSJS_PATH.read_bytes()

    async def page_route(route: Any) -> None:
        await route.fulfill(status=200, content_type="text/html; charset=utf-8", body=html)

    async def hlsjs_route(route: Any) -> None:
        await route.fulfill(status=200, content_type="text/javascript", body=hlsjs)

    await page.route(f"{origin}{PLAYER_PAGE_PATH}*", page_route)
    await page.route(f"{origin}{PLAYER_HLSJS_PATH}", hlsjs_route)


def player_page_url(origin: str, playlist: str, config: dict[str, Any] | None = None) -> str:
    from urllib.parse import urlencode

    return f"{origin}{PLAYER_PAGE_PATH}?" + urlencode({"src": playlist, "config": json.dumps(config or {})})
