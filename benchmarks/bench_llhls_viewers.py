"""(d) LL-HLS origin: concurrent simulated viewers served without a late part; nginx as the reference.

One live (the 720p30 3 Mbit/s clip published with ``ffmpeg -re -c copy``) on
one ``webinar serve`` process. K simulated viewers (:mod:`benchmarks.llhls_load`,
separate process(es), a lean HTTP/1.1 client on uvloop) each do what hls.js
does in low-latency mode: blocking playlist reload for the hinted part
(``_HLS_msn``/``_HLS_part``, delta updates) and, at the same time, a GET of
the preload-hinted part, then again with the next hint.

**Late part**: a part whose last byte reaches a viewer more than one part
duration (its own EXT-X-PART DURATION, about 0.27-0.3 s) after it was
produced -- the moment the origin first delivered it to any viewer. A step
also fails when a viewer *drifted* (received a part more than 1 s after its
media end in wall time -- segment EXT-X-PROGRAM-DATE-TIME + the part's end
offset -- beyond the pipeline delay a lone viewer sees before the ramp: an
origin late for everyone alike) and on any error (non-200, connection
closed, timeout). See :mod:`benchmarks.llhls_load`.

K is ramped (default 100, 200, 300, 400, 500, 750, 1000, 1500; each step:
viewers join over a few seconds, settle 2 s, then a measured window; a step
that fails is tried once more before it counts as failed, since the machine
is shared); the figure is the largest K whose window had no late part, no
drift and no error.

**Reference (nginx)**: nginx (Debian, one worker, sendfile, no access log)
serves static copies of the same bytes: parts captured from our live as
files, and a copy of one of our delta playlists. The same K viewers, on the
same two keep-alive connections each, fetch at every tick (the live's mean
part duration) the playlist and the next part: the same requests per
second and bytes per second as against our server, minus the blocking
(nginx has no LL-HLS). Late and drifted as for ours, with the tick as the
part's media end. Ratio = our largest K / nginx's.

The server and the load generator share 2 cores: the CPU of both is
reported per step; a step where the load generator used more than 90 % of a
core is flagged (its own delays count as lateness).

    .venv/bin/python -m benchmarks.bench_llhls_viewers [--quick] [--write] [--steps 100,200,500,1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.harness import (
    CLIP_720P_3M,
    PYTHON,
    REPO,
    Bench,
    CpuWindow,
    NginxHttp,
    Publisher,
    add_common_options,
    clip,
    largest_held,
    log,
    median,
    prepare_run,
    print_table,
    probe_bitrate_kbps,
    raise_fd_limit,
    ramp_figure,
    studio_webinars,
    write_metric,
)

METRIC = "llhls_viewers_without_late_part"
MODULE = "benchmarks.bench_llhls_viewers"
SETTLE_S = 2.0
TAIL_S = 2.5  # keep viewers running after the window so every part in it gets its PDT


async def run_load(mode: str, viewers: int, args: argparse.Namespace, port: int, base_path: str,
                   watch: dict[str, tuple[int, bool]], baseline: float = 0.0, capture: bool = False,
                   static: dict[str, Any] | None = None, seconds: float | None = None) -> dict[str, Any]:
    """Run ``viewers`` in ``args.procs`` load processes; CPU of ``watch`` + the loaders over the window."""
    seconds = seconds or args.seconds
    procs = 1 if viewers < 50 else args.procs
    join_s = max(1.0, viewers / 400)
    start_at = time.time() + 1.5
    w0 = start_at + join_s + SETTLE_S
    w1 = w0 + seconds
    common = {
        "mode": mode, "host": "127.0.0.1", "port": port, "base_path": base_path, "viewers": viewers,
        "start_at": start_at, "join_s": join_s, "window": [w0, w1], "end_at": w1 + TAIL_S, "baseline": baseline,
        **(static or {}),
    }
    loaders = []
    out_paths: list[str] = []
    outdir = Path(tempfile.gettempdir())
    share = -(-viewers // procs)
    for p in range(procs):
        first = p * share
        count = min(share, viewers - first)
        if count <= 0:
            break
        cfg = dict(common, first=first, count=count, capture_dir="yes" if capture and p == 0 else None,
                   out=str(outdir / f"load-{viewers}-{p}-{time.time_ns()}.json"))
        out_paths.append(cfg["out"])
        loaders.append(await asyncio.create_subprocess_exec(
            PYTHON, "-m", "benchmarks.llhls_load", json.dumps(cfg), cwd=REPO,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        ))
    try:
        await asyncio.sleep(max(0.0, w0 - time.time()))
        pids = dict(watch)
        pids.update({f"load{i}": (proc.pid, False) for i, proc in enumerate(loaders)})
        window = CpuWindow(pids).start()
        await asyncio.sleep(max(0.0, w1 - time.time()))
        window.stop()
        outputs = await asyncio.wait_for(asyncio.gather(*(proc.communicate() for proc in loaders)), w1 - time.time() + 60)
    finally:
        for proc in loaders:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    results = []
    for proc, (_, err), path in zip(loaders, outputs, out_paths):
        if proc.returncode != 0 or not Path(path).exists():
            raise RuntimeError(f"load process failed ({proc.returncode}): {err.decode(errors='replace')[-2000:]}")
        results.append(json.loads(Path(path).read_text()))
        Path(path).unlink()
    merged: dict[str, Any] = {
        "viewers": viewers, "parts": sum(r["parts"] for r in results), "late": sum(r["late"] for r in results),
        "drifted": sum(r["drifted"] for r in results),
        "edge_p50": max((r["edge_p50"] for r in results if r["edge_p50"] is not None), default=None),
        "edge_p99": max((r["edge_p99"] for r in results if r["edge_p99"] is not None), default=None),
        "edge_max": max((r["edge_max"] for r in results if r["edge_max"] is not None), default=None),
        "unknown": sum(r["unknown"] for r in results), "errors": {}, "first_errors": [],
        "requests": sum(r["requests"] for r in results), "bytes": sum(r["bytes"] for r in results),
        "worst": [w for r in results for w in r["worst"]][:3],
        "p50": max((r["lateness_p50"] for r in results if r["lateness_p50"] is not None), default=None),
        "p99": max((r["lateness_p99"] for r in results if r["lateness_p99"] is not None), default=None),
        "max": max((r["lateness_max"] for r in results if r["lateness_max"] is not None), default=None),
        "cpu": window.cores, "other": window.other_load_cores, "starved": window.starved,
        "wall": window.wall, "captured_parts": {}, "captured_playlist": "",
        "part_mean_s": next((r["part_mean_s"] for r in results if r.get("part_mean_s")), None),
        "window_s": seconds, "run_s": w1 + TAIL_S - start_at,
    }
    for r in results:
        for k, v in r["errors"].items():
            merged["errors"][k] = merged["errors"].get(k, 0) + v
        merged["first_errors"] += r["first_errors"]
        merged["captured_parts"].update(r["captured_parts"])
        merged["captured_playlist"] = merged["captured_playlist"] or r["captured_playlist"]
    loader_cores = [v for k, v in merged["cpu"].items() if k.startswith("load")]
    merged["loader_cores"] = sum(loader_cores)
    merged["loader_starved"] = max((v for k, v in merged["starved"].items() if k.startswith("load")), default=0.0)
    merged["loader_saturated"] = any(c > 0.9 for c in loader_cores)
    merged["ok"] = merged["late"] == 0 and merged["drifted"] == 0 and not merged["errors"] and merged["parts"] > 0
    return merged


def describe(kind: str, r: dict[str, Any]) -> str:
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    server = r["cpu"].get("server", 0.0)
    return (f"{kind} K={r['viewers']}: {'OK' if r['ok'] else 'FAIL'} parts {r['parts']} late {r['late']} "
            f"drifted {r['drifted']} errors {sum(r['errors'].values())} fan-out lateness p50/p99/max "
            f"{fmt(r['p50'])}/{fmt(r['p99'])}/{fmt(r['max'])} s, behind the edge p99/max "
            f"{fmt(r['edge_p99'])}/{fmt(r['edge_max'])} s; "
            f"{r['requests'] / r['run_s']:.0f} req/s, {r['bytes'] * 8 / r['run_s'] / 1e6:.0f} Mbit/s; "
            f"server {server:.2f} cores (waited for a CPU {100 * r['starved'].get('server', 0):.0f} %), "
            f"load {r['loader_cores']:.2f}{' (SATURATED)' if r['loader_saturated'] else ''} "
            f"(waited {100 * r['loader_starved']:.0f} %), "
            f"other {r['other']:.2f}" + (f"; {r['first_errors'][:2]}" if r["errors"] else "")
            + (f"; worst {r['worst']}" if r["late"] else ""))


async def ramp(kind: str, steps: list[int], args: argparse.Namespace, **load: Any) -> list[dict[str, Any]]:
    """Each K is tried up to ``args.attempts`` times (the machine is shared: one noisy window is retried);
    the ramp stops at the first K whose every attempt failed."""
    results = []
    for k in steps:
        for attempt in range(1, args.attempts + 1):
            result = await run_load(viewers=k, args=args, **load)
            result["attempt"] = attempt
            results.append(result)
            log(describe(kind, result) + f" (attempt {attempt})")
            if result["ok"]:
                break
        if not result["ok"]:
            break
    return results


async def run(args: argparse.Namespace) -> dict[str, Any]:
    await prepare_run(args)
    raise_fd_limit()
    source = clip(CLIP_720P_3M)
    kbps = probe_bitrate_kbps(source)
    total_s = 60 + len(args.steps) * (args.seconds + 15)
    async with Bench() as bench:
        async with bench.server() as server:
            (webinar,) = await studio_webinars(server.database_url, 1)
            base_path = f"/hls/{webinar.id}"
            publisher = await Publisher(server.rtmp_url(webinar.key), source, total_s).start()
            try:
                async with httpx.AsyncClient(timeout=5) as client:
                    deadline = time.monotonic() + 30
                    while time.monotonic() < deadline:
                        r = await client.get(f"{server.url}{base_path}/index.m3u8")
                        if r.status_code == 200 and r.text.count("#EXTINF") >= 2:
                            break
                        await asyncio.sleep(0.3)
                    else:
                        raise RuntimeError(f"the live did not start: {server.log_tail()}")
                watch = {"server": (server.pid, False)}
                calib = await run_load("llhls", 1, args, server.port, base_path, watch, capture=True,
                                       seconds=args.calib)
                baseline = calib["edge_p50"] or 0.0
                log(f"ours: lone-viewer baseline (median arrival - media end) {baseline * 1000:.0f} ms, "
                    f"p99 {(calib['edge_p99'] or 0) * 1000:.0f} ms, mean part {calib['part_mean_s']:.3f} s")
                ours = await ramp("ours", args.steps, args, mode="llhls", port=server.port, base_path=base_path,
                                  watch=watch, baseline=baseline)
            finally:
                await publisher.stop()
                server.kill()
        # the reference: the same bytes from nginx
        docroot = bench.tmp / "static"
        docroot.mkdir()
        names = []
        for key, hexdata in sorted(calib["captured_parts"].items(), key=lambda kv: tuple(map(int, kv[0].split(".")))):
            name = f"seg{key}.m4s"
            (docroot / name).write_bytes(bytes.fromhex(hexdata))
            names.append(name)
        (docroot / "index.m3u8").write_text(calib["captured_playlist"])
        part_s = calib["part_mean_s"] or 0.3
        sizes = [(docroot / n).stat().st_size for n in names]
        log(f"nginx docroot: {len(names)} parts (mean {sum(sizes) / len(sizes) / 1024:.0f} KiB), playlist "
            f"{len(calib['captured_playlist'])} bytes, tick {part_s:.3f} s")
        async with NginxHttp(bench.tmp / "nginx-http", docroot, workers=1) as nginx:
            static = {"part_s": part_s, "part_names": names, "clock_origin": time.time()}
            watch = {"server": (nginx.pid, True)}
            calib_peer = await run_load("static", 1, args, nginx.port, "", watch, static=static, seconds=args.calib)
            baseline_peer = calib_peer["edge_p50"] or 0.0
            log(f"nginx: lone-viewer baseline {baseline_peer * 1000:.1f} ms")
            peer = await ramp("nginx", args.steps, args, mode="static", port=nginx.port, base_path="",
                              watch=watch, baseline=baseline_peer, static=static)
    return {"ours": ours, "peer": peer, "baseline": baseline, "baseline_peer": baseline_peer, "kbps": kbps,
            "part_s": part_s, "part_kib": sum(sizes) / len(sizes) / 1024}


def largest_ok(results: list[dict[str, Any]]) -> int:
    """Largest K whose last attempt held (attempts stop at the first that holds)."""
    return largest_held((r["viewers"], r["ok"]) for r in results)


def table(kind: str, results: list[dict[str, Any]]) -> None:
    fmt = lambda v: "n/a" if v is None else f"{v * 1000:.0f}"  # noqa: E731
    print(f"\n{kind}:")
    print_table(
        ["K", "try", "ok", "parts", "late", "drifted", "errors", "fan-out p50/p99/max ms", "behind edge p99/max ms",
         "req/s", "Mbit/s", "server cores", "server CPU wait", "load cores", "load CPU wait", "other load"],
        [[r["viewers"], r.get("attempt", 1), "yes" if r["ok"] else "NO", r["parts"], r["late"], r["drifted"], sum(r["errors"].values()),
          f"{fmt(r['p50'])}/{fmt(r['p99'])}/{fmt(r['max'])}", f"{fmt(r['edge_p99'])}/{fmt(r['edge_max'])}",
          f"{r['requests'] / r['run_s']:.0f}",
          f"{r['bytes'] * 8 / r['run_s'] / 1e6:.0f}", f"{r['cpu'].get('server', 0):.2f}",
          f"{100 * r['starved'].get('server', 0):.0f} %",
          f"{r['loader_cores']:.2f}{'*' if r['loader_saturated'] else ''}", f"{100 * r['loader_starved']:.0f} %",
          f"{r['other']:.2f}"] for r in results],
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_options(parser, quick="steps 100,500 with 8 s windows (about 2 minutes)",
                       write=f"update the {METRIC} row of benchmarks/RESULTS.md",
                       steps="comma-separated K (default 100,200,300,400,500,750,1000,1500; quick 100,500)",
                       attempts=True)
    parser.add_argument("--seconds", type=float, help="measured seconds per step (default 15, quick 8)")
    parser.add_argument("--calib", type=float, default=6.0, help="seconds of the lone-viewer baseline (default 6)")
    parser.add_argument("--procs", type=int, default=1, help="load processes (default 1: the machine has 2 cores)")
    args = parser.parse_args(argv)
    args.steps = args.steps or ([100, 500] if args.quick else [100, 200, 300, 400, 500, 750, 1000, 1500])
    args.seconds = args.seconds or (8.0 if args.quick else 15.0)
    result = asyncio.run(run(args))
    print(f"\nLL-HLS viewers of one 720p30 live at {result['kbps']:.0f} kbit/s (mean part {result['part_s']:.3f} s, "
          f"{result['part_kib']:.0f} KiB); late = more than one part duration after the part's first delivery; "
          f"drifted = more than 1 s behind its media end beyond the lone-viewer delay (ours "
          f"{result['baseline'] * 1000:.0f} ms, nginx {result['baseline_peer'] * 1000:.1f} ms); "
          f"'*' = load generator above 90 % of a core")
    table("ours (blocking playlist + preload-hinted part)", result["ours"])
    table("nginx (same bytes, static files, paced by the part clock)", result["peer"])
    n_ours, n_peer = largest_ok(result["ours"]), largest_ok(result["peer"])
    print(f"\nlargest K without a late part: ours {n_ours}, nginx {n_peer} (ramp max {max(args.steps)}); target >= 1000")
    if args.write:
        top = max(args.steps)

        def at(results: list[dict[str, Any]], n: int) -> str:
            match = [r for r in results if r["viewers"] == n]
            if not match:
                return ""
            r = match[-1]
            return (f" ({r['cpu'].get('server', 0):.2f} cores, fan-out p99 {r['p99'] * 1000:.0f} ms)"
                    if r["p99"] is not None else "")

        first_fail = next((r for r in result["ours"] if not r["ok"] and r["viewers"] > n_ours), None)
        peer_fail = next((r for r in result["peer"] if not r["ok"] and r["viewers"] > n_peer), None)

        def failed(who: str, r: dict[str, Any] | None) -> str:
            if r is None:
                return ""
            return (f"{who} first failing step K={r['viewers']}: {r['late']} late and {r['drifted']} drifted of "
                    f"{r['parts']} part deliveries, {sum(r['errors'].values())} errors, fan-out p99 "
                    f"{(r['p99'] or 0) * 1000:.0f} ms, behind-edge p99 {(r['edge_p99'] or 0) * 1000:.0f} ms, "
                    f"server {r['cpu'].get('server', 0):.2f} cores (waited for a CPU "
                    f"{100 * r['starved'].get('server', 0):.0f} %), load generator {r['loader_cores']:.2f} cores "
                    f"(waited {100 * r['loader_starved']:.0f} %), other load {r['other']:.2f} cores. ")

        others = [r["other"] for r in result["ours"] + result["peer"]]
        write_metric(
            METRIC,
            ours=f"{ramp_figure(n_ours, top)}{at(result['ours'], n_ours)}",
            peer=f"{ramp_figure(n_peer, top)}{at(result['peer'], n_peer)}",
            ratio=(("≤ " if n_peer == top and n_ours < top else "") + f"{n_ours / n_peer:.2f}" if n_peer else "n/a")
            + (" ✓" if n_ours >= 1000 else " ✗"),
            target="≥ 1,000",
            module=MODULE, argv=argv,
            note=(
                f"one 720p30 live at {result['kbps']:.0f} kbit/s, parts of {result['part_s']:.3f} s "
                f"({result['part_kib']:.0f} KiB); K viewers in one load process (raw HTTP/1.1 on uvloop), each "
                "a blocking `_HLS_msn/_HLS_part/_HLS_skip` playlist request + the preload-hinted part on two "
                "keep-alive connections; late = last byte more than one part duration after the part's first "
                "delivery to any viewer; a step also fails if a part reaches a viewer more than 1 s behind its "
                "media end (PDT-based) beyond the lone-viewer delay, or on any error. nginx (one worker) "
                "serves the same part bytes and a playlist copy as static files to the same K viewers paced by "
                f"the part clock (no blocking: nginx has no LL-HLS). Ramp {args.steps}, {args.seconds:.0f} s "
                "windows, a failing step retried once. " + failed("Ours:", first_fail) + failed("nginx:", peer_fail)
                + f"Other load on the machine over the windows: {min(others):.2f}-{max(others):.2f} cores "
                f"(median {median(others):.2f}) of 2."
            ),
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
