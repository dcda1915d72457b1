"""Server side of one RTMP publishing connection (sans-I/O).

:class:`ServerConnection` takes the bytes a publisher sends
(:meth:`~ServerConnection.receive_data`), returns :data:`Event` values, and
queues the bytes to answer (:meth:`~ServerConnection.data_to_send`). It has
no socket, no clock and no logging: the caller (``ingest.rtmp_listener``)
does the I/O, the timeouts and the decisions.

Conversation (what ffmpeg, OBS and hardware encoders do)::

    C0 C1 C2 (handshake)              -> S0 S1 S2
    connect(app, tcUrl...)            -> Window Ack Size, Set Peer Bandwidth,
                                         Set Chunk Size, _result(Connect.Success)
    releaseStream(name)               -> _result
    FCPublish(name)                   -> onFCPublish
    createStream()                    -> _result(stream id)
    publish(name, "live") on stream   -> event PublishRequested
       caller: accept_publish()       -> StreamBegin, onStatus(NetStream.Publish.Start)
            or reject_publish(reason) -> onStatus(error, NetStream.Publish.BadName); closing
    @setDataFrame/onMetaData, audio, video
                                      -> events Metadata, MediaConfig, MediaUnit
    FCUnpublish / deleteStream        -> event PublishEnded(clean=True): the encoder is done
    EOF while publishing              -> event PublishEnded(clean=False), then ConnectionClosed

Pause: after :class:`PublishRequested` the connection stops parsing
(further bytes are buffered, up to ``max_pending_bytes``) until the caller
answers with :meth:`~ServerConnection.accept_publish` or
:meth:`~ServerConnection.reject_publish`; the caller then calls
``receive_data(b"")`` to go on with what is buffered. So a
:class:`PublishRequested` is always the last event of the list it is in.

Stream key: the publish name, without its query string (kept in
:attr:`PublishRequested.query`). When the publish name is empty and the
app holds a ``/`` (``rtmp://host/live/KEY`` with an empty key field),
the last path component of the app is the key.

Errors: every protocol violation, malformed AMF0/FLV payload, unsupported
codec or exceeded limit raises :class:`RTMPProtocolError` (one line for the
log); the connection is dead afterwards (any later call raises it again).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Final, TypeAlias

from ingest import amf0
from ingest.flv import FLVError, FLVParser, split_tags
from ingest.rtmp.chunks import (
    MAX_CHUNK_STREAMS,
    MAX_MESSAGE_SIZE,
    MAX_PARTIAL_BYTES,
    MSG_ACKNOWLEDGEMENT,
    MSG_AGGREGATE,
    MSG_AUDIO,
    MSG_COMMAND_AMF0,
    MSG_COMMAND_AMF3,
    MSG_DATA_AMF0,
    MSG_DATA_AMF3,
    MSG_SET_PEER_BANDWIDTH,
    MSG_USER_CONTROL,
    MSG_VIDEO,
    MSG_WINDOW_ACK_SIZE,
    UC_PING_REQUEST,
    UC_PING_RESPONSE,
    UC_STREAM_BEGIN,
    ChunkReader,
    ChunkWriter,
    Message,
    acknowledgement_payload,
    set_peer_bandwidth_payload,
    user_control_payload,
    window_ack_size_payload,
)
from ingest.rtmp.errors import RTMPProtocolError
from ingest.rtmp.handshake import ServerHandshake
from player.media import AccessUnit, TrackConfig

__all__ = [
    "MAX_PENDING_BYTES",
    "MAX_STREAMS",
    "OUT_CHUNK_SIZE",
    "WINDOW_ACK_SIZE",
    "Connected",
    "ConnectionClosed",
    "ConnectionState",
    "Event",
    "MediaConfig",
    "MediaUnit",
    "Metadata",
    "PublishEnded",
    "PublishRequested",
    "ServerConnection",
    "parse_publish_target",
]

WINDOW_ACK_SIZE: Final = 2_500_000
"""Window Acknowledgement Size and Set Peer Bandwidth announced to the publisher (bytes)."""

OUT_CHUNK_SIZE: Final = 4096
"""Chunk size this server sets for what it sends (bytes)."""

MAX_STREAMS: Final = 8
"""Most message streams (``createStream``) one connection may open."""

MAX_PENDING_BYTES: Final = 4 * 1024 * 1024
"""Most bytes buffered, unparsed, while a publish decision is pending (4 MiB)."""

FMS_VERSION: Final = "FMS/3,0,1,123"
"""``fmsVer`` announced in the connect result (what encoders expect to see)."""

_CSID_COMMAND: Final = 3
_CSID_STREAM: Final = 5


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Connected:
    """The publisher sent ``connect``; the server accepted it (any app is accepted)."""

    app: str
    tc_url: str
    flash_ver: str


@dataclass(frozen=True, slots=True)
class PublishRequested:
    """The publisher asks to publish: answer with ``accept_publish()`` or ``reject_publish(reason)``.

    ``app`` and ``stream_key`` are normalised (query strings removed, see the
    module docstring); ``stream_key`` may be empty. ``query`` is the query
    string that followed the publish name (or the app), without ``?``.
    ``publish_type`` is "live", "record" or "append" as sent.
    """

    app: str
    stream_key: str
    stream_id: int
    query: str = ""
    publish_type: str = "live"
    tc_url: str = ""


@dataclass(frozen=True, slots=True)
class MediaConfig:
    """A track configuration (sent before the track's first unit, and again on change)."""

    config: TrackConfig


@dataclass(frozen=True, slots=True)
class MediaUnit:
    """One encoded audio or video frame."""

    unit: AccessUnit


@dataclass(frozen=True, slots=True)
class Metadata:
    """The ``onMetaData`` properties the encoder sent (informative: width, framerate...)."""

    values: dict[str, amf0.AMFValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PublishEnded:
    """An accepted publish ended (FCUnpublish, deleteStream, closeStream or end of connection).

    ``clean`` is True when the encoder said it stopped (one of the commands),
    False when the connection just ended under it (a drop, as far as the
    protocol can tell).
    """

    stream_id: int
    reason: str
    clean: bool = False


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The peer closed the connection (after :meth:`ServerConnection.receive_eof`)."""

    reason: str


Event: TypeAlias = Connected | PublishRequested | MediaConfig | MediaUnit | Metadata | PublishEnded | ConnectionClosed


class ConnectionState(Enum):
    """Where a :class:`ServerConnection` stands."""

    HANDSHAKE = "handshake"
    AWAIT_CONNECT = "await connect"
    CONNECTED = "connected"
    PUBLISH_PENDING = "publish pending"
    PUBLISHING = "publishing"
    CLOSING = "closing"
    """A refusal was queued: send what :meth:`ServerConnection.data_to_send` returns, then close."""
    CLOSED = "closed"


# --------------------------------------------------------------------------- helpers


def parse_publish_target(app: str, name: str) -> tuple[str, str, str]:
    """Normalise ``(app, publish name)`` into ``(app, stream_key, query)``.

    - ``"live"``, ``"KEY?token=1"`` -> ``("live", "KEY", "token=1")``
    - ``"live?token=1"``, ``"KEY"`` -> ``("live", "KEY", "token=1")``
    - ``"live/KEY"``, ``""`` -> ``("live", "KEY", "")``
    """
    app, _, app_query = app.partition("?")
    key, _, key_query = name.partition("?")
    app = app.strip("/")
    key = key.strip("/")
    if not key and "/" in app:
        app, key = app.rsplit("/", 1)
    return app, key, key_query or app_query


def _status(level: str, code: str, description: str, **extra: amf0.AMFValue) -> dict[str, amf0.AMFValue]:
    info: dict[str, amf0.AMFValue] = {"level": level, "code": code, "description": description}
    info.update(extra)
    return info


def _text(value: amf0.AMFValue) -> str:
    return value if isinstance(value, str) else ""


# --------------------------------------------------------------------------- connection


class ServerConnection:
    """One publisher connection, server side. See the module docstring for the conversation.

    Limits (constructor arguments, documented defaults): ``max_message_size``
    (:data:`~ingest.rtmp.chunks.MAX_MESSAGE_SIZE`), ``max_chunk_streams``,
    ``max_partial_bytes``, ``max_streams`` (:data:`MAX_STREAMS`),
    ``max_pending_bytes`` (:data:`MAX_PENDING_BYTES`). ``window_ack_size``
    and ``out_chunk_size`` are what the server announces after ``connect``.
    """

    def __init__(
        self,
        *,
        max_message_size: int = MAX_MESSAGE_SIZE,
        max_chunk_streams: int = MAX_CHUNK_STREAMS,
        max_partial_bytes: int = MAX_PARTIAL_BYTES,
        max_streams: int = MAX_STREAMS,
        max_pending_bytes: int = MAX_PENDING_BYTES,
        window_ack_size: int = WINDOW_ACK_SIZE,
        out_chunk_size: int = OUT_CHUNK_SIZE,
        s1_random: bytes | None = None,
    ) -> None:
        self.state = ConnectionState.HANDSHAKE
        self._handshake = ServerHandshake(s1_random)
        self._reader = ChunkReader(
            max_message_size=max_message_size,
            max_chunk_streams=max_chunk_streams,
            max_partial_bytes=max_partial_bytes,
        )
        self._writer = ChunkWriter()
        self._out = bytearray()
        self._max_streams = max_streams
        self._max_pending_bytes = max_pending_bytes
        self._window_ack_size = window_ack_size
        self._out_chunk_size = out_chunk_size
        self._peer_window = 0
        self._last_ack = 0
        self._next_stream_id = 1
        self._streams: set[int] = set()
        self._publish_stream: int | None = None
        self._publish_name = ""
        self._flv: FLVParser | None = None
        self._error: RTMPProtocolError | None = None
        self.app = ""
        """The app of ``connect`` as sent (it may hold a query string or the key, see
        :func:`parse_publish_target`)."""
        self.tc_url = ""
        """The tcUrl of ``connect``."""

    # ----------------------------------------------------------------- public API

    @property
    def closing(self) -> bool:
        """True when the caller should send :meth:`data_to_send` and close the connection."""
        return self.state in (ConnectionState.CLOSING, ConnectionState.CLOSED)

    @property
    def handshake_complete(self) -> bool:
        """True once the RTMP handshake is done."""
        return self.state is not ConnectionState.HANDSHAKE

    @property
    def bytes_received(self) -> int:
        """Bytes received after the handshake (what acknowledgements count)."""
        return self._reader.bytes_received

    @property
    def publishing(self) -> bool:
        """True while an accepted publish is live."""
        return self.state is ConnectionState.PUBLISHING

    def data_to_send(self) -> bytes:
        """Bytes to write to the publisher; empties the queue."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes from the publisher; return the events they complete.

        Raises :class:`RTMPProtocolError` on any violation (the connection is
        then dead). In the ``CLOSING`` state, input is ignored.
        """
        if self._error is not None:
            raise RTMPProtocolError(f"connection already failed: {self._error}")
        if self.state is ConnectionState.CLOSED:
            raise RTMPProtocolError("connection is closed")
        try:
            return self._receive(bytes(data))
        except RTMPProtocolError as exc:
            self._fail(exc)
            raise
        except (amf0.AMFError, FLVError) as exc:
            error = RTMPProtocolError(str(exc))
            self._fail(error)
            raise error from exc

    def receive_eof(self) -> list[Event]:
        """The peer closed its side: return the final events (PublishEnded if live, ConnectionClosed)."""
        events: list[Event] = []
        if self.state is ConnectionState.CLOSED:
            return events
        if self.state is ConnectionState.PUBLISHING and self._publish_stream is not None:
            events.append(PublishEnded(self._publish_stream, "connection closed by the publisher"))
        self._publish_stream = None
        self.state = ConnectionState.CLOSED
        events.append(ConnectionClosed("connection closed by the publisher"))
        return events

    def accept_publish(self) -> None:
        """Accept the pending publish: queue StreamBegin and ``NetStream.Publish.Start``."""
        if self.state is not ConnectionState.PUBLISH_PENDING or self._publish_stream is None:
            raise RuntimeError(f"no publish pending (state: {self.state.value})")
        stream_id = self._publish_stream
        self._control(MSG_USER_CONTROL, user_control_payload(UC_STREAM_BEGIN, stream_id))
        self._send_command(
            _CSID_STREAM,
            stream_id,
            "onStatus",
            0,
            None,
            _status(
                "status",
                "NetStream.Publish.Start",
                f"{self._publish_name} is now published.",
                details=self._publish_name,
            ),
        )
        self._flv = FLVParser()
        self.state = ConnectionState.PUBLISHING

    def reject_publish(self, reason: str, code: str = "NetStream.Publish.BadName") -> None:
        """Refuse the pending publish with an error ``onStatus`` (``code``, ``reason``); then closing.

        Encoders show the description; ffmpeg prints it and exits non-zero.
        """
        if self.state is not ConnectionState.PUBLISH_PENDING or self._publish_stream is None:
            raise RuntimeError(f"no publish pending (state: {self.state.value})")
        self._send_command(_CSID_STREAM, self._publish_stream, "onStatus", 0, None, _status("error", code, reason))
        self._publish_stream = None
        self.state = ConnectionState.CLOSING

    # ----------------------------------------------------------------- internals

    def _fail(self, error: RTMPProtocolError) -> None:
        self._error = error
        self.state = ConnectionState.CLOSED
        self._publish_stream = None

    def _receive(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        if self.state is ConnectionState.CLOSING:
            return events
        if self.state is ConnectionState.HANDSHAKE:
            rest = self._handshake.receive_data(data)
            self._out += self._handshake.data_to_send()
            if not self._handshake.done:
                return events
            self.state = ConnectionState.AWAIT_CONNECT
            data = rest
        self._reader.feed(data)
        if self.state is ConnectionState.PUBLISH_PENDING:
            if self._reader.buffered > self._max_pending_bytes:
                raise RTMPProtocolError(
                    f"more than {self._max_pending_bytes} bytes received while the publish decision is pending"
                )
            return events
        while self.state not in (ConnectionState.PUBLISH_PENDING, ConnectionState.CLOSING):
            message = self._reader.next_message()
            if message is None:
                break
            self._handle(message, events)
        self._maybe_acknowledge()
        return events

    def _maybe_acknowledge(self) -> None:
        received = self._reader.bytes_received
        if self._peer_window and received - self._last_ack >= self._peer_window:
            self._control(MSG_ACKNOWLEDGEMENT, acknowledgement_payload(received))
            self._last_ack = received

    def _control(self, type_id: int, payload: bytes) -> None:
        self._out += self._writer.control(type_id, payload)

    def _send_command(self, csid: int, stream_id: int, *values: amf0.AMFEncodable) -> None:
        self._out += self._writer.message(csid, MSG_COMMAND_AMF0, stream_id, 0, amf0.encode(*values))

    def _handle(self, message: Message, events: list[Event]) -> None:
        type_id = message.type_id
        payload = message.payload
        if type_id in (MSG_AUDIO, MSG_VIDEO, MSG_DATA_AMF0, MSG_DATA_AMF3, MSG_AGGREGATE):
            if self.state is ConnectionState.PUBLISHING and message.stream_id == self._publish_stream:
                self._handle_media(type_id, payload, message.timestamp, events, nested=False)
            return
        if type_id in (MSG_COMMAND_AMF0, MSG_COMMAND_AMF3):
            if type_id == MSG_COMMAND_AMF3 and payload[:1] == b"\x00":
                payload = payload[1:]
            self._handle_command(message.stream_id, amf0.decode(payload), events)
            return
        if type_id == MSG_USER_CONTROL:
            if len(payload) < 2:
                raise RTMPProtocolError(f"User Control message of {len(payload)} bytes")
            event_type = int.from_bytes(payload[:2], "big")
            if event_type == UC_PING_REQUEST:
                if len(payload) < 6:
                    raise RTMPProtocolError("PingRequest without its 4-byte timestamp")
                self._control(
                    MSG_USER_CONTROL, user_control_payload(UC_PING_RESPONSE, int.from_bytes(payload[2:6], "big"))
                )
            return
        if type_id == MSG_WINDOW_ACK_SIZE:
            if len(payload) < 4:
                raise RTMPProtocolError(f"Window Acknowledgement Size message of {len(payload)} bytes")
            size = int.from_bytes(payload[:4], "big")
            if size == 0:
                raise RTMPProtocolError("Window Acknowledgement Size of 0 bytes")
            self._peer_window = size
            return
        if type_id == MSG_SET_PEER_BANDWIDTH:
            if len(payload) < 5:
                raise RTMPProtocolError(f"Set Peer Bandwidth message of {len(payload)} bytes")
            return
        # Acknowledgements (we send little), shared objects, unknown types: nothing to do.

    def _handle_media(self, type_id: int, payload: bytes, timestamp: int, events: list[Event], nested: bool) -> None:
        parser = self._flv
        assert parser is not None
        if type_id == MSG_AUDIO:
            item = parser.parse_audio(payload, timestamp)
        elif type_id == MSG_VIDEO:
            item = parser.parse_video(payload, timestamp)
        elif type_id in (MSG_DATA_AMF0, MSG_DATA_AMF3):
            if type_id == MSG_DATA_AMF3 and payload[:1] == b"\x00":
                payload = payload[1:]
            metadata = parser.parse_script(payload)
            if metadata is not None:
                events.append(Metadata(metadata))
            return
        elif type_id == MSG_AGGREGATE and not nested:
            tags = split_tags(payload)
            if tags:
                base = tags[0].timestamp
                for tag in tags:
                    self._handle_media(
                        tag.tag_type, tag.body, (timestamp + tag.timestamp - base) & 0xFFFFFFFF, events, True
                    )
            return
        else:
            return
        if item is None:
            return
        if isinstance(item, AccessUnit):
            events.append(MediaUnit(item))
        else:
            events.append(MediaConfig(item))

    # ----------------------------------------------------------------- commands

    def _handle_command(self, stream_id: int, values: list[amf0.AMFValue], events: list[Event]) -> None:
        if len(values) < 2 or not isinstance(values[0], str) or not amf0.is_finite_number(values[1]):
            raise RTMPProtocolError("malformed command: expected a name and a transaction id")
        name = values[0]
        tid = values[1]
        assert isinstance(tid, (int, float))
        args = values[3:]
        if self.state is ConnectionState.AWAIT_CONNECT:
            if name != "connect":
                raise RTMPProtocolError(f"command {name!r} before connect")
            self._on_connect(tid, values[2] if len(values) > 2 else None, events)
            return
        if name == "connect":
            raise RTMPProtocolError("second connect on one connection")
        if name == "createStream":
            if len(self._streams) >= self._max_streams:
                raise RTMPProtocolError(f"more than {self._max_streams} streams created on one connection")
            new_id = self._next_stream_id
            self._next_stream_id += 1
            self._streams.add(new_id)
            self._send_command(_CSID_COMMAND, 0, "_result", tid, None, float(new_id))
        elif name == "publish":
            self._on_publish(stream_id, tid, args, events)
        elif name == "releaseStream":
            if tid:
                self._send_command(_CSID_COMMAND, 0, "_result", tid, None)
        elif name == "FCPublish":
            publish_name = _text(args[0]) if args else ""
            self._send_command(
                _CSID_COMMAND,
                0,
                "onFCPublish",
                0,
                None,
                {"code": "NetStream.Publish.Start", "description": publish_name},
            )
        elif name == "FCUnpublish":
            publish_name = _text(args[0]) if args else ""
            if self._publish_stream is not None:
                self._end_publish(self._publish_stream, "FCUnpublish", events, clean=True)
            self._send_command(
                _CSID_COMMAND,
                0,
                "onFCUnpublish",
                0,
                None,
                {"code": "NetStream.Unpublish.Success", "description": publish_name},
            )
            if tid:
                self._send_command(_CSID_COMMAND, 0, "_result", tid, None)
        elif name == "deleteStream":
            target = args[0] if args else None
            if amf0.is_finite_number(target):
                assert isinstance(target, (int, float))
                self._delete_stream(int(target), "deleteStream", events)
        elif name == "closeStream":
            self._delete_stream(stream_id, "closeStream", events)
        elif name == "play":
            self._send_command(
                _CSID_STREAM,
                stream_id,
                "onStatus",
                0,
                None,
                _status("error", "NetStream.Play.Failed", "this server only accepts publishing"),
            )
            self.state = ConnectionState.CLOSING
        elif tid:
            self._send_command(
                _CSID_COMMAND,
                0,
                "_error",
                tid,
                None,
                _status("error", "NetConnection.Call.Failed", f"unknown command {name[:64]!r}"),
            )

    def _on_connect(self, tid: float, command_object: amf0.AMFValue, events: list[Event]) -> None:
        props = command_object if isinstance(command_object, dict) else {}
        app = _text(props.get("app")).partition("?")[0].strip("/")
        self.app = _text(props.get("app"))
        self.tc_url = _text(props.get("tcUrl"))
        encoding = props.get("objectEncoding")
        object_encoding = float(encoding) if amf0.is_finite_number(encoding) else 0.0  # type: ignore[arg-type]
        self._control(MSG_WINDOW_ACK_SIZE, window_ack_size_payload(self._window_ack_size))
        self._control(MSG_SET_PEER_BANDWIDTH, set_peer_bandwidth_payload(self._window_ack_size, 2))
        self._out += self._writer.set_chunk_size(self._out_chunk_size)
        self._send_command(
            _CSID_COMMAND,
            0,
            "_result",
            tid,
            {"fmsVer": FMS_VERSION, "capabilities": 31.0, "mode": 1.0},
            _status(
                "status",
                "NetConnection.Connect.Success",
                "Connection succeeded.",
                objectEncoding=object_encoding,
            ),
        )
        self.state = ConnectionState.CONNECTED
        events.append(Connected(app=app, tc_url=self.tc_url, flash_ver=_text(props.get("flashVer"))))

    def _on_publish(self, stream_id: int, tid: float, args: list[amf0.AMFValue], events: list[Event]) -> None:
        if stream_id not in self._streams:
            raise RTMPProtocolError(f"publish on message stream {stream_id}, which was not created")
        if self.state is not ConnectionState.CONNECTED:
            raise RTMPProtocolError("publish while a publish is already live on this connection")
        name = _text(args[0]) if args else ""
        publish_type = _text(args[1]) if len(args) > 1 else ""
        app, key, query = parse_publish_target(self.app, name)
        self._publish_stream = stream_id
        self._publish_name = key
        self.state = ConnectionState.PUBLISH_PENDING
        events.append(
            PublishRequested(
                app=app,
                stream_key=key,
                stream_id=stream_id,
                query=query,
                publish_type=publish_type or "live",
                tc_url=self.tc_url,
            )
        )

    def _end_publish(self, stream_id: int, reason: str, events: list[Event], *, clean: bool) -> None:
        if self.state is ConnectionState.PUBLISHING and self._publish_stream == stream_id:
            events.append(PublishEnded(stream_id, reason, clean))
            self._publish_stream = None
            self._flv = None
            self.state = ConnectionState.CONNECTED

    def _delete_stream(self, stream_id: int, reason: str, events: list[Event]) -> None:
        self._end_publish(stream_id, reason, events, clean=True)
        self._streams.discard(stream_id)
