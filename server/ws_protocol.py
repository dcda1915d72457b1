"""uvicorn's WebSocket protocol with a direct frame path and a keepalive that survives a busy loop.

``webinar serve`` (and the test server) run uvicorn with :class:`WebSocketProtocol`,
a subclass of uvicorn's ``websockets-sansio`` protocol (the one uvicorn picks
when ``websockets`` is installed). It changes three things:

* **Direct frames.** Every accepted connection's ASGI scope carries the
  extension ``scope["extensions"]["webinar.frames"]``: a :class:`DirectFrames`
  through which the application writes *complete, pre-encoded* server frames
  (see :func:`text_frame`) straight to the connection's transport. A room
  event is encoded once per node into one frame and the same ``bytes`` are
  written to every viewer: no per-viewer ASGI message, task wake-up, frame
  object or re-encoding. ``paused`` tells when the transport's buffer is above
  its high-water mark (the application then queues, bounded, and is called
  back through ``on_drain``). Server frames are not masked and carry no
  extension bits, so one frame suits every connection; permessage-deflate is
  therefore not negotiated (:func:`uvicorn_options`).
* **Arrival times.** ``DirectFrames.arrivals`` holds, for each
  ``websocket.receive`` message queued to the application, the loop time
  (``loop.time()``, seconds) at which its bytes were read from the socket, so
  rate limits count when a frame arrived, not when the application got to it.
  uvicorn stops reading a socket as soon as one message waits for the
  application; here reading goes on while fewer than :data:`READ_AHEAD_MESSAGES`
  messages and :data:`READ_AHEAD_BYTES` bytes wait, so frames that come while
  the application is busy with an earlier one (a slow database) are read, and
  stamped, when they come.
* **Keepalive under load.** uvicorn closes a connection (1011) when the pong
  does not come within the ping timeout. On a loop that was blocked for a
  while, the timer runs before the socket that holds the pong is read: healthy
  viewers were closed. Here a peer that sent anything since the ping counts as
  alive, and a deadline that fires more than :data:`LATE_TIMER_S` late gets
  :data:`STALL_GRACE_S` more once, long enough for the loop to read the socket.

The rest (handshake, reading, close) is uvicorn's. Limits and units: frames
the client sends are at most ``ws_max_size`` bytes (uvicorn's parser); the
write buffer's high-water mark is the transport's (64 KiB by default on uvloop).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from server.settings import Settings

EXTENSION = "webinar.frames"
"""Key of the direct frame path in ``scope["extensions"]``."""
LATE_TIMER_S = 1.0
"""A keepalive deadline handled this much later than due means the event loop was blocked."""
STALL_GRACE_S = 1.0
"""Extra time given once to a peer whose pong deadline was handled late."""
READ_AHEAD_MESSAGES = 16
"""Messages read ahead of the application before the socket stops being read (backpressure)."""
READ_AHEAD_BYTES = 64 * 1024
"""Bytes of messages read ahead of the application before the socket stops being read."""
MAX_ARRIVALS = 256
"""Arrival stamps kept per connection for an application that does not consume them; when more
messages than this were read at once, the oldest stamps go (later stamps: never a stricter limit)."""


def text_frame(payload: bytes) -> bytes:
    """One unmasked, unfragmented server text frame (RFC 6455 section 5.2) holding ``payload``
    (UTF-8 JSON). Sans-I/O: the same bytes can be written to any number of connections."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return b"\x81\x7e" + n.to_bytes(2, "big") + payload
    return b"\x81\x7f" + n.to_bytes(8, "big") + payload


def frame_payloads(data: bytes) -> list[bytes]:
    """The payloads of whole unmasked frames concatenated in ``data`` (the inverse of
    :func:`text_frame`, for a sink that must send payloads); ValueError on a partial frame."""
    out: list[bytes] = []
    pos, n = 0, len(data)
    while pos < n:
        if n - pos < 2:
            raise ValueError("truncated frame header")
        length, head = data[pos + 1] & 0x7F, 2
        if length == 126:
            length, head = int.from_bytes(data[pos + 2:pos + 4], "big"), 4
        elif length == 127:
            length, head = int.from_bytes(data[pos + 2:pos + 10], "big"), 10
        end = pos + head + length
        if end > n:
            raise ValueError("truncated frame payload")
        out.append(data[pos + head:end])
        pos = end
    return out


