"""Webcam room glass-to-glass latency: a speaker's camera to a viewer's player.

A real ``webinar serve`` (child process, fresh database) holds an announced webcam
webinar. The speaker is an aiortc peer (the browser's part: camera capture, H.264
encode, WebRTC) whose 640x360 30 fps camera paints the wall-clock time of each
frame as the barcode of :mod:`benchmarks.g2g` at the moment the frame is handed to
its encoder; it logs in, passes the connection check, joins over the room WebSocket
and goes on stage (which starts the live). A headless Chromium opens the real
viewer page ``/w/{id}`` (hls.js, low-latency mode) and the g2g probe reads the
barcode of every frame the ``<video>`` presents: latency = shown - captured, on the
same clock. The path counted: speaker encode, WebRTC, the server's decode,
compositor (the speaker fills the 1280x720 program), program encode, LL-HLS
packager and origin, hls.js buffer, Chromium decode and display.

No peer process: the seed figure to beat is 15-30 s for a webcam room (R-ROOM-6),
target p95 <= 2 s; the "peer" column quotes the seed.

    .venv/bin/python -m benchmarks.bench_webcam_glass_to_glass [--quick] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import fractions
import os
import sys
import time
import uuid
from typing import Any

import av
import httpx
import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from benchmarks.g2g import (
    LatencySummary,
    Sample,
    drain,
    install_probe,
    paint_luma,
    unwrap,
)
from benchmarks.harness import (
    Bench,
    add_common_options,
    log,
    machine_busy_seconds,
    median,
    set_nice,
    write_metric,
)

MODULE = "benchmarks.bench_webcam_glass_to_glass"
METRIC = "webcam_glass_to_glass_p95_s"
PASSWORD = "bench password 123"
PLAUSIBLE_S = (0.0, 120.0)
STALL_CAUSE = (
    "Was 4.1 s (p50 3.3): hls.js stalled every 30-60 s at a segment boundary and each stall raised its "
    "live target by 1 s for good. Measured: the packager's parts came on time and regularly (0.267 s "
    "apart); hls.js 1.7 takes a segment's end as its start + EXTINF and, when its buffer end falls short "
    "of it, picks the segment just loaded again, moving on only if all its parts are flagged loaded, which "
    "a back-buffer eviction finishing during a part's append undoes (nothing loads for 2-4 s). The "
    "webcam program's buffer end fell short at 44% of boundaries (up to -38 ms), the studio's does not: "
    "(1) pictures on exact 1/30 s times made 0.2666... s parts, written rounded to 10 us, so a 2 s "
    "segment was announced as 2.00002 s; (2) the AAC audio of an instant reached the packager 20-60 ms "
    "after its picture, so parts began with audio from before their keyframe and hls.js timed segments "
    "on the audio. Fix (rooms/webcam/program.py picture_pts, room.py _release_video): pictures on a "
    "millisecond grid, as RTMP sources are, and each fed once the audio to its end is (+~40 ms); short "
    "boundaries: 31% with (1) alone, 1 of 75 (by 3e-14 s) with both."
)
"""Why the figure moved (benchmarks/RESULTS.md note), measured with hls.js debug logs and the
page's buffered ranges (see the report of issue #5)."""


class BarcodeCamera(MediaStreamTrack):
    """640x360 at 30 fps, grey, with the capture time (ms) painted as a barcode."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self._index = 0
        self._started = time.monotonic()
        self._chroma = bytes([128]) * (320 * 180 * 2)

    async def recv(self) -> av.VideoFrame:
        await asyncio.sleep(max(0.0, self._started + self._index / 30 - time.monotonic()))
        luma = bytearray([90]) * (640 * 360)
        paint_luma(luma, 640, 360, int(time.time() * 1000))
        packed = np.frombuffer(bytes(luma) + self._chroma, np.uint8).reshape(-1, 640)
        frame = av.VideoFrame.from_ndarray(packed, format="yuv420p")
        frame.pts, frame.time_base = self._index * 3000, fractions.Fraction(1, 90_000)
        self._index += 1
        return frame


async def webcam_webinar(database_url: str) -> tuple[uuid.UUID, str]:
    """An announced webcam webinar and one speaker (email); made with the server's own functions."""
    from server.accounts import create_account
    from server.db import Database
    from server.orders import create_order
    from server.users import create_user
    from server.webinars import create_webinar, set_state

    db = Database(database_url, min_size=1, max_size=2)
    await db.connect()
    try:
        today = dt.date.today()
        account = await create_account(db, f"Bench webcam {uuid.uuid4().hex[:6]}")
        await create_order(db, account.id, reference="BENCH-WEBCAM", signed_on=today,
                           contract_start=today - dt.timedelta(days=1), contract_end=today + dt.timedelta(days=30),
                           webinars_bought=1, kind="advertiser", price_per_webinar_cents=0)
        webinar = await create_webinar(db, account.id, title="Bench webcam live",
                                       starts_at=dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(minutes=5),
                                       duration_minutes=60, room_type="webcam")
        await set_state(db, webinar.id, "announced")
        email = f"speaker-{uuid.uuid4().hex[:6]}@example.com"
        user = await create_user(db, email, name="Bench Speaker", password=PASSWORD)
        await db.execute("INSERT INTO webinar_members (webinar_id, user_id, role) VALUES ($1, $2, 'speaker')",
                         webinar.id, user.id)
        return webinar.id, email
    finally:
        await db.close()


