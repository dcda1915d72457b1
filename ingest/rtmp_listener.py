"""Thin asyncio TCP listener around the sans-I/O RTMP core (:mod:`ingest.rtmp`).

One :class:`asyncio.Protocol` per connection: every ``data_received`` feeds
:class:`~ingest.rtmp.session.ServerConnection` synchronously, writes its
answers and delivers media to the :class:`~player.media.MediaSink` that
``authorize`` returned, all in the same event-loop callback (no task, no
StreamReader, no timeout context per read: a stream costs one wakeup per
socket read). The caller (the server) decides who may publish::

    async def authorize(app: str, stream_key: str) -> MediaSink | str:
        ...  # a sink to accept, or a refusal reason (wrong key, room type,
             # ended webinar, a publisher already live...)

    listener = RTMPListener(authorize, host="0.0.0.0", port=1935)
    await listener.start()
    ...
    await listener.close()

Timeouts (seconds, constructor arguments, defaults below): the handshake must
complete within ``handshake_timeout``; the publish must be accepted within
``publish_timeout`` of the TCP accept; after the handshake, a connection
that sends nothing for ``idle_timeout`` is dropped; ``authorize`` must answer
within ``authorize_timeout``; replies the publisher does not read (our write
buffer above the transport's high-water mark) for ``write_timeout`` drop it.
Each connection has one timer (``loop.call_at``) that fires at the earliest
deadline and re-arms from the last-activity stamp, so the steady state costs
one clock read per ``data_received``. (``asyncio.timeout`` guards only
``authorize``; ``asyncio.wait_for`` on Python 3.11 can lose a cancellation.)

Flow control and memory per connection: reading is paused while
``authorize`` runs, while our write buffer is above its high-water mark, and
after each read of a live publish until the packager's next part is due
(fewer, bigger reads: see :data:`READ_COALESCE`);
each read (at most the event loop's read size, 256 KiB) is parsed at once,
so what is held is bounded by the core's limits (message size, partial
messages, bytes held while ``authorize`` runs), documented in
:mod:`ingest.rtmp.chunks` and :mod:`ingest.rtmp.session`.

Every failure (protocol error, timeout, refusal, sink error) is logged as one
line on the ``ingest.rtmp`` logger and closes only that connection.
``sink.on_end(clean)`` is called exactly once for every sink obtained, whatever
the way the publish ends: ``clean=True`` only when the encoder unpublished
(``FCUnpublish``/``deleteStream``/``closeStream``), False for a connection
that ended, failed or timed out under a publish. Stream keys are masked in logs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Final, Self, cast

from ingest.rtmp.chunks import MAX_MESSAGE_SIZE
from ingest.rtmp.errors import RTMPProtocolError
from ingest.rtmp.session import (
    Connected,
    ConnectionClosed,
    Event,
    MediaConfig,
    MediaUnit,
    Metadata,
    PublishEnded,
    PublishRequested,
    ServerConnection,
)
from player.media import MediaSink, PartClock

__all__ = ["DEFAULT_PORT", "Authorize", "RTMPListener", "serve_rtmp"]

logger = logging.getLogger("ingest.rtmp")

Authorize = Callable[[str, str], Awaitable[MediaSink | str]]
"""``authorize(app, stream_key)``: a sink to accept the publish, or a refusal reason."""

DEFAULT_PORT: Final = 1935
HANDSHAKE_TIMEOUT: Final = 10.0
"""Seconds for the whole handshake (C0+C1 ... C2)."""
PUBLISH_TIMEOUT: Final = 30.0
"""Seconds from TCP accept until a publish is accepted."""
IDLE_TIMEOUT: Final = 20.0
"""Seconds without any byte from a connection (after the handshake) before it is dropped."""
AUTHORIZE_TIMEOUT: Final = 10.0
"""Seconds ``authorize`` may take."""
WRITE_TIMEOUT: Final = 10.0
"""Seconds our write buffer to the publisher may stay above its high-water mark."""
MAX_CONNECTIONS: Final = 256
"""Most simultaneous RTMP connections; more are closed on accept."""
READ_COALESCE: Final = 0.1
"""Seconds reading pauses after each read while a publish is live, when the sink
cannot say when its packager next publishes (see below); 0 turns pausing off (every
write of the encoder is read at once). Pausing makes one read take what the
publisher wrote meanwhile instead of one wakeup per encoder write (about 100/s from
ffmpeg): the ingest costs per wakeup, not per byte.

