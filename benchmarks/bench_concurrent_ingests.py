"""(c) How many simultaneous 3 Mbit/s RTMP ingests one server process sustains without a stall.

A ramp: N publishers (the same pre-encoded 720p30 3 Mbit/s clip, ``ffmpeg -re
-stream_loop -1 -c copy``, one studio webinar of its own account each) are
added step by step to ONE ``webinar serve`` process; each step lasts a few
seconds of warm-up for the new lives, then a measured window. The same ramp
then runs against nginx-rtmp (``hls on``, one worker) as the peer.

A live **stalls** in a window when any of these happens:

- *viewer lag* (ours): every live's playlist is polled once a second
  (``index.m3u8?_HLS_skip=YES``, staggered, one keep-alive connection per
  live, 5 s timeout); its live edge in wall time is
  the last finished segment's EXT-X-PROGRAM-DATE-TIME + its EXTINF + the
  durations of the parts published since. ``lag = now - edge``; the live
  stalls when ``lag`` exceeds the smallest lag seen for it (since the step's
  warm-up began) by more than :data:`STALL_S` (2 s): its newest part is 2 s
  older than it should be;
- *edge lag* (nginx, no PDT nor parts): ``lag = now - publisher start - sum of
  EXTINF`` from the playlist on disk, tolerance :data:`STALL_S` + one
  fragment (2 s) since the edge only moves by whole fragments;
- *publisher behind*: the publisher (``-progress``: media time sent vs wall
  time since it started) falls more than :data:`STALL_S` behind real time
  compared with its best since the warm-up: the server did not read fast enough (TCP
  backpressure) -- or the machine starved ffmpeg, which the CPU columns tell
  apart. (Its lowest speed over any 3 s is reported too, for information:
  dips to ~0.93 happen on a busy machine without any stall.)
- the publisher exits, or a poll fails or times out.

A lag left over from an earlier window is not a stall now. A stalled window
is retried once (``--attempts``, default 2: the machine is shared with other
work) before the step counts as stalled. The figure is the largest N with a
clean window (the ramp stops at the first stalled step). Per window: the CPU
of the server process (and how long it waited for a CPU), of the ffmpeg
publishers and of this poller, and how busy the rest of the machine was.

    .venv/bin/python -m benchmarks.bench_concurrent_ingests [--quick] [--write] [--steps 10,30,50] [--nice -10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.harness import (
    CLIP_720P_3M,
    Bench,
    CpuWindow,
    NginxRtmp,
    Publisher,
    add_common_options,
    clip,
    largest_held,
    log,
    prepare_run,
    print_table,
    probe_bitrate_kbps,
    raise_fd_limit,
    ramp_figure,
    studio_webinars,
    write_metric,
)
from benchmarks.llhls_load import ConnectionFailed, connect

METRIC = "concurrent_ingests_3mbps"
MODULE = "benchmarks.bench_concurrent_ingests"
STALL_S = 2.0
SPEED_WINDOW_S = 3.0
POLL_S = 1.0
POLL_TIMEOUT_S = 5.0
FRAGMENT_S = 2.0


def live_edge(text: str) -> float | None:
    """Wall time (epoch seconds) of the newest published media in one of our playlists."""
    pdt: float | None = None
    seg_end: float | None = None
    pending_extinf = 0.0
    open_parts = 0.0
    for line in text.splitlines():
        if line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            pdt = dt.datetime.fromisoformat(line.split(":", 1)[1].replace("Z", "+00:00")).timestamp()
        elif line.startswith("#EXTINF:"):
            pending_extinf = float(line[8:].split(",", 1)[0])
        elif line.startswith("#EXT-X-PART:"):
            match = re.search(r"DURATION=([0-9.]+)", line)
            if match:
                open_parts += float(match.group(1))
        elif line and not line.startswith("#"):
            start = pdt if pdt is not None else seg_end
            if start is not None:
                seg_end = start + pending_extinf
            pdt = None
            open_parts = 0.0
    if seg_end is None:
        return None
    return seg_end + open_parts


def extinf_total(text: str) -> float:
    return sum(float(line[8:].split(",", 1)[0]) for line in text.splitlines() if line.startswith("#EXTINF:"))


@dataclass
class Live:
    index: int
    publisher: Publisher
    url: str  # playlist URL (ours) or path (nginx)
    started_wall: float
    lags: list[tuple[float, float]] = field(default_factory=list)  # (monotonic, lag)
    min_lag: float = float("inf")
    errors: list[tuple[float, str]] = field(default_factory=list)

    def record(self, lag: float) -> None:
        self.lags.append((time.monotonic(), lag))
        self.min_lag = min(self.min_lag, lag)

    def worst_excess(self, since: float, until: float, ref_since: float) -> float:
        """Largest lag in [since, until] minus the smallest in [ref_since, until]."""
        inside = [lag for t, lag in self.lags if since <= t <= until]
        ref = [lag for t, lag in self.lags if ref_since <= t <= until]
        return max(inside) - min(ref) if inside else float("inf")


class Poller:
    """Polls every live's playlist once a second (staggered) and records its lag.

    Our playlists are fetched with the lean keep-alive client of
    :mod:`benchmarks.llhls_load` (one connection per live; httpx cost ~4 ms of
    CPU per poll here, which at 80 lives took a third of a core from the
    machine the server runs on); nginx's are read from disk.
    """

    def __init__(self, kind: str, port: int = 0) -> None:
        self.kind = kind
        self.port = port
        self.lives: list[Live] = []
        self._tasks: list[asyncio.Task[None]] = []

    def add(self, live: Live) -> None:
        self.lives.append(live)
        self._tasks.append(asyncio.create_task(self._watch(live)))

    async def _watch(self, live: Live) -> None:
        await asyncio.sleep((live.index * 0.137) % POLL_S)
        conn = None
        path = f"{live.url}?_HLS_skip=YES"
        while True:
            try:
                if self.kind == "ours":
                    if conn is None or conn.closed:
                        conn = await connect("127.0.0.1", self.port, keep_body=True)
                    async with asyncio.timeout(POLL_TIMEOUT_S):
                        status, body, _, _ = await conn.get(path, None)
                    if status == 200:
                        edge = live_edge(body.decode())
                        if edge is not None:
                            live.record(time.time() - edge)
                    elif live.lags:
                        live.errors.append((time.monotonic(), f"playlist {status}"))
                else:
                    path_on_disk = Path(live.url)
                    if path_on_disk.exists():
                        text = path_on_disk.read_text()
                        if "#EXTINF" in text:
                            live.record(time.time() - live.started_wall - extinf_total(text))
            except (TimeoutError, ConnectionFailed, OSError, ValueError) as exc:
                live.errors.append((time.monotonic(), f"{type(exc).__name__}: {exc}"))
                if conn is not None and conn.transport is not None:
                    conn.transport.close()
                conn = None
            await asyncio.sleep(POLL_S)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task


@dataclass
class Step:
    n: int
    stalled: list[str]
    server_cores: float
    per_stream: float
    publishers_cores: float
    poller_cores: float
    other_cores: float
    worst_lag_excess: float
    min_speed: float
    worst_behind: float
    attempt: int = 1
    server_starved: float = 0.0
    """Fraction of the window the server's main thread was runnable but waiting for a CPU."""


