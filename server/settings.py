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
    live_grace_s: float = 30.0
    """Seconds a live waits for a dropped publisher to come back before it ends."""
    live_max_s: float = 4 * 3600.0
    """R-ROOM-2: a live is cut after this many seconds (4 hours); warnings come before."""

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
            "live_grace_s": _env_float(env, "WEBINAR_LIVE_GRACE_S", cls.live_grace_s),
            "live_max_s": _env_float(env, "WEBINAR_LIVE_MAX_S", cls.live_max_s),
        }
        for key, value in overrides.items():
            if key not in values:
                raise SettingsError(f"unknown setting {key!r}")
            if value is not None:
                values[key] = Path(str(value)) if key == "data_dir" else value
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
        if self.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise SettingsError(f"WEBINAR_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {self.log_level!r}")

    def replace(self, **changes: object) -> "Settings":
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    # Derived locations -----------------------------------------------------
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
