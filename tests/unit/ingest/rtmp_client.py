"""Hand-built RTMP client bytes for driving :class:`ServerConnection` in unit tests.

The chunk encoder here is written independently of ``ingest.rtmp.chunks``
(struct packing straight from the spec) so that tests of the reader do not
depend on the writer under test.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from ingest import amf0
from ingest.rtmp.chunks import ChunkReader, Message
from ingest.rtmp.session import Event, ServerConnection

C1_RANDOM = bytes((i * 7 + 3) & 0xFF for i in range(1528))


def c0c1(epoch: int = 1234) -> bytes:
    return b"\x03" + struct.pack(">II", epoch, 0) + C1_RANDOM


def basic_header(fmt: int, csid: int) -> bytes:
    if csid < 64:
        return bytes([(fmt << 6) | csid])
    if csid < 320:
        return bytes([fmt << 6, csid - 64])
    return bytes([(fmt << 6) | 1, (csid - 64) & 0xFF, (csid - 64) >> 8])


def chunk0(csid: int, timestamp: int, length: int, type_id: int, stream_id: int) -> bytes:
    """A type-0 chunk header (with an extended timestamp when needed)."""
    ext = timestamp >= 0xFFFFFF
    header = basic_header(0, csid)
    header += struct.pack(">I", 0xFFFFFF if ext else timestamp)[1:]
    header += struct.pack(">I", length)[1:] + bytes([type_id]) + struct.pack("<I", stream_id)
    if ext:
        header += struct.pack(">I", timestamp)
    return header


def chunked(
    payload: bytes, *, csid: int, type_id: int, stream_id: int = 0, timestamp: int = 0, chunk_size: int = 128
) -> bytes:
    """One message as a type-0 chunk then type-3 continuations (extended timestamp repeated)."""
    out = bytearray(chunk0(csid, timestamp, len(payload), type_id, stream_id))
    ext = struct.pack(">I", timestamp) if timestamp >= 0xFFFFFF else b""
    for offset in range(0, max(len(payload), 1), chunk_size):
        if offset:
            out += basic_header(3, csid) + ext
        out += payload[offset : offset + chunk_size]
    return bytes(out)


def command(name: str, tid: float, *args: amf0.AMFValue, stream_id: int = 0, chunk_size: int = 128) -> bytes:
    return chunked(amf0.encode(name, tid, *args), csid=3, type_id=20, stream_id=stream_id, chunk_size=chunk_size)


def set_chunk_size(size: int) -> bytes:
    return chunked(struct.pack(">I", size), csid=2, type_id=1)


def connect(app: str = "live", tc_url: str = "rtmp://127.0.0.1:1935/live", **extra: amf0.AMFValue) -> bytes:
    obj: dict[str, amf0.AMFValue] = {
        "app": app,
        "type": "nonprivate",
        "flashVer": "FMLE/3.0 (compatible; FMSc/1.0)",
        "tcUrl": tc_url,
    }
    obj.update(extra)
    return command("connect", 1, obj)


def publish_preamble(key: str = "good", app: str = "live") -> bytes:
    """What ffmpeg sends after the handshake up to and including publish (stream id 1)."""
    return (
        connect(app)
        + command("releaseStream", 2, None, key)
        + command("FCPublish", 3, None, key)
        + command("createStream", 4, None)
        + command("publish", 5, None, key, "live", stream_id=1)
    )


def media(type_id: int, body: bytes, timestamp: int, *, stream_id: int = 1, chunk_size: int = 128) -> bytes:
    csid = 4 if type_id == 9 else 6
    return chunked(body, csid=csid, type_id=type_id, stream_id=stream_id, timestamp=timestamp, chunk_size=chunk_size)


@dataclass
class ServerOutput:
    """Parses what the server sends, as a client would."""

    reader: ChunkReader = field(default_factory=ChunkReader)
    handshake_left: int = 1 + 1536 + 1536
    handshake: bytes = b""

    def feed(self, data: bytes) -> list[Message]:
        if self.handshake_left:
            take = min(self.handshake_left, len(data))
            self.handshake += data[:take]
            self.handshake_left -= take
            data = data[take:]
        self.reader.feed(data)
        messages = []
        while (message := self.reader.next_message()) is not None:
            messages.append(message)
        return messages


def commands(messages: list[Message]) -> list[list[amf0.AMFValue]]:
    return [amf0.decode(m.payload) for m in messages if m.type_id == 20]


class Client:
    """A scripted publisher talking to a :class:`ServerConnection` in memory."""

    def __init__(self, conn: ServerConnection | None = None) -> None:
        self.conn = conn if conn is not None else ServerConnection()
        self.output = ServerOutput()
        self.events: list[Event] = []
        self.messages: list[Message] = []

    def send(self, data: bytes) -> list[Event]:
        events = self.conn.receive_data(data)
        self.events += events
        self.messages += self.output.feed(self.conn.data_to_send())
        return events

    def handshake(self) -> None:
        self.send(c0c1())
        self.send(bytes(1536))
        assert self.conn.handshake_complete

    def drain(self) -> list[Message]:
        """Messages received from the server since the last drain."""
        self.messages += self.output.feed(self.conn.data_to_send())
        out, self.messages = self.messages, []
        return out
