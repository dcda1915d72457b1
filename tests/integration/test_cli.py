"""The ``webinar`` command as a user runs it: embedded PostgreSQL, demo data,
login with the printed credentials, graceful shutdown on SIGTERM."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from server.pg_embedded import EmbeddedPostgres
from tests.support.net import free_port

WEBINAR = [sys.executable, "-m", "server.cli"]
ENV = {**os.environ, "WEBINAR_LOG_JSON": "1"}
ENV.pop("DATABASE_URL", None)
ENV.pop("REDIS_URL", None)


@pytest.fixture(scope="module")
def data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="webinar-cli-"))
    try:
        yield path
    finally:
        pg = EmbeddedPostgres(path / "postgres")
        if pg.is_running():
            pg.stop()
        shutil.rmtree(path, ignore_errors=True)


def run(*args: str, data_dir: Path, port: int = 8000) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*WEBINAR, *args, "--data-dir", str(data_dir), "--port", str(port)], env=ENV,
                          capture_output=True, text=True, timeout=120)


def test_migrate_and_demo_are_idempotent_without_a_server(data_dir: Path) -> None:
    first = run("migrate", data_dir=data_dir)
    assert first.returncode == 0, first.stderr
    assert "migrations up to date" in first.stdout
    demo1 = run("demo", "--json", data_dir=data_dir)
    assert demo1.returncode == 0, demo1.stderr
    one = json.loads(demo1.stdout)
    demo2 = run("demo", "--json", data_dir=data_dir)
    two = json.loads(demo2.stdout)
    assert [w["id"] for w in one["webinars"]] == [w["id"] for w in two["webinars"]]
    assert one["admin"] == two["admin"] and one["webinars"][0]["stream_key"] == two["webinars"][0]["stream_key"]
    kinds = {w["room_type"]: w for w in one["webinars"]}
    assert set(kinds) == {"studio", "webcam"}
    for w in one["webinars"]:
        for key in ("id", "room_type", "viewer_url", "moderator_url", "speaker_url", "register_url", "hls_url",
                    "rtmp_url", "srt_url", "stream_key"):
            assert w[key], key
        assert w["rtmp_url"].startswith("rtmp://") and w["stream_key"] in w["rtmp_url"]
        assert w["srt_url"].startswith("srt://") and w["stream_key"] in w["srt_url"]
    # Commands that found no server running stop the embedded database they started.
    assert not EmbeddedPostgres(data_dir / "postgres").is_running()
    human = run("demo", data_dir=data_dir)
    assert one["admin"]["password"] in human.stdout and "Log in at" in human.stdout


def test_createadmin(data_dir: Path) -> None:
    r = subprocess.run([*WEBINAR, "createadmin", "--email", "root@example.com", "--data-dir", str(data_dir)],
                       env={**ENV, "WEBINAR_ADMIN_PASSWORD": "short"}, capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and "at least 10 characters" in r.stderr
    r = subprocess.run([*WEBINAR, "createadmin", "--email", "root@example.com", "--password", "long enough pass",
                        "--data-dir", str(data_dir)], env=ENV, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "created" in r.stdout


def _wait_healthy(url: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "server exited"
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("server did not become healthy")


def test_serve_demo_login_and_graceful_shutdown(data_dir: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([*WEBINAR, "serve", "--data-dir", str(data_dir), "--port", str(port), "--rtmp-port",
                             str(free_port()), "--srt-port", str(free_port())], env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_healthy(url, proc)
        health = httpx.get(f"{url}/healthz").json()
        assert health["status"] == "ok" and health["database"] == "ok" and health["version"]
        metrics = httpx.get(f"{url}/metrics").text
        assert "webinar_http_requests_total" in metrics and 'route="/healthz"' in metrics
        # demo works against the running server's data.
        demo = run("demo", "--json", data_dir=data_dir, port=port)
        assert demo.returncode == 0, demo.stderr
        creds = json.loads(demo.stdout)
        assert EmbeddedPostgres(data_dir / "postgres").is_running(), "demo must not stop the server's database"
        with httpx.Client(base_url=url, cookies={"wb_lang": "en"}) as client:
            client.get("/login")
            r = client.post("/login", data={"email": creds["admin"]["email"], "password": creds["admin"]["password"],
                                            "csrf_token": client.cookies["wb_csrf"]})
            assert r.status_code == 303 and r.headers["location"] == "/admin"
            assert "Demo" in client.get("/admin").text
        # SIGTERM while a request is in flight: the request still gets its answer.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            body = b"email=x%40example.com&password=whatever"
            sock.sendall(b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body[:10])
            time.sleep(0.3)
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            sock.sendall(body[10:])
            answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 403"), answer[:100]  # refused for its missing CSRF token, but answered
        # uvicorn shuts down cleanly, then re-raises the signal it caught (exit status -SIGTERM).
        assert proc.wait(timeout=40) in (0, -signal.SIGTERM)
        assert not EmbeddedPostgres(data_dir / "postgres").is_running(), "serve stops its database on exit"
        logs = [json.loads(line) for line in (proc.stderr.read() if proc.stderr else "").splitlines() if line.startswith("{")]
        messages = [entry["msg"] for entry in logs]
        assert "server ready" in messages and "server stopped" in messages
        assert messages.index("server stopped") > messages.index("server ready")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()


def test_bad_settings_are_reported() -> None:
    r = subprocess.run([*WEBINAR, "serve", "--port", "70000"], env=ENV, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "port must be between 0 and 65535" in r.stderr
    r = subprocess.run([*WEBINAR, "serve"], env={**ENV, "WEBINAR_DB_POOL_MAX": "many"}, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and "WEBINAR_DB_POOL_MAX must be an integer" in r.stderr


