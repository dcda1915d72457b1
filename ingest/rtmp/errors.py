"""The one error type of the RTMP core."""

from __future__ import annotations

__all__ = ["RTMPProtocolError"]


class RTMPProtocolError(Exception):
    """The peer broke the RTMP protocol or a documented limit of this server.

    Raised by the handshake, the chunk stream and :class:`ServerConnection`.
    The message is one human-readable line meant for the log. After it is
    raised, the connection is dead: the caller closes the socket.
    """
