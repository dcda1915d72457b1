"""The one settings object.

Every knob is read here, from environment variables, with defaults under which
``webinar serve`` works with nothing set: an embedded private PostgreSQL in the
data folder, in-process fan-out, mail written to an outbox folder.
Command-line options override the environment (see :mod:`server.cli`).
"""

from __future__ import annotations

import dataclasses
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

DEFAULT_DATA_DIR = "webinar-data"


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None


def _env_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None


def _env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be a boolean (1/0, true/false), got {raw!r}")


def _env_thresholds(env: Mapping[str, str], name: str, default: tuple[int, int, int]) -> tuple[int, int, int]:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        values = tuple(int(part) for part in raw.split(","))
    except ValueError:
        raise SettingsError(f"{name} must be three comma-separated integers, got {raw!r}") from None
    if len(values) != 3:
        raise SettingsError(f"{name} must be three comma-separated integers, got {raw!r}")
    return values  # type: ignore[return-value]


class SettingsError(ValueError):
    """A setting has a value the server cannot use; the message names it."""


@dataclass(frozen=True)
class Settings:
    """Server configuration. Ports are TCP except ``srt_port`` (UDP)."""

    host: str = "127.0.0.1"
    port: int = 8000
    rtmp_port: int = 1935
    srt_port: int = 9000
    data_dir: Path = Path(DEFAULT_DATA_DIR)
    database_url: str | None = None
    """``DATABASE_URL``; unset = embedded private PostgreSQL in ``data_dir/postgres``."""
    redis_url: str | None = None
    """``REDIS_URL``; unset = in-process fan-out (one process)."""
    public_url: str | None = None
    """Base URL people use to reach the server (``WEBINAR_PUBLIC_URL``); default http://host:port."""
    media_host: str | None = None
    """Host name put into rtmp:// and srt:// URLs shown to organizers; default the public URL's host."""
    secret_key: str | None = None
    """Signs sessions, CSRF tokens and links. Unset: generated once into ``data_dir/secret_key``."""
    db_pool_min: int = 2
    db_pool_max: int = 10
    session_max_age_s: int = 14 * 24 * 3600
    login_max_failures: int = 5
    """Failed logins for one email within ``login_window_s`` before further tries are refused."""
    login_max_failures_per_ip: int = 30
    login_window_s: int = 15 * 60
    log_level: str = "INFO"
    log_json: bool = True
    smtp_host: str | None = None
    """``WEBINAR_SMTP_HOST``; unset = mail is written as .eml files into ``outbox_dir``."""
    smtp_port: int = 25
    smtp_tls: str = "starttls"
    """``none`` (plain, for a local relay), ``starttls`` (required upgrade) or ``tls`` (implicit TLS, port 465)."""
    smtp_username: str | None = None
    smtp_password: str | None = None
    """SMTP AUTH credentials; refused with ``smtp_tls=none`` unless the host is the loopback."""
    smtp_timeout_s: float = 30.0
    """Seconds one whole SMTP delivery may take; must stay below half of ``job_lease_s``."""
    mail_from: str = "webinar@localhost"
    unsubscribe_mailbox: str | None = None
    """An address someone reads; added as ``mailto:`` to List-Unsubscribe when set."""
    run_jobs: bool = True
    """Run the durable job worker (emails) in this process; several processes may run one."""
    job_poll_s: float = 5.0
    """Seconds between two looks for due jobs when the queue is idle."""
    job_lease_s: float = 300.0
    """Seconds a worker owns a claimed job; another worker takes it over once the lease expired."""
    enable_rtmp: bool = True
    enable_srt: bool = True
    enable_webcam: bool = True
    """``WEBINAR_ENABLE_WEBCAM``: this process takes webcam rooms' speakers (their WebRTC peers, the
    program's compositor and encode, its LL-HLS, the shared content shown in it, the pre-flight
    results). ``False`` on every node but the media node of a multi-node deployment: speakers
    are refused there (:func:`rooms.webcam.speak.media_node_refusal`), so a webinar never
    gets a second program on another node (docs/DEPLOYMENT.md, "Webcam rooms")."""
    live_grace_s: float = 30.0
    """Seconds a live waits for a dropped publisher to come back before it ends."""
    live_max_s: float = 4 * 3600.0
    """R-ROOM-2: a live is cut after this many seconds (4 hours); warnings come before."""
    ice_servers: str = ""
    """``WEBINAR_ICE_SERVERS``: STUN/TURN servers of webcam rooms as a JSON list of
    ``{"urls": "stun:host:3478" | [...], "username"?, "credential"?}`` (the browser and
    the server use the same list); empty = host candidates only (loopback, LAN)."""
    ws_ping_interval_s: float = 20.0
    """``WEBINAR_WS_PING_INTERVAL_S``: seconds between two keepalive pings on a WebSocket (0 = no pings)."""
    ws_ping_timeout_s: float = 30.0
    """``WEBINAR_WS_PING_TIMEOUT_S``: seconds a peer has to answer a ping before the socket is closed (1011).
    A peer that sent anything meanwhile counts as alive, and a deadline checked late because the
    event loop was busy gets one more second (see :mod:`server.ws_protocol`)."""
    gc_thresholds: tuple[int, int, int] = (50_000, 20, 100)
    """``WEBINAR_GC_THRESHOLDS`` (``g0,g1,g2``): the cyclic garbage collector's thresholds for
    ``webinar serve`` (Python's default is 700,10,10). Objects created at start-up are frozen out
    of its reach (``gc.freeze()``); larger thresholds make collections of the many long-lived
    per-connection objects rarer. Each value >= 1."""
    backup_dir: Path | None = None
    """``WEBINAR_BACKUP_DIR``: where ``webinar backup`` writes its generations (server/backup.py);
    unset = ``data_dir/backups`` (same disk: prefer another disk or a mounted remote folder)."""
    backup_keep: int = 5
    """``WEBINAR_BACKUP_KEEP``: complete generations kept (R-OPS-1: 5); the oldest is removed
    only after a new one is complete and verified. 1 to 100."""
    backup_daily: bool = False
    """``WEBINAR_BACKUP_DAILY``: run a backup every day at 03:00 Paris time on the job queue
    (server/daily.py). The job handler is cut after ``job_lease_s / 2``: raise
    ``WEBINAR_JOB_LEASE_S`` to more than twice the backup's duration."""
    node_name: str = ""
    """``WEBINAR_NODE_NAME``: sent as ``X-Webinar-Node`` on every HTTP and WebSocket answer
    (which node served it, behind a load balancer); empty = no header. At most 64 characters."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> "Settings":
        """Read ``WEBINAR_*``, ``DATABASE_URL`` and ``REDIS_URL``; ``overrides`` (not None) win."""
        env = os.environ if env is None else env
        values: dict[str, object] = {
            "host": env.get("WEBINAR_HOST", cls.host),
            "port": _env_int(env, "WEBINAR_PORT", cls.port),
            "rtmp_port": _env_int(env, "WEBINAR_RTMP_PORT", cls.rtmp_port),
            "srt_port": _env_int(env, "WEBINAR_SRT_PORT", cls.srt_port),
            "data_dir": Path(env.get("WEBINAR_DATA_DIR", DEFAULT_DATA_DIR)),
            "database_url": env.get("DATABASE_URL") or None,
            "redis_url": env.get("REDIS_URL") or None,
            "public_url": env.get("WEBINAR_PUBLIC_URL") or None,
            "media_host": env.get("WEBINAR_MEDIA_HOST") or None,
            "secret_key": env.get("WEBINAR_SECRET_KEY") or None,
            "db_pool_min": _env_int(env, "WEBINAR_DB_POOL_MIN", cls.db_pool_min),
            "db_pool_max": _env_int(env, "WEBINAR_DB_POOL_MAX", cls.db_pool_max),
            "session_max_age_s": _env_int(env, "WEBINAR_SESSION_MAX_AGE", cls.session_max_age_s),
            "login_max_failures": _env_int(env, "WEBINAR_LOGIN_MAX_FAILURES", cls.login_max_failures),
            "login_max_failures_per_ip": _env_int(
                env, "WEBINAR_LOGIN_MAX_FAILURES_PER_IP", cls.login_max_failures_per_ip
            ),
            "login_window_s": _env_int(env, "WEBINAR_LOGIN_WINDOW", cls.login_window_s),
            "log_level": env.get("WEBINAR_LOG_LEVEL", cls.log_level).upper(),
            "log_json": _env_bool(env, "WEBINAR_LOG_JSON", cls.log_json),
            "smtp_host": env.get("WEBINAR_SMTP_HOST") or None,
            "smtp_port": _env_int(env, "WEBINAR_SMTP_PORT", cls.smtp_port),
            "smtp_tls": env.get("WEBINAR_SMTP_TLS", cls.smtp_tls).lower(),
            "smtp_username": env.get("WEBINAR_SMTP_USERNAME") or None,
            "smtp_password": env.get("WEBINAR_SMTP_PASSWORD") or None,
            "smtp_timeout_s": _env_float(env, "WEBINAR_SMTP_TIMEOUT_S", cls.smtp_timeout_s),
            "mail_from": env.get("WEBINAR_MAIL_FROM", cls.mail_from),
            "unsubscribe_mailbox": env.get("WEBINAR_UNSUBSCRIBE_MAILBOX") or None,
            "run_jobs": _env_bool(env, "WEBINAR_RUN_JOBS", cls.run_jobs),
            "job_poll_s": _env_float(env, "WEBINAR_JOB_POLL_S", cls.job_poll_s),
            "job_lease_s": _env_float(env, "WEBINAR_JOB_LEASE_S", cls.job_lease_s),
            "enable_rtmp": _env_bool(env, "WEBINAR_ENABLE_RTMP", cls.enable_rtmp),
            "enable_srt": _env_bool(env, "WEBINAR_ENABLE_SRT", cls.enable_srt),
            "enable_webcam": _env_bool(env, "WEBINAR_ENABLE_WEBCAM", cls.enable_webcam),
            "live_grace_s": _env_float(env, "WEBINAR_LIVE_GRACE_S", cls.live_grace_s),
            "live_max_s": _env_float(env, "WEBINAR_LIVE_MAX_S", cls.live_max_s),
            "ice_servers": env.get("WEBINAR_ICE_SERVERS", cls.ice_servers).strip(),
            "ws_ping_interval_s": _env_float(env, "WEBINAR_WS_PING_INTERVAL_S", cls.ws_ping_interval_s),
            "ws_ping_timeout_s": _env_float(env, "WEBINAR_WS_PING_TIMEOUT_S", cls.ws_ping_timeout_s),
            "gc_thresholds": _env_thresholds(env, "WEBINAR_GC_THRESHOLDS", cls.gc_thresholds),
            "node_name": env.get("WEBINAR_NODE_NAME", cls.node_name),
            "backup_dir": Path(env["WEBINAR_BACKUP_DIR"]) if env.get("WEBINAR_BACKUP_DIR") else None,
            "backup_keep": _env_int(env, "WEBINAR_BACKUP_KEEP", cls.backup_keep),
            "backup_daily": _env_bool(env, "WEBINAR_BACKUP_DAILY", cls.backup_daily),
        }
        for key, value in overrides.items():
            if key not in values:
                raise SettingsError(f"unknown setting {key!r}")
            if value is not None:
                values[key] = Path(str(value)) if key in ("data_dir", "backup_dir") else value
        settings = cls(**values)  # type: ignore[arg-type]
        settings.validate()
        return settings

    def validate(self) -> None:
        for name in ("port", "rtmp_port", "srt_port"):
            value = getattr(self, name)
            if not 0 <= value <= 65535:
                raise SettingsError(f"{name} must be between 0 and 65535, got {value}")
        if self.db_pool_min < 1 or self.db_pool_max < self.db_pool_min:
            raise SettingsError("database pool sizes must satisfy 1 <= min <= max")
        if not 0 <= self.live_grace_s <= 600:
            raise SettingsError("WEBINAR_LIVE_GRACE_S must be between 0 and 600 seconds")
        if not 0 < self.live_max_s <= 4 * 3600:
            raise SettingsError("WEBINAR_LIVE_MAX_S must be positive and at most 4 hours (R-ROOM-2)")
        if self.smtp_tls not in ("none", "starttls", "tls"):
            raise SettingsError(f"WEBINAR_SMTP_TLS must be none, starttls or tls, got {self.smtp_tls!r}")
        if (self.smtp_username is None) != (self.smtp_password is None):
            raise SettingsError("WEBINAR_SMTP_USERNAME and WEBINAR_SMTP_PASSWORD go together")
        if (self.smtp_username and self.smtp_tls == "none"
                and self.smtp_host not in ("localhost", "127.0.0.1", "::1")):
            raise SettingsError("SMTP credentials are not sent unencrypted: set WEBINAR_SMTP_TLS to starttls or tls")
        if not 1 <= self.smtp_port <= 65535:
            raise SettingsError(f"smtp_port must be between 1 and 65535, got {self.smtp_port}")
        if not 10 <= self.job_lease_s <= 86400:
            raise SettingsError("WEBINAR_JOB_LEASE_S must be between 10 and 86400 seconds")
        if not 0 < self.smtp_timeout_s < self.job_lease_s / 2:
            raise SettingsError("WEBINAR_SMTP_TIMEOUT_S must be positive and below half of WEBINAR_JOB_LEASE_S")
        if not 0.01 <= self.job_poll_s <= 3600:
            raise SettingsError("WEBINAR_JOB_POLL_S must be between 0.01 and 3600 seconds")
        if len(self.node_name) > 64 or not all(c.isascii() and (c.isalnum() or c in "-_.") for c in self.node_name):
            raise SettingsError("WEBINAR_NODE_NAME must be at most 64 characters among A-Z a-z 0-9 - _ .")
        if not 0 <= self.ws_ping_interval_s <= 3600 or not 1 <= self.ws_ping_timeout_s <= 3600:
            raise SettingsError("WEBINAR_WS_PING_INTERVAL_S must be 0-3600 s and WEBINAR_WS_PING_TIMEOUT_S 1-3600 s")
        if len(self.gc_thresholds) != 3 or min(self.gc_thresholds) < 1:
            raise SettingsError("WEBINAR_GC_THRESHOLDS must be three integers >= 1, e.g. 50000,20,100")
        _ = self.ice_server_list  # raises SettingsError on a malformed WEBINAR_ICE_SERVERS
        if not 1 <= self.backup_keep <= 100:
            raise SettingsError(f"WEBINAR_BACKUP_KEEP must be between 1 and 100, got {self.backup_keep}")
        if self.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise SettingsError(f"WEBINAR_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {self.log_level!r}")

    def replace(self, **changes: object) -> "Settings":
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    # Derived locations -----------------------------------------------------
    @property
    def ice_server_list(self) -> list[dict[str, object]]:
        """``ice_servers`` parsed and checked: each entry has ``urls`` (stun:, turn: or
        turns: URLs) and, for TURN, ``username`` and ``credential``."""
        if not self.ice_servers:
            return []
        import json

        try:
            entries = json.loads(self.ice_servers)
        except ValueError:
            raise SettingsError("WEBINAR_ICE_SERVERS must be a JSON list of {urls, username, credential}") from None
        if not isinstance(entries, list):
            raise SettingsError("WEBINAR_ICE_SERVERS must be a JSON list")
        servers: list[dict[str, object]] = []
        for entry in entries:
            urls = entry.get("urls") if isinstance(entry, dict) else None
            url_list = [urls] if isinstance(urls, str) else urls
            if (not isinstance(url_list, list) or not url_list
                    or not all(isinstance(u, str) and u.split(":", 1)[0] in ("stun", "turn", "turns") for u in url_list)):
                raise SettingsError(f"WEBINAR_ICE_SERVERS: bad urls in {entry!r} (stun:, turn: or turns: URLs)")
            assert isinstance(entry, dict)
            if any(u.startswith("turn") for u in url_list) and not (entry.get("username") and entry.get("credential")):
                raise SettingsError("WEBINAR_ICE_SERVERS: a TURN server needs username and credential")
            servers.append({k: entry[k] for k in ("urls", "username", "credential") if k in entry})
        return servers

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def public_media_host(self) -> str:
        if self.media_host:
            return self.media_host
        from urllib.parse import urlsplit

        return urlsplit(self.base_url).hostname or "127.0.0.1"

    @property
    def cookie_secure(self) -> bool:
        return self.base_url.startswith("https://")

    @property
    def postgres_dir(self) -> Path:
        return self.data_dir / "postgres"

    @property
    def backups_dir(self) -> Path:
        """Where backup generations go: ``backup_dir``, else ``data_dir/backups``."""
        return self.backup_dir if self.backup_dir is not None else self.data_dir / "backups"

    @property
    def media_dir(self) -> Path:
        return self.data_dir / "media"

    @property
    def outbox_dir(self) -> Path:
        return self.data_dir / "outbox"

    def resolved_secret(self) -> str:
        """The secret key: the setting, else one generated once into ``data_dir/secret_key`` (mode 0600)."""
        if self.secret_key:
            return self.secret_key
        path = self.data_dir / "secret_key"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_text().strip()
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
        return path.read_text().strip()