async def measure(kind: str, n: int, attempt: int, lives: list[Live], args: argparse.Namespace, server_pid: int,
                  tolerance: float) -> Step:
    """One measured window with ``lives`` running; lags are compared with the best seen since
    ``args.warmup`` seconds before the window (a lag left by an earlier window is not a stall now)."""
    pids = {"server": (server_pid, True), "poller": (os.getpid(), False)}
    pids.update({f"pub{live.index}": (live.publisher.pid, False) for live in lives})
    window = CpuWindow(pids).start()
    t0 = time.monotonic()
    await asyncio.sleep(args.seconds)
    window.stop()
    t1 = time.monotonic()
    ref = t0 - args.warmup
    stalled: list[str] = []
    worst_excess = 0.0
    min_speed = float("inf")
    worst_behind = 0.0
    for live in lives:
        excess = live.worst_excess(t0, t1, ref)
        speed = live.publisher.min_speed(t0, t1, SPEED_WINDOW_S)
        behind = live.publisher.lag_growth(t0, t1, ref)
        min_speed = min(min_speed, speed)
        worst_behind = max(worst_behind, behind)
        if excess != float("inf"):
            worst_excess = max(worst_excess, excess)
        reasons = []
        if not live.publisher.running:
            reasons.append(f"publisher exited ({live.publisher.proc.returncode})")  # type: ignore[union-attr]
        if excess == float("inf"):
            reasons.append("no playlist seen")
        elif excess > tolerance:
            reasons.append(f"lag +{excess:.1f} s")
        if behind > STALL_S:
            reasons.append(f"publisher {behind:.1f} s behind real time (min speed {speed:.2f})")
        errors = [e for t, e in live.errors if t0 <= t <= t1]
        if errors:
            reasons.append(f"{len(errors)} poll errors ({errors[0]})")
        if reasons:
            stalled.append(f"#{live.index}: " + ", ".join(reasons))
    cores = window.cores
    pubs_cores = sum(v for k, v in cores.items() if k.startswith("pub"))
    step = Step(n, stalled, cores["server"], cores["server"] / n, pubs_cores, cores["poller"],
                window.other_load_cores, worst_excess, min_speed, worst_behind, attempt, window.starved["server"])
    log(f"{kind} N={n} (attempt {attempt}): {'STALL ' + '; '.join(stalled[:3]) if stalled else 'no stall'}; "
        f"server {step.server_cores:.2f} cores ({step.per_stream:.4f}/stream), publishers "
        f"{step.publishers_cores:.2f}, poller {step.poller_cores:.2f}, other load {step.other_cores:.2f}, "
        f"server waited for a CPU {100 * step.server_starved:.0f} % of the window, "
        f"worst lag excess {worst_excess:.2f} s, publishers at worst {worst_behind:.2f} s behind "
        f"(min 3 s speed {min_speed:.2f})")
    return step