With a packager that can tell (:class:`player.media.PartClock`, the live's sink),
the pause instead lasts until the media unit that lets it publish its next part
should have arrived, plus :data:`PART_READ_SLACK`: about one read per part (0.3 s)
instead of ten a second, and that part published within the slack of its last
unit's arrival instead of up to ``READ_COALESCE`` after it. A read of
:data:`COALESCE_MAX_READ` bytes or more is never followed by a pause (a high bit
rate, or a publisher catching up, must not be throttled by the socket's receive
buffer)."""
PART_READ_SLACK: Final = 0.012
"""Seconds added to a part-timed pause: an encoder's frame arrives in a few writes."""
PART_READ_PAUSE: Final = (0.01, 1.0)
"""Shortest and longest part-timed pause, seconds (a 1 fps source still reads every second)."""
COALESCE_MAX_READ: Final = 250_000
"""Reads at least this long (bytes) are followed by the next read at once: just under
the event loop's read size (uvloop 256,000 bytes, asyncio 256 KiB), so only a read that
filled it, and may have left more in the socket, counts (a 0.3 s pause at 6 Mbit/s
reads about 230 KB)."""
CLOSE_GRACE: Final = 2.0
"""Seconds :meth:`RTMPListener.close` lets pending ``authorize`` calls end before cancelling them."""
CLOSE_DRAIN_TURNS: Final = 50
"""Most event-loop turns :meth:`RTMPListener.close` spends reading what publishers already sent."""
ABORT_AFTER: Final = 1.0
"""Seconds a closed connection may take to flush our last replies before it is aborted."""


def _mask(key: str) -> str:
    return f"{key[:3]}***" if len(key) > 6 else "***"


class _Publisher:
    """The sink of one connection and the guarantee that ``on_end`` is called once."""

    __slots__ = ("app", "key", "sink")

    def __init__(self) -> None:
        self.sink: MediaSink | None = None
        self.app = ""
        self.key = ""

    def end(self, peer: str, reason: str, clean: bool = False) -> None:
        sink, self.sink = self.sink, None
        if sink is None:
            return
        logger.info("RTMP %s: publish ended app=%s key=%s: %s (%s)", peer, self.app, _mask(self.key), reason,
                    "clean" if clean else "drop")
        try:
            sink.on_end(clean=clean)
        except Exception:
            logger.exception("RTMP %s: sink.on_end() failed", peer)


class _Connection(asyncio.Protocol):
    """One publisher connection: socket callbacks in, sans-I/O core, sink out."""

    def __init__(self, listener: RTMPListener, loop: asyncio.AbstractEventLoop) -> None:
        self._listener = listener
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self.peer = "?"
        self._conn = ServerConnection(max_message_size=listener.max_message_size)
        self._publisher = _Publisher()
        self._accepted_at = loop.time()
        self._last_data = self._accepted_at
        self._timer: asyncio.TimerHandle | None = None
        self._authorizing: asyncio.Task[None] | None = None
        self._write_paused_at: float | None = None
        self._coalesce: asyncio.TimerHandle | None = None
        self._part_clock: PartClock | None = None
        self._reading = True
        self._closed = False  # we closed the transport, or it was lost
        self._lost = False  # connection_lost was called
        self._registered = False
        self.done: asyncio.Future[None] = loop.create_future()

    # ----------------------------------------------------------------- transport callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it
        peername = self._transport.get_extra_info("peername")
        self.peer = f"{peername[0]}:{peername[1]}" if isinstance(peername, tuple) else str(peername)
        listener = self._listener
        if listener._closing or len(listener._connections) >= listener.max_connections:
            logger.warning("RTMP %s: refused: %d connections already open", self.peer, len(listener._connections))
            self._closed = True
            transport.close()
            self._finish()
            return
        listener._connections[self] = None
        self._registered = True
        self._arm()

    def data_received(self, data: bytes) -> None:
        self._last_data = self._loop.time()
        self._listener._reads += 1
        if self._closed:
            return
        try:
            self._dispatch(self._conn.receive_data(data))
            self._flush()
        except Exception as exc:  # noqa: BLE001 -- any failure closes only this connection; _fail logs it
            self._fail(exc)
            return
        if self._conn.closing and self._authorizing is None:
            self._close_transport()
        elif (
            self._listener.read_coalesce > 0
            and not self._listener._closing
            and self._conn.publishing
            and self._coalesce is None
            and len(data) < COALESCE_MAX_READ
        ):
            self._coalesce = self._loop.call_later(self._pause_s(), self._end_coalesce)
            self._update_reading()

    def _pause_s(self) -> float:
        """How long reading pauses after a read of a live publish (see :data:`READ_COALESCE`)."""
        clock = self._part_clock
        if clock is not None:
            try:
                seconds = clock.seconds_to_next_part()
            except Exception:  # noqa: BLE001 -- a pause is not worth failing the publish; the sink logs its own errors
                seconds = None
            if seconds is not None:
                low, high = PART_READ_PAUSE
                return min(max(seconds + PART_READ_SLACK, low), high)
        return self._listener.read_coalesce

    def _end_coalesce(self) -> None:
        self._coalesce = None
        self._update_reading()

    def eof_received(self) -> bool:
        if self._closed:
            return False
        stage = "during the handshake" if not self._conn.handshake_complete else "by the publisher"
        try:
            events = self._conn.receive_eof()
            self._dispatch(events)
        except Exception as exc:  # noqa: BLE001 -- any failure closes only this connection; _fail logs it
            self._fail(exc)
            return False
        if not any(isinstance(e, PublishEnded) for e in events):
            logger.info("RTMP %s: connection closed %s", self.peer, stage)
        self._close_transport()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if not self._closed:
            self._closed = True
            if self._listener._closing:
                logger.warning("RTMP %s: closing: server shutting down", self.peer)
                self._publisher.end(self.peer, "server shutting down")
            else:
                logger.warning("RTMP %s: connection lost: %s", self.peer, exc or "closed")
                self._publisher.end(self.peer, "connection lost")
        self._publisher.end(self.peer, "connection closed")
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._coalesce is not None:
            self._coalesce.cancel()
            self._coalesce = None
        if self._authorizing is None:
            self._finish()

    def pause_writing(self) -> None:
        self._write_paused_at = self._loop.time()
        self._update_reading()
        self._arm()

    def resume_writing(self) -> None:
        self._write_paused_at = None
        self._update_reading()

    # ----------------------------------------------------------------- the listener's calls

    def read_now(self) -> None:
        """End a read-coalescing pause: what the publisher sent is read on the next loop turn."""
        if self._coalesce is not None:
            self._coalesce.cancel()
            self._end_coalesce()

    def shutdown(self) -> None:
        """The listener is closing: end the publish and close the socket."""
        if not self._closed:
            self._close("server shutting down")

    def cancel_authorize(self) -> None:
        """Cancel a pending ``authorize`` (after the listener's close grace)."""
        if self._authorizing is not None:
            self._authorizing.cancel()

    # ----------------------------------------------------------------- internals

    def _finish(self) -> None:
        if self._registered:
            self._listener._connections.pop(self, None)
            self._registered = False
        if not self.done.done():
            self.done.set_result(None)

    def _fail(self, exc: Exception) -> None:
        if isinstance(exc, RTMPProtocolError):
            logger.warning("RTMP %s: protocol error, closing: %s", self.peer, exc)
            self._close(f"protocol error: {exc}", log=False)
        elif isinstance(exc, (ConnectionError, OSError)):
            logger.warning("RTMP %s: connection lost: %s", self.peer, exc or type(exc).__name__)
            self._close("connection lost", log=False)
        else:
            logger.error("RTMP %s: internal error, closing", self.peer, exc_info=exc)
            self._close("internal error", log=False)

    def _close(self, reason: str, *, log: bool = True) -> None:
        """End the publish (not clean) and close the socket, with one log line."""
        if log:
            logger.warning("RTMP %s: closing: %s", self.peer, reason)
        self._publisher.end(self.peer, reason)
        self._close_transport()

    def _close_transport(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        transport = self._transport
        if transport is not None and not self._lost:
            transport.close()
            # a publisher that does not read our last replies must not keep the socket
            self._timer = self._loop.call_later(ABORT_AFTER, transport.abort)

    def _flush(self) -> None:
        data = self._conn.data_to_send()
        if data and self._transport is not None and not self._lost:
            self._transport.write(data)

    def _update_reading(self) -> None:
        transport = self._transport
        if transport is None or self._closed:
            return
        want = self._authorizing is None and self._write_paused_at is None and self._coalesce is None
        if want != self._reading:
            self._reading = want
            if want:
                transport.resume_reading()
            else:
                transport.pause_reading()

    def _deadline(self) -> tuple[float, str]:
        """The earliest deadline in force now, and what missing it means."""
        listener = self._listener
        conn = self._conn
        idle = (self._last_data + listener.idle_timeout, f"no data for {listener.idle_timeout:g} s")
        if not conn.handshake_complete:
            best = (
                self._accepted_at + listener.handshake_timeout,
                f"handshake not completed within {listener.handshake_timeout:g} s",
            )
        elif self._authorizing is not None:
            best = (float("inf"), "")  # authorize has its own timeout; reading is paused
        elif not conn.publishing:
            publish = (
                self._accepted_at + listener.publish_timeout,
                f"no publish accepted within {listener.publish_timeout:g} s",
            )
            best = publish if publish[0] <= idle[0] else idle
        else:
            best = idle
        if self._write_paused_at is not None:
            write = (
                self._write_paused_at + listener.write_timeout,
                f"publisher did not read our replies within {listener.write_timeout:g} s",
            )
            if write[0] < best[0]:
                best = write
        return best

    def _arm(self) -> None:
        """(Re)arm the one timer at the earliest deadline."""
        if self._closed:
            return
        when, _ = self._deadline()
        if self._timer is not None:
            if self._timer.when() <= when:
                return  # fires earlier and re-arms then
            self._timer.cancel()
            self._timer = None
        if when != float("inf"):
            self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._closed:
            return
        when, what = self._deadline()
        if self._loop.time() >= when:
            self._close(what)
        else:
            self._arm()

    def _dispatch(self, events: list[Event]) -> None:
        publisher = self._publisher
        for event in events:
            if type(event) is MediaUnit:
                if publisher.sink is not None:
                    publisher.sink.on_access_unit(event.unit)
            elif isinstance(event, MediaConfig):
                if publisher.sink is not None:
                    publisher.sink.on_config(event.config)
            elif isinstance(event, PublishRequested):  # always the last event of its list
                self._authorizing = self._loop.create_task(self._decide(event))
                self._update_reading()
            elif isinstance(event, PublishEnded):
                publisher.end(self.peer, event.reason, event.clean)
            elif isinstance(event, Connected):
                logger.debug("RTMP %s: connect app=%r flashVer=%r", self.peer, event.app, event.flash_ver)
            elif isinstance(event, Metadata):
                logger.debug("RTMP %s: metadata %r", self.peer, event.values)
            elif isinstance(event, ConnectionClosed):
                pass

    async def _decide(self, event: PublishRequested) -> None:
        peer = self.peer
        result: MediaSink | str
        try:
            try:
                async with asyncio.timeout(self._listener.authorize_timeout):
                    result = await self._listener._authorize(event.app, event.stream_key)
            except TimeoutError:
                result = "authorization timed out"
                logger.error("RTMP %s: authorize() did not answer within %g s", peer, self._listener.authorize_timeout)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("RTMP %s: authorize() failed", peer)
                result = "internal error"
            if self._closed:
                if not isinstance(result, str):  # the connection went away meanwhile: end what was opened
                    self._publisher.sink = result
                    self._publisher.app = event.app
                    self._publisher.key = event.stream_key
                    self._publisher.end(peer, "connection closed before the publish started")
                return
            conn = self._conn
            if isinstance(result, str):
                logger.warning(
                    "RTMP %s: publish refused app=%s key=%s: %s", peer, event.app, _mask(event.stream_key), result
                )
                conn.reject_publish(result)
                self._flush()
                self._close_transport()
                return
            self._publisher.sink = result
            self._publisher.app = event.app
            self._publisher.key = event.stream_key
            self._part_clock = result if isinstance(result, PartClock) else None
            conn.accept_publish()
            logger.info("RTMP %s: publish accepted app=%s key=%s", peer, event.app, _mask(event.stream_key))
            self._flush()
            self._authorizing = None
            self._update_reading()
            self._arm()
            try:
                self._dispatch(conn.receive_data(b""))  # what arrived while authorize ran
                self._flush()
            except Exception as exc:  # noqa: BLE001 -- closes only this connection; _fail logs it
                self._fail(exc)
                return
            if conn.closing and self._authorizing is None:
                self._close_transport()
        except asyncio.CancelledError:
            # Only close() cancels these (after its grace): the connection is already closed.
            if not self._closed:
                self._close("server shutting down")
        finally:
            if self._authorizing is asyncio.current_task():
                self._authorizing = None
            if self._lost and self._authorizing is None:
                self._finish()


class RTMPListener:
    """An RTMP ingest server on ``host:port`` (``port=0`` picks a free port, see :attr:`port`)."""

    def __init__(
        self,
        authorize: Authorize,
        host: str = "0.0.0.0",
        port: int = DEFAULT_PORT,
        *,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        publish_timeout: float = PUBLISH_TIMEOUT,
        idle_timeout: float = IDLE_TIMEOUT,
        authorize_timeout: float = AUTHORIZE_TIMEOUT,
        write_timeout: float = WRITE_TIMEOUT,
        read_coalesce: float = READ_COALESCE,
        max_connections: int = MAX_CONNECTIONS,
        max_message_size: int = MAX_MESSAGE_SIZE,
    ) -> None:
        self._authorize = authorize
        self._host = host
        self._port = port
        self.handshake_timeout = handshake_timeout
        self.publish_timeout = publish_timeout
        self.idle_timeout = idle_timeout
        self.authorize_timeout = authorize_timeout
        self.write_timeout = write_timeout
        self.read_coalesce = read_coalesce
        self.max_connections = max_connections
        self.max_message_size = max_message_size
        self._server: asyncio.Server | None = None
        self._connections: dict[_Connection, None] = {}
        self._closing = False
        self._reads = 0

    @property
    def port(self) -> int:
        """The bound TCP port (after :meth:`start`)."""
        if self._server is None or not self._server.sockets:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def connection_count(self) -> int:
        """Connections being served right now."""
        return len(self._connections)

    async def start(self) -> None:
        """Bind and start accepting connections."""
        if self._server is not None:
            raise RuntimeError("listener already started")
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self, loop), self._host, self._port)
        logger.info("RTMP listening on %s:%d", self._host, self.port)

    async def close(self) -> None:
        """Stop accepting, drop every connection (their sinks get ``on_end``), and wait for them.

        Bytes a publisher sent during a read-coalescing pause are read first
        (one read each, in the next event-loop turns).

        A connection whose ``authorize`` is still running after
        :data:`CLOSE_GRACE` seconds has it cancelled (a sink it returns in
        time is ended at once).
        """
        self._closing = True
        server, self._server = self._server, None
        if server is not None:
            server.close()
        connections = list(self._connections)
        for connection in connections:  # take in what was sent during a coalescing pause
            connection.read_now()
        for _ in range(CLOSE_DRAIN_TURNS):  # (_closing stops new pauses) until a turn reads nothing
            reads = self._reads
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            if self._reads == reads:
                break
        for connection in connections:
            connection.shutdown()
        waiting = {connection.done for connection in connections}
        if waiting:
            _, pending = await asyncio.wait(waiting, timeout=CLOSE_GRACE)
            if pending:
                for connection in connections:
                    if not connection.done.done():
                        connection.cancel_authorize()
                await asyncio.wait(pending, timeout=CLOSE_GRACE)
        if server is not None:
            await server.wait_closed()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def serve_rtmp(host: str, port: int, authorize: Authorize, **options: float) -> RTMPListener:
    """Start an :class:`RTMPListener` on ``host:port`` (keyword ``options`` go to its constructor)."""
    listener = RTMPListener(authorize, host, port, **options)  # type: ignore[arg-type]
    await listener.start()
    return listener
