"""RTMP ingest core (sans-I/O): handshake, chunk stream, server connection state machine.

The asyncio listener around it is :mod:`ingest.rtmp_listener`.
"""

from ingest.rtmp.errors import RTMPProtocolError
from ingest.rtmp.session import (
    Connected,
    ConnectionClosed,
    ConnectionState,
    Event,
    MediaConfig,
    MediaUnit,
    Metadata,
    PublishEnded,
    PublishRequested,
    ServerConnection,
    parse_publish_target,
)

__all__ = [
    "Connected",
    "ConnectionClosed",
    "ConnectionState",
    "Event",
    "MediaConfig",
    "MediaUnit",
    "Metadata",
    "PublishEnded",
    "PublishRequested",
    "RTMPProtocolError",
    "ServerConnection",
    "parse_publish_target",
]
