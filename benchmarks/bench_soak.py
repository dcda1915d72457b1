"""Soak: one live for an hour under a realistic audience; server memory and CPU over time.

Metric ``soak_memory_growth_pct`` (target < 10 %). One ``webinar serve``
process (:class:`benchmarks.harness.Bench`, real PostgreSQL, fresh database)
gets, for ``--minutes`` (default 60):

* an encoder: :class:`benchmarks.harness.Publisher` (``ffmpeg -re
  -stream_loop -1 -c copy``) publishing the cached 720p30 3 Mbit/s test clip
  over RTMP to an announced studio webinar (the live runs the whole time);
* ``--viewers`` (500) WebSocket viewers in one load process
  (:mod:`benchmarks.ws_fanout_load`, the raw RFC 6455 client of the fan-out
  benchmark, reused as is): guests with join tokens made by
  :func:`rooms.participants.create_guest`, ``hello``, a heartbeat every 15 s
  (randomly phased: attendance is recorded for real), and ``--chatters`` of
  them sending ``chat.send`` at ``--chat-rate`` each (default 6 × 0.5 = 3
  messages/s for the room, stored in PostgreSQL and fanned out to all 500);
* ``--hls-viewers`` (20) LL-HLS viewers (:mod:`benchmarks.llhls_load`, also
  reused as is): blocking playlist reloads with delta updates and every part,
  as hls.js does; run as consecutive load processes of ``--hls-slice-s``
  (300 s), since a viewer whose connection fails stops: it rejoins with the
  next slice, and each slice's errors are reported. A subset of the
  500 on purpose: the LL-HLS path has its own benchmark (``bench_llhls_viewers``)
  and 500 of them would make this a CPU-saturation run on 2 shared cores
  instead of a memory soak.

Every ``--sample-s`` (10 s) the sampler records the server process's RSS
(``/proc/<pid>/status`` VmRSS) and USS (:mod:`psutil`
``memory_full_info().uss``: pages only this process holds), its CPU (utime +
stime, in cores over the interval), the load processes' and PostgreSQL's CPU,
and the other load on the machine (busy cores minus all of the above). Rows go
to ``benchmarks/results/soak_<minutes>min.csv`` as they come (a cut-short run
keeps what it sampled); at the end an SVG plot (memory and CPU over time,
drawn with :func:`billing.charts.line_chart`) goes next to it.

Time 0 is when the viewers start connecting. Growth = (median RSS of the last
5 minutes − median RSS of minutes 5–10) / the latter; for runs shorter than an
hour the windows scale with the duration D (minutes 5–10 of 60 → ``[D/12,
D/6)``; the last 5 of 60 → the last twelfth). USS growth is printed
alongside.

Peer: none meaningful. A bare ``websockets`` + nginx pair holds no rooms,
stores nothing and packages nothing: its memory is flat by construction, so a
ratio to it says nothing about leaks. The row states it.

    .venv/bin/python -m benchmarks.bench_soak [--minutes 60] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import datetime as dt
import json
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psutil

from benchmarks.bench_ws_fanout import Loader
from benchmarks.harness import (
    CLIP_720P_3M,
    PYTHON,
    REPO,
    Bench,
    Publisher,
    Row,
    clip,
    command_line,
    cpu_seconds,
    log,
    machine_busy_seconds,
    raise_fd_limit,
    set_nice,
    studio_webinars,
    update_results,
)

MODULE = "benchmarks.bench_soak"
METRIC = "soak_memory_growth_pct"
SECRET = "bench-soak-secret-key-0123456789abcdef0123"
HEARTBEAT_S = 15.0
RESULTS_DIR = Path(__file__).with_name("results")
FIELDS = ("t_s", "rss_mib", "uss_mib", "server_cores", "loaders_cores", "postgres_cores", "other_cores")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def growth_windows(duration_s: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """(baseline window, final window) in seconds since time 0: minutes 5–10 and the last 5 of an
    hour, scaled by ``duration_s`` / 3600 for shorter runs (longer runs keep 5–10 and the last 5)."""
    scale = min(1.0, duration_s / 3600.0)
    return (300.0 * scale, 600.0 * scale), (duration_s - 300.0 * scale, duration_s + 1.0)


def growth_pct(samples: list[dict[str, float]], key: str, duration_s: float) -> tuple[float, float, float]:
    """(growth %, baseline median, final median) of ``key``; NaN when a window holds no sample."""
    (b0, b1), (f0, f1) = growth_windows(duration_s)
    base = [s[key] for s in samples if b0 <= s["t_s"] < b1]
    final = [s[key] for s in samples if f0 <= s["t_s"] < f1]
    if not base or not final:
        return float("nan"), float("nan"), float("nan")
    b, f = statistics.median(base), statistics.median(final)
    return 100.0 * (f - b) / b, b, f


# ---------------------------------------------------------------- setup

async def prepare(database_url: str, viewers: int) -> tuple[uuid.UUID, str, list[str]]:
    """An announced studio webinar, its stream key and ``viewers`` guest join tokens."""
    from rooms.participants import create_guest
    from server.db import Database
    from server.security import Signer

    webinar = (await studio_webinars(database_url, 1))[0]
    db = Database(database_url, min_size=1, max_size=8)
    await db.connect()
    try:
        signer = Signer(SECRET)
        tokens = [""] * viewers
        gate = asyncio.Semaphore(8)

        async def one(i: int) -> None:
            async with gate:
                _, tokens[i] = await create_guest(db, signer, webinar.id, f"Soak viewer {i}")

        await asyncio.gather(*(one(i) for i in range(viewers)))
        return webinar.id, webinar.key, tokens
    finally:
        await db.close()


async def wait_live(url: str, timeout: float = 40.0) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                r = await client.get(url)
                if r.status_code == 200 and r.text.count("#EXTINF") >= 2:
                    return
            await asyncio.sleep(0.5)
    raise RuntimeError(f"the live did not start in {timeout:.0f} s ({url})")


# ---------------------------------------------------------------- sampling

class Sampler:
    """Every ``every`` s: the server's RSS/USS and the CPU of everything involved, into a CSV."""

    def __init__(self, server_pid: int, others: dict[str, tuple[int, bool]], t0: float, path: Path,
                 every: float) -> None:
        self.server_pid = server_pid
        self.proc = psutil.Process(server_pid)
        self.others = others  # name -> (pid, with descendants)
        self.t0 = t0
        self.path = path
        self.every = every
        self.samples: list[dict[str, float]] = []

    def _cpu(self) -> dict[str, float]:
        out = {"server": cpu_seconds(self.server_pid)}
        for name, (pid, tree) in self.others.items():
            out[name] = cpu_seconds(pid, tree)
        return out

    async def run(self, until: float) -> None:
        with open(self.path, "w", newline="") as fh:  # noqa: ASYNC230 - a small local file, one line per sample
            writer = csv.DictWriter(fh, fieldnames=FIELDS)
            writer.writeheader()
            fh.flush()
            prev_cpu, prev_busy, prev_t = self._cpu(), machine_busy_seconds()[0], time.monotonic()
            k = 1
            while True:
                at = self.t0 + k * self.every
                if at > until:
                    return
                await asyncio.sleep(max(0.0, at - time.time()))
                k += 1
                cpu, busy, now = self._cpu(), machine_busy_seconds()[0], time.monotonic()
                wall = now - prev_t
                deltas = {name: max(0.0, cpu[name] - prev_cpu.get(name, cpu[name])) / wall for name in cpu}
                ours = sum(deltas.values())
                try:
                    uss = self.proc.memory_full_info().uss / 2**20
                except (psutil.Error, OSError):
                    uss = float("nan")
                sample = {
                    "t_s": round(time.time() - self.t0, 1),
                    "rss_mib": round(rss_mib(self.server_pid), 2),
                    "uss_mib": round(uss, 2),
                    "server_cores": round(deltas["server"], 4),
                    "loaders_cores": round(sum(v for n, v in deltas.items() if n.startswith("load")), 4),
                    "postgres_cores": round(deltas.get("postgres", 0.0), 4),
                    "other_cores": round(max(0.0, (busy - prev_busy) / wall - ours), 4),
                }
                self.samples.append(sample)
                writer.writerow(sample)
                fh.flush()
                prev_cpu, prev_busy, prev_t = cpu, busy, now
                if len(self.samples) % 6 == 0:
                    log(f"t={sample['t_s']:.0f} s RSS {sample['rss_mib']:.1f} MiB USS {sample['uss_mib']:.1f} MiB "
                        f"server {sample['server_cores']:.2f} cores, other load {sample['other_cores']:.2f}")


