"""Backups (R-OPS-1): the database with ``pg_dump`` and the media folder, in generations.

Layout of the backup folder (setting ``backup_dir``, ``WEBINAR_BACKUP_DIR``,
default ``DATA_DIR/backups``; put it on another disk or machine mount)::

    BACKUP_DIR/
      .lock                          one backup at a time (flock)
      .partial-<name>/               a generation being written; never counted, removed by the next run
      <name>/                        a complete, verified generation; <name> = UTC time, 20261123T031500.123456Z
        database.dump                pg_dump custom format (-Fc)
        media/...                    the media folder's files (hard links to the previous generation's
                                     copy when a file is unchanged: same path, size and mtime)
        secret_key                   DATA_DIR/secret_key when the server generated one (0600)
        MANIFEST.json                format, versions, sha256 of the dump, per table: rows (and checksum),
                                     per media file: size, mtime_ns, sha256

**Consistency.** The tables' row counts (and checksums, when asked) and the dump are taken in
one snapshot (``pg_export_snapshot`` + ``pg_dump --snapshot``): they describe
the same committed state while the server keeps running. The media folder is
copied *after* the dump, so every file the dumped rows refer to was already
written (files are written before the rows that name them); files that came
later are included too, harmlessly. Names starting with ``.`` (files being
written, ``.x.tmp``) are left out.

**Generations.** A run writes ``.partial-<name>``, verifies it (``pg_restore
--list`` reads the dump back, its sha256 and every copied file's sha256 are
checked against the manifest from disk), then renames it to ``<name>`` (atomic)
and only then removes the oldest complete generations beyond ``keep`` (5 by
default). A run that fails or is killed at any point leaves the complete
generations as they were; its partial folder is removed by the next run.

**Restore** (:func:`restore`) needs a fresh server: a database without tables
and an empty media folder (refused otherwise, with the reason). It runs
``pg_restore --single-transaction``, checks every table's row count (and checksum)
against the manifest, copies the media files back checking each sha256, and
puts the secret key back. Migrations of a newer server version apply at its
next start.

``pg_dump``/``pg_restore`` must be of the database server's major version or
newer: :func:`pg_tool` takes them from ``/usr/lib/postgresql/<major>/bin``
(Debian's ``postgresql-client-<major>``; the embedded server's own folder).
Limits: one backup at a time per backup folder; hashing reads each new media
file twice (copy, then verification); sizes in bytes, durations in seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import time
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

log = logging.getLogger("server.backup")

FORMAT = "webinar-backup/1"
MANIFEST = "MANIFEST.json"
DUMP = "database.dump"
MEDIA = "media"
SECRET = "secret_key"
PARTIAL_PREFIX = ".partial-"
NAME = re.compile(r"^\d{8}T\d{6}\.\d{6}Z$")
"""A generation's folder name: its UTC creation time, sortable."""
CHUNK = 1 << 20
PG_BIN_ROOT = Path("/usr/lib/postgresql")


class BackupError(RuntimeError):
    """A backup or restore cannot be done or did not verify; the message says why."""


