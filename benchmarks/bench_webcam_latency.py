"""Speaker-to-speaker latency of a webcam room: our server vs a direct WebRTC call, same run.

Speaker A is an aiortc peer whose camera shows black, then white ("a flash") every
``--interval`` seconds; speaker B is an aiortc peer watching what it receives.

- **ours**: A and B connect to a :class:`rooms.webcam.room.WebcamRoom` (the code the
  server runs: aiortc receive and decode, compositor, one libx264 program encode, the
  same packets to B); A is on stage, B backstage. Latency = when B's decoded program
  picture turns white minus when A's camera track handed the first white frame to
  its encoder.
- **peer**: the same two aiortc peers connected directly (no server): the floor set by
  WebRTC encode + loopback + decode in this process.

Both run on loopback in one process (the server's program encode in its worker
thread), so the figure covers encode, transport, decode, composition and the
program encode, not a browser's capture and display. Median and p95 over the
flashes; ratio ours / peer.

    .venv/bin/python -m benchmarks.bench_webcam_latency [--quick] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import av
import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)

from benchmarks.harness import (
    add_common_options,
    fmt,
    log,
    machine_busy_seconds,
    median,
    percentile,
    print_table,
    set_nice,
    write_metric,
)

MODULE = "benchmarks.bench_webcam_latency"
METRIC = "speaker_to_speaker_latency_s"


class FlashCamera(MediaStreamTrack):
    """640x360 at 30 fps, black or white; records when each flash starts."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self.white = False
        self.flash_at: list[float] = []
        self._index = 0
        self._started = time.monotonic()

    async def recv(self) -> av.VideoFrame:
        due = self._started + self._index / 30
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        white = self.white
        y = 235 if white else 16
        packed = np.concatenate((np.full(640 * 360, y, np.uint8), np.full(320 * 180 * 2, 128, np.uint8)))
        frame = av.VideoFrame.from_ndarray(packed.reshape(-1, 640), format="yuv420p")
        frame.pts, frame.time_base = self._index * 3000, fractions.Fraction(1, 90_000)
        self._index += 1
        if white and (not self.flash_at or self.flash_at[-1] < 0):
            self.flash_at[-1] = time.monotonic()
        return frame

    def flash(self, on: bool) -> None:
        self.white = on
        if on:
            self.flash_at.append(-1.0)


class Watcher:
    """Reads B's video track; notes when the centre of the picture turns white."""

    def __init__(self) -> None:
        self.white_at: list[float] = []
        self._was_white = False

    async def read(self, track: Any) -> None:
        while True:
            frame = await track.recv()
            if not isinstance(frame, av.VideoFrame):
                continue
            luma = np.frombuffer(frame.planes[0], np.uint8).reshape(-1, frame.planes[0].line_size)
            h, w = frame.height, frame.width
            white = float(luma[h // 3:2 * h // 3, w // 3:2 * w // 3].mean()) > 128
            if white and not self._was_white:
                self.white_at.append(time.monotonic())
            self._was_white = white


def h264_only(pc: RTCPeerConnection, track: MediaStreamTrack | str) -> None:
    transceiver = pc.addTransceiver(track, direction="sendrecv")
    transceiver.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("video").codecs
                                     if c.mimeType == "video/H264"])
    pc.addTransceiver("audio", direction="sendrecv")


def watch(pc: RTCPeerConnection, watcher: Watcher, tasks: list[asyncio.Task[None]]) -> None:
    @pc.on("track")
    def on_track(track: Any) -> None:
        if track.kind == "video":
            tasks.append(asyncio.ensure_future(watcher.read(track)))
        else:
            tasks.append(asyncio.ensure_future(_drain(track)))


async def _drain(track: Any) -> None:
    while True:
        await track.recv()


async def flashes(camera: FlashCamera, watcher: Watcher, count: int, interval: float) -> list[float]:
    """Flash ``count`` times; latencies in seconds (a flash never seen is left out)."""
    await asyncio.sleep(2.0)  # warm-up: connection, first keyframes
    for _ in range(count):
        seen = len(watcher.white_at)
        camera.flash(True)
        deadline = time.monotonic() + interval
        while len(watcher.white_at) == seen and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        await asyncio.sleep(max(0.0, deadline - time.monotonic()) / 2)
        camera.flash(False)
        await asyncio.sleep(interval / 2)
    latencies = []
    for started in camera.flash_at:
        after = [t for t in watcher.white_at if t >= started > 0]
        if after and after[0] - started < interval:
            latencies.append(after[0] - started)
    return latencies


