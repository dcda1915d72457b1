from __future__ import annotations

from pathlib import Path

import pytest

from server.settings import Settings, SettingsError


def test_defaults_need_nothing() -> None:
    s = Settings.from_env({})
    assert (s.host, s.port, s.rtmp_port, s.srt_port) == ("127.0.0.1", 8000, 1935, 9000)
    assert s.database_url is None and s.redis_url is None
    assert s.base_url == "http://127.0.0.1:8000" and not s.cookie_secure
    assert s.postgres_dir == Path("webinar-data") / "postgres"


def test_env_and_overrides() -> None:
    env = {"WEBINAR_PORT": "9001", "DATABASE_URL": "postgresql://x/y", "REDIS_URL": "redis://127.0.0.1:1/0",
           "WEBINAR_PUBLIC_URL": "https://webinar.example.com/", "WEBINAR_LOG_JSON": "no"}
    s = Settings.from_env(env, port=9100, data_dir="/tmp/x", host=None)
    assert s.port == 9100 and s.data_dir == Path("/tmp/x") and s.host == "127.0.0.1"
    assert s.database_url == "postgresql://x/y" and s.redis_url == "redis://127.0.0.1:1/0"
    assert s.base_url == "https://webinar.example.com" and s.cookie_secure and s.public_media_host == "webinar.example.com"
    assert s.log_json is False


@pytest.mark.parametrize(
    ("env", "message"),
    [({"WEBINAR_PORT": "x"}, "WEBINAR_PORT must be an integer"), ({"WEBINAR_PORT": "99999"}, "port must be between"),
     ({"WEBINAR_LOG_JSON": "maybe"}, "must be a boolean"), ({"WEBINAR_LOG_LEVEL": "loud"}, "WEBINAR_LOG_LEVEL"),
     ({"WEBINAR_DB_POOL_MIN": "5", "WEBINAR_DB_POOL_MAX": "2"}, "pool sizes")],
)
def test_bad_values_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_unknown_override_refused() -> None:
    with pytest.raises(SettingsError, match="unknown setting"):
        Settings.from_env({}, colour="blue")


def test_secret_generated_once(tmp_path: Path) -> None:
    s = Settings.from_env({}, data_dir=tmp_path)
    first = s.resolved_secret()
    assert len(first) >= 40 and s.resolved_secret() == first
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0
    assert Settings.from_env({"WEBINAR_SECRET_KEY": "given"}, data_dir=tmp_path).resolved_secret() == "given"


def test_logs_redact_tokens_and_keys() -> None:
    import logging

    from server.logs import RedactSecrets

    record = logging.LogRecord("uvicorn.error", logging.INFO, "", 0, '%s - "WebSocket %s" [accepted]',
                               ("127.0.0.1:5000", "/ws/rooms/abc?token=SECRET.value-1&x=2"), None)
    assert RedactSecrets().filter(record)
    assert record.getMessage() == '127.0.0.1:5000 - "WebSocket /ws/rooms/abc?token=***&x=2" [accepted]'
    other = logging.LogRecord("x", logging.INFO, "", 0, "GET /sponsor/accounts/1?key=abc.def HTTP/1.1", None, None)
    RedactSecrets().filter(other)
    assert "abc.def" not in other.getMessage() and "key=***" in other.getMessage()
    plain = logging.LogRecord("x", logging.INFO, "", 0, "nothing secret here", None, None)
    RedactSecrets().filter(plain)
    assert plain.getMessage() == "nothing secret here"


def test_websocket_keepalive_and_gc_settings() -> None:
    s = Settings.from_env({"WEBINAR_WS_PING_INTERVAL_S": "0", "WEBINAR_WS_PING_TIMEOUT_S": "45",
                           "WEBINAR_GC_THRESHOLDS": "10000,10,50"})
    assert (s.ws_ping_interval_s, s.ws_ping_timeout_s, s.gc_thresholds) == (0.0, 45.0, (10000, 10, 50))
    for env, message in [({"WEBINAR_GC_THRESHOLDS": "1,2"}, "WEBINAR_GC_THRESHOLDS"),
                         ({"WEBINAR_GC_THRESHOLDS": "a,b,c"}, "WEBINAR_GC_THRESHOLDS"),
                         ({"WEBINAR_GC_THRESHOLDS": "0,10,10"}, "WEBINAR_GC_THRESHOLDS"),
                         ({"WEBINAR_WS_PING_TIMEOUT_S": "0"}, "WEBINAR_WS_PING_TIMEOUT_S")]:
        with pytest.raises(SettingsError, match=message):
            Settings.from_env(env)
