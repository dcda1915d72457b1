"""The replay as one downloadable MP4 (R-REP-1).

The VOD playlist is available the moment the live ends (written by
:mod:`player.publication`); this module then remuxes the live's own
segments, without re-encoding, into ``replay.mp4`` with the index at the
front (``movflags=faststart``) so it plays while downloading.

Segments are read one after the other through a forward-only reader, so a
4-hour live is never held in memory. Each init generation (a reconnect with
new parameters) is demuxed with its own init section; timestamps are
already continuous across generations (the segmenter keeps one program
timeline), so packets go straight to the output. The output's streams are
taken from the init sections before any packet is written (a generation may
lack a track another one has).

It runs in a child process (``python -m player.replay <media root> <webinar
id>``, see :func:`remux_in_subprocess`): a crash inside FFmpeg then costs
the MP4, never the server and its lives.
"""

from __future__ import annotations

import io
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import av

from player.publication import VOD_PLAYLIST, hls_prefix
from player.storage import LocalMediaStore

log = logging.getLogger("player.replay")

REPLAY_MP4 = "replay.mp4"
_MAP = re.compile(r'^#EXT-X-MAP:URI="([^"]+)"')


class ReplayError(RuntimeError):
    """The VOD playlist or its files are missing or unreadable."""


@dataclass
class _Generation:
    init: str
    segments: list[str] = field(default_factory=list)


def _generations(playlist: str) -> list[_Generation]:
    generations: list[_Generation] = []
    for line in playlist.splitlines():
        line = line.strip()
        if match := _MAP.match(line):
            generations.append(_Generation(match.group(1)))
        elif line and not line.startswith("#"):
            if not generations:
                raise ReplayError("a segment comes before any EXT-X-MAP")
            generations[-1].segments.append(line)
    return generations


class _ChainReader(io.RawIOBase):
    """Reads several files as one forward-only stream (no seek: the demuxer copes)."""

    def __init__(self, paths: list[Path]) -> None:
        self._paths = list(paths)
        self._current: io.BufferedReader | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while True:
            if self._current is None:
                if not self._paths:
                    return 0
                self._current = open(self._paths.pop(0), "rb")
            n = self._current.readinto(buffer)
            if n:
                return n
            self._current.close()
            self._current = None

    def close(self) -> None:
        if self._current is not None:
            self._current.close()
        super().close()


def remux_replay(store: LocalMediaStore, webinar_id: object) -> Path:
    """Write ``hls/<id>/replay.mp4`` from the VOD playlist's segments; return its path."""
    prefix = hls_prefix(webinar_id)  # type: ignore[arg-type]
    playlist = store.read(f"{prefix}/{VOD_PLAYLIST}")
    if playlist is None:
        raise ReplayError(f"no VOD playlist for {webinar_id}")
    generations = _generations(playlist.decode())
    folder = store.root / prefix
    target = folder / REPLAY_MP4
    tmp = folder / f".{REPLAY_MP4}.tmp"
    started = time.perf_counter()
    packets = 0
    for generation in generations:
        missing = [name for name in [generation.init, *generation.segments] if not (folder / name).is_file()]
        if missing:
            raise ReplayError(f"missing files for the replay: {missing[:5]}")
    with av.open(str(tmp), "w", format="mp4", options={"movflags": "faststart"}) as output:
        out_streams: dict[str, av.stream.Stream] = {}
        for generation in generations:  # every stream is declared before the first packet
            with av.open(str(folder / generation.init), "r", format="mp4") as init:
                for stream in init.streams:
                    if stream.type in ("video", "audio") and stream.type not in out_streams:
                        out_streams[stream.type] = output.add_stream_from_template(stream)
        last_dts: dict[str, int] = {}
        for generation in generations:
            paths = [folder / generation.init] + [folder / name for name in generation.segments]
            with av.open(_ChainReader(paths), "r", format="mp4") as source:
                wanted = [s for s in source.streams if s.type in out_streams]
                for packet in source.demux(wanted):
                    if packet.dts is None or packet.size == 0:
                        continue
                    kind = packet.stream.type
                    # Never let decode times go back (a straggler across a reconnect).
                    if kind in last_dts and packet.dts <= last_dts[kind]:
                        continue
                    last_dts[kind] = packet.dts
                    packet.stream = out_streams[kind]
                    output.mux(packet)
                    packets += 1
    tmp.replace(target)
    log.info("replay MP4 of %s: %d packets in %.2f s", webinar_id, packets, time.perf_counter() - started)
    return target


async def remux_in_subprocess(media_root: Path, webinar_id: object, timeout_s: float = 3600) -> Path:
    """Run :func:`remux_replay` in a child Python process; raise :class:`ReplayError` on failure."""
    import asyncio
    import sys

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "player.replay", str(media_root), str(webinar_id),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout_s):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise ReplayError(f"replay remux of {webinar_id} took more than {timeout_s:.0f} s") from None
    if proc.returncode != 0:
        raise ReplayError(f"replay remux of {webinar_id} failed ({proc.returncode}): {err.decode(errors='replace')[-500:]}")
    return Path(out.decode().strip())


def main(argv: list[str] | None = None) -> int:
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m player.replay MEDIA_ROOT WEBINAR_ID", file=sys.stderr)
        return 2
    try:
        print(remux_replay(LocalMediaStore(Path(args[0])), args[1]))
    except (ReplayError, av.FFmpegError, OSError) as exc:
        print(f"replay remux failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
