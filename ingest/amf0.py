"""AMF0 (Action Message Format, version 0) encoder and decoder.

AMF0 carries RTMP commands (``connect``, ``publish``...) and data messages
(``@setDataFrame``/``onMetaData``). This module is pure: bytes in, Python
values out, and the reverse.

Type mapping (decode direction; encode accepts the same types):

=====================  =====================================================
AMF0 marker            Python value
=====================  =====================================================
number (0x00)          ``float`` (``int`` is accepted by the encoder)
boolean (0x01)         ``bool``
string (0x02)          ``str`` (encoder switches to long string above 65535
                       UTF-8 bytes)
object (0x03)          ``dict[str, AMFValue]``
null (0x05)            ``None``
undefined (0x06)       :data:`UNDEFINED`
ECMA array (0x08)      :class:`ECMAArray` (a ``dict`` subclass)
strict array (0x0A)    ``list``
date (0x0B)            :class:`AMFDate` (milliseconds since the Unix epoch
                       and the advisory time-zone field)
long string (0x0C)     ``str``
unsupported (0x0D)     :data:`UNDEFINED`
XML document (0x0F)    ``str``
=====================  =====================================================

Not supported (decode raises :class:`AMFError`): movieclip (0x04) and
recordset (0x0E), which are reserved; reference (0x07); typed object (0x10);
the AVM+ switch to AMF3 (0x11). RTMP encoders do not send them in the
messages an ingest server reads.

Strings must be valid UTF-8. Every malformed, truncated or over-limit input
raises :class:`AMFError` and nothing else.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, TypeAlias, Union

__all__ = [
    "MAX_CONTAINER_ENTRIES",
    "MAX_DEPTH",
    "MAX_STRING_BYTES",
    "MAX_TOTAL_VALUES",
    "UNDEFINED",
    "AMFDate",
    "AMFEncodable",
    "AMFError",
    "AMFValue",
    "ECMAArray",
    "Undefined",
    "decode",
    "decode_value",
    "encode",
    "encode_value",
]

MAX_DEPTH: Final = 32
"""Deepest nesting of objects/arrays accepted by :func:`decode` and :func:`encode`."""

MAX_CONTAINER_ENTRIES: Final = 4096
"""Most entries (properties or elements) in one object or array."""

MAX_TOTAL_VALUES: Final = 65536
"""Most values (scalars and containers, all levels) in one :func:`decode` call."""

MAX_STRING_BYTES: Final = 1 << 20
"""Longest string (UTF-8 bytes) accepted, for strings, long strings, XML and keys (1 MiB)."""

_NUMBER: Final = 0x00
_BOOLEAN: Final = 0x01
_STRING: Final = 0x02
_OBJECT: Final = 0x03
_NULL: Final = 0x05
_UNDEFINED: Final = 0x06
_ECMA_ARRAY: Final = 0x08
_OBJECT_END: Final = 0x09
_STRICT_ARRAY: Final = 0x0A
_DATE: Final = 0x0B
_LONG_STRING: Final = 0x0C
_UNSUPPORTED: Final = 0x0D
_XML_DOCUMENT: Final = 0x0F

_MARKER_NAMES: Final = {
    0x04: "movieclip (reserved)",
    0x07: "reference",
    0x0E: "recordset (reserved)",
    0x10: "typed object",
    0x11: "AVM+ (AMF3) switch",
}

_DOUBLE = struct.Struct(">d")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_DATE_STRUCT = struct.Struct(">dh")


class AMFError(ValueError):
    """Malformed, truncated, unsupported or over-limit AMF0 data (or an unencodable value)."""


class Undefined:
    """The AMF0 ``undefined`` value; use the singleton :data:`UNDEFINED`."""

    _instance: Undefined | None = None

    def __new__(cls) -> Undefined:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNDEFINED"

    def __reduce__(self) -> str:
        return "UNDEFINED"


UNDEFINED: Final = Undefined()
"""Decoded AMF0 ``undefined`` (and ``unsupported``) markers."""


class ECMAArray(dict[str, "AMFValue"]):
    """An AMF0 ECMA array (associative array): a ``dict`` that encodes with marker 0x08.

    ``onMetaData`` is usually sent as an ECMA array.
    """


@dataclass(frozen=True, slots=True)
class AMFDate:
    """An AMF0 date: ``milliseconds`` since 1970-01-01T00:00:00Z, ``timezone`` in minutes.

    The time-zone field is reserved by the spec ("should be 0") and kept as read.
    """

    milliseconds: float
    timezone: int = 0


AMFValue: TypeAlias = Union[
    float, int, bool, str, Undefined, AMFDate, "ECMAArray", dict[str, "AMFValue"], list["AMFValue"], None
]
"""A decoded AMF0 value (see the table in the module docstring)."""

AMFEncodable: TypeAlias = (
    float | int | bool | str | Undefined | AMFDate | Mapping[str, "AMFEncodable"] | Sequence["AMFEncodable"] | None
)
"""What the encoder accepts: any mapping encodes as an object (an :class:`ECMAArray` as an
ECMA array), a list or tuple as a strict array; other sequences raise :class:`AMFError`."""


# --------------------------------------------------------------------------- decoding


class _Decoder:
    __slots__ = ("data", "pos", "values")

    def __init__(self, data: bytes, pos: int) -> None:
        self.data = data
        self.pos = pos
        self.values = 0

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if n < 0 or end > len(self.data):
            raise AMFError(
                f"truncated AMF0 data: need {n} bytes at offset {self.pos}, have {len(self.data) - self.pos}"
            )
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def u8(self) -> int:
        if self.pos >= len(self.data):
            raise AMFError(f"truncated AMF0 data at offset {self.pos}")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def u16(self) -> int:
        (value,) = _U16.unpack(self.take(2))
        return int(value)

    def u32(self) -> int:
        (value,) = _U32.unpack(self.take(4))
        return int(value)

    def utf8(self, length: int) -> str:
        if length > MAX_STRING_BYTES:
            raise AMFError(f"AMF0 string of {length} bytes exceeds the {MAX_STRING_BYTES}-byte limit")
        raw = self.take(length)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise AMFError(f"AMF0 string is not valid UTF-8 at offset {self.pos - length}") from exc

    def count_value(self) -> None:
        self.values += 1
        if self.values > MAX_TOTAL_VALUES:
            raise AMFError(f"AMF0 data holds more than {MAX_TOTAL_VALUES} values")

    def value(self, depth: int) -> AMFValue:
        self.count_value()
        marker = self.u8()
        if marker == _NUMBER:
            (number,) = _DOUBLE.unpack(self.take(8))
            return float(number)
        if marker == _BOOLEAN:
            return self.u8() != 0
        if marker == _STRING:
            return self.utf8(self.u16())
        if marker in (_LONG_STRING, _XML_DOCUMENT):
            return self.utf8(self.u32())
        if marker == _NULL:
            return None
        if marker in (_UNDEFINED, _UNSUPPORTED):
            return UNDEFINED
        if marker == _OBJECT:
            return self.properties(dict(), depth + 1)
        if marker == _ECMA_ARRAY:
            self.u32()  # advisory count: the object-end marker is authoritative
            return self.properties(ECMAArray(), depth + 1)
        if marker == _STRICT_ARRAY:
            return self.strict_array(depth + 1)
        if marker == _DATE:
            millis, timezone = _DATE_STRUCT.unpack(self.take(10))
            return AMFDate(float(millis), int(timezone))
        if marker == _OBJECT_END:
            raise AMFError(f"unexpected AMF0 object-end marker at offset {self.pos - 1}")
        name = _MARKER_NAMES.get(marker, "unknown")
        raise AMFError(f"unsupported AMF0 type marker 0x{marker:02x} ({name}) at offset {self.pos - 1}")

    def properties(self, target: dict[str, AMFValue], depth: int) -> dict[str, AMFValue]:
        if depth > MAX_DEPTH:
            raise AMFError(f"AMF0 nesting deeper than {MAX_DEPTH}")
        entries = 0
        while True:
            key = self.utf8(self.u16())
            if key == "":
                if self.u8() != _OBJECT_END:
                    raise AMFError(f"AMF0 empty property name not followed by object-end at offset {self.pos - 1}")
                return target
            entries += 1
            if entries > MAX_CONTAINER_ENTRIES:
                raise AMFError(f"AMF0 object with more than {MAX_CONTAINER_ENTRIES} properties")
            target[key] = self.value(depth)

    def strict_array(self, depth: int) -> list[AMFValue]:
        if depth > MAX_DEPTH:
            raise AMFError(f"AMF0 nesting deeper than {MAX_DEPTH}")
        count = self.u32()
        if count > MAX_CONTAINER_ENTRIES:
            raise AMFError(f"AMF0 strict array of {count} elements exceeds the {MAX_CONTAINER_ENTRIES} limit")
        if count > len(self.data) - self.pos:  # every element takes at least one byte
            raise AMFError(f"truncated AMF0 strict array: {count} elements announced")
        return [self.value(depth) for _ in range(count)]


def decode_value(data: bytes, offset: int = 0) -> tuple[AMFValue, int]:
    """Decode one AMF0 value of ``data`` starting at ``offset``.

    Returns the value and the offset just past it. Raises :class:`AMFError`.
    """
    if offset < 0 or offset > len(data):
        raise AMFError(f"offset {offset} outside of {len(data)} bytes of AMF0 data")
    decoder = _Decoder(bytes(data), offset)
    value = decoder.value(0)
    return value, decoder.pos


def decode(data: bytes) -> list[AMFValue]:
    """Decode every AMF0 value in ``data`` (an RTMP command or data message body).

    Raises :class:`AMFError` on malformed, truncated, unsupported or over-limit input;
    :data:`MAX_TOTAL_VALUES` applies to the whole of ``data``.
    """
    decoder = _Decoder(bytes(data), 0)
    values: list[AMFValue] = []
    while decoder.pos < len(decoder.data):
        values.append(decoder.value(0))
    return values


# --------------------------------------------------------------------------- encoding


def _encode_utf8(text: str) -> bytes:
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise AMFError("string cannot be encoded as UTF-8") from exc
    if len(raw) > MAX_STRING_BYTES:
        raise AMFError(f"string of {len(raw)} bytes exceeds the {MAX_STRING_BYTES}-byte limit")
    return raw


def _encode_key(key: object) -> bytes:
    if not isinstance(key, str):
        raise AMFError(f"AMF0 property names must be str, not {type(key).__name__}")
    raw = _encode_utf8(key)
    if not raw:
        raise AMFError("AMF0 property names must not be empty")
    if len(raw) > 0xFFFF:
        raise AMFError("AMF0 property name longer than 65535 bytes")
    return _U16.pack(len(raw)) + raw


def _encode_into(out: bytearray, value: object, depth: int) -> None:
    if value is None:
        out.append(_NULL)
    elif value is UNDEFINED:
        out.append(_UNDEFINED)
    elif isinstance(value, bool):
        out += bytes((_BOOLEAN, 1 if value else 0))
    elif isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError as exc:
            raise AMFError(f"integer {value} does not fit an AMF0 number") from exc
        out.append(_NUMBER)
        out += _DOUBLE.pack(number)
    elif isinstance(value, str):
        raw = _encode_utf8(value)
        if len(raw) <= 0xFFFF:
            out.append(_STRING)
            out += _U16.pack(len(raw))
        else:
            out.append(_LONG_STRING)
            out += _U32.pack(len(raw))
        out += raw
    elif isinstance(value, AMFDate):
        try:
            packed = _DATE_STRUCT.pack(value.milliseconds, value.timezone)
        except (struct.error, OverflowError) as exc:
            raise AMFError(f"cannot encode {value!r} as an AMF0 date") from exc
        out.append(_DATE)
        out += packed
    elif isinstance(value, Mapping):
        if depth + 1 > MAX_DEPTH:
            raise AMFError(f"AMF0 nesting deeper than {MAX_DEPTH}")
        if len(value) > MAX_CONTAINER_ENTRIES:
            raise AMFError(f"AMF0 object with more than {MAX_CONTAINER_ENTRIES} properties")
        if isinstance(value, ECMAArray):
            out.append(_ECMA_ARRAY)
            out += _U32.pack(len(value))
        else:
            out.append(_OBJECT)
        for key, item in value.items():
            out += _encode_key(key)
            _encode_into(out, item, depth + 1)
        out += b"\x00\x00\x09"
    elif isinstance(value, (list, tuple)):
        if depth + 1 > MAX_DEPTH:
            raise AMFError(f"AMF0 nesting deeper than {MAX_DEPTH}")
        if len(value) > MAX_CONTAINER_ENTRIES:
            raise AMFError(f"AMF0 strict array with more than {MAX_CONTAINER_ENTRIES} elements")
        out.append(_STRICT_ARRAY)
        out += _U32.pack(len(value))
        for item in value:
            _encode_into(out, item, depth + 1)
    else:
        raise AMFError(f"cannot encode {type(value).__name__} as AMF0")


def encode_value(value: AMFEncodable) -> bytes:
    """Encode one value as AMF0. Raises :class:`AMFError` for unencodable values or limits."""
    out = bytearray()
    _encode_into(out, value, 0)
    return bytes(out)


def encode(*values: AMFEncodable) -> bytes:
    """Encode a sequence of values as consecutive AMF0 values (a command body)."""
    out = bytearray()
    for value in values:
        _encode_into(out, value, 0)
    return bytes(out)


def is_finite_number(value: AMFValue) -> bool:
    """True if ``value`` is a finite AMF0 number (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
