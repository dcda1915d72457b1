"""SRT listener: libsrt sockets on one thread, MPEG-TS demuxing and sinks on the asyncio loop.

One background thread ("srt-listener") owns the listening socket and every
accepted connection: it waits in ``srt_epoll_uwait`` (live mode,
non-blocking sockets), accepts publishers and reads their messages.

libsrt costs CPU even with nobody connected: its receive thread wakes every
10 ms, and so does its epoll wait whatever timeout it is given (together
about 4 ms of CPU per second, most of an idle server's cost). So:

- until the first SRT caller, libsrt does not hold the port: a plain UDP
  socket does, watched by the asyncio loop (no thread, no timer). The first
  datagram wakes the listener: libsrt takes over that same socket
  (``srt_bind_acquire`` of a duplicate descriptor, the datagram still
  unread in it), so the caller's handshake goes on without a retry or a
  lost packet. From then on libsrt keeps the port for the life of the
  listener: handing it back would need libsrt's multiplexer gone, which
  takes about 5 s after its last socket closes, and callers arriving in
  that window would be lost. A server whose operators never use SRT pays
  nothing for it;
- with no publisher connected, the thread blocks in ``srt_accept`` (a
  condition variable, no periodic wakeup) instead of the epoll wait;
  :meth:`SRTListener.close` closes the listening socket to end it. The
bytes go to the asyncio loop with ``loop.call_soon_threadsafe``; there a
:class:`~ingest.mpegts.TSDemuxer` per connection turns them into units for
the :class:`~player.media.MediaSink` that ``authorize`` returned.

Authorization happens in two steps, because libsrt's listen callback runs
on a libsrt thread and must answer synchronously:

1. during the handshake, the stream id is parsed
   (:func:`~ingest.srt.streamid.parse_stream_id`) and ``precheck(key)``
   (synchronous, fast, e.g. a lookup in an in-memory set of valid key
   hashes) returns a refusal reason or None. A refusal rejects the
   connection before the handshake completes (the publisher gets an SRT
   rejection code, ``authorize`` is never called);
2. once accepted, ``await authorize(key)`` returns the sink, or a refusal
   reason (str) that closes the connection.

With a ``passphrase`` the listener requires encryption: libsrt rejects a
caller with no or another passphrase during the handshake.

Bounds, per connection (each overrun drops *that* publisher only; its sink
gets ``on_end``; other publishers are not affected):

- ``max_queue_bytes`` (default :data:`MAX_QUEUE_BYTES`): bytes handed to the
  loop and not demuxed yet (including what arrives while ``authorize``
  runs). Exceeded when the loop cannot keep up with a publisher;
- ``max_bitrate`` (default :data:`MAX_BITRATE`, bits/s, measured over fixed
  one-second windows): a publisher flooding the server is dropped before
  it can monopolise the loop;
- ``idle_timeout`` (seconds, default :data:`IDLE_TIMEOUT`): a connected
  publisher that sends no data is dropped (SRT's own peer-idle timeout,
  5 s, covers a vanished peer);
- ``authorize_timeout`` (seconds): ``authorize`` taking longer refuses;
- input that is not MPEG-TS (:class:`~ingest.mpegts.TSError`) or a sink
  that raises drops the connection.

A publisher that disconnects is read for one more receiver latency, so
what it sent last (held by libsrt until its delivery time) is not lost. A
connection the server gives up on within 0.3 s of accepting it is closed
at 0.3 s: a libsrt caller still completing its handshake would miss an
earlier shutdown and only notice at its 5 s peer-idle timeout.

The listener accepts at most ``max_connections`` publishers (more are
rejected in the handshake with ``SRT_REJX_OVERLOAD``). One loop callback
handles at most :data:`MESSAGES_PER_WAKEUP` SRT messages (about 84 KB), so
one busy publisher delays the loop by a few milliseconds at a time.

``close()`` stops the thread, closes every socket and calls ``on_end`` once
for every connection that got a sink.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import logging
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable

from ingest.mpegts import MediaEvent, TSDemuxer, TSError
from ingest.srt import libsrt
from ingest.srt.libsrt import LibSRT, SRTError
from ingest.srt.streamid import (
    REJ_FORBIDDEN,
    REJ_ISE,
    REJ_OVERLOAD,
    StreamIdError,
    parse_stream_id,
)
from player.media import AccessUnit, MediaSink

__all__ = [
    "AUTHORIZE_TIMEOUT",
    "DEFAULT_LATENCY_MS",
    "DEFAULT_PORT",
    "IDLE_TIMEOUT",
    "MAX_BITRATE",
    "MAX_CONNECTIONS",
    "MAX_QUEUE_BYTES",
    "Authorize",
    "Precheck",
    "SRTListener",
]

log = logging.getLogger(__name__)

DEFAULT_PORT = 9000
"""UDP port of the SRT listener."""

DEFAULT_LATENCY_MS = 200
"""SRT receiver latency (TSBPD delay) in milliseconds; the peer's larger value wins."""

