"""Start a real, private ``redis-server`` for tests.

The server listens on 127.0.0.1 and a free port only (``--bind 127.0.0.1``),
keeps nothing on disk (``--save ''``, ``--appendonly no``) and works in its
own temporary directory, removed by :meth:`RedisServer.stop`.

It can be killed (SIGKILL, like a crash) and started again **on the same
port**, which is what reconnect tests need::

    with RedisServer() as server:       # or: async with RedisServer() as server
        ... server.url ...
        server.kill()
        server.start()                  # same port, empty dataset

If no ``redis-server`` binary is found, :class:`RedisServerNotFound` is raised
(tests must fail, not skip, when it is missing). The binary is taken from the
``REDIS_SERVER_BIN`` environment variable, else ``redis-server`` on ``PATH``,
else ``/usr/bin/redis-server``.

Limits: starting waits at most ``startup_timeout`` seconds (default 10) for
the server to answer ``PING``; stopping waits at most 5 seconds after SIGTERM
before SIGKILL.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from types import TracebackType
from typing import Self

from tests.support.net import free_port

__all__ = ["RedisServer", "RedisServerNotFound", "find_redis_server", "free_port"]

STOP_TIMEOUT = 5.0
"""Seconds :meth:`RedisServer.stop` waits after SIGTERM before SIGKILL."""


class RedisServerNotFound(RuntimeError):
    """No ``redis-server`` binary: install it (Debian package ``redis-server``)."""


def find_redis_server() -> str:
    """Path of the ``redis-server`` binary, or :class:`RedisServerNotFound`."""
    candidates = [os.environ.get("REDIS_SERVER_BIN"), shutil.which("redis-server"), "/usr/bin/redis-server"]
    for path in candidates:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise RedisServerNotFound(
        "redis-server not found (looked at $REDIS_SERVER_BIN, PATH and /usr/bin/redis-server); "
        "install it, e.g. `apt-get install redis-server`"
    )


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """A ``redis-server`` child process on 127.0.0.1 (see module docs).

    Args:
        port: TCP port; a free one is chosen when ``None``. It stays the same
            across :meth:`kill` / :meth:`start`.
        startup_timeout: seconds :meth:`start` waits for ``PING`` to answer.
    """

    def __init__(self, port: int | None = None, *, startup_timeout: float = 10.0) -> None:
        self.binary = find_redis_server()
        self.port = port if port is not None else free_port()
        self.startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._dir: str | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        """True while the child process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server (again, on the same port) and wait until it answers PING."""
        if self.running:
            raise RuntimeError("redis-server is already running")
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="test-redis-")
        log_path = os.path.join(self._dir, "redis.log")
        argv = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", self._dir,
            "--logfile", log_path,
            "--daemonize", "no",
        ]  # fmt: skip
        self._process = subprocess.Popen(
            argv, cwd=self._dir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self._process.poll() is not None:
                stderr = self._process.stderr.read().decode(errors="replace") if self._process.stderr else ""
                self._process = None
                raise RuntimeError(
                    f"redis-server exited during startup on port {self.port}: {stderr}{self._read_log(log_path)}"
                )
            if _answers_ping(self.port):
                return
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(
                    f"redis-server did not answer PING on port {self.port} within "
                    f"{self.startup_timeout} s{self._read_log(log_path)}"
                )
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL the server (a crash: connections reset). Keeps its directory and port."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT)
        if process.stderr:
            process.stderr.close()

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and remove its directory."""
        process, self._process = self._process, None
        try:
            if process is not None:
                if process.poll() is None:
                    process.send_signal(signal.SIGCONT)  # in case it was frozen
                    process.terminate()
                    try:
                        process.wait(timeout=STOP_TIMEOUT)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        process.wait(timeout=STOP_TIMEOUT)
                if process.stderr:
                    process.stderr.close()
        finally:
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None

    def freeze(self) -> None:
        """SIGSTOP the server: connections stay open but nothing answers."""
        if self._process is None or not self.running:
            raise RuntimeError("redis-server is not running")
        self._process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT a server stopped by :meth:`freeze`."""
        if self._process is None or not self.running:
            raise RuntimeError("redis-server is not running")
        self._process.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        """:meth:`kill` then :meth:`start` on the same port."""
        self.kill()
        self.start()

    async def astart(self) -> None:
        """:meth:`start` in a worker thread, not blocking the event loop."""
        await asyncio.to_thread(self.start)

    async def astop(self) -> None:
        """:meth:`stop` in a worker thread."""
        await asyncio.to_thread(self.stop)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        await self.astart()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.astop()

    @staticmethod
    def _read_log(path: str) -> str:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                tail = f.read()[-2000:]
        except OSError:
            return ""
        return f"\n--- redis.log ---\n{tail}"
