"""Sponsor participant file of 100,000 rows: CSV and XLSX, time and peak memory.

One ``webinar serve`` process
on a fresh database seeded with one webinar of 110,000 registrants: 100,000
with a sponsor consent (the file's rows) and 10,000 without (filtered out),
each with attendance figures; half answered a poll, all saw a CTA, a fifth
clicked it, a tenth chatted. A logged-in sponsor downloads
``/sponsor/webinars/{id}/participants.csv`` and ``.xlsx`` over HTTP
(httpx, streamed, bytes counted and dropped):

- **time**: request sent → last byte received (s), median of the repetitions;
- **peak memory**: the server's RSS sampled every 10 ms from ``/proc`` during
  the download, minus its RSS just before (MB); after a 10,000-row warm-up
  download of each format. The same is measured for a 10,000-row webinar:
  flat memory means the 100k figure is about the 10k one.

Peer in the same run: PostgreSQL's own ``COPY (same query) TO STDOUT WITH
CSV HEADER`` of the same rows through asyncpg (no Python formatting, no
HTTP): the floor for producing these rows as CSV. Ratio = ours / COPY.

    .venv/bin/python -m benchmarks.bench_participant_file [--quick] [--write] [--rows 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, AsyncIterator

import asyncpg
import httpx

from benchmarks.harness import (
    PYTHON,
    REPO,
    Bench,
    CpuWindow,
    Row,
    add_common_options,
    command_line,
    log,
    median,
    print_table,
    spread,
    update_results,
    wait_quiet,
)
from billing.figures import sponsor_file_sql
from server.db import Database
from tests.support.net import free_port, free_udp_port
from tests.world import PASSWORD, make_world

MODULE = "benchmarks.bench_participant_file"
SPONSOR = "Acme Benchmarks"
SEED_SQL = """
WITH p AS (INSERT INTO participants (webinar_id, display_name, email)
           SELECT $1, 'Participant ' || i, 'participant' || i || '@example.com' FROM generate_series(1, $2) i
           RETURNING id, email),
r AS (INSERT INTO registrations (webinar_id, email, first_name, last_name, phone, job_function, company, company_size,
                                 department, industry, participant_id)
      SELECT $1, p.email, 'Jeanne', 'Dupont-Lefèvre', '+33 6 12 34 56 78', 'Head of marketing', 'Société Exemple SA',
             '250-999', 'Marketing', 'Software', p.id FROM p RETURNING id, participant_id),
c AS (INSERT INTO consents (registration_id, kind, granted, form_version, wording, sponsor_name)
      SELECT r.id, 'sponsor_share', true, 1, 'I agree that my details are shared with the sponsor.', $3 FROM r)
INSERT INTO attendance (participant_id, webinar_id, live_seconds, replay_seconds, attention_seconds, first_seen_at,
                        last_seen_at)
SELECT r.participant_id, $1, 600 + random() * 2400, CASE WHEN random() < 0.3 THEN random() * 900 ELSE 0 END,
       random() * 2400, now() - interval '3 hours', now() - interval '2 hours' FROM r
"""
NO_CONSENT_SQL = """
WITH p AS (INSERT INTO participants (webinar_id, display_name, email)
           SELECT $1, 'Other ' || i, 'other' || i || '@example.com' FROM generate_series(1, $2) i RETURNING id, email)
INSERT INTO registrations (webinar_id, email, first_name, participant_id) SELECT $1, p.email, 'Other', p.id FROM p
"""
INTERACTIONS_SQL = """
WITH poll AS (INSERT INTO polls (webinar_id, question, options, state) VALUES ($1, 'Useful?', '["Yes", "No"]', 'closed')
              RETURNING id),
cta AS (INSERT INTO ctas (webinar_id, label) VALUES ($1, 'Book a demo') RETURNING id),
people AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM participants WHERE webinar_id = $1),
v AS (INSERT INTO poll_votes (poll_id, participant_id, choices)
      SELECT poll.id, people.id, ARRAY[(people.n % 2)::smallint] FROM poll, people WHERE people.n % 2 = 0),
i AS (INSERT INTO cta_interactions (cta_id, participant_id, kind, mode)
      SELECT cta.id, people.id, k.kind, 'live' FROM cta, people
      CROSS JOIN LATERAL (SELECT 'impression' AS kind UNION ALL SELECT 'click' WHERE people.n % 5 = 0) k)