@dataclass(frozen=True)
class Generation:
    """A complete generation: its folder and manifest."""

    name: str
    path: Path
    manifest: dict[str, Any]

    @property
    def created_at(self) -> dt.datetime:
        return dt.datetime.strptime(self.name, "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=dt.UTC)


@dataclass
class BackupResult:
    generation: Generation
    removed: list[str]
    """Generations removed by the rotation (oldest first)."""
    media_files: int
    media_copied: int
    media_linked: int
    bytes_copied: int
    duration_s: float
    unstable: list[str] = field(default_factory=list)
    """Media files that changed while being copied (kept as read; listed in the manifest)."""


@dataclass
class RestoreResult:
    generation: str
    checksums: bool
    """Whether table contents were checked (the backup recorded checksums), not only row counts."""
    tables: int
    rows: int
    media_files: int
    media_bytes: int
    secret_key: bool
    duration_s: float


# ---------------------------------------------------------------- tools and helpers

def pg_tool(name: str, server_version_num: int) -> Path:
    """``pg_dump``/``pg_restore`` for a server of ``server_version_num`` (e.g. 150004): Debian's
    ``/usr/lib/postgresql/<major>/bin/<name>``, else the newest installed one that is not older."""
    major = server_version_num // 10000
    exact = PG_BIN_ROOT / str(major) / "bin" / name
    if exact.exists():
        return exact
    newer = sorted((int(p.parent.parent.name), p) for p in PG_BIN_ROOT.glob(f"*/bin/{name}")
                   if p.parent.parent.name.isdigit() and int(p.parent.parent.name) >= major)
    if newer:
        return newer[0][1]
    raise BackupError(f"{name} for PostgreSQL {major} not found under {PG_BIN_ROOT}: install Debian's "
                      f"postgresql-client-{major} (the tool must be of the server's major version or newer)")


def _libpq_args(dsn: str) -> tuple[str, dict[str, str]]:
    """(URL without password, environment with PGPASSWORD): keeps the password out of ``ps``."""
    parts = urllib.parse.urlsplit(dsn)
    env = {}
    if parts.password is not None:
        env["PGPASSWORD"] = urllib.parse.unquote(parts.password)
        user = parts.username or ""
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = (f"{user}@" if user else "") + host + (f":{parts.port}" if parts.port else "")
        dsn = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return dsn, env


async def _run(args: list[str], env: dict[str, str], what: str) -> str:
    """Run a tool; its stdout, or :class:`BackupError` with its stderr. Killed if we are cancelled."""
    proc = await asyncio.create_subprocess_exec(
        *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **env})
    try:
        out, err = await proc.communicate()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        raise BackupError(f"{what} failed ({proc.returncode}): {err.decode(errors='replace').strip()[-2000:]}")
    return out.decode(errors="replace")


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def table_summary(conn: asyncpg.Connection, *, checksums: bool = False) -> dict[str, dict[str, Any]]:
    """Per table of the ``public`` schema: ``rows`` and, with ``checksums``, ``checksum``: the sums
    over its rows of the two first 32-bit words of md5(row as text) (order-independent: no sort,
    constant memory; duplicates count; the same rows give the same sums on any server). Counting
    is cheap; checksums cost about what rendering every row as text costs (what ``pg_dump`` does)."""
    names = [r["tablename"] for r in await conn.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")]
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        if not checksums:
            out[name] = {"rows": int(await conn.fetchval(f"SELECT count(*) FROM public.{_ident(name)}"))}
            continue
        row = await conn.fetchrow(
            f"""SELECT count(*) AS n,
                       coalesce(sum(('x' || substr(h, 1, 8))::bit(32)::bigint), 0) AS s1,
                       coalesce(sum(('x' || substr(h, 9, 8))::bit(32)::bigint), 0) AS s2
                FROM (SELECT md5(t::text) AS h FROM public.{_ident(name)} t) s""")
        assert row is not None
        out[name] = {"rows": int(row["n"]), "checksum": f"{row['s1']}-{row['s2']}"}
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _copy_hashed(src: Path, dst: Path) -> tuple[str, int]:
    """Copy ``src`` to ``dst`` (fsynced), hashing on the way; (sha256, bytes)."""
    h = hashlib.sha256()
    size = 0
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while chunk := fin.read(CHUNK):
            h.update(chunk)
            fout.write(chunk)
            size += len(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    return h.hexdigest(), size


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def media_files(media_dir: Path) -> Iterator[tuple[str, Path]]:
    """(relative POSIX path, path) of every regular file under ``media_dir``, sorted; names
    starting with ``.`` (files being written) and symbolic links are skipped."""
    if not media_dir.is_dir():
        return
    for root, dirs, files in os.walk(media_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = Path(root) / name
            if path.is_symlink() or not path.is_file():
                continue
            yield path.relative_to(media_dir).as_posix(), path


@contextlib.contextmanager
def _locked(backup_dir: Path, *, read_only_ok: bool = False) -> Iterator[None]:
    """Hold ``backup_dir/.lock`` (non-blocking: a second backup is refused). ``read_only_ok``:
    restoring from a read-only copy of the folder goes on without the lock."""
    if read_only_ok:
        try:
            fh = open(backup_dir / ".lock", "a")  # noqa: SIM115 - closed below
        except OSError:
            yield
            return
        fh.close()
    backup_dir.mkdir(parents=True, exist_ok=True)
    with open(backup_dir / ".lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BackupError(f"another backup or restore is using {backup_dir}") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# ---------------------------------------------------------------- generations

def _read_generation(path: Path) -> Generation | None:
    if not NAME.match(path.name) or not path.is_dir():
        return None
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("format") != FORMAT or manifest.get("name") != path.name:
        return None
    return Generation(path.name, path, manifest)


def list_generations(backup_dir: Path) -> list[Generation]:
    """The complete generations in ``backup_dir``, oldest first (partial folders are not listed)."""
    if not backup_dir.is_dir():
        return []
    found = [_read_generation(p) for p in backup_dir.iterdir()]
    return sorted((g for g in found if g is not None), key=lambda g: g.name)


def find_generation(backup_dir: Path, name: str) -> Generation:
    """The generation named ``name`` (or ``latest``); :class:`BackupError` when there is none."""
    generations = list_generations(backup_dir)
    if not generations:
        raise BackupError(f"no complete backup generation in {backup_dir}")
    if name == "latest":
        return generations[-1]
    for g in generations:
        if g.name == name:
            return g
    raise BackupError(f"no generation {name!r} in {backup_dir}; there are: {', '.join(g.name for g in generations)}")


def _new_name(backup_dir: Path) -> str:
    while True:
        name = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        if not (backup_dir / name).exists() and not (backup_dir / (PARTIAL_PREFIX + name)).exists():
            return name
        time.sleep(0.001)


def verify_generation(path: Path, manifest: dict[str, Any], *, full: bool = False,
                      rehash: set[str] | None = None) -> None:
    """Check a generation folder against its manifest: the dump's size and sha256, every media
    file's presence and size, and the sha256 of the files in ``rehash`` (every file with
    ``full``). Raises :class:`BackupError` naming the first difference."""
    dump = path / DUMP
    info = manifest["database"]
    if not dump.is_file() or dump.stat().st_size != info["size"]:
        raise BackupError(f"{dump}: missing or not {info['size']} bytes")
    if _sha256(dump) != info["sha256"]:
        raise BackupError(f"{dump}: sha256 differs from the manifest")
    for rel, meta in manifest["media"].items():
        file = path / MEDIA / rel
        try:
            size = file.stat().st_size
        except OSError:
            raise BackupError(f"{file}: missing") from None
        if size != meta["size"]:
            raise BackupError(f"{file}: {size} bytes, the manifest says {meta['size']}")
        if (full or (rehash is not None and rel in rehash)) and _sha256(file) != meta["sha256"]:
            raise BackupError(f"{file}: sha256 differs from the manifest")
    if manifest.get("secret_key") and not (path / SECRET).is_file():
        raise BackupError(f"{path / SECRET}: missing")


# ---------------------------------------------------------------- backup

def _copy_media(media_dir: Path, dest: Path, previous: Generation | None) -> dict[str, Any]:
    """Copy (or hard-link from ``previous``) every media file into ``dest``; the manifest part."""
    before = previous.manifest["media"] if previous is not None else {}
    entries: dict[str, dict[str, Any]] = {}
    copied: set[str] = set()
    linked = bytes_copied = 0
    unstable: list[str] = []
    for rel, src in media_files(media_dir):
        try:
            st = src.stat()
        except FileNotFoundError:
            continue  # removed since listed (retention): not part of this generation
        target = dest / rel
        old = before.get(rel)
        if (previous is not None and old is not None and old["size"] == st.st_size
                and old["mtime_ns"] == st.st_mtime_ns):
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(previous.path / MEDIA / rel, target)
                entries[rel] = dict(old)
                linked += 1
                continue
            except OSError:
                pass  # the previous copy is gone or on another file system: copy instead
        for _attempt in range(3):
            try:
                digest, size = _copy_hashed(src, target)
                after = src.stat()
            except FileNotFoundError:
                digest = ""
                break
            if after.st_size == size and after.st_mtime_ns == st.st_mtime_ns:
                break
            st = after
        else:
            unstable.append(rel)
            log.warning("media file %s kept changing while being copied: kept as last read", rel)
        if not digest:
            target.unlink(missing_ok=True)
            continue
        entries[rel] = {"size": size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
        copied.add(rel)
        bytes_copied += size
    return {"media": entries, "copied": sorted(copied), "linked": linked, "bytes_copied": bytes_copied,
            "unstable": unstable}


async def run_backup(dsn: str, media_dir: Path, backup_dir: Path, *, keep: int = 5,
                     secret_key_file: Path | None = None, checksums: bool = False) -> BackupResult:
    """Write a new generation of the database at ``dsn`` and of ``media_dir`` into ``backup_dir``,
    verify it, then remove the oldest generations beyond ``keep``. ``checksums``: also record
    each table's row checksum (restore then checks contents, not only counts; costs about one
    more pass over every row). See the module docstring."""
    if keep < 1:
        raise BackupError("keep must be at least 1")
    started = time.monotonic()
    with _locked(backup_dir):
        for stale in backup_dir.glob(PARTIAL_PREFIX + "*"):
            log.warning("removing %s left by an interrupted backup", stale.name)
            shutil.rmtree(stale, ignore_errors=True)
        existing = list_generations(backup_dir)
        previous = existing[-1] if existing else None
        name = _new_name(backup_dir)
        partial = backup_dir / (PARTIAL_PREFIX + name)
        partial.mkdir()
        try:
            result = await _write_generation(dsn, media_dir, partial, name, previous, secret_key_file, checksums)
            final = backup_dir / name
            os.rename(partial, final)
            _fsync_dir(backup_dir)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        generation = Generation(name, final, result["manifest"])
        removed: list[str] = []
        complete = list_generations(backup_dir)
        for old in complete[: max(0, len(complete) - keep)]:
            shutil.rmtree(old.path)
            removed.append(old.name)
            log.info("backup generation %s removed (keeping %d)", old.name, keep)
    media = result["media"]
    out = BackupResult(generation, removed, len(media["media"]), len(media["copied"]), media["linked"],
                       media["bytes_copied"], time.monotonic() - started, media["unstable"])
    log.info("backup generation %s written", name, extra={
        "media_files": out.media_files, "copied": out.media_copied, "linked": out.media_linked,
        "bytes_copied": out.bytes_copied, "duration_s": round(out.duration_s, 2)})
    return out


async def _write_generation(dsn: str, media_dir: Path, partial: Path, name: str, previous: Generation | None,
                            secret_key_file: Path | None, checksums: bool) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        version_num = int(await conn.fetchval("SHOW server_version_num"))
        server_version = await conn.fetchval("SHOW server_version")
        database = await conn.fetchval("SELECT current_database()")
        pg_dump = pg_tool("pg_dump", version_num)
        url, env = _libpq_args(dsn)
        tr = conn.transaction(isolation="repeatable_read", readonly=True)
        await tr.start()
        try:
            snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
            dump_task = asyncio.create_task(_run(
                [str(pg_dump), "--format=custom", f"--snapshot={snapshot}", "--no-password",
                 f"--file={partial / DUMP}", f"--dbname={url}"], env, "pg_dump"))
            try:
                tables = await table_summary(conn, checksums=checksums)
            finally:
                await asyncio.wait([dump_task])
            dump_task.result()
        finally:
            await tr.rollback()
    finally:
        await conn.close()
    dump_version = (await _run([str(pg_dump), "--version"], {}, "pg_dump --version")).strip()
    pg_restore = pg_tool("pg_restore", version_num)
    await _run([str(pg_restore), "--list", str(partial / DUMP)], {}, "pg_restore --list (reading the dump back)")

    def files() -> dict[str, Any]:
        with open(partial / DUMP, "rb") as fh:
            os.fsync(fh.fileno())
        media = _copy_media(media_dir, partial / MEDIA, previous)
        secret = secret_key_file is not None and secret_key_file.is_file()
        if secret:
            assert secret_key_file is not None
            shutil.copyfile(secret_key_file, partial / SECRET)
            os.chmod(partial / SECRET, 0o600)
        manifest = {
            "format": FORMAT, "name": name, "created_at": dt.datetime.now(dt.UTC).isoformat(),
            "database": {"file": DUMP, "name": database, "server_version": server_version,
                         "pg_dump": dump_version, "size": (partial / DUMP).stat().st_size,
                         "sha256": _sha256(partial / DUMP)},
            "tables": tables,
            "media": media["media"],
            "media_bytes": sum(m["size"] for m in media["media"].values()),
            "unstable": media["unstable"],
            "secret_key": secret,
            "previous": previous.name if previous is not None else None,
        }
        verify_generation(partial, manifest, rehash=set(media["copied"]))
        tmp = partial / (MANIFEST + ".tmp")
        with open(tmp, "w") as fh:
            json.dump(manifest, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, partial / MANIFEST)
        _fsync_dir(partial)
        return {"manifest": manifest, "media": media}

    return await asyncio.to_thread(files)


# ---------------------------------------------------------------- restore

async def restore(generation: Generation, dsn: str, media_dir: Path, data_dir: Path) -> RestoreResult:
    """Bring an empty database (``dsn``) and an empty ``media_dir`` back to ``generation``.
    Refuses (before changing anything) a database with tables or a media folder with files."""
    started = time.monotonic()
    manifest = generation.manifest
    with _locked(generation.path.parent, read_only_ok=True):
        await asyncio.to_thread(verify_generation, generation.path, manifest)
        if media_dir.exists() and any(media_dir.iterdir()):
            raise BackupError(f"the media folder {media_dir} is not empty: restore into a fresh server "
                              "(a new data folder) or empty it first")
        conn = await asyncpg.connect(dsn)
        try:
            tables = await conn.fetchval(
                "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')")
            if tables:
                raise BackupError(
                    f"database {await conn.fetchval('SELECT current_database()')} already has {tables} tables: "
                    "restore needs a new, empty database (create one, or use a fresh data folder for the "
                    "embedded server, and do not start the server on it before restoring)")
            version_num = int(await conn.fetchval("SHOW server_version_num"))
        finally:
            await conn.close()
        url, env = _libpq_args(dsn)
        await _run([str(pg_tool("pg_restore", version_num)), "--exit-on-error", "--single-transaction",
                    "--no-owner", "--no-privileges", "--no-password", f"--dbname={url}",
                    str(generation.path / DUMP)], env, "pg_restore")
        conn = await asyncpg.connect(dsn)
        try:
            with_checksums = any("checksum" in t for t in manifest["tables"].values())
            got = await table_summary(conn, checksums=with_checksums)
        finally:
            await conn.close()
        if got != manifest["tables"]:
            differ = sorted(t for t in set(got) | set(manifest["tables"]) if got.get(t) != manifest["tables"].get(t))
            raise BackupError(f"restored tables differ from the backup's "
                              f"{'checksums' if with_checksums else 'row counts'}: {', '.join(differ)}")

        def files() -> tuple[int, bool]:
            total = 0
            for rel, meta in manifest["media"].items():
                target = media_dir / rel
                tmp = target.with_name(f".{target.name}.restore")
                digest, size = _copy_hashed(generation.path / MEDIA / rel, tmp)
                if digest != meta["sha256"]:
                    tmp.unlink(missing_ok=True)
                    raise BackupError(f"media file {rel}: sha256 in the backup differs from the manifest")
                os.replace(tmp, target)
                os.utime(target, ns=(meta["mtime_ns"], meta["mtime_ns"]))
                total += size
            secret = bool(manifest.get("secret_key"))
            if secret:
                data_dir.mkdir(parents=True, exist_ok=True)
                dst = data_dir / SECRET
                shutil.copyfile(generation.path / SECRET, dst)
                os.chmod(dst, 0o600)
            return total, secret

        media_dir.mkdir(parents=True, exist_ok=True)
        media_bytes, secret = await asyncio.to_thread(files)
    return RestoreResult(generation.name, with_checksums, len(got), sum(t["rows"] for t in got.values()), len(manifest["media"]),
                         media_bytes, secret, time.monotonic() - started)


@contextlib.asynccontextmanager
async def unmigrated_database(settings: Any) -> AsyncIterator[str]:
    """The server's database URL *without* migrating it (restore needs it empty): ``DATABASE_URL``,
    or the embedded one (started if needed, created if missing, stopped after if we started it)."""
    if settings.database_url:
        yield settings.database_url
        return
    from server.app import EMBEDDED_DB_NAME
    from server.db import ensure_database
    from server.pg_embedded import EmbeddedPostgres

    pg = EmbeddedPostgres(settings.postgres_dir)
    await asyncio.to_thread(pg.start)
    try:
        await ensure_database(pg.dsn, EMBEDDED_DB_NAME)
        yield pg.dsn_for(EMBEDDED_DB_NAME)
    finally:
        await asyncio.to_thread(pg.stop_if_owned)