MAX_QUEUE_BYTES = 4 * 1024 * 1024
"""Bytes per connection waiting for the loop before the publisher is dropped."""

MAX_BITRATE = 50_000_000
"""Bits per second per publisher before it is dropped as a flood."""

IDLE_TIMEOUT = 10.0
"""Seconds without data before a connected publisher is dropped."""

AUTHORIZE_TIMEOUT = 10.0
"""Seconds ``authorize`` may take before the publisher is refused."""

MAX_CONNECTIONS = 64
"""Publishers connected at once."""

MESSAGES_PER_WAKEUP = 64
"""SRT messages read from one connection per epoll wakeup (and per loop callback)."""

POLL_INTERVAL_MS = 100
"""``srt_epoll_uwait`` timeout while publishers are connected: how often the thread
looks at idle timers, commands and the stop flag (with none connected it blocks in
``srt_accept``, see the module docstring)."""

_RECV_BUFFER = 1500
_DRAIN_POLL_MS = 10
_DRAIN_MARGIN = 0.1  # seconds
_MIN_CONNECTION_AGE = 0.3  # seconds before the server closes a connection it accepted
_REJ_DOWN = 1503

Precheck = Callable[[str], str | None]
"""Synchronous handshake check: ``precheck(key)`` -> refusal reason, or None to go on."""

Authorize = Callable[[str], Awaitable[MediaSink | str]]
"""``await authorize(key)`` -> the sink for this publisher, or a refusal reason."""


class _Connection:
    """One accepted publisher. Fields are owned by the thread, the loop, or guarded by the lock."""

    __slots__ = (
        "sock",
        "key",
        "peer",
        "demuxer",
        "accepted_at",
        "last_data",
        "latency",
        "drain_until",
        "end_reason",
        "window_start",
        "window_bytes",
        "queued",
        "state",
        "pending",
        "sink",
        "task",
    )

    def __init__(self, sock: int, key: str, peer: str, demuxer: TSDemuxer, now: float) -> None:
        self.sock = sock
        self.key = key
        self.peer = peer
        self.demuxer = demuxer
        # thread
        self.accepted_at = now
        self.last_data = now
        self.latency = 0.0  # negotiated receiver latency, seconds
        self.drain_until: float | None = None  # set once the peer has gone
        self.end_reason = ""
        self.window_start = now
        self.window_bytes = 0
        # lock
        self.queued = 0
        # loop
        self.state = "authorizing"  # -> "active" -> "closed"
        self.pending: list[bytes] = []
        self.sink: MediaSink | None = None
        self.task: asyncio.Task[None] | None = None


