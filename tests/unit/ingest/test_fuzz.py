"""Property and fuzz tests: only the cores' own error types may escape.

Bounded: every test caps ``max_examples`` so that the file runs in seconds.
"""

from __future__ import annotations

import contextlib
import functools
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest import amf0
from ingest.flv import (
    FLVError,
    FLVParser,
    h264_sps_dimensions,
    hevc_sps_dimensions,
    parse_audio_specific_config,
    split_tags,
)
from ingest.rtmp.errors import RTMPProtocolError
from ingest.rtmp.session import PublishRequested, ServerConnection
from ingest.rtmp.chunks import ChunkReader, ChunkWriter, Message

from .media_fixtures import encode_audio_flv, encode_video_flv
from .rtmp_client import c0c1, chunked, media, publish_preamble, set_chunk_size

FAST = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
MEDIUM = settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------- helpers


def mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    """Apply (kind, position, value) edits: 0 overwrite a byte, 1 insert a byte, 2 delete a byte, 3 truncate."""
    out = bytearray(data)
    for kind, position, value in edits:
        if not out:
            break
        pos = position % len(out)
        if kind == 0:
            out[pos] = value
        elif kind == 1:
            out.insert(pos, value)
        elif kind == 2:
            del out[pos]
        else:
            del out[pos:]
    return bytes(out)


edits_strategy = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 1 << 20), st.integers(0, 255)), min_size=1, max_size=6
)


def amf_values() -> st.SearchStrategy[amf0.AMFValue]:
    keys = st.text(min_size=1, max_size=8)
    scalars = st.one_of(
        st.floats(allow_nan=False),
        st.booleans(),
        st.text(max_size=20),
        st.none(),
        st.just(amf0.UNDEFINED),
        st.builds(amf0.AMFDate, st.floats(allow_nan=False), st.integers(-32768, 32767)),
    )
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(keys, children, max_size=4),
            st.dictionaries(keys, children, max_size=4).map(amf0.ECMAArray),
        ),
        max_leaves=20,
    )


def equal(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return type(a) is type(b) and a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b, strict=False))
    return a == b


# --------------------------------------------------------------------------- AMF0


@FAST
@given(st.binary(max_size=300))
def test_amf0_decode_arbitrary_bytes(data: bytes) -> None:
    with contextlib.suppress(amf0.AMFError):
        amf0.decode(data)


@FAST
@given(amf_values())
def test_amf0_round_trip(value: amf0.AMFValue) -> None:
    assert equal(amf0.decode(amf0.encode(value)), [value])


@FAST
@given(amf_values(), edits_strategy)
def test_amf0_decode_mutated_encodings(value: amf0.AMFValue, edits: list[tuple[int, int, int]]) -> None:
    with contextlib.suppress(amf0.AMFError):
        amf0.decode(mutate(amf0.encode("publish", 5.0, None, value), edits))


# --------------------------------------------------------------------------- FLV


@functools.lru_cache(maxsize=1)
def real_bodies() -> list[tuple[int, bytes]]:
    video = encode_video_flv("libx264", 320, 240, 4)
    hevc = encode_video_flv("libx265", 320, 240, 4)
    audio = encode_audio_flv(44100, "stereo", 4)
    return [(t.tag_type, t.body) for f in (video, hevc, audio) for t in f.tags]


@FAST
@given(st.binary(max_size=200), st.integers(0, 0xFFFFFFFF))
def test_flv_parser_arbitrary_bodies(body: bytes, timestamp: int) -> None:
    parser = FLVParser()
    for parse in (parser.parse_video, parser.parse_audio):
        with contextlib.suppress(FLVError):
            parse(body, timestamp)
    with contextlib.suppress(FLVError):
        parser.parse_script(body)
    with contextlib.suppress(FLVError):
        split_tags(body)
    with contextlib.suppress(FLVError):
        parse_audio_specific_config(body)
    assert isinstance(h264_sps_dimensions(body), tuple)
    assert isinstance(hevc_sps_dimensions(body), tuple)


@MEDIUM
@given(st.data())
def test_flv_parser_mutated_real_bodies(data: st.DataObject) -> None:
    bodies = real_bodies()
    parser = FLVParser()
    # Give the parser the real configurations first so that frame paths are reached.
    for tag_type, body in bodies:
        if tag_type == 9 and (body[:2] == b"\x17\x00" or body[:1] == b"\x90"):
            parser.parse_video(body, 0)
        elif tag_type == 8 and body[:2] == b"\xaf\x00":
            parser.parse_audio(body, 0)
    index = data.draw(st.integers(0, len(bodies) - 1))
    tag_type, body = bodies[index]
    mutated = mutate(body, data.draw(edits_strategy))
    try:
        if tag_type == 8:
            parser.parse_audio(mutated, 10)
        elif tag_type == 9:
            parser.parse_video(mutated, 10)
        else:
            parser.parse_script(mutated)
    except FLVError:
        pass


