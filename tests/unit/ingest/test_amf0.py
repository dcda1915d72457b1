from __future__ import annotations

import math
import struct

import pytest

from ingest import amf0
from ingest.amf0 import UNDEFINED, AMFDate, AMFError, ECMAArray


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        (1.0, b"\x00" + struct.pack(">d", 1.0)),
        (-0.5, b"\x00" + struct.pack(">d", -0.5)),
        (True, b"\x01\x01"),
        (False, b"\x01\x00"),
        ("a", b"\x02\x00\x01a"),
        ("", b"\x02\x00\x00"),
        ("é", b"\x02\x00\x02\xc3\xa9"),
        (None, b"\x05"),
        (UNDEFINED, b"\x06"),
        ({"a": None}, b"\x03\x00\x01a\x05\x00\x00\x09"),
        ({}, b"\x03\x00\x00\x09"),
        (ECMAArray(x=True), b"\x08\x00\x00\x00\x01\x00\x01x\x01\x01\x00\x00\x09"),
        ([1.0, "b"], b"\x0a\x00\x00\x00\x02\x00" + struct.pack(">d", 1.0) + b"\x02\x00\x01b"),
        (AMFDate(1000.0, 60), b"\x0b" + struct.pack(">dh", 1000.0, 60)),
    ],
)
def test_known_encodings_both_ways(value: amf0.AMFValue, wire: bytes) -> None:
    assert amf0.encode_value(value) == wire
    decoded, end = amf0.decode_value(wire)
    assert end == len(wire)
    assert decoded == value
    assert type(decoded) is type(value) or isinstance(value, int)


def test_int_is_encoded_as_number_and_decodes_as_float() -> None:
    decoded = amf0.decode(amf0.encode(3))
    assert decoded == [3.0]
    assert isinstance(decoded[0], float)


def test_long_string_used_above_65535_bytes() -> None:
    text = "x" * 70000
    wire = amf0.encode_value(text)
    assert wire[0] == 0x0C
    assert struct.unpack(">I", wire[1:5])[0] == 70000
    assert amf0.decode(wire) == [text]


def test_xml_document_and_unsupported_markers() -> None:
    assert amf0.decode(b"\x0f\x00\x00\x00\x03<a>") == ["<a>"]
    assert amf0.decode(b"\x0d") == [UNDEFINED]


def test_ecma_array_count_is_advisory() -> None:
    # Count says 5 but only one property before the end marker (encoders do this).
    wire = b"\x08\x00\x00\x00\x05\x00\x01k\x02\x00\x01v\x00\x00\x09"
    assert amf0.decode(wire) == [{"k": "v"}]
    assert isinstance(amf0.decode(wire)[0], ECMAArray)


def test_decode_sequence_of_a_connect_command() -> None:
    obj = {
        "app": "live",
        "type": "nonprivate",
        "flashVer": "FMLE/3.0 (compatible; FMSc/1.0)",
        "tcUrl": "rtmp://127.0.0.1:1935/live",
    }
    body = amf0.encode("connect", 1, obj)
    assert body[:10] == b"\x02\x00\x07connect"
    assert amf0.decode(body) == ["connect", 1.0, obj]


def test_nested_structures_round_trip() -> None:
    value: amf0.AMFValue = {"a": [1.0, {"b": ECMAArray(c=[None, UNDEFINED, True])}], "d": AMFDate(0.0)}
    assert amf0.decode(amf0.encode(value)) == [value]


def test_nan_round_trips() -> None:
    (decoded,) = amf0.decode(amf0.encode(float("nan")))
    assert isinstance(decoded, float) and math.isnan(decoded)


@pytest.mark.parametrize(
    "wire",
    [
        b"\x00\x3f\xf0",  # truncated number
        b"\x01",  # truncated boolean
        b"\x02\x00\x05ab",  # truncated string
        b"\x0c\xff\xff\xff\xff",  # long string longer than the data (and the limit)
        b"\x03\x00\x01a\x05",  # object without end marker
        b"\x03\x00\x00\x05",  # empty key not followed by object-end
        b"\x08\x00\x00",  # truncated ECMA array count
        b"\x0a\x00\x00\x00\x03\x05",  # strict array shorter than its count
        b"\x0a\xff\xff\xff\xff",  # absurd strict array count
        b"\x0b\x00\x00",  # truncated date
        b"\x09",  # stray object end
        b"\x07\x00\x01",  # reference: unsupported
        b"\x10\x00\x01C\x00\x00\x09",  # typed object: unsupported
        b"\x11\x01",  # AMF3 switch: unsupported
        b"\x04",  # movieclip: reserved
        b"\xff",  # unknown marker
        b"\x02\x00\x02\xff\xfe",  # invalid UTF-8
        b"",  # decode_value of nothing
    ],
)
def test_malformed_input_raises_amf_error(wire: bytes) -> None:
    with pytest.raises(AMFError):
        amf0.decode_value(wire)


def test_depth_limit() -> None:
    ok: amf0.AMFValue = None
    for _ in range(amf0.MAX_DEPTH):
        ok = [ok]
    assert amf0.decode(amf0.encode(ok)) == [ok]
    too_deep = [ok]
    with pytest.raises(AMFError, match="nesting"):
        amf0.encode(too_deep)
    wire = b"\x0a\x00\x00\x00\x01" * (amf0.MAX_DEPTH + 1) + b"\x05"
    with pytest.raises(AMFError, match="nesting"):
        amf0.decode(wire)


def test_entry_limit_per_container() -> None:
    many = {f"k{i}": None for i in range(amf0.MAX_CONTAINER_ENTRIES + 1)}
    with pytest.raises(AMFError, match="properties"):
        amf0.encode(many)
    wire = b"\x03" + b"".join(struct.pack(">H", len(k)) + k.encode() + b"\x05" for k in many) + b"\x00\x00\x09"
    with pytest.raises(AMFError, match="properties"):
        amf0.decode(wire)


def test_total_value_limit() -> None:
    wire = b"\x05" * (amf0.MAX_TOTAL_VALUES + 1)
    with pytest.raises(AMFError, match="values"):
        amf0.decode(wire)
    assert len(amf0.decode(wire[:-1])) == amf0.MAX_TOTAL_VALUES


def test_string_length_limit() -> None:
    wire = b"\x0c" + struct.pack(">I", amf0.MAX_STRING_BYTES + 1) + b"a" * (amf0.MAX_STRING_BYTES + 1)
    with pytest.raises(AMFError, match="limit"):
        amf0.decode(wire)


@pytest.mark.parametrize("value", [object(), b"bytes", {1: "non-str key"}, {"": 1.0}, 10**400, AMFDate(0.0, 40000)])
def test_unencodable_values_raise_amf_error(value: object) -> None:
    with pytest.raises(AMFError):
        amf0.encode(value)  # type: ignore[arg-type]


def test_decode_value_offset() -> None:
    wire = amf0.encode("a", 2.0)
    first, pos = amf0.decode_value(wire)
    second, end = amf0.decode_value(wire, pos)
    assert (first, second, end) == ("a", 2.0, len(wire))
    with pytest.raises(AMFError):
        amf0.decode_value(wire, len(wire) + 1)
