"""Thin asyncio TCP listener around the sans-I/O RTMP core (:mod:`ingest.rtmp`).

One task per connection reads at most ``read_size`` bytes at a time, feeds
:class:`~ingest.rtmp.session.ServerConnection`, writes its answers, and
delivers media to the :class:`~player.media.MediaSink` that ``authorize``
returned. The caller (the server) decides who may publish::

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
within ``authorize_timeout``; a write must drain within ``write_timeout``.
(``asyncio.timeout`` is used rather than ``asyncio.wait_for``, which on
Python 3.11 can lose a cancellation that races with a completed read.)

Memory per connection is bounded: the StreamReader holds at most about
2 x ``read_size`` bytes, and the core's limits (message size, partial
messages, bytes held while ``authorize`` runs) are documented in
:mod:`ingest.rtmp.chunks` and :mod:`ingest.rtmp.session`.

Every failure (protocol error, timeout, refusal, sink error) is logged as one
line on the ``ingest.rtmp`` logger and closes only that connection.
``sink.on_end()`` is called exactly once for every sink obtained, whatever
the way the publish ends. Stream keys are masked in logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Final

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
from player.media import MediaSink

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
"""Seconds a write to the publisher may take to drain."""
READ_SIZE: Final = 64 * 1024
"""Largest read per connection (bytes); also the StreamReader buffer limit."""
MAX_CONNECTIONS: Final = 256
"""Most simultaneous RTMP connections; more are closed on accept."""
CLOSE_GRACE: Final = 2.0
"""Seconds :meth:`RTMPListener.close` lets connection tasks end before cancelling them."""


class _Closed(Exception):
    """Internal: end this connection with a log line."""


def _mask(key: str) -> str:
    return f"{key[:3]}***" if len(key) > 6 else "***"


class _Publisher:
    """The sink of one connection and the guarantee that ``on_end`` is called once."""

    __slots__ = ("app", "key", "sink")

    def __init__(self) -> None:
        self.sink: MediaSink | None = None
        self.app = ""
        self.key = ""

    def end(self, peer: str, reason: str) -> None:
        sink, self.sink = self.sink, None
        if sink is None:
            return
        logger.info("RTMP %s: publish ended app=%s key=%s: %s", peer, self.app, _mask(self.key), reason)
        try:
            sink.on_end()
        except Exception:
            logger.exception("RTMP %s: sink.on_end() failed", peer)


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
        read_size: int = READ_SIZE,
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
        self.read_size = read_size
        self.max_connections = max_connections
        self.max_message_size = max_message_size
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._closing = False

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
        self._server = await asyncio.start_server(self._on_client, self._host, self._port, limit=self.read_size)
        logger.info("RTMP listening on %s:%d", self._host, self.port)

    async def close(self) -> None:
        """Stop accepting, drop every connection (their sinks get ``on_end``), and wait for them.

        Connections are closed at the socket, so each task ends through its
        normal path; a task still busy after :data:`CLOSE_GRACE` seconds
        (e.g. waiting on ``authorize``) is cancelled.
        """
        self._closing = True
        server, self._server = self._server, None
        if server is not None:
            server.close()
        connections = dict(self._connections)
        for writer in connections.values():
            writer.close()
        if connections:
            _, pending = await asyncio.wait(connections, timeout=CLOSE_GRACE)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        if server is not None:
            await server.wait_closed()

    async def __aenter__(self) -> RTMPListener:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ----------------------------------------------------------------- one connection

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        peer = f"{peername[0]}:{peername[1]}" if isinstance(peername, tuple) else str(peername)
        if self._closing or len(self._connections) >= self.max_connections:
            logger.warning("RTMP %s: refused: %d connections already open", peer, len(self._connections))
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        publisher = _Publisher()
        try:
            await self._serve(reader, writer, peer, publisher)
        except RTMPProtocolError as exc:
            logger.warning("RTMP %s: protocol error, closing: %s", peer, exc)
            publisher.end(peer, f"protocol error: {exc}")
        except _Closed as exc:
            logger.warning("RTMP %s: closing: %s", peer, exc)
            publisher.end(peer, str(exc))
        except (ConnectionError, OSError) as exc:
            logger.warning("RTMP %s: connection lost: %s", peer, exc or type(exc).__name__)
            publisher.end(peer, "connection lost")
        except asyncio.CancelledError:
            # Only close() cancels these tasks: end the publish and finish quietly.
            task.uncancel()
            publisher.end(peer, "server shutting down")
        except Exception:
            logger.exception("RTMP %s: internal error, closing", peer)
            publisher.end(peer, "internal error")
        finally:
            publisher.end(peer, "connection closed")
            self._connections.pop(task, None)
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str, publisher: _Publisher
    ) -> None:
        conn = ServerConnection(max_message_size=self.max_message_size)
        loop = asyncio.get_running_loop()
        accepted_at = loop.time()
        while True:
            now = loop.time()
            if not conn.handshake_complete:
                timeout = accepted_at + self.handshake_timeout - now
                what = f"handshake not completed within {self.handshake_timeout:g} s"
            elif not conn.publishing:
                publish_left = accepted_at + self.publish_timeout - now
                if publish_left < self.idle_timeout:
                    timeout, what = publish_left, f"no publish accepted within {self.publish_timeout:g} s"
                else:
                    timeout, what = self.idle_timeout, f"no data for {self.idle_timeout:g} s"
            else:
                timeout, what = self.idle_timeout, f"no data for {self.idle_timeout:g} s"
            if timeout <= 0:
                raise _Closed(what)
            try:
                async with asyncio.timeout(timeout):
                    data = await reader.read(self.read_size)
            except TimeoutError:
                raise _Closed(what) from None
            if self._closing:
                raise _Closed("server shutting down")
            if not data:
                stage = "during the handshake" if not conn.handshake_complete else "by the publisher"
                events = conn.receive_eof()
                await self._dispatch(conn, events, writer, peer, publisher)
                if not any(isinstance(e, PublishEnded) for e in events):
                    logger.info("RTMP %s: connection closed %s", peer, stage)
                return
            events = conn.receive_data(data)
            await self._dispatch(conn, events, writer, peer, publisher)
            await self._flush(conn, writer)
            if conn.closing:
                return

    async def _flush(self, conn: ServerConnection, writer: asyncio.StreamWriter) -> None:
        data = conn.data_to_send()
        if data:
            writer.write(data)
            try:
                async with asyncio.timeout(self.write_timeout):
                    await writer.drain()
            except TimeoutError:
                raise _Closed(f"publisher did not read our replies within {self.write_timeout:g} s") from None

    async def _dispatch(
        self,
        conn: ServerConnection,
        events: list[Event],
        writer: asyncio.StreamWriter,
        peer: str,
        publisher: _Publisher,
    ) -> None:
        while events:
            resumed: list[Event] = []
            for event in events:
                if isinstance(event, MediaUnit):
                    if publisher.sink is not None:
                        publisher.sink.on_access_unit(event.unit)
                elif isinstance(event, MediaConfig):
                    if publisher.sink is not None:
                        publisher.sink.on_config(event.config)
                elif isinstance(event, PublishRequested):
                    await self._decide(conn, event, peer, publisher)
                    await self._flush(conn, writer)
                    if not conn.closing:
                        resumed = conn.receive_data(b"")
                elif isinstance(event, PublishEnded):
                    publisher.end(peer, event.reason)
                elif isinstance(event, Connected):
                    logger.debug("RTMP %s: connect app=%r flashVer=%r", peer, event.app, event.flash_ver)
                elif isinstance(event, Metadata):
                    logger.debug("RTMP %s: metadata %r", peer, event.values)
                elif isinstance(event, ConnectionClosed):
                    pass
            events = resumed

    async def _decide(self, conn: ServerConnection, event: PublishRequested, peer: str, publisher: _Publisher) -> None:
        result: MediaSink | str
        try:
            async with asyncio.timeout(self.authorize_timeout):
                result = await self._authorize(event.app, event.stream_key)
        except TimeoutError:
            result = "authorization timed out"
            logger.error("RTMP %s: authorize() did not answer within %g s", peer, self.authorize_timeout)
        except Exception:
            logger.exception("RTMP %s: authorize() failed", peer)
            result = "internal error"
        if isinstance(result, str):
            logger.warning(
                "RTMP %s: publish refused app=%s key=%s: %s", peer, event.app, _mask(event.stream_key), result
            )
            conn.reject_publish(result)
            return
        publisher.sink = result
        publisher.app = event.app
        publisher.key = event.stream_key
        conn.accept_publish()
        logger.info("RTMP %s: publish accepted app=%s key=%s", peer, event.app, _mask(event.stream_key))


async def serve_rtmp(host: str, port: int, authorize: Authorize, **options: float | int) -> RTMPListener:
    """Start an :class:`RTMPListener` on ``host:port`` (keyword ``options`` go to its constructor)."""
    listener = RTMPListener(authorize, host, port, **options)  # type: ignore[arg-type]
    await listener.start()
    return listener
