"""Shared pieces of the SRT integration tests: a collecting sink, ports, publishers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import av

from player.media import AccessUnit, AudioConfig, TrackConfig, VideoConfig
from tests.support.net import free_udp_port  # noqa: F401  (re-exported for the SRT tests)


class CollectingSink:
    """A MediaSink that records everything it is given."""

    def __init__(self, name: str = "") -> None:
        self.name = name
        self.configs: list[TrackConfig] = []
        self.units: list[AccessUnit] = []
        self.ended = 0
        self.after_end = 0

    def on_config(self, config: TrackConfig) -> None:
        self.after_end += self.ended
        self.configs.append(config)

    def on_access_unit(self, unit: AccessUnit) -> None:
        self.after_end += self.ended
        self.units.append(unit)

    def on_end(self) -> None:
        self.ended += 1

    def video(self) -> list[AccessUnit]:
        return [u for u in self.units if u.kind == "video"]

    def audio(self) -> list[AccessUnit]:
        return [u for u in self.units if u.kind == "audio"]

    def video_config(self) -> VideoConfig:
        (config,) = [c for c in self.configs if isinstance(c, VideoConfig)]
        return config

    def audio_config(self) -> AudioConfig:
        (config,) = [c for c in self.configs if isinstance(c, AudioConfig)]
        return config

    def decoded_video(self) -> list[av.VideoFrame]:
        config = self.video_config()
        ctx = av.CodecContext.create(config.codec, "r")
        ctx.extradata = config.extradata
        frames = []
        for unit in self.video():
            frames += ctx.decode(av.Packet(unit.data))
        return frames + ctx.decode(None)

    def decoded_audio(self) -> list[av.AudioFrame]:
        ctx = av.CodecContext.create("aac", "r")
        ctx.extradata = self.audio_config().extradata
        frames = []
        for unit in self.audio():
            frames += ctx.decode(av.Packet(unit.data))
        return frames


async def wait_for(predicate: Callable[[], bool], timeout: float = 15.0, step: float = 0.05) -> bool:
    """Poll ``predicate`` (at most ``timeout / step`` times); return its last value."""
    for _ in range(int(timeout / step)):
        if predicate():
            return True
        await asyncio.sleep(step)
    return predicate()


def ffmpeg_publish_cmd(
    port: int,
    stream_id: str,
    *,
    seconds: float = 3,
    size: str = "320x240",
    passphrase: str | None = None,
    extra: tuple[str, ...] = (),
) -> list[str]:
    """ffmpeg as an SRT encoder: testsrc2 + sine, H.264 (GOP 30) + AAC in MPEG-TS, real time."""
    url = f"srt://127.0.0.1:{port}?streamid={stream_id}&pkt_size=1316&linger=1"
    if passphrase is not None:
        url += f"&passphrase={passphrase}"
    return [
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "quiet", "-re",
        "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        "-t", str(seconds),
        "-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-sc_threshold", "0", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "64k",
        *extra,
        "-f", "mpegts", url,
    ]  # fmt: skip


@contextlib.asynccontextmanager
async def publisher(*args: str, **kwargs: object) -> AsyncIterator[asyncio.subprocess.Process]:
    """Run an ffmpeg publisher; it is always stopped when the block exits."""
    proc = await asyncio.create_subprocess_exec(
        *ffmpeg_publish_cmd(*args, **kwargs),  # type: ignore[arg-type]
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def exit_code(proc: asyncio.subprocess.Process, timeout: float = 30.0) -> int:
    return await asyncio.wait_for(proc.wait(), timeout)
