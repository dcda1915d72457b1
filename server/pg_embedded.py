"""A private PostgreSQL server kept in a data folder (the embedded default).

When ``DATABASE_URL`` is unset, ``webinar`` runs the system's PostgreSQL
binaries (Debian's ``postgresql`` package, found under
``/usr/lib/postgresql/<version>/bin`` or through ``WEBINAR_PG_BIN``) on a
cluster inside ``--data-dir``. The cluster listens on a unix socket only
(no TCP port to collide with another instance) unless a TCP port is asked
for, as the tests do on 127.0.0.1.

Several processes may share the cluster: whichever needs it first starts it
(under a file lock), later ones connect to the running server. A process
stops the server on exit only if it owns it (``webinar serve`` always
adopts it; ``webinar demo`` or ``migrate`` stop it only if they started it).

PostgreSQL refuses to run as root. As root, the server runs as the system
user ``webinar-pg`` (created on first use) and the folders above the cluster
get the world *search* bit (``o+x``, never read) so that user can reach it,
as the ``pgserver`` wheel does.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import pwd
import shlex
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

log = logging.getLogger("server.pg")

PG_SYSTEM_USER = "webinar-pg"
START_TIMEOUT_S = 60
"""How long ``pg_ctl start`` may take before we give up (seconds)."""


class EmbeddedPostgresError(RuntimeError):
    """The private PostgreSQL could not be found, initialised, started or stopped."""


def find_pg_bin() -> Path:
    """The folder holding ``initdb``/``pg_ctl``: ``WEBINAR_PG_BIN``, else the newest Debian one."""
    override = os.environ.get("WEBINAR_PG_BIN")
    if override:
        path = Path(override)
        if not (path / "pg_ctl").exists():
            raise EmbeddedPostgresError(f"WEBINAR_PG_BIN={override} holds no pg_ctl")
        return path
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if candidates:
        return candidates[-1].parent
    which = shutil.which("pg_ctl")
    if which:
        return Path(which).resolve().parent
    raise EmbeddedPostgresError(
        "PostgreSQL server binaries not found: install Debian's 'postgresql' package "
        "(the quick-start script does) or set DATABASE_URL to an existing server"
    )


@dataclass
class _RunAs:
    user: str | None
    uid: int
    gid: int


def _run_as() -> _RunAs:
    if os.geteuid() != 0:
        return _RunAs(None, os.geteuid(), os.getegid())
    try:
        entry = pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        log.info("creating system user %s to run the embedded PostgreSQL (it refuses root)", PG_SYSTEM_USER)
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_SYSTEM_USER],
            check=True,
            capture_output=True,
        )
        entry = pwd.getpwnam(PG_SYSTEM_USER)
    return _RunAs(PG_SYSTEM_USER, entry.pw_uid, entry.pw_gid)


def _grant_search(path: Path) -> None:
    """Give 'others' the search bit on every folder from ``path`` up to ``/``."""
    for folder in [path, *path.parents]:
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            log.info("adding o+x (search only) to %s so %s can reach the cluster", folder, PG_SYSTEM_USER)
            os.chmod(folder, mode | stat.S_IXOTH)


class EmbeddedPostgres:
    """A PostgreSQL cluster in ``root`` (created on first start).

    ``port``: None = unix socket only (the socket file is named after 5432);
    an int = also listen on ``127.0.0.1:port``. ``fast_unsafe`` turns off
    fsync (tests only: a crash may lose data).
    """

    def __init__(self, root: Path, *, port: int | None = None, fast_unsafe: bool = False) -> None:
        self.root = root.resolve()
        self.pgdata = self.root / "data"
        self.port = port
        self.fast_unsafe = fast_unsafe
        self.owned = False
        self._bin = find_pg_bin()
        self._as = _run_as()

    # Locations ---------------------------------------------------------------
    @property
    def socket_dir(self) -> Path:
        """Unix socket folder: inside the cluster if the path is short enough, else under /tmp."""
        local = self.root / "run"
        if len(str(local)) + len("/.s.PGSQL.65535") < 100:
            return local
        digest = hashlib.sha1(str(self.root).encode()).hexdigest()[:16]
        return Path("/tmp") / f"webinar-pg-{digest}"

    @property
    def dsn(self) -> str:
        """An asyncpg/libpq URL for the ``postgres`` superuser and database of this cluster."""
        return self.dsn_for("postgres")

    def dsn_for(self, database: str) -> str:
        """The URL of ``database`` on this cluster (TCP when a port was given, else the unix socket)."""
        if self.port is not None:
            return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"
        return f"postgresql://postgres@/{database}?host={self.socket_dir}&port=5432"

    # Process control ---------------------------------------------------------
    def _cmd(self, args: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, object] = {}
        if self._as.user is not None:
            kwargs = {"user": self._as.uid, "group": self._as.gid, "extra_groups": []}
        try:
            return subprocess.run(  # type: ignore[call-overload,no-any-return]
                args, check=check, capture_output=True, text=True, cwd="/", timeout=START_TIMEOUT_S + 30, **kwargs
            )
        except subprocess.CalledProcessError as exc:
            raise EmbeddedPostgresError(
                f"{Path(args[0]).name} failed ({exc.returncode}): {(exc.stderr or exc.stdout).strip()[-2000:]}"
            ) from None

    def _chown(self, path: Path) -> None:
        if self._as.user is not None:
            os.chown(path, self._as.uid, self._as.gid)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def is_running(self) -> bool:
        if not (self.pgdata / "PG_VERSION").exists():
            return False
        return self._cmd([str(self._bin / "pg_ctl"), "status", "-D", str(self.pgdata)], check=False).returncode == 0

    def _initdb(self) -> None:
        log.info("initialising embedded PostgreSQL cluster in %s", self.pgdata)
        self.pgdata.mkdir(parents=True, exist_ok=True)
        os.chmod(self.pgdata, 0o700)
        self._chown(self.pgdata)
        self._cmd(
            [
                str(self._bin / "initdb"),
                "-D", str(self.pgdata),
                "--username=postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            ]
        )

    def start(self) -> None:
        """Start the cluster unless it runs already (then just use it). Idempotent."""
        if self._as.user is not None:
            self.root.mkdir(parents=True, exist_ok=True)
            _grant_search(self.root)
        with self._lock():
            if not (self.pgdata / "PG_VERSION").exists():
                self._initdb()
            if self.is_running():
                log.info("embedded PostgreSQL already running in %s: using it", self.pgdata)
                return
            sock = self.socket_dir
            sock.mkdir(parents=True, exist_ok=True)
            os.chmod(sock, 0o700)
            self._chown(sock)
            log_file = self.root / "postgres.log"
            log_file.touch()
            self._chown(log_file)
            self._chown(self.root)
            options = [
                "-c", f"listen_addresses={'127.0.0.1' if self.port is not None else ''}",
                "-c", f"port={self.port if self.port is not None else 5432}",
                "-c", f"unix_socket_directories={sock}",
                "-c", "max_connections=200",
            ]
            if self.fast_unsafe:
                options += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
            self._cmd(
                [
                    str(self._bin / "pg_ctl"), "start",
                    "-D", str(self.pgdata),
                    "-l", str(log_file),
                    "-w", "-t", str(START_TIMEOUT_S),
                    "-o", " ".join(shlex.quote(o) for o in options),
                ]
            )
            self.owned = True
            log.info("embedded PostgreSQL started (%s)", self.dsn)

    def stop(self) -> None:
        """Stop the cluster (fast shutdown: running transactions are rolled back)."""
        with self._lock():
            if self.is_running():
                self._cmd([str(self._bin / "pg_ctl"), "stop", "-D", str(self.pgdata), "-m", "fast", "-w"])
                log.info("embedded PostgreSQL stopped")
            self.owned = False

    def stop_if_owned(self) -> None:
        if self.owned:
            self.stop()