async def speaker_on_stage(base_url: str, wid: uuid.UUID, email: str) -> tuple[Any, RTCPeerConnection]:
    """Log in, pass the connection check, connect the aiortc peer, go on stage."""
    from tests.support.room_client import RoomClient

    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        await http.get("/login")
        response = await http.post("/login", data={"email": email, "password": PASSWORD,
                                                   "csrf_token": http.cookies["wb_csrf"]})
        assert response.status_code == 303, response.text[:300]
        await http.get(f"/w/{wid}/speak")
        check = await http.post(f"/w/{wid}/speak/preflight", content=os.urandom(1024 * 1024),
                                headers={"x-csrf-token": http.cookies["wb_csrf"]})
        assert check.status_code == 200, check.text
        session = http.cookies["wb_session"]
    client = RoomClient(f"ws://{base_url.split('://', 1)[1]}/ws/rooms/{wid}", cookie=f"wb_session={session}",
                        origin=base_url)
    await client.connect()
    pc = RTCPeerConnection()
    video = pc.addTransceiver(BarcodeCamera(), direction="sendrecv")
    video.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/H264"])
    pc.addTransceiver("audio", direction="sendrecv")

    @pc.on("track")
    def on_track(track: Any) -> None:
        async def drain_track() -> None:
            with contextlib.suppress(MediaStreamError):  # the connection closed
                while True:
                    await track.recv()
        asyncio.ensure_future(drain_track())

    await pc.setLocalDescription(await pc.createOffer())
    reply = await client.send("rtc.offer", sdp=pc.localDescription.sdp)
    assert reply["type"] == "ack", reply
    await pc.setRemoteDescription(RTCSessionDescription(**reply["answer"]))
    joined = await client.send("stage.join")
    assert joined["type"] == "ack", joined
    return client, pc


async def run(args: argparse.Namespace) -> tuple[list[LatencySummary], dict[str, int], float]:
    from tests.support.browser import launch_chromium

    set_nice(args.nice)
    async with Bench() as bench, bench.server() as server:
        wid, email = await webcam_webinar(server.database_url)
        client, pc = await speaker_on_stage(server.url, wid, email)
        try:
            async with launch_chromium() as chromium:
                page = await chromium.new_page("desktop")
                await page.goto(f"{server.url}/w/{wid}")
                await page.wait_for_selector("#viewer-video", state="attached", timeout=30_000)
                await install_probe(page, "#viewer-video")
                await asyncio.sleep(args.warmup)
                _, baseline = await drain(page)
                busy0, started = machine_busy_seconds()[0], time.monotonic()
                windows: list[LatencySummary] = []
                for _ in range(args.windows):
                    since_ms = time.time() * 1000
                    await asyncio.sleep(args.seconds)
                    raw, counters = await drain(page)
                    samples: list[Sample] = [s for s in unwrap(raw) if s.shown_ms >= since_ms
                                             and PLAUSIBLE_S[0] <= s.latency_s <= PLAUSIBLE_S[1]]
                    windows.append(LatencySummary.of(samples))
                    log(f"window {len(windows)}: {windows[-1].line()}")
                busy = (machine_busy_seconds()[0] - busy0) / (time.monotonic() - started)
        finally:
            await pc.close()
            await client.close()
    counts = {k: v - baseline.get(k, 0) for k, v in counters.items()}
    return windows, counts, busy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_options(parser, quick="a shorter window", write="write the row of benchmarks/RESULTS.md",
                       wait_quiet=False)
    parser.add_argument("--seconds", type=float, default=0.0, help="seconds per measured window (default 30, quick 15)")
    parser.add_argument("--windows", type=int, default=0, help="measured windows (default 3, quick 2)")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds of play before measuring")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    args.seconds = args.seconds or (15.0 if args.quick else 30.0)
    args.windows = args.windows or (2 if args.quick else 3)
    windows, counts, busy = asyncio.run(run(args))
    if not all(w.samples for w in windows):
        print("a window without any frame read: no figure", file=sys.stderr)
        return 1
    p95 = median([w.p95 for w in windows])
    p50 = median([w.p50 for w in windows])
    frames = sum(w.samples for w in windows)
    print(f"webcam glass-to-glass: median over {len(windows)} windows of p95 {p95:.3f} s, of p50 {p50:.3f} s "
          f"(p95s {', '.join(f'{w.p95:.3f}' for w in windows)}); probe counters {counts}; machine busy {busy:.2f} cores")
    if args.write:
        write_metric(METRIC, ours=f"{p95:.3f} (p50 {p50:.3f})", peer="seed 15-30 s (R-ROOM-6)",
                     ratio=f"{p95 / 15:.3f} of 15 s", target="p95 <= 2 s", module=MODULE, argv=argv, note=(
                           f"aiortc speaker (640x360 30 fps, capture time as the g2g barcode) -> webinar serve "
                           f"(WebRTC, compositor, one libx264 program encode, LL-HLS) -> Chromium viewer page /w/{{id}} "
                           f"(hls.js low-latency) read by benchmarks/g2g_probe.js; {frames} frames in {len(windows)} "
                           f"windows of {args.seconds:.0f} s after {args.warmup:.0f} s of warm-up, median of the "
                           f"windows' p95 (p95s {', '.join(f'{w.p95:.2f}' for w in windows)} s), "
                           f"{counts.get('stalls', 0)} player stall(s) after the warm-up; no peer process (the seed "
                           f"figure is quoted); machine busy with {busy:.2f} of 2 cores during the window, this "
                           f"benchmark included. {STALL_CAUSE}"))
        log("benchmarks/RESULTS.md updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
