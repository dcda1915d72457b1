"""Backup + restore time of a realistic server, against raw pg_dump/pg_restore + cp -a.

Metric ``backup_restore_s``. One database (real PostgreSQL from the harness)
gets two accounts (:func:`tests.world.make_world`) seeded like the participant
file benchmark (:func:`benchmarks.bench_participant_file.seed`): 100,000
registrants with consents and attendance (plus 10,000 without consent) on one
webinar, 10,000 on the other, poll votes, CTA impressions and clicks, chat.
The media folder gets a real recording: the harness's 720p30 3 Mbit/s clip
looped and cut by ``ffmpeg -c copy`` into fMP4 HLS segments (2 s) and a
``replay.mp4`` of the same length (``--media-seconds``, default 400 s each:
about 300 MB in all).

Each repetition (3; quick 1) times, in alternating order:

* ours: ``webinar backup`` (pg_dump -Fc in a snapshot with per-table row
  counts, media copied with sha256, the dump read back with
  ``pg_restore --list``, every copied file re-hashed, fsync, atomic rename)
  into an empty backup folder (a first, full generation), then
  ``webinar restore latest`` into a new empty database and an empty data
  folder (pg_restore in one transaction, every table's row count checked,
  media copied back with sha256 checked) -- both as the CLI a user runs;
* peer: ``pg_dump -Fc`` + ``cp -a media``, then ``pg_restore`` into a new empty
  database + ``cp -a`` back: the same data moved with no verification.

The figure is the median of backup + restore wall time; the ratio is ours /
peer. Also printed: each phase, an incremental second backup of ours with
nothing changed (media hard-linked), and the other load on the machine.

    .venv/bin/python -m benchmarks.bench_backup_restore [--quick] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg

from benchmarks.bench_participant_file import seed
from benchmarks.harness import (
    CLIP_720P_3M,
    FFMPEG,
    PYTHON,
    REPO,
    Bench,
    Row,
    add_common_options,
    clip,
    command_line,
    log,
    machine_busy_seconds,
    median,
    print_table,
    spread,
    update_results,
)
from server.backup import pg_tool
from server.db import Database
from tests.world import make_world

MODULE = "benchmarks.bench_backup_restore"
METRIC = "backup_restore_s"


def make_media(media_dir: Path, webinar_id: uuid.UUID, seconds: float) -> int:
    """A recording of ``seconds`` (the 720p 3 Mbit/s clip looped, stream copy): HLS fMP4 + replay.mp4;
    returns the bytes written."""
    folder = media_dir / "hls" / str(webinar_id)
    folder.mkdir(parents=True, exist_ok=True)
    source = ["-stream_loop", "-1", "-i", str(clip(CLIP_720P_3M)), "-t", f"{seconds:g}", "-c", "copy"]
    base = [FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin", "-y"]
    subprocess.run([*base, *source, "-f", "hls", "-hls_segment_type", "fmp4", "-hls_time", "2",
                    "-hls_playlist_type", "vod", "-hls_fmp4_init_filename", "init.mp4",
                    "-hls_segment_filename", str(folder / "seg%d.m4s"), str(folder / "index.m3u8")], check=True)
    subprocess.run([*base, *source, "-movflags", "+faststart", str(folder / "replay.mp4")], check=True)
    return sum(p.stat().st_size for p in folder.iterdir())


async def empty_database(bench: Bench) -> str:
    name = "r_" + uuid.uuid4().hex[:16]
    conn = await asyncpg.connect(bench.pg.server.dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
    finally:
        await conn.close()
    return bench.pg.server.dsn_for(name)


async def drop_database(bench: Bench, dsn: str) -> None:
    conn = await asyncpg.connect(bench.pg.server.dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{dsn.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await conn.close()


def timed(args: list[str], env: dict[str, str] | None = None) -> float:
    t0 = time.monotonic()
    done = subprocess.run(args, cwd=REPO, env={**os.environ, **(env or {})}, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:4])} failed: {done.stderr[-2000:]}")
    return time.monotonic() - t0


def webinar(*args: str, dsn: str, data_dir: Path, backup_dir: Path) -> float:
    env = {"DATABASE_URL": dsn, "WEBINAR_BACKUP_DIR": str(backup_dir), "WEBINAR_LOG_LEVEL": "WARNING"}
    return timed([PYTHON, "-m", "server.cli", *args, "--data-dir", str(data_dir)], env)


async def ours(bench: Bench, dsn: str, data_dir: Path, work: Path) -> dict[str, float]:
    backup_dir, target_dir = work / "ours-backups", work / "ours-target"
    backup = await asyncio.to_thread(webinar, "backup", dsn=dsn, data_dir=data_dir, backup_dir=backup_dir)
    incremental = await asyncio.to_thread(webinar, "backup", dsn=dsn, data_dir=data_dir, backup_dir=backup_dir)
    target = await empty_database(bench)
    try:
        # restore the first (full) generation: the second only links to the same files
        first = min(p.name for p in backup_dir.iterdir() if not p.name.startswith("."))
        restore = await asyncio.to_thread(webinar, "restore", first, dsn=target, data_dir=target_dir,
                                          backup_dir=backup_dir)
    finally:
        await drop_database(bench, target)
        shutil.rmtree(backup_dir, ignore_errors=True)
        shutil.rmtree(target_dir, ignore_errors=True)
    return {"backup": backup, "restore": restore, "total": backup + restore, "incremental": incremental}


async def peer(bench: Bench, dsn: str, data_dir: Path, work: Path, version_num: int) -> dict[str, float]:
    backup_dir, target_dir = work / "peer-backup", work / "peer-target"
    backup_dir.mkdir(parents=True)
    t0 = time.monotonic()
    await asyncio.to_thread(timed, [str(pg_tool("pg_dump", version_num)), "-Fc", "-f", str(backup_dir / "db.dump"),
                                    f"--dbname={dsn}"])
    await asyncio.to_thread(timed, ["cp", "-a", str(data_dir / "media"), str(backup_dir / "media")])
    backup = time.monotonic() - t0
    target = await empty_database(bench)
    try:
        t0 = time.monotonic()
        target_dir.mkdir(parents=True)
        await asyncio.to_thread(timed, [str(pg_tool("pg_restore", version_num)), "--no-owner", "--no-privileges",
                                        f"--dbname={target}", str(backup_dir / "db.dump")])
        await asyncio.to_thread(timed, ["cp", "-a", str(backup_dir / "media"), str(target_dir / "media")])
        restore = time.monotonic() - t0
    finally:
        await drop_database(bench, target)
        shutil.rmtree(backup_dir, ignore_errors=True)
        shutil.rmtree(target_dir, ignore_errors=True)
    return {"backup": backup, "restore": restore, "total": backup + restore}


async def run(args: argparse.Namespace, argv: list[str]) -> int:
    reps = args.reps or (1 if args.quick else 3)
    async with Bench() as bench:
        dsn = await bench.pg.new_database()
        db = Database(dsn, min_size=1, max_size=2)
        await db.connect()
        try:
            world = await make_world(db)
            await seed(db, world.a.webinar.id, args.rows, args.rows // 10)
            await seed(db, world.b.webinar.id, args.rows // 10, 0)
            regs = await db.fetchval("SELECT count(*) FROM registrations")
            db_bytes = await db.fetchval("SELECT pg_database_size(current_database())")
            version_num = int(await db.fetchval("SHOW server_version_num"))
        finally:
            await db.close()
        data_dir = bench.tmp / "source"
        media_bytes = await asyncio.to_thread(make_media, data_dir / "media", world.a.webinar.id, args.media_seconds)
        media_bytes += await asyncio.to_thread(make_media, data_dir / "media", world.b.webinar.id, 20)
        log(f"{regs} registrations, database {db_bytes / 1e6:.0f} MB, media {media_bytes / 1e6:.0f} MB")
        work = bench.tmp / "work"
        results: dict[str, list[dict[str, float]]] = {"ours": [], "peer": []}
        busy0, t0 = machine_busy_seconds()[0], time.monotonic()
        for i in range(reps):
            order = ("ours", "peer") if i % 2 == 0 else ("peer", "ours")
            for who in order:
                if who == "ours":
                    r = await ours(bench, dsn, data_dir, work)
                else:
                    r = await peer(bench, dsn, data_dir, work, version_num)
                results[who].append(r)
                log(f"rep {i + 1} {who}: " + ", ".join(f"{k} {v:.2f} s" for k, v in r.items()))
        other = (machine_busy_seconds()[0] - busy0) / (time.monotonic() - t0)
    rows = []
    for who in ("ours", "peer"):
        rs = results[who]
        rows.append([who, *(f"{median([r[k] for r in rs]):.2f} ({spread([r[k] for r in rs], '{:.2f}')})"
                            for k in ("backup", "restore", "total")),
                     f"{median([r['incremental'] for r in rs]):.2f}" if who == "ours" else "-"])
    print_table(["who", "backup s", "restore s", "backup+restore s", "incremental backup s"], rows)
    o = median([r["total"] for r in results["ours"]])
    p = median([r["total"] for r in results["peer"]])
    ob, orr = median([r["backup"] for r in results["ours"]]), median([r["restore"] for r in results["ours"]])
    pb, pr = median([r["backup"] for r in results["peer"]]), median([r["restore"] for r in results["peer"]])
    inc = median([r["incremental"] for r in results["ours"]])
    print(f"machine busy {other:.2f} cores on average during the runs (ours + peer + everyone else)")
    row = Row(METRIC, f"{o:.1f} s (backup {ob:.1f} + restore {orr:.1f}; incremental backup {inc:.1f})",
              f"{p:.1f} s (pg_dump+cp {pb:.1f} + pg_restore+cp {pr:.1f})", f"{o / p:.2f}",
              "none set by issue #8", command_line(MODULE, argv))
    print(row.line())
    if args.write:
        if args.quick or args.rows != 100_000:
            log("--quick or non-default --rows: not written to RESULTS.md")
        else:
            note = (f"{regs} registrations (+ consents, attendance, poll votes, CTA interactions, chat; database "
                    f"{db_bytes / 1e6:.0f} MB) and {media_bytes / 1e6:.0f} MB of media (fMP4 HLS + replay.mp4, "
                    f"ffmpeg stream copy of the 720p 3 Mbit/s clip); median of {reps} alternating repetitions. Ours "
                    "= `webinar backup` (first, full generation: snapshot dump + per-table row counts, media copied with "
                    "sha256, dump read back, copies re-hashed, fsync) + `webinar restore` into an empty database "
                    "and data folder (single-transaction pg_restore, every table's row count and every file's "
                    "sha256 checked), CLI start-up included. Peer = `pg_dump -Fc` + `cp -a`, then `pg_restore` + "
                    f"`cp -a`, no verification. Incremental backup with nothing changed: {inc:.1f} s. Harness "
                    f"PostgreSQL (fsync off) for both; the page cache was warm for both; machine busy "
                    f"{other:.2f} cores on average (other engineers' tests included).")
            update_results([row], {METRIC: note})
            log("RESULTS.md updated")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_options(parser, quick="one repetition",
                       write="update this benchmark's row of benchmarks/RESULTS.md", wait_quiet=False, nice=False)
    parser.add_argument("--reps", type=int, default=0, help="repetitions (default 3, quick 1)")
    parser.add_argument("--rows", type=int, default=100_000, help="registrants of the big webinar")
    parser.add_argument("--media-seconds", type=float, default=400.0, help="length of the big webinar's recording")
    argv = sys.argv[1:]
    args = parser.parse_args(argv)
    return asyncio.run(run(args, argv))


if __name__ == "__main__":
    sys.exit(main())
