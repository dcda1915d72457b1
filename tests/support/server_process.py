"""``webinar serve`` as a separate process (for kill -9, several nodes, benchmarks)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.support.net import free_port, free_udp_port


class ServerProcess:
    def __init__(self, database_url: str, *, redis_url: str | None = None, port: int | None = None,
                 data_dir: Path | None = None, env: dict[str, str] | None = None) -> None:
        self.port = port or free_port()
        self.rtmp_port = free_port()
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="webinar-node-"))
        self.env = {**os.environ, "DATABASE_URL": database_url, "WEBINAR_SECRET_KEY": "cluster-secret",
                    "WEBINAR_LOG_JSON": "1", "WEBINAR_ENABLE_SRT": "0", **(env or {})}
        self.env.pop("REDIS_URL", None)
        if redis_url:
            self.env["REDIS_URL"] = redis_url
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.data_dir / "server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "server.cli", "serve", "--port", str(self.port), "--rtmp-port", str(self.rtmp_port),
                 "--srt-port", str(free_udp_port()), "--data-dir", str(self.data_dir)],
                env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not become healthy in {timeout:g} s: {self.log.read_text()[-2000:]}")

    async def astart(self) -> None:
        await asyncio.to_thread(self.start)

    def kill(self) -> None:
        """SIGKILL: no shutdown of any kind."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