class DirectFrames:
    """The ``webinar.frames`` extension of one connection (see the module docstring)."""

    __slots__ = ("_protocol", "arrivals", "on_drain", "paused")

    def __init__(self, protocol: WebSocketProtocol) -> None:
        self._protocol = protocol
        self.paused = False
        """True while the transport's write buffer is above its high-water mark."""
        self.on_drain: Callable[[], None] | None = None
        """Called (from the loop) when the buffer fell below its low-water mark again."""
        self.arrivals: deque[float] = deque(maxlen=MAX_ARRIVALS)

    @property
    def open(self) -> bool:
        p = self._protocol
        return not (p.close_sent or p.disconnected)

    def write(self, frame: bytes) -> None:
        """Write whole frames (one or several concatenated); nothing once the socket is closing."""
        p = self._protocol
        if not (p.close_sent or p.disconnected):
            p.transport.write(frame)


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's ``websockets-sansio`` protocol plus :class:`DirectFrames` and a stall-tolerant keepalive."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.frames_ext = DirectFrames(self)
        self.read_at = 0.0
        self.received_at = 0.0
        self.queued_bytes = 0
        self.pong_due = 0.0
        self.stall_grace_used = False

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        if self.response.status_code == 101:
            self.scope["extensions"][EXTENSION] = self.frames_ext

    def data_received(self, data: bytes) -> None:
        self.read_at = self.received_at = self.loop.time()
        super().data_received(data)

    def send_receive_event_to_app(self) -> None:
        size = sum(len(part) for part in self.frames)
        before = self.queue.qsize()
        super().send_receive_event_to_app()
        if self.queue.qsize() > before:
            self.frames_ext.arrivals.append(self.read_at)
            self.queued_bytes += size
            if (self.read_paused and self.queue.qsize() < READ_AHEAD_MESSAGES  # type: ignore[has-type]
                    and self.queued_bytes < READ_AHEAD_BYTES and not self.close_sent):
                self.read_paused = False
                self.transport.resume_reading()

    async def receive(self) -> Any:
        message = await super().receive()
        if self.queue.empty():
            self.queued_bytes = 0
        elif message["type"] == "websocket.receive":
            data = message.get("text") or message.get("bytes") or b""
            self.queued_bytes = max(0, self.queued_bytes - len(data))  # text: characters, close enough
        return message

    def pause_writing(self) -> None:
        super().pause_writing()
        self.frames_ext.paused = True

    def resume_writing(self) -> None:
        super().resume_writing()
        self.frames_ext.paused = False
        callback = self.frames_ext.on_drain
        if callback is not None:
            callback()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.frames_ext.paused = False
        callback, self.frames_ext.on_drain = self.frames_ext.on_drain, None
        if callback is not None:
            callback()

    def send_keepalive_ping(self) -> None:
        super().send_keepalive_ping()
        self.stall_grace_used = False
        if self.ping_timeout is not None:
            self.pong_due = self.ping_sent_at + self.ping_timeout

    def keepalive_timeout(self) -> None:
        if self.close_sent or self.transport.is_closing():
            return
        now = self.loop.time()
        if self.received_at >= self.ping_sent_at:
            # The peer is talking (its pong may still be unread behind other frames): alive.
            self.pong_timer = None
            self.pending_ping_payload = None
            self.schedule_ping()
            return
        if now - self.pong_due > LATE_TIMER_S and not self.stall_grace_used:
            self.stall_grace_used = True
            self.pong_timer = self.loop.call_later(STALL_GRACE_S, self.keepalive_timeout)
            return
        super().keepalive_timeout()


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The WebSocket options of ``uvicorn.Config`` for this server (``webinar serve`` and the test server)."""
    return {
        "ws": WebSocketProtocol,
        "ws_max_size": 1 << 20,
        "ws_per_message_deflate": False,
        "ws_ping_interval": settings.ws_ping_interval_s or None,
        "ws_ping_timeout": settings.ws_ping_timeout_s,
    }
