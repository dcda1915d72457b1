"""The ffmpeg command line as a real encoder for tests (RTMP and SRT publishers)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from typing import AsyncIterator

FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"


def source_args(seconds: float, *, size: str = "640x360", rate: int = 30, gop: int = 30,
                     bitrate: str = "800k") -> list[str]:
    """A moving test picture and a tone, H.264 (x264 ultrafast, zerolatency) + AAC, paced in real time."""
    return [
        "-hide_banner", "-loglevel", "error", "-nostdin",
        "-re", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}",
        "-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        "-t", str(seconds),
        "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", str(gop), "-b:v", bitrate,
        "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "96k", "-ac", "2",
    ]


@contextlib.asynccontextmanager
async def publisher(url: str, seconds: float, fmt: str = "flv", **kwargs: object) -> AsyncIterator[asyncio.subprocess.Process]:
    """Run ffmpeg publishing to ``url`` (``fmt`` flv for RTMP, mpegts for SRT); killed on exit."""
    proc = await asyncio.create_subprocess_exec(
        FFMPEG, *source_args(seconds, **kwargs), "-f", fmt, url,  # type: ignore[arg-type]
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def finish(proc: asyncio.subprocess.Process, timeout: float) -> tuple[int, str]:
    """Wait for ffmpeg to end; return its exit status and error output."""
    async with asyncio.timeout(timeout):
        _, err = await proc.communicate()
    return proc.returncode or 0, err.decode(errors="replace")