class SRTListener:
    """Receive MPEG-TS over SRT from publishers and feed their sinks.

    ``host`` is an IP address (``"0.0.0.0"``/``"::"`` for all); ``port`` 0
    picks a free port (read :attr:`port` after :meth:`start`). ``passphrase``
    is 10-79 characters; ``pbkeylen`` 0 (follow the caller), 16, 24 or 32.
    ``library`` is a path to libsrt (default: the system one).
    """

    def __init__(
        self,
        host: str = "0.0.0.0",
        port: int = DEFAULT_PORT,
        authorize: Authorize | None = None,
        *,
        precheck: Precheck | None = None,
        passphrase: str | None = None,
        pbkeylen: int = 0,
        latency_ms: int = DEFAULT_LATENCY_MS,
        idle_timeout: float = IDLE_TIMEOUT,
        authorize_timeout: float = AUTHORIZE_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
        max_queue_bytes: int = MAX_QUEUE_BYTES,
        max_bitrate: int = MAX_BITRATE,
        demuxer_factory: Callable[[], TSDemuxer] = TSDemuxer,
        library: str | None = None,
        backlog: int = 16,
    ) -> None:
        if authorize is None:
            raise ValueError("authorize is required")
        if passphrase is not None and not 10 <= len(passphrase) <= 79:
            raise ValueError("an SRT passphrase has 10 to 79 characters")
        if pbkeylen not in (0, 16, 24, 32):
            raise ValueError("pbkeylen must be 0, 16, 24 or 32")
        if latency_ms < 0 or idle_timeout <= 0 or authorize_timeout <= 0:
            raise ValueError("latency and timeouts must be positive")
        if max_connections < 1 or max_queue_bytes < 1 or max_bitrate < 1:
            raise ValueError("limits must be positive")
        self.host = host
        self.port = port
        self._authorize = authorize
        self._precheck = precheck
        self._passphrase = passphrase
        self._pbkeylen = pbkeylen
        self._latency_ms = latency_ms
        self.idle_timeout = idle_timeout
        self.authorize_timeout = authorize_timeout
        self.max_connections = max_connections
        self.max_queue_bytes = max_queue_bytes
        self.max_bitrate = max_bitrate
        self._demuxer_factory = demuxer_factory
        self._library = library
        self._backlog = backlog
        self._udp: socket.socket | None = None
        self.refused_handshakes = 0
        """Connections rejected in the handshake (stream id, precheck, overload)."""
        self._lib: LibSRT | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._commands: collections.deque[int] = collections.deque()
        self._lsock = -1
        self._eid = -1
        self._callback: object = None
        self._thread_conns: dict[int, _Connection] = {}
        self._active: set[_Connection] = set()
        self._closing = False

    # ------------------------------------------------------------------ API

    @property
    def connections(self) -> int:
        """Publishers currently handled on the loop side (authorizing or active)."""
        return len(self._active)

    async def start(self) -> None:
        """Bind the UDP port and watch it (libsrt starts with the first caller).
        Raises :class:`~ingest.srt.libsrt.SRTUnavailable` when libsrt is missing,
        :class:`OSError` when the port cannot be bound."""
        if self._udp is not None or self._closing:
            raise RuntimeError("listener already started (or closed: make a new one)")
        self._loop = asyncio.get_running_loop()
        lib = libsrt.load(self._library)
        lib.startup()
        self._lib = lib
        try:
            lib.set_log_level(libsrt.LOG_CRIT)
            self._udp = _bind_udp(self.host, self.port)
        except BaseException:
            lib.cleanup()
            raise
        self.port = self._udp.getsockname()[1]
        self._sleep()
        log.info("SRT listener on %s:%d (libsrt %s; its threads start with the first caller)",
                 self.host, self.port, lib.version)

    @property
    def awake(self) -> bool:
        """True once the first datagram came and libsrt holds the port (see the module docstring)."""
        return self._thread is not None

    def _sleep(self) -> None:
        """Loop side: watch the UDP port for the next caller."""
        assert self._loop is not None and self._udp is not None
        self._loop.add_reader(self._udp.fileno(), self._wake)

    def _wake(self) -> None:
        """Loop side: a datagram is waiting (unread) on the port: hand the port to libsrt."""
        assert self._loop is not None and self._udp is not None and self._lib is not None
        self._loop.remove_reader(self._udp.fileno())
        try:
            self._open_srt(self._udp.fileno())
        except SRTError as exc:
            log.error("SRT listener could not start libsrt for a caller: %s", exc)
            with contextlib.suppress(OSError):  # the datagram would wake us again at once
                self._udp.recv(65536, socket.MSG_DONTWAIT)
            self._sleep()

    def _open_srt(self, fd: int) -> None:
        """Make the libsrt listening socket on a duplicate of ``fd`` and start the thread."""
        lib = self._lib
        assert lib is not None
        sock = eid = -1
        dup = os.dup(fd)
        try:
            sock = lib.create_socket()
            lib.set_int(sock, libsrt.SRTO_TRANSTYPE, libsrt.SRTT_LIVE)  # first: it resets the others
            lib.set_int(sock, libsrt.SRTO_LATENCY, self._latency_ms)
            if self._passphrase is not None:
                lib.set_str(sock, libsrt.SRTO_PASSPHRASE, self._passphrase)
                lib.set_int(sock, libsrt.SRTO_PBKEYLEN, self._pbkeylen)
            lib.set_bool(sock, libsrt.SRTO_RCVSYN, False)
            self._callback = lib.set_listen_callback(sock, self._on_handshake)
            lib.bind_acquire(sock, dup)  # libsrt owns ``dup`` from here on
            dup = -1
            lib.listen(sock, self._backlog)
            eid = lib.epoll_create()
            lib.epoll_add(eid, sock, libsrt.SRT_EPOLL_IN | libsrt.SRT_EPOLL_ERR)
        except BaseException:
            if eid >= 0:
                lib.epoll_release(eid)
            if sock >= 0:
                lib.close(sock)
            if dup >= 0:
                os.close(dup)
            raise
        self._lsock, self._eid = sock, eid
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="srt-listener", daemon=True)
        self._thread.start()

    async def close(self) -> None:
        """Stop the thread, close all sockets, end every sink once. Idempotent."""
        if self._udp is None or self._closing:
            return
        self._closing = True
        assert self._loop is not None
        self._loop.remove_reader(self._udp.fileno())
        thread = self._thread
        if thread is not None:
            self._stop.set()
            assert self._lib is not None
            # wakes a thread blocked in srt_accept; its own close of it later is a no-op
            self._lib.close(self._lsock)
            await asyncio.to_thread(thread.join)
            self._thread = None
        self._udp.close()
        tasks = [c.task for c in self._active if c.task is not None and not c.task.done()]
        for conn in list(self._active):
            self._finish(conn, "listener closed", request_close=False)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._lib is not None:
            self._lib.cleanup()
        self._callback = None

    async def __aenter__(self) -> SRTListener:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------- libsrt callback thread

    def _on_handshake(self, ns: int, hs_version: int, peer: str, stream_id: bytes) -> int:
        """Listen callback (a libsrt thread): 0 accepts, -1 rejects before the handshake ends."""
        code, reason = self._screen(stream_id)
        if reason is None:
            return 0
        self.refused_handshakes += 1
        assert self._lib is not None
        self._lib.set_reject_reason(ns, code)
        log.info("SRT handshake from %s refused (%d): %s", peer, code, reason)
        return -1

    def _screen(self, stream_id: bytes) -> tuple[int, str | None]:
        if self._stop.is_set():
            return _REJ_DOWN, "server shutting down"
        try:
            key = parse_stream_id(stream_id)
        except StreamIdError as exc:
            return exc.code, str(exc)
        if len(self._thread_conns) >= self.max_connections:
            return REJ_OVERLOAD, "too many publishers"
        if self._precheck is None:
            return 0, None
        try:
            refusal = self._precheck(key)
        except Exception:
            log.exception("SRT precheck failed")
            return REJ_ISE, "precheck failed"
        if refusal is not None:
            return REJ_FORBIDDEN, refusal
        return 0, None

    # ------------------------------------------------------- listener thread

    def _run(self) -> None:
        lib = self._lib
        assert lib is not None
        events = lib.event_array(64)
        buf = ctypes.create_string_buffer(_RECV_BUFFER)
        try:
            while not self._stop.is_set():
                self._run_commands()
                if not self._thread_conns and not self._commands:
                    self._await_caller()
                    continue
                draining = [c for c in self._thread_conns.values() if c.drain_until is not None]
                timeout = _DRAIN_POLL_MS if draining else POLL_INTERVAL_MS
                for sock, flags in lib.epoll_wait(self._eid, events, timeout):
                    if sock == self._lsock:
                        self._accept_all()
                    else:
                        conn = self._thread_conns.get(sock)
                        if conn is not None and conn.drain_until is None:
                            self._read(conn, flags, buf)
                now = time.monotonic()
                for conn in draining:
                    if conn.sock in self._thread_conns:
                        self._read(conn, 0, buf)
                for conn in list(self._thread_conns.values()):
                    if conn.drain_until is not None:
                        if now > conn.drain_until:
                            self._drop(conn, conn.end_reason)
                    elif now - conn.last_data > self.idle_timeout:
                        self._drop(conn, f"no data for {self.idle_timeout:g} s")
        except Exception:
            log.exception("SRT listener thread failed")
        finally:
            for conn in list(self._thread_conns.values()):
                self._drop(conn, "listener stopped")
            lib.epoll_release(self._eid)
            lib.close(self._lsock)

    def _run_commands(self) -> None:
        """Close the connections the loop gave up on (refused, not MPEG-TS, sink failure)."""
        deferred = []
        now = time.monotonic()
        while self._commands:
            sock = self._commands.popleft()
            conn = self._thread_conns.get(sock)
            if conn is None:
                continue
            if now - conn.accepted_at < _MIN_CONNECTION_AGE:
                # A caller still completing its handshake misses a shutdown
                # sent right after the accept and only notices the closed
                # connection at its peer-idle timeout (5 s): close a bit later.
                deferred.append(sock)
            else:
                self._drop(conn, None)
        self._commands.extend(deferred)

    def _post(self, callback: Callable[..., None], *args: object) -> None:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # loop closed: nobody to tell
            pass

    def _await_caller(self) -> None:
        """No publisher connected: block in ``srt_accept`` until one is (no periodic
        wakeup), then take any others already queued without blocking."""
        lib = self._lib
        assert lib is not None
        try:
            lib.set_bool(self._lsock, libsrt.SRTO_RCVSYN, True)
        except SRTError:  # closed by close(): the loop's test of _stop ends the thread
            return
        try:
            self._accept_all(block_first=True)
        finally:
            with contextlib.suppress(SRTError):
                lib.set_bool(self._lsock, libsrt.SRTO_RCVSYN, False)

    def _accept_all(self, *, block_first: bool = False) -> None:
        """Accept every queued caller. ``block_first``: the listening socket is in
        blocking mode and the first accept waits; it goes back to non-blocking after it."""
        lib = self._lib
        assert lib is not None
        while True:
            try:
                accepted = lib.accept(self._lsock)
            except SRTError as exc:
                if not self._stop.is_set():
                    log.warning("SRT accept failed: %s", exc)
                return
            if block_first:
                block_first = False
                with contextlib.suppress(SRTError):  # closed meanwhile: the next accept says so
                    lib.set_bool(self._lsock, libsrt.SRTO_RCVSYN, False)
            if accepted is None:
                return
            sock, peer = accepted
            try:
                key = parse_stream_id(lib.get_bytes(sock, libsrt.SRTO_STREAMID))
                if len(self._thread_conns) >= self.max_connections:
                    raise StreamIdError(REJ_OVERLOAD, "too many publishers")
                lib.set_bool(sock, libsrt.SRTO_RCVSYN, False)
                lib.epoll_add(self._eid, sock, libsrt.SRT_EPOLL_IN | libsrt.SRT_EPOLL_ERR)
            except (SRTError, StreamIdError) as exc:
                log.info("SRT connection from %s closed at accept: %s", peer, exc)
                lib.close(sock)
                continue
            conn = _Connection(sock, key, peer, self._demuxer_factory(), time.monotonic())
            try:
                conn.latency = max(0, lib.get_int(sock, libsrt.SRTO_RCVLATENCY)) / 1000
            except SRTError:
                conn.latency = self._latency_ms / 1000
            self._thread_conns[sock] = conn
            log.info("SRT publisher connected from %s", peer)
            self._post(self._on_accepted, conn)

    def _read(self, conn: _Connection, flags: int, buf: ctypes.Array[ctypes.c_char]) -> None:
        lib = self._lib
        assert lib is not None
        chunks: list[bytes] = []
        ended: str | None = None
        for _ in range(MESSAGES_PER_WAKEUP):
            try:
                n = lib.recv_into(conn.sock, buf)
            except SRTError as exc:
                if exc.code == libsrt.SRT_ECONNLOST:
                    ended = "publisher disconnected"
                else:
                    ended = f"connection ended ({exc.args[1]})"
                break
            if n is None:
                break
            if n > 0:
                chunks.append(ctypes.string_at(buf, n))
        if not chunks and ended is None and flags & libsrt.SRT_EPOLL_ERR:
            ended = "connection broken"
        if chunks:
            data = b"".join(chunks)
            now = time.monotonic()
            conn.last_data = now
            if now - conn.window_start >= 1.0:
                conn.window_start = now
                conn.window_bytes = 0
            conn.window_bytes += len(data)
            if conn.window_bytes * 8 > self.max_bitrate:
                self._drop(conn, f"bitrate above {self.max_bitrate} bit/s")
                return
            with self._lock:
                conn.queued += len(data)
                overflow = conn.queued > self.max_queue_bytes
            if overflow:
                self._drop(conn, f"more than {self.max_queue_bytes} bytes waiting: server too slow")
                return
            self._post(self._on_data, conn, data)
        if ended is not None and conn.drain_until is None:
            if ended == "publisher disconnected" and conn.latency > 0:
                # The peer closed. What it sent last still waits in libsrt's
                # receive buffer for its delivery time (the latency): keep
                # reading until then, outside epoll (which would report the
                # broken socket without pause).
                lib.epoll_remove(self._eid, conn.sock)
                conn.end_reason = ended
                conn.drain_until = time.monotonic() + conn.latency + _DRAIN_MARGIN
            else:
                self._drop(conn, ended)

    def _drop(self, conn: _Connection, reason: str | None) -> None:
        """Close a connection's socket (thread side); tell the loop unless it asked for it."""
        lib = self._lib
        assert lib is not None
        if self._thread_conns.pop(conn.sock, None) is None:
            return
        lib.epoll_remove(self._eid, conn.sock)
        lib.close(conn.sock)
        if reason is not None:
            self._post(self._on_closed, conn, reason)

    # ------------------------------------------------------------ loop side

    def _on_accepted(self, conn: _Connection) -> None:
        if self._closing:
            conn.state = "closed"
            return
        self._active.add(conn)
        assert self._loop is not None
        conn.task = self._loop.create_task(self._authorize_connection(conn))

    async def _authorize_connection(self, conn: _Connection) -> None:
        result: MediaSink | str
        try:
            async with asyncio.timeout(self.authorize_timeout):
                result = await self._authorize(conn.key)
        except TimeoutError:
            result = "authorization timed out"
        except Exception:
            log.exception("SRT authorize failed")
            result = "authorization failed"
        if conn.state != "authorizing":  # the publisher left meanwhile
            if not isinstance(result, str):
                _end_sink(result)
            return
        if isinstance(result, str):
            self._finish(conn, f"refused: {result}")
            return
        conn.sink = result
        conn.state = "active"
        pending, conn.pending = conn.pending, []
        for data in pending:
            if conn.state != "active":
                break
            self._consume(conn, data)

    def _on_data(self, conn: _Connection, data: bytes) -> None:
        if conn.state == "authorizing":
            conn.pending.append(data)
        elif conn.state == "active":
            self._consume(conn, data)

    def _consume(self, conn: _Connection, data: bytes) -> None:
        with self._lock:
            conn.queued -= len(data)
        try:
            events = conn.demuxer.feed(data)
        except TSError as exc:
            self._finish(conn, str(exc))
            return
        if not self._dispatch(conn, events):
            self._finish(conn, "sink failed")

    @staticmethod
    def _dispatch(conn: _Connection, events: list[MediaEvent]) -> bool:
        sink = conn.sink
        assert sink is not None
        try:
            for event in events:
                if isinstance(event, AccessUnit):
                    sink.on_access_unit(event)
                else:
                    sink.on_config(event)
        except Exception:
            log.exception("SRT sink failed")
            return False
        return True

    def _on_closed(self, conn: _Connection, reason: str) -> None:
        self._finish(conn, reason, request_close=False)

    def _finish(self, conn: _Connection, reason: str, *, request_close: bool = True) -> None:
        """Loop side end of a connection: flush the demuxer, ``on_end`` once, close the socket."""
        if conn.state == "closed":
            return
        was_active = conn.state == "active"
        conn.state = "closed"
        conn.pending.clear()
        self._active.discard(conn)
        if request_close:
            self._commands.append(conn.sock)
        log.info("SRT publisher %s ended: %s", conn.peer, reason)
        if was_active and conn.sink is not None:
            try:
                events = conn.demuxer.flush()
            except TSError:
                events = []
            self._dispatch(conn, events)
            _end_sink(conn.sink)


def _end_sink(sink: MediaSink) -> None:
    try:
        sink.on_end()
    except Exception:
        log.exception("SRT sink on_end failed")


def _bind_udp(host: str, port: int) -> socket.socket:
    """A UDP socket bound to ``host``:``port`` (an IPv4 or IPv6 address; port 0 picks one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    udp = socket.socket(family, socket.SOCK_DGRAM)
    try:
        udp.bind((host, port))
    except BaseException:
        udp.close()
        raise
    return udp
