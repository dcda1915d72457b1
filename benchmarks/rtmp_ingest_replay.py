"""Secondary, load-independent figure for (b): the RTMP ingest pipeline in-process.

Replays the 1080p30 6 Mbit/s benchmark clip (the FLV of
:data:`benchmarks.harness.CLIP_1080P_6M`) as the bytes a publisher sends
(handshake, connect ... publish, Set Chunk Size 4096 like ffmpeg, then one
read per RTMP message, as ffmpeg writes them) through the code the server
runs per stream: :class:`ingest.rtmp.session.ServerConnection` (chunk
reassembly, FLV parsing) and a real :class:`player.publication.Publication`
(segmenter, fMP4 parts, playlist, segment files in a temporary folder).
No socket and no event loop: what it measures is the per-message Python
work, not the per-wakeup cost (that one only the live benchmark sees).

Two figures, per media second of the clip:

- CPU microseconds (``time.process_time``), median of ``--repeat`` runs;
  affected by a loaded machine (caches, frequency) but much less than the
  wall-clock benchmarks.
- ``--callgrind``: instructions executed (valgrind's callgrind ``Ir``), run
  once with the clip and once with no media (start-up subtracted): the same
  number on any load, so a change can be compared before/after exactly.

    .venv/bin/python -m benchmarks.rtmp_ingest_replay [--seconds 20] [--repeat 5] [--callgrind]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from ingest import amf0
from ingest.rtmp.chunks import MSG_AUDIO, MSG_COMMAND_AMF0, MSG_VIDEO, ChunkWriter
from ingest.rtmp.session import (
    MediaConfig,
    MediaUnit,
    PublishRequested,
    ServerConnection,
)
from player.publication import Publication
from player.storage import LocalMediaStore

CHUNK_SIZE = 4096
"""Chunk size the replayed publisher sets (ffmpeg's)."""


def flv_media_tags(path: Path, seconds: float) -> list[tuple[int, int, bytes]]:
    """``(type, timestamp ms, body)`` of the audio and video tags of the first ``seconds`` of an FLV file."""
    data = path.read_bytes()
    if data[:3] != b"FLV":
        raise ValueError(f"{path} is not an FLV file")
    pos = struct.unpack_from(">I", data, 5)[0] + 4
    tags: list[tuple[int, int, bytes]] = []
    limit = int(seconds * 1000)
    while pos + 11 <= len(data):
        tag_type = data[pos] & 0x1F
        size = int.from_bytes(data[pos + 1 : pos + 4], "big")
        timestamp = int.from_bytes(data[pos + 4 : pos + 7], "big") | (data[pos + 7] << 24)
        body = data[pos + 11 : pos + 11 + size]
        pos += 11 + size + 4
        if timestamp > limit:
            break
        if tag_type in (MSG_AUDIO, MSG_VIDEO):
            tags.append((tag_type, timestamp, body))
    return tags


def publisher_reads(tags: list[tuple[int, int, bytes]], key: str = "bench") -> list[bytes]:
    """The publisher's bytes, one item per write: the handshake, the commands, then one per media message."""
    writer = ChunkWriter()

    def command(name: str, tid: float, *args: amf0.AMFEncodable, stream_id: int = 0) -> bytes:
        return writer.message(3, MSG_COMMAND_AMF0, stream_id, 0, amf0.encode(name, tid, *args))

    reads = [b"\x03" + bytes(1536), bytes(1536)]
    reads.append(
        command("connect", 1, {"app": "live", "type": "nonprivate", "tcUrl": "rtmp://127.0.0.1/live"})
        + writer.set_chunk_size(CHUNK_SIZE)
        + command("releaseStream", 2, None, key)
        + command("FCPublish", 3, None, key)
        + command("createStream", 4, None)
        + command("publish", 5, None, key, "live", stream_id=1)
    )
    for tag_type, timestamp, body in tags:
        reads.append(writer.message(6 if tag_type == MSG_VIDEO else 4, tag_type, 1, timestamp, body))
    return reads


def replay(reads: list[bytes], media_dir: Path) -> tuple[float, int, int]:
    """Feed ``reads`` through a server connection into a publication: (CPU seconds, units, parts)."""
    conn = ServerConnection()
    publication = Publication(uuid.uuid4(), LocalMediaStore(media_dir))
    units = 0
    start = time.process_time()
    for data in reads:
        for event in conn.receive_data(data):
            if type(event) is MediaUnit:
                publication.on_access_unit(event.unit)
                units += 1
            elif isinstance(event, MediaConfig):
                publication.on_config(event.config)
            elif isinstance(event, PublishRequested):
                conn.accept_publish()
                conn.receive_data(b"")
        conn.data_to_send()
    cpu = time.process_time() - start
    parts = publication.segmenter._sequence  # parts written so far
    return cpu, units, parts


def _callgrind_ir(seconds: float) -> int:
    """Instructions of one child run (``--child``) under callgrind."""
    with tempfile.TemporaryDirectory(prefix="callgrind-") as tmp:
        out = Path(tmp) / "callgrind.out"
        proc = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-m",
             "benchmarks.rtmp_ingest_replay", "--child", "--seconds", str(seconds)],
            capture_output=True, text=True, check=False, env={**os.environ, "PYTHONHASHSEED": "0"},
        )
        if proc.returncode != 0:
            raise RuntimeError(f"callgrind run failed:\n{proc.stderr[-2000:]}")
        match = re.search(r"Collected : (\d+)", proc.stderr)
        if match is None:
            raise RuntimeError(f"no instruction count in callgrind's output:\n{proc.stderr[-2000:]}")
        return int(match.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="media seconds of the clip to replay (max 20)")
    parser.add_argument("--repeat", type=int, default=5, help="CPU-time runs (median; default 5)")
    parser.add_argument("--callgrind", action="store_true", help="count instructions under valgrind instead")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from benchmarks.harness import CLIP_1080P_6M, clip

    if args.callgrind:
        with_media = _callgrind_ir(args.seconds)
        without = _callgrind_ir(0.0)
        per_s = (with_media - without) / args.seconds
        print(f"callgrind: {with_media} Ir with {args.seconds:g} s of media, {without} Ir without; "
              f"{per_s / 1e6:.1f} M instructions per media second")
        return 0
    tags = flv_media_tags(clip(CLIP_1080P_6M), args.seconds)
    reads = publisher_reads(tags)
    media_s = max(args.seconds, 1e-9)
    results = []
    for _ in range(1 if args.child else args.repeat):
        with tempfile.TemporaryDirectory(prefix="ingest-replay-") as tmp:
            results.append(replay(reads, Path(tmp)))
    if args.child:
        return 0
    cpus = [r[0] for r in results]
    _, units, parts = results[0]
    print(f"{len(reads)} reads, {units} access units, {parts} parts, {sum(map(len, reads)) / 1e6:.1f} MB "
          f"in {args.seconds:g} media s")
    print(f"CPU per media second: median {statistics.median(cpus) / media_s * 1e6:.0f} µs "
          f"(runs {min(cpus) / media_s * 1e6:.0f}–{max(cpus) / media_s * 1e6:.0f}); "
          f"per read {statistics.median(cpus) / len(reads) * 1e6:.1f} µs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