async def ramp(kind: str, steps: list[int], args: argparse.Namespace, source: Path, server_pid: int,
               add_url: "callable", playlist_of: "callable", port: int = 0) -> list[Step]:  # type: ignore[valid-type]
    """Add publishers up to each step's N; measure a window; stop at the first stall."""
    poller = Poller(kind, port)
    lives: list[Live] = []
    results: list[Step] = []
    total_s = len(steps) * (args.warmup + args.seconds * args.attempts + 5) + 30
    tolerance = STALL_S + (FRAGMENT_S if kind == "nginx" else 0.0)
    try:
        for n in steps:
            new = []
            for i in range(len(lives), n):
                publisher = await Publisher(add_url(i), source, total_s).start()
                live = Live(i, publisher, playlist_of(i), time.time())
                lives.append(live)
                new.append(live)
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)
            for live in new:
                poller.add(live)
            await asyncio.sleep(args.warmup)
            for attempt in range(1, args.attempts + 1):
                step = await measure(kind, n, attempt, lives, args, server_pid, tolerance)
                results.append(step)
                if not step.stalled:
                    break
            stalled = step.stalled
            if stalled:
                break
    finally:
        await poller.close()
        await asyncio.gather(*(live.publisher.stop() for live in lives), return_exceptions=True)
    return results


def largest_ok(steps: list[Step]) -> int:
    """Largest N whose last attempt had no stall (attempts stop at the first clean window)."""
    return largest_held((s.n, not s.stalled) for s in steps)


def show(kind: str, steps: list[Step]) -> None:
    print(f"\n{kind}:")
    print_table(
        ["N", "try", "stalled lives", "server cores", "server CPU/stream", "server CPU wait", "ffmpeg cores",
         "poller cores", "other load", "worst lag excess s", "pub behind s", "min 3s pub speed"],
        [[s.n, s.attempt, len(s.stalled), f"{s.server_cores:.2f}", f"{s.per_stream:.4f}",
          f"{100 * s.server_starved:.0f} %", f"{s.publishers_cores:.2f}",
          f"{s.poller_cores:.2f}", f"{s.other_cores:.2f}", f"{s.worst_lag_excess:.2f}", f"{s.worst_behind:.2f}",
          f"{s.min_speed:.2f}"]
         for s in steps],
    )
    for s in steps:
        for line in s.stalled[:5]:
            print(f"  N={s.n} {line}")


