"""SRT stream id -> stream key (sans-I/O).

A publisher names its stream key in the SRT stream id (``SRTO_STREAMID``,
at most :data:`MAX_STREAM_ID` bytes). Two spellings are accepted:

- the plain key: ``streamid=KEY``;
- the SRT access-control syntax (Haivision "Access Control Guidelines"):
  ``#!::r=KEY,m=publish``. ``r`` (resource name) is the key; ``m`` (mode)
  must be ``publish``: ``request`` and ``bidirectional`` are refused since
  this server does not serve SRT playback. A missing ``m`` is taken as
  ``publish`` (the guidelines let it be omitted when the listener only
  receives). ``t`` (type), when given, must be ``stream``. Other standard
  and custom keys (``u``, ``h``, ``s``, ``user_*``...) are ignored. The
  nested form ``#!:{...}`` is not supported.

A key is 1-255 printable ASCII characters without spaces or commas.
Refusals raise :class:`StreamIdError` carrying the SRT rejection code that
the listen callback hands to ``srt_setrejectreason``.
"""

from __future__ import annotations

__all__ = [
    "MAX_KEY_LENGTH",
    "MAX_STREAM_ID",
    "REJ_BAD_MODE",
    "REJ_BAD_REQUEST",
    "REJ_FORBIDDEN",
    "REJ_ISE",
    "REJ_NOTSUP_MEDIA",
    "REJ_OVERLOAD",
    "REJ_UNIMPLEMENTED",
    "StreamIdError",
    "parse_stream_id",
]

MAX_STREAM_ID = 512
"""Longest stream id SRT carries, in bytes."""

MAX_KEY_LENGTH = 255
"""Longest accepted stream key, in characters."""

# Application rejection codes of SRT's access_control.h (HTTP status + 1000).
REJ_BAD_REQUEST = 1400
REJ_OVERLOAD = 1402
REJ_FORBIDDEN = 1403
REJ_BAD_MODE = 1405
REJ_NOTSUP_MEDIA = 1415
REJ_ISE = 1500
REJ_UNIMPLEMENTED = 1501


class StreamIdError(ValueError):
    """The stream id is refused; ``code`` is the SRT rejection code to send back."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _check_key(key: str) -> str:
    if not key:
        raise StreamIdError(REJ_BAD_REQUEST, "empty stream key")
    if len(key) > MAX_KEY_LENGTH:
        raise StreamIdError(REJ_BAD_REQUEST, "stream key too long")
    if not all("!" <= c <= "~" and c != "," for c in key):
        raise StreamIdError(REJ_BAD_REQUEST, "stream key has characters outside printable ASCII")
    return key


def parse_stream_id(stream_id: str | bytes) -> str:
    """Return the stream key carried by ``stream_id``, or raise :class:`StreamIdError`."""
    if isinstance(stream_id, bytes):
        if len(stream_id) > MAX_STREAM_ID:
            raise StreamIdError(REJ_BAD_REQUEST, "stream id too long")
        try:
            stream_id = stream_id.decode("utf-8")
        except UnicodeDecodeError:
            raise StreamIdError(REJ_BAD_REQUEST, "stream id is not UTF-8") from None
    if len(stream_id.encode("utf-8", "surrogatepass")) > MAX_STREAM_ID:
        raise StreamIdError(REJ_BAD_REQUEST, "stream id too long")
    if not stream_id.startswith("#!"):
        return _check_key(stream_id)
    if not stream_id.startswith("#!::"):
        raise StreamIdError(REJ_UNIMPLEMENTED, "only the '#!::' stream id syntax is supported")
    fields: dict[str, str] = {}
    for item in stream_id[4:].split(","):
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise StreamIdError(REJ_BAD_REQUEST, f"malformed stream id item {item[:32]!r}")
        if name in fields:
            raise StreamIdError(REJ_BAD_REQUEST, f"stream id key {name!r} given twice")
        fields[name] = value
    mode = fields.get("m", "publish")
    if mode in ("request", "bidirectional"):
        raise StreamIdError(REJ_BAD_MODE, f"mode {mode!r} refused: this server only receives streams")
    if mode != "publish":
        raise StreamIdError(REJ_BAD_REQUEST, f"unknown mode {mode[:32]!r}")
    if fields.get("t", "stream") != "stream":
        raise StreamIdError(REJ_NOTSUP_MEDIA, "only t=stream is supported")
    if "r" not in fields:
        raise StreamIdError(REJ_BAD_REQUEST, "stream id has no r= (stream key)")
    return _check_key(fields["r"])