# --------------------------------------------------------------------------- chunk stream


@FAST
@given(
    st.lists(st.tuples(st.integers(2, 400), st.integers(0, 0xFFFFFFFF), st.binary(max_size=700)), max_size=5),
    st.sampled_from([1, 7, 128, 4096]),
    st.lists(st.integers(1, 300), min_size=1, max_size=10),
)
def test_chunk_writer_reader_round_trip_any_split(
    messages: list[tuple[int, int, bytes]], chunk_size: int, splits: list[int]
) -> None:
    writer = ChunkWriter()
    stream = writer.set_chunk_size(chunk_size) if chunk_size != 128 else b""
    for csid, timestamp, payload in messages:
        stream += writer.message(csid, 8, 1, timestamp, payload)
    reader = ChunkReader()
    received: list[Message] = []
    pos = 0
    index = 0
    while pos < len(stream):
        size = splits[index % len(splits)]
        index += 1
        reader.feed(stream[pos : pos + size])
        pos += size
        while (message := reader.next_message()) is not None:
            received.append(message)
    assert [(m.chunk_stream_id, m.timestamp, m.payload) for m in received] == messages


@FAST
@given(st.binary(max_size=400))
def test_chunk_reader_arbitrary_bytes(data: bytes) -> None:
    reader = ChunkReader(max_message_size=4096)
    reader.feed(data)
    try:
        for _ in range(1000):
            if reader.next_message() is None:
                break
    except RTMPProtocolError:
        pass


# --------------------------------------------------------------------------- server connection


def drive(conn: ServerConnection, pieces: list[bytes], accept: bool = True) -> list[object]:
    """Feed pieces like the listener does; answer publish requests. Only RTMPProtocolError may escape."""
    events: list[object] = []
    for piece in pieces:
        new = conn.receive_data(piece)
        while new:
            events += new
            if isinstance(new[-1], PublishRequested):
                if accept:
                    conn.accept_publish()
                else:
                    conn.reject_publish("refused by the fuzz test")
                new = conn.receive_data(b"") if not conn.closing else []
            else:
                new = []
        conn.data_to_send()
        if conn.closing:
            break
    return events


@functools.lru_cache(maxsize=1)
def conversation() -> bytes:
    bodies = real_bodies()
    stream = publish_preamble() + set_chunk_size(1000)
    metadata = amf0.encode("@setDataFrame", "onMetaData", amf0.ECMAArray(width=320.0))
    stream += chunked(metadata, csid=4, type_id=18, stream_id=1, chunk_size=1000)
    for index, (tag_type, body) in enumerate(bodies):
        if tag_type in (8, 9):
            stream += media(tag_type, body, index * 20, chunk_size=1000)
    return stream


@FAST
@given(st.binary(max_size=600))
def test_server_connection_arbitrary_bytes_from_the_start(data: bytes) -> None:
    with contextlib.suppress(RTMPProtocolError):
        drive(ServerConnection(), [data])


@FAST
@given(st.binary(max_size=600), st.booleans())
def test_server_connection_arbitrary_bytes_after_the_handshake(data: bytes, accept: bool) -> None:
    with contextlib.suppress(RTMPProtocolError):
        drive(ServerConnection(max_message_size=65536), [c0c1() + bytes(1536), data], accept)


@MEDIUM
@given(edits_strategy, st.lists(st.integers(1, 2000), min_size=1, max_size=5), st.booleans())
def test_server_connection_mutated_conversation(
    edits: list[tuple[int, int, int]], splits: list[int], accept: bool
) -> None:
    stream = mutate(conversation(), edits)
    pieces = [c0c1() + bytes(1536)]
    pos = 0
    index = 0
    while pos < len(stream):
        size = splits[index % len(splits)]
        pieces.append(stream[pos : pos + size])
        pos += size
        index += 1
    with contextlib.suppress(RTMPProtocolError):
        drive(ServerConnection(), pieces, accept)


@MEDIUM
@given(st.lists(st.integers(1, 3000), min_size=1, max_size=6))
def test_server_connection_events_do_not_depend_on_read_boundaries(splits: list[int]) -> None:
    stream = c0c1() + bytes(1536) + conversation()
    whole = drive(ServerConnection(s1_random=bytes(1528)), [stream])
    pieces = []
    pos = 0
    index = 0
    while pos < len(stream):
        size = splits[index % len(splits)]
        pieces.append(stream[pos : pos + size])
        pos += size
        index += 1
    assert drive(ServerConnection(s1_random=bytes(1528)), pieces) == whole
    assert len(whole) > 10