def plot(samples: list[dict[str, float]], path: Path, title: str) -> None:
    """Memory (RSS, USS) and server CPU over time as one SVG file: three stacked
    :func:`billing.charts.line_chart` panels (the chart helper draws one series each)."""
    from markupsafe import escape

    from billing.charts import line_chart

    span = samples[-1]["t_s"] if samples else 0.0

    def label(t: float) -> str:
        return f"{t / 60:.0f} min" if span >= 600 else f"{t / 60:.1f} min"

    panels = [
        line_chart([(label(s["t_s"]), s["rss_mib"]) for s in samples], title="Server RSS (MiB)",
                   desc="Resident set size of the server process over the soak", y_label="RSS, MiB",
                   integer=False),
        line_chart([(label(s["t_s"]), s["uss_mib"] if s["uss_mib"] == s["uss_mib"] else 0.0) for s in samples],
                   title="Server USS (MiB)", desc="Unique set size of the server process over the soak",
                   y_label="USS, MiB", integer=False),
        line_chart([(label(s["t_s"]), 100 * s["server_cores"]) for s in samples], title="Server CPU (% of a core)",
                   desc="CPU of the server process, per 10 s interval", y_label="CPU, % of one core",
                   integer=False),
    ]
    width, height, head = 720, 260, 46
    heading, _, detail = title.partition(": ")
    body = [(f'<text x="8" y="18" font-family="system-ui, sans-serif" font-size="14" font-weight="600">'
             f'{escape(heading)}</text>'),
            f'<text x="8" y="36" font-family="system-ui, sans-serif" font-size="12">{escape(detail)}</text>']
    for i, panel in enumerate(panels):
        inner = str(panel).replace('<svg class="chart"', f'<svg x="0" y="{head + i * height}" width="{width}" '
                                   f'height="{height}"', 1)
        body.append(inner)
    total_h = head + len(panels) * height
    path.write_text(f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {total_h}" width="{width}" '
                    f'height="{total_h}">' + "".join(body) + "</svg>\n")