async def flashes_then_close(camera: FlashCamera, watcher: Watcher, count: int, interval: float,
                             tasks: list[asyncio.Task[None]], closers: list[Callable[[], Awaitable[Any]]]) -> list[float]:
    """:func:`flashes`, then (also when it fails) cancel ``tasks`` and await each closer in turn."""
    try:
        return await flashes(camera, watcher, count, interval)
    finally:
        for task in tasks:
            task.cancel()
        for close in closers:
            await close()


async def through_our_room(count: int, interval: float) -> list[float]:
    from rooms.participants import Participant
    from rooms.webcam.room import WebcamRooms
    from rooms.webcam.sources import ContentSlots

    class NoDatabase:
        async def fetchval(self, *args: Any) -> None:
            return None  # the webinar is not announced: the program feeds no live

    rooms = WebcamRooms(db=NoDatabase(), hub=None, live=None, content_slots=ContentSlots(), ice_servers=[])
    room = rooms.room(uuid.uuid4())

    async def no_events(changes: Any) -> None:
        return None

    room.publish = no_events  # type: ignore[method-assign]
    camera, watcher, tasks = FlashCamera(), Watcher(), []
    a, b = RTCPeerConnection(), RTCPeerConnection()
    h264_only(a, camera)
    h264_only(b, "video")
    watch(a, Watcher(), tasks)
    watch(b, watcher, tasks)
    people = []
    for pc, name in ((a, "A"), (b, "B")):
        person = Participant(uuid.uuid4(), room.webinar_id, name, "speaker")
        await pc.setLocalDescription(await pc.createOffer())
        answer, _ = await room.connect(person, pc.localDescription.sdp)
        await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        people.append(person)
    room.stage.go_on(people[0].id)
    return await flashes_then_close(camera, watcher, count, interval, tasks, [a.close, b.close, room.close])


async def direct_call(count: int, interval: float) -> list[float]:
    camera, watcher, tasks = FlashCamera(), Watcher(), []
    a, b = RTCPeerConnection(), RTCPeerConnection()
    h264_only(a, camera)
    watch(b, watcher, tasks)
    await a.setLocalDescription(await a.createOffer())
    await b.setRemoteDescription(a.localDescription)
    for transceiver in b.getTransceivers():
        transceiver.direction = "recvonly"
    await b.setLocalDescription(await b.createAnswer())
    await a.setRemoteDescription(b.localDescription)
    return await flashes_then_close(camera, watcher, count, interval, tasks, [a.close, b.close])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_options(parser, quick="fewer flashes", write="write the row of benchmarks/RESULTS.md",
                       wait_quiet=False)
    parser.add_argument("--flashes", type=int, default=0, help="flashes per side (default 30, quick 12)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between flashes")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    count = args.flashes or (12 if args.quick else 30)
    set_nice(args.nice)
    busy0, started = machine_busy_seconds()[0], time.monotonic()
    ours = asyncio.run(through_our_room(count, args.interval))
    log(f"ours: {len(ours)} of {count} flashes seen")
    peer = asyncio.run(direct_call(count, args.interval))
    log(f"direct call: {len(peer)} of {count} flashes seen")
    busy_cores = (machine_busy_seconds()[0] - busy0) / (time.monotonic() - started)
    log(f"machine busy with {busy_cores:.2f} cores during the run (this benchmark included)")
    if not ours or not peer:
        print("no flash seen on one side: no figure", file=sys.stderr)
        return 1
    rows = [["ours (through the webcam room)", fmt(median(ours)), fmt(percentile(ours, 95)), len(ours)],
            ["direct aiortc call", fmt(median(peer)), fmt(percentile(peer, 95)), len(peer)]]
    print_table(["path", "median s", "p95 s", "flashes"], rows)
    if args.write:
        write_metric(METRIC, ours=f"{fmt(median(ours))} (p95 {fmt(percentile(ours, 95))})",
                     peer=f"{fmt(median(peer))} (p95 {fmt(percentile(peer, 95))})",
                     ratio=fmt(median(ours) / median(peer)), target="< 0.5 s", module=MODULE, argv=argv,
                     note=(
                         f"{count} black-to-white flashes of speaker A's aiortc camera (640x360 30 fps, H.264), "
                         "seen by speaker B's aiortc peer: through a WebcamRoom (A on stage; server decode, "
                         "compositor, one libx264 program encode) vs a direct aiortc call in the same run; "
                         "loopback, one process, no browser capture/display; medians (p95 in brackets); "
                         f"machine busy with {busy_cores:.2f} of 2 cores during the run, this benchmark included "
                         "(other engineers' test suites were running)."))
        log("benchmarks/RESULTS.md updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