INSERT INTO chat_messages (webinar_id, event_id, participant_id, text)
SELECT $1, people.n, people.id, 'Hello' FROM people WHERE people.n % 10 = 0
"""


class BillingServer:
    """``webinar serve`` in a child process (its own process group)."""

    def __init__(self, database_url: str, data_dir: Path) -> None:
        self.port = free_port()
        self.database_url = database_url
        self.data_dir = data_dir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WEBINAR_") and k != "REDIS_URL"}
        env.update({"DATABASE_URL": self.database_url, "WEBINAR_LOG_JSON": "1", "WEBINAR_ENABLE_SRT": "0",
                    "WEBINAR_ENABLE_RTMP": "0", "WEBINAR_SECRET_KEY": "benchmark-secret-key-not-for-production-0123"})
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.data_dir / "server.log", "wb") as out:
            self.proc = subprocess.Popen(
                [PYTHON, "-m", "server.cli", "serve", "--port", str(self.port), "--rtmp-port", str(free_port()),
                 "--srt-port", str(free_udp_port()), "--data-dir", str(self.data_dir)],
                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        async with httpx.AsyncClient(timeout=2) as client:
            deadline = time.monotonic() + 60
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited: {(self.data_dir / 'server.log').read_text()[-2000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.url}/healthz")).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError("server not ready in 60 s")
                await asyncio.sleep(0.1)

    async def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        while proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextlib.asynccontextmanager
async def rss_peak(pid: int) -> AsyncIterator[dict[str, float]]:
    """Samples the RSS of ``pid`` every 10 ms; yields a dict filled with ``before`` and ``peak`` (MB)."""
    out = {"before": rss_mb(pid), "peak": 0.0}
    out["peak"] = out["before"]
    stop = asyncio.Event()

    async def sample() -> None:
        while not stop.is_set():
            out["peak"] = max(out["peak"], rss_mb(pid))
            await asyncio.sleep(0.01)

    task = asyncio.create_task(sample())
    try:
        yield out
    finally:
        stop.set()
        await task
        out["peak"] = max(out["peak"], rss_mb(pid))


@contextlib.asynccontextmanager
async def responsiveness(base_url: str) -> AsyncIterator[list[float]]:
    """``GET /healthz`` every 200 ms on another connection while the block runs: how long the server takes to
    answer a tiny request while it builds a file (yields the list of latencies, seconds)."""
    latencies: list[float] = []
    stop = asyncio.Event()

    async def probe() -> None:
        async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
            while not stop.is_set():
                t0 = time.monotonic()
                await client.get("/healthz")
                latencies.append(time.monotonic() - t0)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.2)

    task = asyncio.create_task(probe())
    try:
        yield latencies
    finally:
        stop.set()
        await task


async def download(client: httpx.AsyncClient, url: str, pid: int) -> tuple[float, float, int, int, float]:
    """(seconds to the last byte, peak RSS growth MB, bytes, lines, slowest /healthz meanwhile s)."""
    size = lines = 0
    async with rss_peak(pid) as rss, responsiveness(str(client.base_url)) as probes:
        t0 = time.monotonic()
        async with client.stream("GET", url) as response:
            if response.status_code != 200:
                raise RuntimeError(f"GET {url} -> {response.status_code}")
            async for chunk in response.aiter_raw():
                size += len(chunk)
                lines += chunk.count(b"\n")
        elapsed = time.monotonic() - t0
    return elapsed, rss["peak"] - rss["before"], size, lines, max(probes, default=0.0)


async def copy_peer(dsn: str, webinar_id: uuid.UUID) -> tuple[float, int]:
    """PostgreSQL's COPY of the same query to CSV: (seconds, bytes)."""
    conn = await asyncpg.connect(dsn)
    size = 0

    async def sink(data: bytes) -> None:
        nonlocal size
        size += len(data)

    try:
        t0 = time.monotonic()
        await conn.execute("SET timezone = 'Europe/Paris'")
        await conn.copy_from_query(sponsor_file_sql("csv"), webinar_id, output=sink, format="csv", header=True)
        return time.monotonic() - t0, size
    finally:
        await conn.close()