# ---------------------------------------------------------------- LL-HLS viewers

async def hls_slices(args: argparse.Namespace, port: int, base_path: str, t0: float, end: float, workdir: Path,
                     others: dict[str, tuple[int, bool]]) -> dict[str, Any]:
    """The LL-HLS viewers, as consecutive :mod:`benchmarks.llhls_load` processes of ``--hls-slice-s``
    each: a viewer whose connection fails stops (the load module does not reconnect) and the next
    slice joins afresh, so a failure costs at most one slice. Totals and each slice's errors."""
    slices: list[dict[str, Any]] = []
    start = t0 + 1
    index = 0
    while start < end - 5:
        stop = min(end, start + args.hls_slice_s)
        out = workdir / f"hls-{index}.json"
        cfg = {"mode": "llhls", "host": "127.0.0.1", "port": port, "base_path": base_path,
               "viewers": args.hls_viewers, "first": 0, "count": args.hls_viewers, "start_at": start,
               "join_s": 5.0 if index == 0 else 1.0, "window": [start + 10, stop], "end_at": stop,
               "baseline": 0.0, "out": str(out)}
        proc = await asyncio.create_subprocess_exec(
            PYTHON, "-m", "benchmarks.llhls_load", json.dumps(cfg), cwd=REPO,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        others[f"load_hls{index}"] = (proc.pid, False)
        try:
            _, err = await asyncio.wait_for(proc.communicate(), stop - time.time() + 60)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            others.pop(f"load_hls{index}", None)
        if out.exists():
            h = json.loads(out.read_text())
            slices.append({"t_s": round(start - t0), **{k: h.get(k) for k in ("requests", "bytes", "errors", "late",
                                                                           "parts")}})
        else:
            slices.append({"t_s": round(start - t0), "failed": err.decode(errors="replace")[-500:]})
        if slices[-1].get("errors") or slices[-1].get("failed"):
            log(f"LL-HLS slice at t={start - t0:.0f} s: {slices[-1]}")
        start = max(stop, time.time() + 0.5)
        index += 1
    errors: dict[str, int] = {}
    for sl in slices:
        for k, v in (sl.get("errors") or {}).items():
            errors[k] = errors.get(k, 0) + v
    return {"slices": len(slices), "requests": sum(sl.get("requests") or 0 for sl in slices),
            "bytes": sum(sl.get("bytes") or 0 for sl in slices), "errors": errors,
            "slices_with_errors": [sl for sl in slices if sl.get("errors") or sl.get("failed")]}


# ---------------------------------------------------------------- run

async def run(args: argparse.Namespace, argv: list[str]) -> int:
    set_nice(args.nice)
    raise_fd_limit()
    duration = args.minutes * 60.0
    RESULTS_DIR.mkdir(exist_ok=True)
    stem = args.out or f"soak_{args.minutes:g}min"
    csv_path, svg_path = RESULTS_DIR / f"{stem}.csv", RESULTS_DIR / f"{stem}.svg"
    source = clip(CLIP_720P_3M)
    started_wall = dt.datetime.now(dt.UTC)
    summary: dict[str, Any] = {"minutes": args.minutes, "viewers": args.viewers, "hls_viewers": args.hls_viewers,
                               "chat_msgs_per_s": args.chatters * args.chat_rate, "started": started_wall.isoformat()}
    async with Bench() as bench, bench.server(WEBINAR_SECRET_KEY=SECRET) as server:
        webinar_id, key, tokens = await prepare(server.database_url, args.viewers)
        base_path = f"/hls/{webinar_id}"
        publisher = await Publisher(server.rtmp_url(key), source, duration + 120).start()
        loader: Loader | None = None
        hls_task: asyncio.Task[dict[str, Any]] | None = None
        workdir = Path(tempfile.mkdtemp(prefix="soak-"))
        try:
            await wait_live(f"{server.url}{base_path}/index.m3u8")
            log(f"live {webinar_id} started; {args.viewers} WebSocket viewers, {args.hls_viewers} LL-HLS viewers, "
                f"{args.chatters} x {args.chat_rate:g} chat msg/s, {args.minutes:g} min")
            t0 = time.time()
            end = t0 + duration
            targets = [["127.0.0.1", server.port, f"/ws/rooms/{webinar_id}?token={token}"] for token in tokens]
            cfg = {"targets": targets, "chatters": [[i, i] for i in range(args.chatters)],
                   "chatters_total": args.chatters, "chat_rate": args.chat_rate, "heartbeat_s": HEARTBEAT_S,
                   "connect_concurrency": 50, "max_life_s": duration + 300}
            loader = Loader(0, cfg, workdir)
            await loader.start()
            others: dict[str, tuple[int, bool]] = {"load_ws": (loader.proc.pid, False),  # type: ignore[union-attr]
                                                   "load_ffmpeg": (publisher.pid, False)}
            if (pg := bench.pg_pid()) is not None:
                others["postgres"] = (pg, True)
            hls_task = asyncio.create_task(hls_slices(args, server.port, base_path, t0, end, workdir, others))
            sampler = Sampler(server.pid, others, t0, csv_path, args.sample_s)
            sampler_task = asyncio.create_task(sampler.run(end))
            connected = await loader.read(200)
            summary["ws_connected"] = connected["ok"]
            summary["ws_connect_failures"] = connected["failures"]
            log(f"{connected['ok']} WebSocket viewers connected in {connected['connect_s']} s"
                + (f", failures {connected['failures']}" if connected["failures"] else ""))
            now = time.time()
            await loader.send({"cmd": "measure", "chat_start": now + 1, "win_start": end - min(300.0, duration / 12),
                               "win_end": end, "chat_end": end, "finish": end + 3})
            await sampler_task
            done = await loader.read(120)
            lat = sorted(loader.latencies())
            summary["ws"] = {k: done[k] for k in ("sent_chat", "sent_heartbeats", "delivered_total", "errors",
                                                   "closes", "viewers", "open_at_end")}
            summary["ws"]["delivered_fraction"] = (done["delivered_total"] / (done["sent_chat"] * done["viewers"])
                                                   if done["sent_chat"] and done["viewers"] else 0.0)
            summary["ws"]["chat_p50_s_last_window"] = lat[len(lat) // 2] if lat else None
            summary["ws"]["chat_p99_s_last_window"] = lat[int(0.99 * (len(lat) - 1))] if lat else None
            summary["hls"] = await asyncio.wait_for(hls_task, 90)
            summary["publisher_min_speed"] = publisher.min_speed(publisher.started + 5)
            summary["publisher_running_at_end"] = publisher.running
            samples = sampler.samples
        finally:
            if loader is not None:
                await loader.stop()
            if hls_task is not None and not hls_task.done():
                hls_task.cancel()
                with contextlib.suppress(BaseException):
                    await hls_task
            await publisher.stop()
            server.kill()
            if server.log_path is not None and server.log_path.exists():
                kept = Path(tempfile.gettempdir()) / f"{stem}.server.log"
                shutil.copyfile(server.log_path, kept)
                log(f"server log kept in {kept}")
    growth, base, final = growth_pct(samples, "rss_mib", duration)
    uss_growth, ubase, ufinal = growth_pct(samples, "uss_mib", duration)
    cpu = statistics.median(s["server_cores"] for s in samples) if samples else float("nan")
    other = statistics.median(s["other_cores"] for s in samples) if samples else float("nan")
    (b0, b1), (f0, _) = growth_windows(duration)
    summary.update({"rss_growth_pct": growth, "rss_baseline_mib": base, "rss_final_mib": final,
                    "uss_growth_pct": uss_growth, "uss_baseline_mib": ubase, "uss_final_mib": ufinal,
                    "server_cores_median": cpu, "other_load_cores_median": other,
                    "rss_max_mib": max((s["rss_mib"] for s in samples), default=float("nan")),
                    "windows_s": [[b0, b1], [f0, duration]], "samples": len(samples),
                    "csv": str(csv_path.relative_to(REPO)), "svg": str(svg_path.relative_to(REPO))})
    plot(samples, svg_path, f"Soak: one live, {args.viewers} WebSocket + {args.hls_viewers} LL-HLS viewers, "
                            f"{args.chatters * args.chat_rate:g} chat msg/s, {args.minutes:g} min "
                            f"(started {started_wall:%Y-%m-%d %H:%M} UTC)")
    (RESULTS_DIR / f"{stem}.json").write_text(json.dumps(summary, indent=1, default=str))
    print(json.dumps(summary, indent=1, default=str))
    ok = (summary.get("ws_connected") == args.viewers and not summary["ws"]["closes"]
          and summary["ws"]["delivered_fraction"] >= 0.99)
    verdict = "holds" if growth < 10 and ok else "FAILS"
    print(f"RSS growth {growth:+.1f} % (median {base:.1f} MiB in [{b0:.0f}, {b1:.0f}) s -> {final:.1f} MiB "
          f"in the last {duration - f0:.0f} s); USS {uss_growth:+.1f} %; server CPU median {cpu:.2f} cores; "
          f"other load median {other:.2f} cores; load {'ok' if ok else 'NOT ok'}: {verdict}")
    row = Row(METRIC, f"{growth:+.1f} % ({base:.0f} → {final:.0f} MiB RSS; USS {uss_growth:+.1f} %; "
                      f"server CPU median {cpu:.2f} cores)",
              "none meaningful", "n/a", "< 10 %", command_line(MODULE, argv))
    print(row.line())
    if args.write:
        if args.minutes < 60:
            log("runs shorter than 60 minutes are validations: not written to RESULTS.md")
        else:
            note = (f"{args.minutes:g} min, one live (720p30 3 Mbit/s clip, ffmpeg -c copy over RTMP), "
                    f"{summary['ws_connected']} WebSocket viewers (heartbeat 15 s, {args.chatters} chatters x "
                    f"{args.chat_rate:g} msg/s = {args.chatters * args.chat_rate:g} msg/s; "
                    f"{100 * summary['ws']['delivered_fraction']:.2f} % of deliveries arrived, "
                    f"{sum(summary['ws']['closes'].values())} closed), {args.hls_viewers} LL-HLS viewers "
                    f"(llhls_load, blocking reload + every part; a subset: bench_llhls_viewers covers the LL-HLS "
                    f"scale; in {summary['hls'].get('slices')} rejoining slices of {args.hls_slice_s:g} s: "
                    f"{summary['hls'].get('requests')} requests, errors {summary['hls'].get('errors')}). "
                    f"RSS/USS/CPU sampled every {args.sample_s:g} s: CSV `{summary['csv']}`, plot "
                    f"[`{summary['svg']}`]({Path(summary['svg']).relative_to('benchmarks')}). Growth = median RSS "
                    f"of the last 5 min vs minutes 5-10 ({base:.1f} -> {final:.1f} MiB; max {summary['rss_max_mib']:.1f}); "
                    f"USS {ubase:.1f} -> {ufinal:.1f} MiB. Other load on the machine: median {other:.2f} cores "
                    f"(other engineers' tests). Peer: none meaningful -- a bare websockets + nginx pair keeps no "
                    f"room state, stores nothing and packages nothing, so its memory is flat by construction and a "
                    f"ratio to it would say nothing about leaks.")
            update_results([row], {METRIC: note})
            log("RESULTS.md updated")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="soak duration (60 for the figure; 3 to validate)")
    parser.add_argument("--viewers", type=int, default=500, help="WebSocket viewers (heartbeats)")
    parser.add_argument("--hls-viewers", type=int, default=20, help="LL-HLS viewers (a subset)")
    parser.add_argument("--chatters", type=int, default=6, help="viewers that chat")
    parser.add_argument("--chat-rate", type=float, default=0.5, help="messages/s per chatter (server limit: 1/s)")
    parser.add_argument("--sample-s", type=float, default=10.0, help="sampling period, s")
    parser.add_argument("--hls-slice-s", type=float, default=300.0,
                        help="LL-HLS viewers run in slices this long; a dropped viewer rejoins at the next one")
    parser.add_argument("--out", default="", help="file stem in benchmarks/results/ (default soak_<minutes>min)")
    parser.add_argument("--nice", type=int, default=0, help="niceness for the run and what it starts (root: negative)")
    parser.add_argument("--write", action="store_true", help="update this benchmark's row of benchmarks/RESULTS.md")
    parser.add_argument("--replot", metavar="CSV", help="only redraw the SVG next to a CSV this benchmark wrote")
    argv = sys.argv[1:]
    args = parser.parse_args(argv)
    if args.replot:
        csv_path = Path(args.replot)
        with open(csv_path, newline="") as fh:
            samples = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(fh)]
        meta = csv_path.with_suffix(".json")
        info = json.loads(meta.read_text()) if meta.exists() else {}
        title = (f"Soak: one live, {info.get('viewers', '?')} WebSocket + {info.get('hls_viewers', '?')} LL-HLS viewers, "
                 f"{info.get('chat_msgs_per_s', '?')} chat msg/s, {info.get('minutes', '?')} min "
                 f"(started {str(info.get('started', '?'))[:16].replace('T', ' ')} UTC)")
        plot(samples, csv_path.with_suffix(".svg"), title)
        return 0
    return asyncio.run(run(args, argv))


if __name__ == "__main__":
    sys.exit(main())
