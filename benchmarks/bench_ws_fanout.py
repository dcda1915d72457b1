"""Live interaction fan-out: N viewers in one room, chat at 10 messages/s, against a bare ``websockets`` server.

For each N (default 1000, 5000, 10000) and each configuration:

* ``ours_1w``: one ``webinar serve`` process (in-process broker);
* ``ours_2w``: two ``webinar serve`` processes sharing a real redis-server
  (viewers split evenly between them, chatters too, so events cross Redis);
* ``bare``: :mod:`benchmarks.ws_fanout_peer`, a minimal ``websockets``
  broadcast server on uvloop, the ceiling;

the same load runs: N viewers (:mod:`benchmarks.ws_fanout_load`, lean raw
WebSocket clients on uvloop in separate processes, one per 5,000 viewers)
connect and say ``hello``, heartbeat every 15 s, and 10 of them chat at
1 message/s each (the server's chat limit is 1/s, burst 5), phased so the room
gets an even 10 messages/s. The chat text carries the sender's
``time.time()``; each viewer records arrival - send for every message it
receives. After a warm-up, a measurement window (30 s) gives:

* p50 / p99 / max delivery latency over every delivery in the window;
* delivered messages/s (all viewers together; the offered load is 10 x N);
* events per frame (our hub batches queued events into one ``events`` frame);
* CPU of the server process(es), the load generators, PostgreSQL and Redis
  (utime + stime from /proc over the window), and the rest of the machine;
* RSS of the server process(es) before the viewers connect and after,
  per connection.

A step "holds" when every viewer connected, none was disconnected, at least
99 % of the expected deliveries arrived (sent messages x viewers, counted
until a few seconds after the last message) and p99 <= 1 s. When a
configuration fails a step after holding the previous one, the largest N that
holds is bisected (``--bisect`` runs at most, 250-viewer resolution).

Setup uses the server's own functions: a fresh migrated database per run
(real PostgreSQL, ``tests/support/postgres.py`` through the harness), an
announced webinar (:func:`benchmarks.harness.studio_webinars`), N guest
participants and join tokens with :func:`rooms.participants.create_guest`
and the ``WEBINAR_SECRET_KEY`` the server processes get. Servers are started
with ``tests/support/server_process.ServerProcess``; redis-server with
``tests/support/redis_server.RedisServer``.

    .venv/bin/python -m benchmarks.bench_ws_fanout [--quick] [--write] [--steps 1000,5000,10000]
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, AsyncIterator

from benchmarks.harness import (
    PYTHON,
    REPO,
    Bench,
    CpuWindow,
    Row,
    add_common_options,
    command_line,
    log,
    print_table,
    raise_fd_limit,
    set_nice,
    studio_webinars,
    update_results,
)
from tests.support.net import free_port
from tests.support.redis_server import RedisServer
from tests.support.server_process import ServerProcess

MODULE = "benchmarks.bench_ws_fanout"
SECRET = "bench-ws-fanout-secret-key-0123456789abcdef"
CONFIGS = ("ours_1w", "ours_2w", "bare")
LABELS = {"ours_1w": "1 worker", "ours_2w": "2 workers + Redis", "bare": "bare websockets"}
CHATTERS = 10
CHAT_RATE = 1.0  # messages/s per chatter (the server allows 1/s, burst 5)
HEARTBEAT_S = 15.0
VIEWERS_PER_LOADER = 5000
P99_LIMIT_S = 1.0
MIN_DELIVERED = 0.99
CONNECT_BUDGET_S = 150.0


def rss_kib(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def loadavg() -> tuple[float, float, float]:
    one, five, fifteen = Path("/proc/loadavg").read_text().split()[:3]
    return float(one), float(five), float(fifteen)


def pct(ordered: array.array[float] | list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted sequence."""
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return float(ordered[rank - 1])


# ---------------------------------------------------------------- setup

async def prepare_room(database_url: str, n: int) -> tuple[uuid.UUID, list[str]]:
    """An announced webinar and ``n`` guest join tokens (the server's own functions)."""
    from rooms.participants import create_guest
    from server.db import Database
    from server.security import Signer

    webinar = (await studio_webinars(database_url, 1))[0]
    db = Database(database_url, min_size=1, max_size=8)
    await db.connect()
    try:
        signer = Signer(SECRET)
        tokens: list[str] = [""] * n
        gate = asyncio.Semaphore(16)

        async def one(i: int) -> None:
            async with gate:
                _, tokens[i] = await create_guest(db, signer, webinar.id, f"Viewer {i}")

        await asyncio.gather(*(one(i) for i in range(n)))
        return webinar.id, tokens
    finally:
        await db.close()


