"""RTMP chunk stream: reassembly of incoming messages and chunking of outgoing ones (sans-I/O).

Spec: Adobe RTMP 1.0 (2012), section 5.3 (chunking) and 5.4 (protocol
control messages). :class:`ChunkReader` handles:

- basic headers of 1, 2 and 3 bytes (chunk stream ids 2..65599);
- message headers of type 0 (absolute timestamp), 1 and 2 (timestamp deltas)
  and 3 (continuation, or a new message reusing the previous header and
  delta), extended timestamps (also repeated on type-3 chunks, as ffmpeg
  and librtmp write them); timestamps are 32-bit and wrap modulo 2**32;
- Set Chunk Size (type 1) and Abort (type 2), applied at once and consumed.

Limits, all raising :class:`RTMPProtocolError` (documented defaults, each
overridable in the constructor):

- chunk size between :data:`MIN_CHUNK_SIZE` and :data:`MAX_CHUNK_SIZE`;
- message length up to :data:`MAX_MESSAGE_SIZE`;
- at most :data:`MAX_CHUNK_STREAMS` chunk stream ids in use at once;
- at most :data:`MAX_PARTIAL_BYTES` of partially received messages held
  across all chunk streams.

:class:`ChunkWriter` always writes a type-0 header on the first chunk of a
message and type-3 headers on continuations.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Final

from ingest.rtmp.errors import RTMPProtocolError

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "MAX_CHUNK_SIZE",
    "MAX_CHUNK_STREAMS",
    "MAX_MESSAGE_SIZE",
    "MAX_PARTIAL_BYTES",
    "MIN_CHUNK_SIZE",
    "MSG_ABORT",
    "MSG_ACKNOWLEDGEMENT",
    "MSG_AGGREGATE",
    "MSG_AUDIO",
    "MSG_COMMAND_AMF0",
    "MSG_COMMAND_AMF3",
    "MSG_DATA_AMF0",
    "MSG_DATA_AMF3",
    "MSG_SET_CHUNK_SIZE",
    "MSG_SET_PEER_BANDWIDTH",
    "MSG_SHARED_OBJECT_AMF0",
    "MSG_SHARED_OBJECT_AMF3",
    "MSG_USER_CONTROL",
    "MSG_VIDEO",
    "MSG_WINDOW_ACK_SIZE",
    "UC_PING_REQUEST",
    "UC_PING_RESPONSE",
    "UC_SET_BUFFER_LENGTH",
    "UC_STREAM_BEGIN",
    "UC_STREAM_DRY",
    "UC_STREAM_EOF",
    "UC_STREAM_IS_RECORDED",
    "ChunkReader",
    "ChunkWriter",
    "Message",
    "acknowledgement_payload",
    "set_chunk_size_payload",
    "set_peer_bandwidth_payload",
    "user_control_payload",
    "window_ack_size_payload",
]

DEFAULT_CHUNK_SIZE: Final = 128
"""Chunk size (bytes) of both directions until a Set Chunk Size message changes it."""

MIN_CHUNK_SIZE: Final = 1
"""Smallest chunk size a peer may set (bytes); 0 is refused."""

MAX_CHUNK_SIZE: Final = 16 * 1024 * 1024
"""Largest chunk size a peer may set (16 MiB; a message is at most 16 MiB - 1 anyway)."""

MAX_MESSAGE_SIZE: Final = 8 * 1024 * 1024
"""Default largest message accepted (8 MiB): a 4K key frame fits with room to spare."""

MAX_CHUNK_STREAMS: Final = 64
"""Default most chunk stream ids with state at once (encoders use fewer than 10)."""

MAX_PARTIAL_BYTES: Final = 16 * 1024 * 1024
"""Default most bytes of incomplete messages held across all chunk streams (16 MiB)."""

MSG_SET_CHUNK_SIZE: Final = 1
MSG_ABORT: Final = 2
MSG_ACKNOWLEDGEMENT: Final = 3
MSG_USER_CONTROL: Final = 4
MSG_WINDOW_ACK_SIZE: Final = 5
MSG_SET_PEER_BANDWIDTH: Final = 6
MSG_AUDIO: Final = 8
MSG_VIDEO: Final = 9
MSG_DATA_AMF3: Final = 15
MSG_SHARED_OBJECT_AMF3: Final = 16
MSG_COMMAND_AMF3: Final = 17
MSG_DATA_AMF0: Final = 18
MSG_SHARED_OBJECT_AMF0: Final = 19
MSG_COMMAND_AMF0: Final = 20
MSG_AGGREGATE: Final = 22

UC_STREAM_BEGIN: Final = 0
UC_STREAM_EOF: Final = 1
UC_STREAM_DRY: Final = 2
UC_SET_BUFFER_LENGTH: Final = 3
UC_STREAM_IS_RECORDED: Final = 4
UC_PING_REQUEST: Final = 6
UC_PING_RESPONSE: Final = 7

_EXTENDED: Final = 0xFFFFFF
_U32 = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class Message:
    """One reassembled RTMP message.

    ``timestamp`` is the 32-bit millisecond timestamp (wraps modulo 2**32);
    ``stream_id`` the message stream id (0 for control and connection
    commands); ``chunk_stream_id`` the chunk stream it arrived on.
    """

    type_id: int
    stream_id: int
    timestamp: int
    payload: bytes
    chunk_stream_id: int = 0


@dataclass(slots=True)
class _ChunkStream:
    timestamp: int = 0
    delta: int = 0
    length: int = 0
    type_id: int = 0
    stream_id: int = 0
    extended: bool = False
    partial: bytearray | None = field(default=None)


class ChunkReader:
    """Reassemble RTMP messages from the chunk stream sent by a peer.

    Feed bytes with :meth:`feed`, then call :meth:`next_message` until it
    returns ``None`` (more bytes needed). Set Chunk Size and Abort messages
    are applied and not returned. Every violation raises
    :class:`RTMPProtocolError`; the reader must not be used afterwards.
    """

    def __init__(
        self,
        *,
        max_message_size: int = MAX_MESSAGE_SIZE,
        max_chunk_streams: int = MAX_CHUNK_STREAMS,
        max_partial_bytes: int = MAX_PARTIAL_BYTES,
    ) -> None:
        self.chunk_size = DEFAULT_CHUNK_SIZE
        """Current incoming chunk size (bytes)."""
        self.max_message_size = max_message_size
        self.max_chunk_streams = max_chunk_streams
        self.max_partial_bytes = max_partial_bytes
        self.bytes_received = 0
        """Total bytes fed so far (for acknowledgements; not wrapped)."""
        self._buffer: bytes | bytearray = b""
        self._pos = 0
        self._streams: dict[int, _ChunkStream] = {}
        self._partial_bytes = 0

    @property
    def buffered(self) -> int:
        """Bytes fed but not yet parsed."""
        return len(self._buffer) - self._pos

    def feed(self, data: bytes) -> None:
        """Append received bytes (kept without a copy when nothing else is buffered)."""
        self.bytes_received += len(data)
        buffer = self._buffer
        if self._pos >= len(buffer):  # all parsed: the new bytes become the buffer
            self._buffer = data if type(data) is bytes else bytes(data)
            self._pos = 0
            return
        if type(buffer) is bytes:
            buffer = self._buffer = bytearray(memoryview(buffer)[self._pos :])
            self._pos = 0
        elif self._pos >= len(buffer) // 2:
            del buffer[: self._pos]
            self._pos = 0
        buffer += data

    def next_message(self) -> Message | None:
        """Parse chunks until a message completes; ``None`` if more bytes are needed."""
        while True:
            result = self._read_chunk()
            if result is None:
                return None
            if isinstance(result, Message):
                if result.type_id == MSG_SET_CHUNK_SIZE:
                    self._apply_set_chunk_size(result.payload)
                    continue
                if result.type_id == MSG_ABORT:
                    self._apply_abort(result.payload)
                    continue
                return result

    def _apply_set_chunk_size(self, payload: bytes) -> None:
        if len(payload) < 4:
            raise RTMPProtocolError(f"Set Chunk Size message of {len(payload)} bytes (4 expected)")
        (size,) = _U32.unpack_from(payload)
        if not MIN_CHUNK_SIZE <= size <= MAX_CHUNK_SIZE:
            raise RTMPProtocolError(f"absurd chunk size {size} (accepted: {MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE} bytes)")
        self.chunk_size = size

    def _apply_abort(self, payload: bytes) -> None:
        if len(payload) < 4:
            raise RTMPProtocolError(f"Abort message of {len(payload)} bytes (4 expected)")
        (csid,) = _U32.unpack_from(payload)
        stream = self._streams.get(csid)
        if stream is not None and stream.partial is not None:
            self._partial_bytes -= len(stream.partial)
            stream.partial = None

    def _read_chunk(self) -> Message | bool | None:
        """Parse one chunk. ``None``: need more bytes; ``True``: chunk consumed, no message yet."""
        buf = self._buffer
        end = len(buf)
        pos = self._pos
        if pos >= end:
            return None
        first = buf[pos]
        fmt = first >> 6
        csid = first & 0x3F
        pos += 1
        if csid == 0:
            if pos + 1 > end:
                return None
            csid = 64 + buf[pos]
            pos += 1
        elif csid == 1:
            if pos + 2 > end:
                return None
            csid = 64 + buf[pos] + (buf[pos + 1] << 8)
            pos += 2

        stream = self._streams.get(csid)
        if fmt != 0 and stream is None:
            raise RTMPProtocolError(f"chunk stream {csid} starts with a type-{fmt} header (type 0 expected)")
        header_size = (11, 7, 3, 0)[fmt]
        if pos + header_size > end:
            return None
        ts_field = 0
        length = type_id = stream_id = 0
        if fmt <= 2:
            ts_field = (buf[pos] << 16) | (buf[pos + 1] << 8) | buf[pos + 2]
        if fmt <= 1:
            length = (buf[pos + 3] << 16) | (buf[pos + 4] << 8) | buf[pos + 5]
            type_id = buf[pos + 6]
        if fmt == 0:
            stream_id = int.from_bytes(buf[pos + 7 : pos + 11], "little")
        pos += header_size

        continuing = stream is not None and stream.partial is not None
        if fmt != 3 and continuing:
            raise RTMPProtocolError(f"type-{fmt} header on chunk stream {csid} while a message is incomplete")
        extended = ts_field == _EXTENDED if fmt <= 2 else (stream is not None and stream.extended)
        ext_value = 0
        if extended:
            if pos + 4 > end:
                return None
            (ext_value,) = _U32.unpack_from(buf, pos)
            pos += 4

        if fmt == 3 and continuing:
            assert stream is not None and stream.partial is not None
            remaining = stream.length - len(stream.partial)
            take = min(remaining, self.chunk_size)
            if pos + take > end:
                return None
            stream.partial += buf[pos : pos + take]
            self._partial_bytes += take
            self._pos = pos + take
            return self._complete_if_done(csid, stream)

        # A new message on this chunk stream: compute its header.
        if fmt == 0:
            if stream is None:
                if len(self._streams) >= self.max_chunk_streams:
                    raise RTMPProtocolError(f"more than {self.max_chunk_streams} chunk streams in use")
                stream = _ChunkStream()
            timestamp = ext_value if extended else ts_field
            new_delta = timestamp
            new_ts = timestamp
        else:
            assert stream is not None
            if extended:
                new_delta = ext_value
            elif fmt == 3:
                new_delta = stream.delta
            else:
                new_delta = ts_field
            new_ts = (stream.timestamp + new_delta) & 0xFFFFFFFF
            stream_id = stream.stream_id
            if fmt >= 2:
                length, type_id = stream.length, stream.type_id
        if length > self.max_message_size:
            raise RTMPProtocolError(
                f"message of {length} bytes on chunk stream {csid} exceeds the {self.max_message_size}-byte limit"
            )
        chunk_size = self.chunk_size
        take = min(length, chunk_size)
        if pos + take > end:
            return None
        if length > take:
            whole = self._whole_message(pos, csid, length, extended)
            if whole is not None:  # every chunk of the message is here, none interleaved
                payload, self._pos = whole
                self._commit(csid, stream, new_ts, new_delta, length, type_id, stream_id, extended, None)
                return Message(type_id, stream_id, new_ts, payload, csid)
        if self._partial_bytes + take > self.max_partial_bytes:
            raise RTMPProtocolError(f"more than {self.max_partial_bytes} bytes of incomplete messages buffered")
        # Commit: the whole chunk is available.
        self._commit(csid, stream, new_ts, new_delta, length, type_id, stream_id, extended,
                     bytearray(buf[pos : pos + take]))
        self._partial_bytes += take
        self._pos = pos + take
        return self._complete_if_done(csid, stream)

    def _commit(
        self, csid: int, stream: _ChunkStream, timestamp: int, delta: int, length: int, type_id: int,
        stream_id: int, extended: bool, partial: bytearray | None,
    ) -> None:
        """Store the header a chunk of ``csid`` just used (later chunks inherit it)."""
        stream.timestamp = timestamp
        stream.delta = delta
        stream.length = length
        stream.type_id = type_id
        stream.stream_id = stream_id
        stream.extended = extended
        stream.partial = partial
        self._streams[csid] = stream

    def _whole_message(self, pos: int, csid: int, length: int, extended: bool) -> tuple[bytes, int] | None:
        """Fast path: the payload of a multi-chunk message whose first chunk's data starts at ``pos``,
        and the position after it, if all of it is buffered with no other chunk stream in between;
        ``None`` otherwise (the chunk-by-chunk path then handles it)."""
        buf = self._buffer
        chunk_size = self.chunk_size
        continuations = (length - 1) // chunk_size
        header = _continuation_header(csid)
        first = header[0] if len(header) == 1 else -1
        step = len(header) + (4 if extended else 0)
        end = pos + length + continuations * step
        if end > len(buf):
            return None
        spans = []
        start = pos
        left = length
        while True:
            take = min(left, chunk_size)
            spans.append((start, start + take))
            left -= take
            if not left:
                break
            start += take
            if (buf[start] != first) if first >= 0 else (buf[start : start + len(header)] != header):
                return None  # another chunk stream interleaved: take the general path
            start += step
        with memoryview(buf) as view:
            payload = b"".join([view[a:b] for a, b in spans])
        return payload, end

    def _complete_if_done(self, csid: int, stream: _ChunkStream) -> Message | bool:
        assert stream.partial is not None
        if len(stream.partial) < stream.length:
            if self._partial_bytes > self.max_partial_bytes:
                raise RTMPProtocolError(f"more than {self.max_partial_bytes} bytes of incomplete messages buffered")
            return True
        payload = bytes(stream.partial)
        self._partial_bytes -= len(payload)
        stream.partial = None
        return Message(stream.type_id, stream.stream_id, stream.timestamp, payload, csid)


_CONTINUATION_HEADERS: Final = tuple(bytes(((3 << 6) | csid,)) for csid in range(64))


def _continuation_header(csid: int) -> bytes:
    """The basic header of a type-3 chunk on ``csid``."""
    return _CONTINUATION_HEADERS[csid] if 2 <= csid <= 63 else _basic_header(3, csid)


def _basic_header(fmt: int, csid: int) -> bytes:
    if 2 <= csid <= 63:
        return bytes(((fmt << 6) | csid,))
    if 64 <= csid <= 319:
        return bytes((fmt << 6, csid - 64))
    if 320 <= csid <= 65599:
        rest = csid - 64
        return bytes(((fmt << 6) | 1, rest & 0xFF, rest >> 8))
    raise ValueError(f"chunk stream id {csid} outside 2..65599")


class ChunkWriter:
    """Split outgoing messages into chunks of :attr:`chunk_size` bytes."""

    def __init__(self) -> None:
        self.chunk_size = DEFAULT_CHUNK_SIZE
        """Current outgoing chunk size (bytes)."""

    def message(self, csid: int, type_id: int, stream_id: int, timestamp: int, payload: bytes) -> bytes:
        """Encode one message as chunks (type-0 header, then type-3 continuations).

        ``timestamp`` is taken modulo 2**32; values from 0xFFFFFF use the
        extended timestamp field, repeated on every continuation chunk.
        Raises ``ValueError`` for an invalid chunk stream id or a payload
        longer than 16 MiB - 1 (local programming errors, not peer input).
        """
        if len(payload) > 0xFFFFFF:
            raise ValueError("RTMP message payload longer than 16 MiB - 1")
        timestamp &= 0xFFFFFFFF
        extended = timestamp >= _EXTENDED
        out = bytearray(_basic_header(0, csid))
        out += (_EXTENDED if extended else timestamp).to_bytes(3, "big")
        out += len(payload).to_bytes(3, "big")
        out.append(type_id & 0xFF)
        out += (stream_id & 0xFFFFFFFF).to_bytes(4, "little")
        if extended:
            out += _U32.pack(timestamp)
        continuation = _basic_header(3, csid) + (_U32.pack(timestamp) if extended else b"")
        for offset in range(0, max(len(payload), 1), self.chunk_size):
            if offset:
                out += continuation
            out += payload[offset : offset + self.chunk_size]
        return bytes(out)

    def set_chunk_size(self, size: int) -> bytes:
        """Encode a Set Chunk Size message, then use ``size`` for the following messages."""
        if not MIN_CHUNK_SIZE <= size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk size {size} outside {MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE}")
        data = self.message(2, MSG_SET_CHUNK_SIZE, 0, 0, set_chunk_size_payload(size))
        self.chunk_size = size
        return data

    def control(self, type_id: int, payload: bytes) -> bytes:
        """Encode a protocol control or user control message (chunk stream 2, message stream 0)."""
        return self.message(2, type_id, 0, 0, payload)


def set_chunk_size_payload(size: int) -> bytes:
    """Payload of a Set Chunk Size message (type 1)."""
    return _U32.pack(size & 0x7FFFFFFF)


def window_ack_size_payload(size: int) -> bytes:
    """Payload of a Window Acknowledgement Size message (type 5)."""
    return _U32.pack(size)


def set_peer_bandwidth_payload(size: int, limit_type: int = 2) -> bytes:
    """Payload of a Set Peer Bandwidth message (type 6); ``limit_type`` 0 hard, 1 soft, 2 dynamic."""
    return _U32.pack(size) + bytes((limit_type,))


def acknowledgement_payload(sequence_number: int) -> bytes:
    """Payload of an Acknowledgement message (type 3): bytes received so far, modulo 2**32."""
    return _U32.pack(sequence_number & 0xFFFFFFFF)


def user_control_payload(event_type: int, *values: int) -> bytes:
    """Payload of a User Control message (type 4): 16-bit event type and 32-bit values."""
    return event_type.to_bytes(2, "big") + b"".join(_U32.pack(v & 0xFFFFFFFF) for v in values)