async def seed(db: Database, webinar_id: uuid.UUID, rows: int, extra_without_consent: int) -> None:
    t0 = time.monotonic()
    await db.execute("UPDATE webinars SET sponsor_name = $2, state = 'replay', live_started_at = now() - interval '3 hours',"
                     " live_ended_at = now() - interval '2 hours' WHERE id = $1", webinar_id, SPONSOR)
    await db.execute(SEED_SQL, webinar_id, rows, SPONSOR)
    if extra_without_consent:
        await db.execute(NO_CONSENT_SQL, webinar_id, extra_without_consent)
    await db.execute(INTERACTIONS_SQL, webinar_id)
    await db.execute("ANALYZE")
    log(f"seeded {rows} consenting + {extra_without_consent} other registrants in {time.monotonic() - t0:.1f} s")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    reps_csv = args.reps or (1 if args.quick else 3)
    reps_xlsx = max(1, reps_csv - 1)
    if args.wait_quiet:
        await wait_quiet(args.wait_quiet)
    async with Bench() as bench:
        dsn = await bench.pg.new_database()
        db = Database(dsn, min_size=1, max_size=2)
        await db.connect()
        try:
            world = await make_world(db)
            big, small = world.a.webinar.id, world.b.webinar.id
            await seed(db, big, args.rows, args.rows // 10)
            await seed(db, small, args.rows // 10, 0)
        finally:
            await db.close()
        server = BillingServer(dsn, bench.tmp / "server")
        await server.start()
        results: dict[str, Any] = {"rows": args.rows}
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=300) as client_a, \
                    httpx.AsyncClient(base_url=server.url, timeout=300) as client_b:
                for client, side in ((client_a, world.a), (client_b, world.b)):  # each account's sponsor
                    await client.get("/login")
                    login = await client.post("/login", data={"email": side.sponsor.email, "password": PASSWORD,
                                                              "csrf_token": client.cookies["wb_csrf"]})
                    assert login.status_code == 303, login.text[:300]
                for kind in ("csv", "xlsx"):  # warm-up: imports, first plans, allocator
                    await download(client_b, f"/sponsor/webinars/{small}/participants.{kind}", server.pid)
                for kind, reps in (("csv", reps_csv), ("xlsx", reps_xlsx)):
                    for which, wid, client in (("100k", big, client_a), ("10k", small, client_b)):
                        times, peaks, probes = [], [], []
                        window = CpuWindow({"server": (server.pid, False)}).start()
                        for _ in range(reps):
                            seconds, peak, size, lines, probe = await download(
                                client, f"/sponsor/webinars/{wid}/participants.{kind}", server.pid)
                            times.append(seconds)
                            peaks.append(peak)
                            probes.append(probe)
                            if kind == "csv":
                                expected = (args.rows if which == "100k" else args.rows // 10) + 1
                                assert lines == expected, f"{lines} lines, expected {expected}"
                            log(f"{kind} {which}: {seconds:.2f} s, {size / 1e6:.1f} MB, peak RSS +{peak:.1f} MB")
                        window.stop()
                        results[f"{kind}_{which}"] = {"s": median(times), "spread": spread(times), "peak": max(peaks),
                                                      "healthz_max": max(probes),
                                                      "mb": size / 1e6, "server_cpu_s": window.cpu["server"] / reps,
                                                      "other_load": window.other_load_cores}
                peer = [await copy_peer(dsn, big) for _ in range(reps_csv)]
                results["copy"] = {"s": median([p[0] for p in peer]), "spread": spread([p[0] for p in peer]),
                                   "mb": peer[0][1] / 1e6}
                log(f"COPY peer: {results['copy']['s']:.2f} s, {results['copy']['mb']:.1f} MB")
        finally:
            await server.stop()
        return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_options(parser, quick="one repetition of each (about 1.5 minutes)",
                       write="update this benchmark's rows of benchmarks/RESULTS.md", nice=False)
    parser.add_argument("--rows", type=int, default=100_000, help="rows of the file (default 100,000)")
    parser.add_argument("--reps", type=int, help="CSV repetitions (default 3, quick 1); XLSX one fewer")
    args = parser.parse_args(argv)
    r = asyncio.run(run(args))
    csv100, csv10, x100, x10, peer = r["csv_100k"], r["csv_10k"], r["xlsx_100k"], r["xlsx_10k"], r["copy"]
    print_table(
        ["file", "rows", "time s (median)", "spread", "MB", "server CPU s", "peak RSS growth MB", "slowest /healthz s",
         "other load"],
        [["CSV", r["rows"], f"{csv100['s']:.2f}", csv100["spread"], f"{csv100['mb']:.1f}", f"{csv100['server_cpu_s']:.2f}",
          f"{csv100['peak']:.1f}", f"{csv100['healthz_max']:.2f}", f"{csv100['other_load']:.2f}"],
         ["CSV", r["rows"] // 10, f"{csv10['s']:.2f}", csv10["spread"], f"{csv10['mb']:.1f}",
          f"{csv10['server_cpu_s']:.2f}", f"{csv10['peak']:.1f}", f"{csv10['healthz_max']:.2f}", f"{csv10['other_load']:.2f}"],
         ["XLSX", r["rows"], f"{x100['s']:.2f}", x100["spread"], f"{x100['mb']:.1f}", f"{x100['server_cpu_s']:.2f}",
          f"{x100['peak']:.1f}", f"{x100['healthz_max']:.2f}", f"{x100['other_load']:.2f}"],
         ["XLSX", r["rows"] // 10, f"{x10['s']:.2f}", x10["spread"], f"{x10['mb']:.1f}", f"{x10['server_cpu_s']:.2f}",
          f"{x10['peak']:.1f}", f"{x10['healthz_max']:.2f}", f"{x10['other_load']:.2f}"],
         ["COPY peer (CSV)", r["rows"], f"{peer['s']:.2f}", peer["spread"], f"{peer['mb']:.1f}", "-", "-", "-", "-"]])
    csv_ratio = csv100["s"] / peer["s"]
    xlsx_ratio = x100["s"] / peer["s"]
    peak = max(csv100["peak"], x100["peak"])
    peak_small = max(csv10["peak"], x10["peak"])
    print(f"CSV {csv100['s']:.2f} s = {csv_ratio:.1f}x COPY; XLSX {x100['s']:.2f} s = {xlsx_ratio:.1f}x COPY; "
          f"peak RSS growth {peak:.1f} MB at {r['rows']} rows vs {peak_small:.1f} MB at {r['rows'] // 10}")
    if args.write:
        cmd = command_line(MODULE, argv if argv is not None else [])
        update_results([
            Row("participant_file_100k_csv_s", ours=f"{csv100['s']:.2f} s ({csv100['spread']}; {csv100['mb']:.0f} MB)",
                peer=f"{peer['s']:.2f} s (PostgreSQL COPY ... TO STDOUT CSV)",
                ratio=f"{csv_ratio:.1f}× {'✓' if csv100['s'] <= 3 else '✗'}", target="≤ 3 s", command=cmd),
            Row("participant_file_100k_xlsx_s", ours=f"{x100['s']:.2f} s ({x100['spread']}; {x100['mb']:.0f} MB)",
                peer=f"{peer['s']:.2f} s (PostgreSQL COPY ... TO STDOUT CSV)", ratio=f"{xlsx_ratio:.1f}×",
                target="—", command=cmd),
            Row("participant_file_100k_peak_mb", ours=f"{peak:.1f} MB (CSV {csv100['peak']:.1f}, XLSX {x100['peak']:.1f})",
                peer=f"{peak_small:.1f} MB (same files at {r['rows'] // 10:,} rows)",
                ratio=f"{peak / peak_small if peak_small > 0.5 else float('nan'):.2f}× "
                      f"{'✓' if peak <= max(2 * peak_small, peak_small + 20) else '✗'}",
                target="flat (100k ≈ 10k)", command=cmd),
        ], notes={"participant_file_100k": (
            f"{r['rows']:,} consenting registrants (+10 % without consent, filtered out) with attendance, poll, CTA "
            f"and chat figures; a logged-in sponsor downloads over HTTP (httpx, streamed) from one server process; "
            f"time = request → last byte, median; peak = server RSS sampled every 10 ms minus RSS before, after a "
            f"warm-up download. Server CPU per file: CSV {csv100['server_cpu_s']:.2f} s, XLSX "
            f"{x100['server_cpu_s']:.2f} s; slowest /healthz answer during a 100k download: CSV "
            f"{csv100['healthz_max']:.2f} s, XLSX {x100['healthz_max']:.2f} s; other load {csv100['other_load']:.2f} "
            f"cores during the CSV runs. "
            f"XLSX: xlsxwriter constant_memory into a temporary file, then streamed (first byte only at the end).")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
