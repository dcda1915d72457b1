"""Server side of the RTMP handshake (sans-I/O).

Wire format (RTMP spec, section 5.2): the client sends C0 (1 byte, version 3)
and C1 (1536 bytes: time, zero/version, random); the server answers S0, S1
(its own 1536 bytes) and S2 (an echo of C1); the client then sends C2
(1536 bytes, an echo of S1).

Both the "simple" handshake (zeros in C1 bytes 4..7) and the digest-style
one that Flash-era clients, ffmpeg and OBS send are accepted: S1 carries a
zero version field, which tells digest-aware publishers that no server
digest is to be checked, and S2 echoes C1. C2 is read but not checked
(publishers fill it inconsistently).

Only version 3 (plain RTMP) is accepted; 6 (RTMPE) and anything else, e.g.
an HTTP request sent to the RTMP port, raise :class:`RTMPProtocolError` as
soon as the first byte arrives.
"""

from __future__ import annotations

import os
from enum import Enum
from typing import Final

from ingest.rtmp.errors import RTMPProtocolError

__all__ = ["HANDSHAKE_SIZE", "RTMP_VERSION", "HandshakeState", "ServerHandshake"]

RTMP_VERSION: Final = 3
"""The only protocol version byte accepted in C0."""

HANDSHAKE_SIZE: Final = 1536
"""Size in bytes of C1, C2, S1 and S2."""


class HandshakeState(Enum):
    """Where the server handshake stands."""

    AWAIT_C0C1 = "await C0+C1"
    AWAIT_C2 = "await C2"
    DONE = "done"


class ServerHandshake:
    """Server handshake state machine: feed client bytes, collect the bytes to send.

    ``s1_random`` (1528 bytes) fills S1 after its time and zero fields;
    random bytes are drawn when not given (tests pass fixed bytes).
    """

    def __init__(self, s1_random: bytes | None = None) -> None:
        if s1_random is None:
            s1_random = os.urandom(HANDSHAKE_SIZE - 8)
        if len(s1_random) != HANDSHAKE_SIZE - 8:
            raise ValueError(f"s1_random must be {HANDSHAKE_SIZE - 8} bytes")
        self._s1 = bytes(8) + s1_random
        self._buffer = bytearray()
        self._outgoing = bytearray()
        self.state = HandshakeState.AWAIT_C0C1
        self.client_epoch: int | None = None
        """The time field of C1 (client milliseconds, informative only)."""

    @property
    def done(self) -> bool:
        """True once C2 has been received."""
        return self.state is HandshakeState.DONE

    def receive_data(self, data: bytes) -> bytes:
        """Feed client bytes; return the bytes that follow the handshake (the chunk stream).

        Returns ``b""`` until the handshake is done. Raises
        :class:`RTMPProtocolError` on an unsupported version byte, or if
        called again after the handshake is done with the trailing bytes
        already returned.
        """
        if self.state is HandshakeState.DONE:
            raise RTMPProtocolError("handshake already complete")
        self._buffer += data
        if self.state is HandshakeState.AWAIT_C0C1:
            if not self._buffer:
                return b""
            version = self._buffer[0]
            if version != RTMP_VERSION:
                raise RTMPProtocolError(
                    f"unsupported RTMP version byte 0x{version:02x} in C0 "
                    f"(expected 0x03{'; RTMPE is not supported' if version in (6, 8, 9) else ''})"
                )
            if len(self._buffer) < 1 + HANDSHAKE_SIZE:
                return b""
            c1 = bytes(self._buffer[1 : 1 + HANDSHAKE_SIZE])
            del self._buffer[: 1 + HANDSHAKE_SIZE]
            self.client_epoch = int.from_bytes(c1[0:4], "big")
            self._outgoing += bytes((RTMP_VERSION,)) + self._s1 + c1
            self.state = HandshakeState.AWAIT_C2
        if self.state is HandshakeState.AWAIT_C2:
            if len(self._buffer) < HANDSHAKE_SIZE:
                return b""
            rest = bytes(self._buffer[HANDSHAKE_SIZE:])
            self._buffer.clear()
            self.state = HandshakeState.DONE
            return rest
        return b""  # pragma: no cover - every state is handled above

    def data_to_send(self) -> bytes:
        """Bytes to write to the client (S0+S1+S2 once C0+C1 is in); empties the queue."""
        out = bytes(self._outgoing)
        self._outgoing.clear()
        return out