async def run(args: argparse.Namespace) -> dict[str, object]:
    await prepare_run(args)
    raise_fd_limit()
    source = clip(CLIP_720P_3M)
    kbps = probe_bitrate_kbps(source)
    steps = args.steps
    async with Bench() as bench:
        async with bench.server() as server:
            webinars = await studio_webinars(server.database_url, max(steps))
            log(f"ours: ramp {steps} on one server process (pid {server.pid})")
            ours = await ramp(
                "ours", steps, args, source, server.pid,
                add_url=lambda i: server.rtmp_url(webinars[i].key),
                playlist_of=lambda i: f"/hls/{webinars[i].id}/index.m3u8", port=server.port,
            )
            # End it hard: N lives ending at once would start N replay remuxes during the peer's ramp.
            server.kill()
        async with NginxRtmp(bench.tmp / "nginx-rtmp", fragment_s=FRAGMENT_S) as nginx:
            log(f"nginx-rtmp: ramp {steps} (pid {nginx.pid}, one worker)")
            peer = await ramp(
                "nginx", steps, args, source, nginx.pid,
                add_url=lambda i: nginx.rtmp_url(f"s{i}"),
                playlist_of=lambda i: str(nginx.hls_dir / f"s{i}.m3u8"),
            )
    print(f"\n{len(steps)}-step ramp of 720p30 RTMP publishers at {kbps:.0f} kbit/s; "
          f"{args.warmup:.0f} s warm-up + {args.seconds:.0f} s window per step")
    show("ours (webinar serve, one process)", ours)
    show("nginx-rtmp (one worker)", peer)
    n_ours, n_peer = largest_ok(ours), largest_ok(peer)
    print(f"\nlargest N without a stall: ours {n_ours}, nginx-rtmp {n_peer} "
          f"(ramp max {max(steps)}); target >= 30")
    return {"ours": ours, "peer": peer, "n_ours": n_ours, "n_peer": n_peer, "kbps": kbps}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_options(parser, quick="steps 10,30 with 10 s windows (about 2 minutes)",
                       write=f"update the {METRIC} row of benchmarks/RESULTS.md",
                       steps="comma-separated N (default 10,30,50,70,90,110,130,150; quick 10,30)", attempts=True)
    parser.add_argument("--seconds", type=float, help="measured seconds per step (default 20, quick 10)")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds after adding publishers (default 5)")
    args = parser.parse_args(argv)
    args.steps = args.steps or ([10, 30] if args.quick else [10, 30, 50, 70, 90, 110, 130, 150])
    args.seconds = args.seconds or (10.0 if args.quick else 20.0)
    result = asyncio.run(run(args))
    if args.write:
        ours: list[Step] = result["ours"]  # type: ignore[assignment]
        peer: list[Step] = result["peer"]  # type: ignore[assignment]
        n_ours, n_peer = result["n_ours"], result["n_peer"]
        top = max(args.steps)

        def cpu_at(n: int, steps: list[Step]) -> str:
            match = [s for s in steps if s.n == n]
            return f"{match[-1].server_cores:.2f} cores at N={n}" if match else "n/a"

        if n_ours == top and n_peer == top:
            ratio = f"n/a (both ≥ {top})"
        elif n_peer == top:
            ratio = f"≤ {n_ours / n_peer:.2f}"
        elif n_ours == top:
            ratio = f"≥ {n_ours / n_peer:.2f}" if n_peer else "n/a"
        else:
            ratio = f"{n_ours / n_peer:.2f}" if n_peer else "n/a"
        common = max((s.n for s in ours if not s.stalled and any(p.n == s.n for p in peer)), default=0)
        cpu_ratio = ""
        if common:
            o = [s for s in ours if s.n == common][-1]
            p = [s for s in peer if s.n == common][-1]
            cpu_ratio = f"; CPU at N={common}: {o.server_cores / p.server_cores:.1f}× nginx" if p.server_cores else ""
        write_metric(
            METRIC,
            ours=f"{ramp_figure(n_ours, top)} ({cpu_at(n_ours, ours)})",
            peer=f"{ramp_figure(n_peer, top)} ({cpu_at(n_peer, peer)})",
            ratio=f"{ratio}{cpu_ratio}{' ✓' if n_ours >= 30 else ' ✗'}",
            target="≥ 30",
            module=MODULE, argv=argv,
            note=(
                f"ramp {args.steps} of 720p30 publishers at {result['kbps']:.0f} kbit/s (`ffmpeg -re -c copy` of one "
                f"clip), {args.seconds:.0f} s window per step, one server process; a stall = a live's edge "
                f"more than {STALL_S:g} s behind (ours: PDT + EXTINF + parts from the playlist polled at 1 Hz; nginx: "
                f"sum of EXTINF, + one 2 s fragment of tolerance) or a publisher more than {STALL_S:g} s behind real time. "
                f"A step is retried once before it counts as stalled (shared machine). '≥' = no stall at the "
                "largest step tried. Per window: " + "; ".join(
                    f"N={s.n}{' (retry)' if s.attempt > 1 else ''} ours {s.server_cores:.2f} cores"
                    + (f" {'STALL' if s.stalled else 'ok'}")
                    + (f" / nginx {p.server_cores:.2f}" if (p := next((q for q in peer if q.n == s.n), None)) else "")
                    + f", waited for a CPU {100 * s.server_starved:.0f} %, ffmpeg {s.publishers_cores:.2f}, "
                    f"other load {s.other_cores:.2f}"
                    for s in ours) + "."
            ),
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