@contextlib.asynccontextmanager
async def our_servers(bench: Bench, workers: int, env: dict[str, str] | None = None,
                      ) -> AsyncIterator[tuple[list[ServerProcess], str, RedisServer | None]]:
    database_url = await bench.pg.new_database()
    redis: RedisServer | None = None
    servers: list[ServerProcess] = []
    try:
        if workers > 1:
            redis = RedisServer()
            await redis.astart()
        for _ in range(workers):
            servers.append(ServerProcess(database_url, redis_url=redis.url if redis else None,
                                         data_dir=bench.tmp / f"node-{uuid.uuid4().hex[:8]}",
                                         env={**(env or {}), "WEBINAR_SECRET_KEY": SECRET}))
        await asyncio.gather(*(s.astart() for s in servers))
        yield servers, database_url, redis
    finally:
        for s in servers:
            await asyncio.to_thread(s.stop)
        if redis is not None:
            await redis.astop()


@contextlib.asynccontextmanager
async def bare_server() -> AsyncIterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    proc = subprocess.Popen([PYTHON, "-m", "benchmarks.ws_fanout_peer", str(port)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
        if line.strip() != b"ready":
            raise RuntimeError(f"bare server did not start: {line!r}")
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                await asyncio.to_thread(proc.wait, 10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# ---------------------------------------------------------------- load processes

class Loader:
    def __init__(self, index: int, cfg: dict[str, Any], workdir: Path) -> None:
        self.index = index
        self.cfg = cfg
        self.cfg_path = workdir / f"load-{index}.json"
        self.cfg["latency_file"] = str(workdir / f"latency-{index}.bin")
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.cfg_path.write_text(json.dumps(self.cfg))
        self.proc = await asyncio.create_subprocess_exec(
            PYTHON, "-m", "benchmarks.ws_fanout_load", str(self.cfg_path), cwd=REPO,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=1 << 22)

    async def read(self, timeout: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"load process {self.index} exited ({await self.proc.wait()})")
        return json.loads(line)  # type: ignore[no-any-return]

    async def send(self, obj: dict[str, Any]) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        with contextlib.suppress(ConnectionError):
            self.proc.stdin.write((json.dumps(obj) + "\n").encode())
            await self.proc.stdin.drain()

    def latencies(self) -> array.array[float]:
        values = array.array("d")
        path = Path(self.cfg["latency_file"])
        if path.exists():
            with open(path, "rb") as fh:
                values.frombytes(fh.read())
        return values

    async def stop(self) -> None:
        if self.proc is None:
            return
        await self.send({"cmd": "close"})
        try:
            await asyncio.wait_for(self.proc.wait(), 20)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()


def split_targets(targets: list[list[Any]], loaders: int) -> list[tuple[list[list[Any]], list[list[int]]]]:
    """Connection i goes to loader i % loaders; chatter c is connection c."""
    parts: list[tuple[list[list[Any]], list[list[int]]]] = [([], []) for _ in range(loaders)]
    for i, target in enumerate(targets):
        own, chatters = parts[i % loaders]
        if i < CHATTERS:
            chatters.append([len(own), i])
        own.append(target)
    return parts


# ---------------------------------------------------------------- one run

async def sample_pg(database_url: str, until: float, every: float = 0.25) -> dict[str, float]:
    """Sessions of the servers' pools, sampled from ``pg_stat_activity`` until ``until`` (time.time()):
    mean number idle in a transaction (waiting for the server to send its next command) and
    mean number waiting for a lock (the room's event counter row)."""
    import asyncpg

    conn = await asyncpg.connect(database_url)
    samples = idle_in_txn = lock_waits = 0
    try:
        while time.time() < until:
            row = await conn.fetchrow(
                """SELECT count(*) FILTER (WHERE state = 'idle in transaction') AS idle_in_txn,
                          count(*) FILTER (WHERE wait_event_type = 'Lock') AS lock_waits
                   FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()""")
            samples += 1
            idle_in_txn += row["idle_in_txn"]
            lock_waits += row["lock_waits"]
            await asyncio.sleep(every)
    finally:
        await conn.close()
    return {"pg_samples": samples, "pg_idle_in_txn": idle_in_txn / max(1, samples),
            "pg_lock_waits": lock_waits / max(1, samples)}


async def measure(config: str, n: int, targets: list[list[Any]], server_pids: list[int], extra_pids: dict[str, int],
                  args: argparse.Namespace, database_url: str | None = None) -> dict[str, Any]:
    loaders_n = args.loaders or max(1, math.ceil(n / VIEWERS_PER_LOADER))
    workdir = Path(tempfile.mkdtemp(prefix="ws-fanout-"))
    loaders: list[Loader] = []
    result: dict[str, Any] = {"config": config, "n": n, "loaders": loaders_n}
    try:
        rss0 = sum(rss_kib(p) for p in server_pids)
        for i, (own, chatters) in enumerate(split_targets(targets, loaders_n)):
            cfg = {"targets": own, "chatters": chatters, "chatters_total": CHATTERS, "chat_rate": CHAT_RATE,
                   "heartbeat_s": HEARTBEAT_S, "connect_concurrency": args.connect_concurrency,
                   "latency_every": args.latency_every,
                   "max_life_s": CONNECT_BUDGET_S + args.warmup + args.window + args.tail + 120}
            loaders.append(Loader(i, cfg, workdir))
        t0 = time.monotonic()
        for loader in loaders:
            await loader.start()
        connected = await asyncio.gather(*(l.read(CONNECT_BUDGET_S + 10) for l in loaders))
        result["connect_s"] = round(time.monotonic() - t0, 1)
        result["connected"] = sum(c["ok"] for c in connected)
        failures: dict[str, int] = {}
        for c in connected:
            for k, v in c["failures"].items():
                failures[k] = failures.get(k, 0) + v
        result["connect_failures"] = failures
        log(f"{config} N={n}: {result['connected']} connected in {result['connect_s']} s"
            + (f", failures {failures}" if failures else ""))
        await asyncio.sleep(args.settle)
        rss1 = sum(rss_kib(p) for p in server_pids)

        now = time.time()
        plan: dict[str, Any] = {"cmd": "measure", "chat_start": now + 1.0}
        plan["win_start"] = plan["chat_start"] + args.warmup
        plan["win_end"] = plan["win_start"] + args.window
        plan["chat_end"] = plan["win_end"]
        plan["finish"] = plan["chat_end"] + args.tail
        for loader in loaders:
            await loader.send(plan)
        watch: dict[str, tuple[int, bool]] = {f"server{i}": (p, False) for i, p in enumerate(server_pids)}
        watch.update({f"loader{i}": (l.proc.pid, False) for i, l in enumerate(loaders) if l.proc})
        watch.update({name: (pid, True) for name, pid in extra_pids.items()})
        await asyncio.sleep(max(0.0, plan["win_start"] - time.time()))
        cpu = CpuWindow(watch).start()
        load_in = loadavg()
        spy = None
        if args.profile in (f"{config}:{n}", config):
            spy = await start_profiler(server_pids[0], args)
        pg_task = asyncio.create_task(sample_pg(database_url, plan["win_end"])) if database_url else None
        await asyncio.sleep(max(0.0, plan["win_end"] - time.time()))
        cpu.stop()
        rss2 = sum(rss_kib(p) for p in server_pids)
        await stop_profiler(spy)
        if pg_task is not None:
            with contextlib.suppress(Exception):
                result.update(await pg_task)
        done = await asyncio.gather(*(l.read(plan["finish"] - time.time() + 60) for l in loaders))

        lat = array.array("d")
        for loader in loaders:
            lat.extend(loader.latencies())
        ordered = sorted(lat)
        viewers = sum(d["viewers"] for d in done)
        sent = sum(d["sent_chat"] for d in done)
        delivered_total = sum(d["delivered_total"] for d in done)
        delivered_window = sum(d["delivered_window"] for d in done)
        frames_window = sum(d["frames_window"] for d in done)
        closes: dict[str, int] = {}
        errors: dict[str, int] = {}
        for d in done:
            for table, into in ((d["closes"], closes), (d["errors"], errors)):
                for k, v in table.items():
                    into[k] = into.get(k, 0) + v
        for name in ("ack", "ingest", "fanout"):
            values = sorted(v for d in done for v in d.get("split", {}).get(name, []))
            result[f"{name}_p50_s"] = pct(values, 50)
            result[f"{name}_p99_s"] = pct(values, 99)
        wall = cpu.wall
        server_cpu = sum(v for k, v in cpu.cpu.items() if k.startswith("server"))
        loader_cpu = sum(v for k, v in cpu.cpu.items() if k.startswith("loader"))
        result.update({
            "viewers": viewers,
            "sent": sent,
            "p50_s": pct(ordered, 50), "p99_s": pct(ordered, 99), "max_s": ordered[-1] if ordered else float("nan"),
            "samples": len(ordered),
            "delivered_per_s": delivered_window / args.window,
            "offered_per_s": CHATTERS * CHAT_RATE * viewers,
            "delivered_fraction": delivered_total / (sent * viewers) if sent and viewers else 0.0,
            "events_per_frame": delivered_window / frames_window if frames_window else float("nan"),
            "closes": closes, "errors": errors,
            "closed_in_window": sum(d["closed_in_window"] for d in done),
            "server_cores": server_cpu / wall, "loader_cores": loader_cpu / wall,
            "us_per_delivery": 1e6 * server_cpu / delivered_window if delivered_window else float("nan"),
            "cpu_ms_per_conn_s": 1e3 * server_cpu / wall / max(1, viewers),
            "loader_max_core": max((v / wall for k, v in cpu.cpu.items() if k.startswith("loader")), default=0.0),
            "postgres_cores": cpu.cpu.get("postgres", 0.0) / wall, "redis_cores": cpu.cpu.get("redis", 0.0) / wall,
            "other_cores": cpu.other_load_cores,
            "machine_cores": cpu.machine_busy / wall,
            "rss_before_mib": rss0 / 1024, "rss_after_mib": rss1 / 1024, "rss_end_mib": rss2 / 1024,
            "kib_per_conn": (rss1 - rss0) / max(1, result["connected"]),
            "loadavg_in_window": load_in,
        })
        result["holds"] = bool(
            result["connected"] == n and not result["closed_in_window"] and not closes
            and result["delivered_fraction"] >= MIN_DELIVERED and result["p99_s"] <= P99_LIMIT_S)
        return result
    finally:
        await asyncio.gather(*(l.stop() for l in loaders), return_exceptions=True)
        shutil.rmtree(workdir, ignore_errors=True)


async def run_one(bench: Bench, config: str, n: int, args: argparse.Namespace) -> dict[str, Any]:
    log(f"--- {config} ({LABELS[config]}), N={n}")
    extra = {}
    if (pg := bench.pg_pid()) is not None:
        extra["postgres"] = pg
    if config == "bare":
        async with bare_server() as (proc, port):
            targets = [["127.0.0.1", port, "/"] for _ in range(n)]
            return await measure(config, n, targets, [proc.pid], extra, args)
    workers = 2 if config == "ours_2w" else 1
    server_env = dict(item.split("=", 1) for item in args.server_env)
    async with our_servers(bench, workers, server_env) as (servers, database_url, redis):
        t0 = time.monotonic()
        webinar_id, tokens = await prepare_room(database_url, n)
        log(f"room and {n} join tokens ready in {time.monotonic() - t0:.1f} s")
        targets = [["127.0.0.1", servers[i % workers].port, f"/ws/rooms/{webinar_id}?token={token}"]
                   for i, token in enumerate(tokens)]
        if redis is not None and getattr(redis, "_process", None) is not None:
            extra["redis"] = redis._process.pid  # type: ignore[union-attr]
        pids = [s.proc.pid for s in servers if s.proc is not None]
        return await measure(config, n, targets, pids, extra, args, database_url)


async def start_profiler(pid: int, args: argparse.Namespace) -> asyncio.subprocess.Process:
    """py-spy (``--py-spy``, installed in a throw-away venv) sampling ``pid`` over the window."""
    log(f"py-spy sampling pid {pid} for {args.window:.0f} s into {args.profile_out}")
    return await asyncio.create_subprocess_exec(
        args.py_spy, "record", "--pid", str(pid), "--duration", str(int(args.window)), "--rate", "100",
        "--format", "raw", "--output", str(args.profile_out), *(["--native"] if args.profile_native else ["--nonblocking"]),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)


async def stop_profiler(spy: asyncio.subprocess.Process | None) -> None:
    if spy is None:
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(spy.wait(), 30)
    if spy.returncode is None:
        spy.kill()
        await spy.wait()


# ---------------------------------------------------------------- report

def fmt_s(value: float) -> str:
    if value != value:
        return "n/a"
    return f"{value * 1000:.0f} ms" if value < 10 else f"{value:.0f} s"


def table(results: list[dict[str, Any]]) -> None:
    rows = []
    for r in results:
        rows.append([
            r["config"], r["n"], f"{r.get('connected', 0)}", f"{r.get('connect_s', 0):.0f}",
            fmt_s(r.get("p50_s", float("nan"))), fmt_s(r.get("p99_s", float("nan"))), fmt_s(r.get("max_s", float("nan"))),
            f"{r.get('delivered_per_s', 0):.0f}", f"{r.get('offered_per_s', 0):.0f}",
            f"{100 * r.get('delivered_fraction', 0):.1f}%", f"{r.get('events_per_frame', float('nan')):.2f}",
            f"{r.get('server_cores', 0):.2f}", f"{r.get('us_per_delivery', float('nan')):.1f}",
            f"{r.get('cpu_ms_per_conn_s', 0):.3f}", f"{r.get('loader_cores', 0):.2f}",
            f"{r.get('postgres_cores', 0) + r.get('redis_cores', 0):.2f}", f"{r.get('other_cores', 0):.2f}",
            f"{r.get('rss_before_mib', 0):.0f}->{r.get('rss_after_mib', 0):.0f}", f"{r.get('kib_per_conn', 0):.1f}",
            sum(r.get("closes", {}).values()), sum(r.get("errors", {}).values()), "yes" if r.get("holds") else "NO",
        ])
    print_table(["config", "N", "conn", "conn_s", "p50", "p99", "max", "deliv/s", "offered/s", "deliv%", "ev/frame",
                 "srv_cores", "us/deliv", "ms/conn/s", "gen_cores", "pg+redis", "other", "RSS MiB", "KiB/conn", "closed", "refused", "holds"], rows)


def diagnostics(results: list[dict[str, Any]]) -> None:
    """Where our latency comes from (measured on the chatter connections only): send -> ack;
    send -> the event's ``at`` (``now()`` of the transaction that stored it, i.e. its BEGIN:
    reading the frame, waiting behind the connection's earlier commands, a pool connection);
    ``at`` -> arrival (the transaction, waits on the room's counter row lock included, the
    commit, the broker and the fan-out)."""
    rows = []
    for r in results:
        if r["config"] == "bare":
            continue
        rows.append([r["config"], r["n"],
                     *(f"{fmt_s(r.get(f'{k}_p50_s', float('nan')))} / {fmt_s(r.get(f'{k}_p99_s', float('nan')))}"
                       for k in ("ack", "ingest", "fanout")),
                     f"{r.get('events_per_frame', float('nan')):.2f}",
                     f"{r.get('pg_idle_in_txn', float('nan')):.2f}", f"{r.get('pg_lock_waits', float('nan')):.2f}"])
    if rows:
        print_table(["config", "N", "chat.send->ack p50/p99", "send->txn start p50/p99", "txn start->viewer p50/p99",
                     "ev/frame", "pg idle in txn", "pg lock waits"], rows)


def largest_holding(results: list[dict[str, Any]], config: str) -> tuple[int, int | None]:
    """(largest N that held, smallest N above it that failed or None)."""
    runs = sorted((r["n"], r["holds"]) for r in results if r["config"] == config)
    good = [n for n, ok in runs if ok]
    best = max(good) if good else 0
    bad = [n for n, ok in runs if not ok and n > best]
    return best, (min(bad) if bad else None)


def rows_for(results: list[dict[str, Any]], steps: list[int], argv: list[str]) -> tuple[list[Row], dict[str, str]]:
    cmd = command_line(MODULE, argv)
    top = max(steps)
    rows: list[Row] = []
    ours = [c for c in CONFIGS if c != "bare"]
    best_cfg = max(ours, key=lambda c: largest_holding(results, c)[0])
    ours_n, ours_fail = largest_holding(results, best_cfg)
    bare_n, bare_fail = largest_holding(results, "bare")

    def shown(n: int, fail: int | None) -> str:
        return f"{n}" if fail is not None else f">= {n}"

    rows.append(Row("ws_viewers_at_p99_1s", f"{shown(ours_n, ours_fail)} ({LABELS[best_cfg]})", shown(bare_n, bare_fail),
                    f"{ours_n / bare_n:.2f}" if bare_n else "n/a", ">= 10000 viewers, p99 <= 1 s", cmd))
    at_top = {r["config"]: r for r in results if r["n"] == top}
    if "bare" in at_top and any(c in at_top for c in ours):
        cfg = max((c for c in ours if c in at_top), key=lambda c: at_top[c]["delivered_per_s"])
        o, b = at_top[cfg], at_top["bare"]
        rows.append(Row("ws_fanout_vs_bare_websockets",
                        f"{o['delivered_per_s']:.0f} msg/s (N={top}, {LABELS[cfg]}, p99 {fmt_s(o['p99_s'])})",
                        f"{b['delivered_per_s']:.0f} msg/s of {b['offered_per_s']:.0f} offered (p99 {fmt_s(b['p99_s'])}, "
                        f"{'held' if b['holds'] else 'did not hold'})",
                        f"{o['delivered_per_s'] / b['delivered_per_s']:.2f}" if b["delivered_per_s"] else "n/a",
                        ">= 0.70", cmd))
        if top == 10000:
            cfg = min((c for c in ours if c in at_top), key=lambda c: at_top[c]["p99_s"])
            o = at_top[cfg]
            rows.append(Row("ws_p99_delivery_s_10k", f"{o['p99_s']:.3f} s ({LABELS[cfg]}, p50 {o['p50_s']:.3f} s)",
                            f"{b['p99_s']:.3f} s (p50 {b['p50_s']:.3f} s)",
                            f"{o['p99_s'] / b['p99_s']:.2f}" if b["p99_s"] > 0 else "n/a", "<= 1 s", cmd))
    notes = {}
    detail = []
    for r in sorted(results, key=lambda r: (CONFIGS.index(r["config"]), r["n"])):
        detail.append(f"{r['config']} N={r['n']}: p50 {fmt_s(r['p50_s'])}, p99 {fmt_s(r['p99_s'])}, "
                      f"{r['delivered_per_s']:.0f}/{r['offered_per_s']:.0f} msg/s, {r.get('events_per_frame', 0):.2f} ev/frame, "
                      f"server {r['server_cores']:.2f} cores, load gen {r['loader_cores']:.2f}, "
                      f"other load {r.get('other_cores', 0):.2f}, {r['kib_per_conn']:.0f} KiB/conn, "
                      f"{'holds' if r['holds'] else 'fails'}")
    notes["ws_fanout"] = ("10 chat msg/s to N viewers, heartbeats every 15 s; load generators share the 2 cores "
                          "(latency sampled on one viewer in --latency-every, default 4, and every chatter; all deliveries counted). "
                          + "; ".join(detail) + ".")
    return rows, notes


# ---------------------------------------------------------------- main

async def wait_for_quiet(max_wait_s: float) -> None:
    """Poll (at most ``max_wait_s``) until the 1-minute load average is below 0.5."""
    if max_wait_s <= 0:
        return
    deadline = time.monotonic() + max_wait_s
    while True:
        if loadavg()[0] < 0.5:
            log(f"load average {loadavg()}: quiet enough")
            return
        if time.monotonic() > deadline:
            log(f"load average still {loadavg()} after {max_wait_s:.0f} s: running anyway")
            return
        log(f"load average {loadavg()}: waiting")
        await asyncio.sleep(30)


async def main_async(args: argparse.Namespace, argv: list[str]) -> int:
    steps = [int(s) for s in args.steps.split(",")]
    configs = [c for c in args.configs.split(",") if c]
    await wait_for_quiet(args.wait_quiet)
    log(f"load average at start: {loadavg()}")
    results: list[dict[str, Any]] = []
    started = time.monotonic()
    async with Bench() as bench:
        for n in steps:
            for config in configs:
                results.append(await run_one(bench, config, n, args))
                table([results[-1]])
                diagnostics([results[-1]])
        for config in configs:
            for _ in range(args.bisect):
                best, fail = largest_holding(results, config)
                if fail is None or best == 0 or fail - best <= 250:
                    break
                n = int(round((best + fail) / 2 / 250) * 250)
                results.append(await run_one(bench, config, n, args))
                table([results[-1]])
    print()
    print(f"ws fan-out: {CHATTERS} chatters x {CHAT_RATE:g} msg/s, heartbeat {HEARTBEAT_S:g} s, warm-up {args.warmup:g} s, "
          f"window {args.window:g} s; load average at end {loadavg()}; {time.monotonic() - started:.0f} s in all")
    table(sorted(results, key=lambda r: (r["n"], CONFIGS.index(r["config"]))))
    print()
    diagnostics(sorted(results, key=lambda r: (r["n"], CONFIGS.index(r["config"]))))
    for config in configs:
        best, fail = largest_holding(results, config)
        print(f"{config}: largest N holding p99 <= {P99_LIMIT_S:g} s: {best}{'' if fail else ' (every step held)'}")
    rows, notes = rows_for(results, steps, argv)
    print()
    for row in rows:
        print(row.line())
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    if args.write:
        if args.quick:
            log("--quick figures are not written to RESULTS.md (run without --quick)")
        elif args.server_env:
            log("runs with --server-env are experiments: not written to RESULTS.md")
        elif set(configs) != set(CONFIGS):
            log("partial runs (--configs) are not written to RESULTS.md")
        else:
            update_results(rows, notes)
            log("RESULTS.md updated")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # --wait-quiet here waits for the 1-minute load average (wait_for_quiet), not harness.wait_quiet's sample
    add_common_options(parser, quick="N = 200 and 1000, short window (under 2 minutes)",
                       write="update this benchmark's rows of benchmarks/RESULTS.md", wait_quiet=False)
    parser.add_argument("--steps", default="1000,5000,10000", help="viewer counts, comma separated")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="subset of ours_1w,ours_2w,bare")
    parser.add_argument("--window", type=float, default=30.0, help="measurement window, s")
    parser.add_argument("--warmup", type=float, default=5.0, help="chat before the window, s")
    parser.add_argument("--settle", type=float, default=2.0, help="pause after connecting (then RSS is read), s")
    parser.add_argument("--tail", type=float, default=3.0, help="wait after the last message for late deliveries, s")
    parser.add_argument("--bisect", type=int, default=3, help="extra runs per configuration to bisect the largest N")
    parser.add_argument("--loaders", type=int, default=0, help=f"load processes (default: one per {VIEWERS_PER_LOADER})")
    parser.add_argument("--connect-concurrency", type=int, default=100, help="handshakes in flight per load process")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                        help="first wait up to S seconds for a 1-minute load average < 0.5")
    parser.add_argument("--profile", default="", help="CONFIG or CONFIG:N whose first server py-spy samples over the window, e.g. ours_1w:10000")
    parser.add_argument("--py-spy", default="/tmp/prof/bin/py-spy", help="py-spy binary (a throw-away venv)")
    parser.add_argument("--profile-out", default="/tmp/ws_fanout_profile.txt")
    parser.add_argument("--profile-native", action="store_true",
                        help="py-spy --native (C frames too: the garbage collector, syscalls); pauses the server to sample")
    parser.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for our server processes (experiments; runs with it are not written)")
    parser.add_argument("--json", default="", help="also write every run's figures to this file")
    parser.add_argument("--latency-every", type=int, default=4, metavar="K",
                        help="one viewer in K (and every chatter) records each delivery's latency; all count deliveries")
    argv = sys.argv[1:]
    args = parser.parse_args(argv)
    if args.quick:
        args.steps = "200,1000"
        args.window = min(args.window, 6.0)
        args.warmup = min(args.warmup, 2.0)
        args.tail = min(args.tail, 1.5)
        args.settle = min(args.settle, 1.0)
        args.bisect = 0
    raise_fd_limit(65536)
    set_nice(args.nice)
    try:
        import uvloop

        return uvloop.run(main_async(args, argv))
    except ImportError:
        return asyncio.run(main_async(args, argv))


if __name__ == "__main__":
    sys.exit(main())
