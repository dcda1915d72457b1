"""Analysis probe (no RESULTS row): server CPU per LL-HLS request as a live grows older.

The live playlist keeps every segment (the replay needs them), so any work
per request that is proportional to the number of segments makes viewers
cost more the longer the live lasts. This probe ages one live quickly -- a
360p clip published *without* ``-re`` (faster than real time) in chunks,
each ended by killing ffmpeg (a drop: a clean end would end the live) with
``WEBINAR_LIVE_GRACE_S=600`` so every chunk continues the same live -- and
at each age measures, with the publisher gone (the playlist does not change,
so its text is rendered once and cached), the server's CPU per request for:

- ``index.m3u8?_HLS_skip=YES`` (what a player reloads: delta update),
- ``index.m3u8`` (full playlist),
- one part ``segM.P.m4s``,

each as ``--requests`` GETs over 20 keep-alive connections (the lean client
of :mod:`benchmarks.llhls_load`); CPU from /proc (the server process).

    .venv/bin/python -m benchmarks.probe_playlist_age [--ages 1,15,60] [--requests 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time

import httpx

from benchmarks.harness import CLIP_360P_500K, Bench, CpuWindow, Publisher, clip, log, print_table, studio_webinars
from benchmarks.llhls_load import connect

_PART = re.compile(r'#EXT-X-PART:[^\n]*URI="(seg\d+\.\d+\.m4s)"')


async def hammer(port: int, path: str, requests: int, server_pid: int, conns: int = 20) -> tuple[float, float, int]:
    """(server CPU µs per request, requests per second, body bytes) for ``requests`` GETs of ``path``."""
    pool = [await connect("127.0.0.1", port, keep_body=False) for _ in range(conns)]
    per = requests // conns
    size = 0

    async def worker(conn: object) -> None:
        nonlocal size
        for _ in range(per):
            status, _, _, n = await conn.get(path, None)  # type: ignore[attr-defined]
            if status != 200:
                raise RuntimeError(f"{path}: HTTP {status}")
            size = n

    window = CpuWindow({"server": (server_pid, False)}).start()
    await asyncio.gather(*(worker(c) for c in pool))
    window.stop()
    for conn in pool:
        conn.transport.close()  # type: ignore[union-attr]
    done = per * conns
    return window.cpu["server"] / done * 1e6, done / window.wall, size


async def run(args: argparse.Namespace) -> list[list[object]]:
    source = clip(CLIP_360P_500K)
    rows: list[list[object]] = []
    async with Bench() as bench, bench.server(WEBINAR_LIVE_GRACE_S="600") as server:
        (webinar,) = await studio_webinars(server.database_url, 1)
        base = f"/hls/{webinar.id}"
        aged = 0.0
        async with httpx.AsyncClient(timeout=10) as client:
            for minutes in args.ages:
                chunk = minutes * 60 - aged
                if chunk > 0:
                    started = time.monotonic()
                    # A chunk ends with a drop (SIGKILL), not ffmpeg's clean end (FCUnpublish), which
                    # would end the live at once: the next chunk continues the same live.
                    publisher = await Publisher(server.rtmp_url(webinar.key), source, chunk + 3600,
                                                realtime=False).start()
                    deadline = time.monotonic() + chunk + 600
                    while not publisher.progress or publisher.progress[-1][1] < chunk:
                        if not publisher.running or time.monotonic() > deadline:
                            raise RuntimeError(f"publisher stopped early: {publisher.stderr[-300:]!r}")
                        await asyncio.sleep(0.2)
                    assert publisher.proc is not None
                    publisher.proc.kill()
                    await publisher.wait(30)
                    # The server may still be reading what ffmpeg sent (faster than real time):
                    # wait until the playlist stops changing (at most 60 s).
                    last, still_since, settle_by = "", time.monotonic(), time.monotonic() + 60
                    while time.monotonic() < settle_by:
                        now_text = (await client.get(f"{server.url}{base}/index.m3u8")).text
                        if now_text != last:
                            last, still_since = now_text, time.monotonic()
                        elif time.monotonic() - still_since >= 1.5:
                            break
                        await asyncio.sleep(0.25)
                    log(f"aged the live by {chunk:.0f} s of media in {time.monotonic() - started:.1f} s")
                    aged += chunk
                    await asyncio.sleep(1.0)
                text = (await client.get(f"{server.url}{base}/index.m3u8")).text
                segments = text.count("#EXTINF")
                parts = _PART.findall(text)
                row: list[object] = [f"{aged / 60:.0f}", segments]
                for path in (f"{base}/index.m3u8?_HLS_skip=YES", f"{base}/index.m3u8", f"{base}/{parts[-1]}"):
                    cpu_us, rate, size = await hammer(server.port, path, args.requests, server.pid)
                    row += [f"{cpu_us:.0f}", f"{rate:.0f}", size]
                rows.append(row)
                log(f"age {aged / 60:.0f} min: {row}")
        server.kill()
    return rows


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ages", default="1,15,60", help="live ages in minutes of media (default 1,15,60)")
    parser.add_argument("--requests", type=int, default=2000, help="requests per measurement (default 2000)")
    args = parser.parse_args(argv)
    args.ages = sorted(float(x) for x in args.ages.split(","))
    rows = asyncio.run(run(args))
    print("\nserver CPU per request vs live age (one process; the playlist is cached, not re-rendered)")
    print_table(["age min", "segments", "skip µs/req", "skip req/s", "skip bytes", "full µs/req", "full req/s",
                 "full bytes", "part µs/req", "part req/s", "part bytes"], rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
