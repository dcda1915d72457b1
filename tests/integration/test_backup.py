"""Backups on a real PostgreSQL with real media files (R-OPS-1): backup -> wipe -> restore
gives every table's rows and every media file back identical (checksums computed here,
independently of the backup's own); 5 generations are kept, unchanged files are hard
links; a backup killed midway loses no good generation; restore refuses a non-empty
target; the daily backup runs on the job queue."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from server import daily
from server.backup import (
    DUMP,
    MEDIA,
    PARTIAL_PREFIX,
    BackupError,
    find_generation,
    list_generations,
    restore,
    run_backup,
    verify_generation,
)
from server.db import Database
from server.jobs import JobWorker
from server.settings import Settings
from tests.support.account_data import make_media, populate, sha256_tree
from tests.support.postgres import PostgresForTests
from tests.world import make_world

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


async def table_checksums(dsn: str) -> dict[str, tuple[int, str]]:
    """Per table of the public schema: (rows, sha256 of its ``COPY ... TO STDOUT`` lines, sorted)."""
    conn = await asyncpg.connect(dsn)
    try:
        tables = [r["tablename"] for r in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")]
        out = {}
        for table in tables:
            buffer = io.BytesIO()
            await conn.copy_from_query(f'SELECT * FROM public."{table}"', output=buffer)
            lines = sorted(buffer.getvalue().splitlines())
            out[table] = (len(lines), hashlib.sha256(b"\n".join(lines)).hexdigest())
        return out
    finally:
        await conn.close()


async def empty_database(pg: PostgresForTests, name: str | None = None) -> str:
    """A new database with no tables at all (not from the migrated template)."""
    name = name or "r_" + uuid.uuid4().hex[:16]
    conn = await asyncpg.connect(pg.server.dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
    finally:
        await conn.close()
    return pg.server.dsn_for(name)


async def drop_database(pg: PostgresForTests, dsn: str) -> None:
    name = dsn.rsplit("/", 1)[1].split("?")[0]
    conn = await asyncpg.connect(pg.server.dsn)
    try:
        await conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
def tmp() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="webinar-backup-test-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def source(pg: PostgresForTests, tmp: Path) -> AsyncIterator[tuple[str, Path]]:
    """A populated database (two accounts, one of everything) and a data folder with real
    ffmpeg media for both webinars and a secret key file."""
    dsn = await pg.new_database()
    db = Database(dsn, min_size=1, max_size=3)
    await db.connect()
    try:
        world = await make_world(db)
        await populate(db, world.a, "A")
        await populate(db, world.b, "B")
    finally:
        await db.close()
    data_dir = tmp / "source"
    make_media(data_dir / "media", world.a.webinar.id, tone=440)
    make_media(data_dir / "media", world.b.webinar.id, tone=660)
    (data_dir / "secret_key").write_text("source-secret-key-0123456789")
    yield dsn, data_dir


def cli(*args: str, data_dir: Path, dsn: str, backup_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": dsn, "WEBINAR_BACKUP_DIR": str(backup_dir), "WEBINAR_LOG_JSON": "1"}
    env.pop("WEBINAR_SECRET_KEY", None)
    return subprocess.run([sys.executable, "-m", "server.cli", *args, "--data-dir", str(data_dir)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


async def test_backup_wipe_restore_gives_identical_rows_and_media(pg: PostgresForTests, source: tuple[str, Path],
                                                                  tmp: Path) -> None:
    dsn, data_dir = source
    backup_dir = tmp / "backups"
    before_tables = await table_checksums(dsn)
    before_media = sha256_tree(data_dir / "media")
    assert before_tables["registrations"][0] == 6 and before_tables["chat_messages"][0] == 6
    assert before_tables["invoices"][0] == 2 and before_tables["attendance"][0] == 6
    assert sum(1 for p in before_media if p.endswith(".m4s")) >= 6 and sum(p.endswith("replay.mp4") for p in before_media) == 2

    made = await asyncio.to_thread(cli, "backup", "--checksums", data_dir=data_dir, dsn=dsn, backup_dir=backup_dir)
    assert made.returncode == 0, made.stderr
    assert "backup generation" in made.stdout
    (generation,) = list_generations(backup_dir)
    assert set(generation.manifest["media"]) == set(before_media)
    listed = await asyncio.to_thread(cli, "backup", "--list", data_dir=data_dir, dsn=dsn, backup_dir=backup_dir)
    assert listed.returncode == 0 and listed.stdout.startswith(generation.name), listed.stdout

    # wipe: the database is dropped and recreated empty under the same name, the data folder is gone
    await drop_database(pg, dsn)
    await empty_database(pg, dsn.rsplit("/", 1)[1])
    shutil.rmtree(data_dir)

    restored = await asyncio.to_thread(cli, "restore", generation.name, data_dir=data_dir, dsn=dsn,
                                       backup_dir=backup_dir)
    assert restored.returncode == 0, restored.stderr
    assert "checksums match" in restored.stdout
    after_tables = await table_checksums(dsn)
    assert after_tables == before_tables
    assert sha256_tree(data_dir / "media") == before_media
    assert (data_dir / "secret_key").read_text() == "source-secret-key-0123456789"

    # the restored server is a working server: migrations are up to date, it serves a replay file
    migrated = await asyncio.to_thread(cli, "migrate", data_dir=data_dir, dsn=dsn, backup_dir=backup_dir)
    assert migrated.returncode == 0, migrated.stderr


async def test_restore_refuses_a_target_that_is_not_empty(pg: PostgresForTests, source: tuple[str, Path],
                                                          tmp: Path) -> None:
    dsn, data_dir = source
    backup_dir = tmp / "backups"
    result = await run_backup(dsn, data_dir / "media", backup_dir)
    generation = result.generation
    other = await pg.new_database()  # migrated: has tables
    before = await table_checksums(other)
    with pytest.raises(BackupError, match="already has .* tables"):
        await restore(generation, other, tmp / "fresh-media", tmp / "fresh")
    assert await table_checksums(other) == before
    assert not (tmp / "fresh-media").exists()
    with pytest.raises(BackupError, match="media folder .* is not empty"):
        await restore(generation, await empty_database(pg), data_dir / "media", data_dir)
    with pytest.raises(BackupError, match="no generation 'nope'"):
        find_generation(backup_dir, "nope")
    # the restore's own check can fail: a manifest that disagrees with the dump is reported
    manifest = json.loads((generation.path / "MANIFEST.json").read_text())
    manifest["tables"]["registrations"]["rows"] += 1
    (generation.path / "MANIFEST.json").write_text(json.dumps(manifest))
    with pytest.raises(BackupError, match="differ from the backup's row counts: registrations"):
        await restore(find_generation(backup_dir, "latest"), await empty_database(pg), tmp / "m2", tmp / "d2")
    missing = await asyncio.to_thread(cli, "restore", "nope", data_dir=tmp / "x", dsn=other, backup_dir=backup_dir)
    assert missing.returncode == 1 and "no generation 'nope'" in missing.stderr


async def test_five_generations_kept_unchanged_media_linked_and_each_restorable(
        pg: PostgresForTests, source: tuple[str, Path], tmp: Path) -> None:
    dsn, data_dir = source
    media = data_dir / "media"
    backup_dir = tmp / "backups"
    names: list[str] = []
    for i in range(7):
        extra = media / "hls" / "extra" / f"file{i}.bin"
        extra.parent.mkdir(parents=True, exist_ok=True)
        extra.write_bytes(os.urandom(1000 + i))
        result = await run_backup(dsn, media, backup_dir, keep=5)
        names.append(result.generation.name)
        if i == 0:
            assert result.media_linked == 0 and result.media_copied == result.media_files
        else:
            assert result.media_copied == 1 and result.media_linked == result.media_files - 1
        assert [g.name for g in list_generations(backup_dir)] == names[-5:]
        assert result.removed == (names[i - 5:i - 4] if i >= 5 else [])
    generations = list_generations(backup_dir)
    for g in generations:
        verify_generation(g.path, g.manifest, full=True)
    # unchanged files are one inode shared by the generations; a new file is a new copy
    first, last = generations[0], generations[-1]
    rel = next(p for p in first.manifest["media"] if p.endswith("replay.mp4"))
    assert (first.path / MEDIA / rel).stat().st_ino == (last.path / MEDIA / rel).stat().st_ino
    assert (last.path / MEDIA / "hls/extra/file6.bin").stat().st_nlink == 1
    # the oldest kept generation restores to its own state (file2 was its newest file)
    oldest = find_generation(backup_dir, names[2])
    target = await empty_database(pg)
    out = await restore(oldest, target, tmp / "r-media", tmp / "r-data")
    assert out.media_files == len(oldest.manifest["media"]) and not out.checksums  # counted, not checksummed
    assert sorted(p.name for p in (tmp / "r-media" / "hls" / "extra").iterdir()) == [f"file{i}.bin" for i in range(3)]
    assert await table_checksums(target) == await table_checksums(dsn)


async def test_a_backup_killed_midway_loses_no_good_generation(pg: PostgresForTests, source: tuple[str, Path],
                                                               tmp: Path) -> None:
    dsn, data_dir = source
    media = data_dir / "media"
    backup_dir = tmp / "backups"
    for _ in range(5):
        await run_backup(dsn, media, backup_dir, keep=5)
    good = [g.name for g in list_generations(backup_dir)]
    assert len(good) == 5
    # much new media, so that the next backup spends a while copying
    bulk = media / "hls" / "bulk"
    bulk.mkdir(parents=True)
    for i in range(60):
        (bulk / f"seg{i}.m4s").write_bytes(os.urandom(2 << 20))
    env = {**os.environ, "DATABASE_URL": dsn, "WEBINAR_BACKUP_DIR": str(backup_dir)}
    proc = subprocess.Popen([sys.executable, "-m", "server.cli", "backup", "--data-dir", str(data_dir)], cwd=REPO,  # noqa: ASYNC220 - polled below
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        partial: Path | None = None
        while time.monotonic() < deadline and proc.poll() is None:
            found = [p for p in backup_dir.glob(PARTIAL_PREFIX + "*") if (p / MEDIA / "hls" / "bulk").is_dir()]
            if found:
                partial = found[0]
                break
            await asyncio.sleep(0.005)
        assert partial is not None, f"the backup never reached the media copy ({proc.poll()}): {proc.stderr}"
        proc.send_signal(signal.SIGKILL)  # a crash in the middle of copying the media
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert partial.exists() and (partial / DUMP).exists()
    assert [g.name for g in list_generations(backup_dir)] == good
    for g in list_generations(backup_dir):
        verify_generation(g.path, g.manifest, full=True)
    # the next run cleans the partial folder, completes, and only then drops the oldest
    result = await run_backup(dsn, media, backup_dir, keep=5)
    assert not partial.exists()
    assert result.removed == [good[0]]
    assert [g.name for g in list_generations(backup_dir)] == good[1:] + [result.generation.name]
    assert result.generation.manifest["media"]["hls/bulk/seg59.m4s"]["size"] == 2 << 20
    # a failing run (the database is gone) leaves the generations as they were
    before = [g.name for g in list_generations(backup_dir)]
    await drop_database(pg, dsn)
    with pytest.raises((BackupError, asyncpg.PostgresError, OSError)):
        await run_backup(dsn, media, backup_dir, keep=5)
    assert [g.name for g in list_generations(backup_dir)] == before
    assert not list(backup_dir.glob(PARTIAL_PREFIX + "*"))


async def test_daily_backup_runs_on_the_job_queue_when_enabled(pg: PostgresForTests, source: tuple[str, Path],
                                                               tmp: Path) -> None:
    dsn, data_dir = source
    db = Database(dsn, min_size=1, max_size=3)
    await db.connect()
    try:
        now = dt.datetime(2026, 5, 4, 12, 0, tzinfo=dt.UTC)
        off = Settings.from_env({}, data_dir=data_dir, database_url=dsn)
        assert "daily.backup" not in daily.handlers(db, lambda: now, off)
        settings = Settings.from_env({"WEBINAR_BACKUP_DAILY": "1", "WEBINAR_BACKUP_DIR": str(tmp / "daily")},
                                     data_dir=data_dir, database_url=dsn)
        await db.execute("DELETE FROM jobs WHERE kind LIKE 'daily.%'")
        assert await daily.schedule(db, now, settings) == 4
        later = now + dt.timedelta(days=1)
        worker = JobWorker(db, daily.handlers(db, lambda: later, settings), clock=lambda: later, lease_s=600,
                           poll_s=0.1, batch=5)
        await worker.run_once()
        rows = {r["dedupe_key"]: r["state"] for r in await db.fetch("SELECT dedupe_key, state FROM jobs "
                                                                   "WHERE kind = 'daily.backup'")}
        assert rows == {"daily.backup:2026-05-05": "done", "daily.backup:2026-05-06": "pending"}
        (generation,) = list_generations(tmp / "daily")
        verify_generation(generation.path, generation.manifest, full=True)
        assert json.loads((generation.path / "MANIFEST.json").read_text())["secret_key"] is True
    finally:
        await db.close()
