from __future__ import annotations

import struct

import pytest

from ingest.rtmp.chunks import (
    MAX_CHUNK_SIZE,
    ChunkReader,
    ChunkWriter,
    Message,
    acknowledgement_payload,
    set_peer_bandwidth_payload,
    user_control_payload,
)
from ingest.rtmp.errors import RTMPProtocolError

from .rtmp_client import basic_header, chunk0, chunked, set_chunk_size


def read_all(reader: ChunkReader, data: bytes = b"") -> list[Message]:
    reader.feed(data)
    out = []
    while (message := reader.next_message()) is not None:
        out.append(message)
    return out


def test_single_chunk_type0_message() -> None:
    data = chunk0(3, 1000, 5, 20, 0) + b"hello"
    assert read_all(ChunkReader(), data) == [Message(20, 0, 1000, b"hello", 3)]


def test_message_split_over_type3_chunks() -> None:
    payload = bytes(range(256)) * 2
    data = chunked(payload, csid=4, type_id=9, stream_id=1, timestamp=40)
    assert len(data) == 12 + 512 + 3  # 4 chunks of 128, 3 one-byte continuation headers
    assert read_all(ChunkReader(), data) == [Message(9, 1, 40, payload, 4)]


def test_byte_by_byte_feeding_gives_the_same_messages() -> None:
    data = chunked(b"x" * 300, csid=4, type_id=9, stream_id=1, timestamp=7) + chunked(
        b"y" * 10, csid=6, type_id=8, stream_id=1, timestamp=9
    )
    reader = ChunkReader()
    out: list[Message] = []
    for byte in data:
        out += read_all(reader, bytes([byte]))
    assert out == read_all(ChunkReader(), data)
    assert [m.payload for m in out] == [b"x" * 300, b"y" * 10]
    assert reader.bytes_received == len(data)


@pytest.mark.parametrize("csid", [2, 63, 64, 319, 320, 65599])
def test_chunk_stream_id_forms(csid: int) -> None:
    header = basic_header(0, csid)
    assert len(header) == (1 if csid < 64 else 2 if csid < 320 else 3)
    data = chunked(b"p" * 200, csid=csid, type_id=8, stream_id=1, timestamp=5)
    assert read_all(ChunkReader(), data) == [Message(8, 1, 5, b"p" * 200, csid)]


def test_type1_type2_type3_headers_reuse_and_accumulate() -> None:
    data = chunk0(4, 1000, 3, 9, 1) + b"abc"
    data += (
        basic_header(1, 4) + (33).to_bytes(3, "big") + (2).to_bytes(3, "big") + b"\x08" + b"de"
    )  # delta 33, len 2, audio
    data += basic_header(2, 4) + (40).to_bytes(3, "big") + b"fg"  # delta 40, same length and type
    data += basic_header(3, 4) + b"hi"  # new message, same delta 40
    messages = read_all(ChunkReader(), data)
    assert [(m.type_id, m.stream_id, m.timestamp, m.payload) for m in messages] == [
        (9, 1, 1000, b"abc"),
        (8, 1, 1033, b"de"),
        (8, 1, 1073, b"fg"),
        (8, 1, 1113, b"hi"),
    ]


def test_type3_after_type0_reuses_the_timestamp_as_delta() -> None:
    # Spec 5.3.1.2.4: a type-3 chunk after type 0 takes the type-0 timestamp as its delta.
    data = chunk0(4, 20, 1, 9, 1) + b"a" + basic_header(3, 4) + b"b"
    assert [m.timestamp for m in read_all(ChunkReader(), data)] == [20, 40]


def test_interleaved_chunk_streams() -> None:
    video = b"v" * 200
    audio = b"a" * 50
    data = chunk0(4, 0, len(video), 9, 1) + video[:128]
    data += chunk0(6, 0, len(audio), 8, 1) + audio
    data += basic_header(3, 4) + video[128:]
    messages = read_all(ChunkReader(), data)
    assert [(m.type_id, m.payload) for m in messages] == [(8, audio), (9, video)]


def test_extended_timestamp_on_type0_and_continuations() -> None:
    ts = 0x01234567
    payload = b"z" * 300
    data = chunked(payload, csid=4, type_id=9, stream_id=1, timestamp=ts)
    assert data[1:4] == b"\xff\xff\xff"
    assert data.count(struct.pack(">I", ts)) == 3  # header + 2 continuations
    assert read_all(ChunkReader(), data) == [Message(9, 1, ts, payload, 4)]


def test_extended_delta_on_type1() -> None:
    data = chunk0(4, 10, 1, 9, 1) + b"a"
    data += (
        basic_header(1, 4) + b"\xff\xff\xff" + (1).to_bytes(3, "big") + b"\x09" + struct.pack(">I", 0x1000000) + b"b"
    )
    assert [m.timestamp for m in read_all(ChunkReader(), data)] == [10, 10 + 0x1000000]


def test_timestamp_arithmetic_wraps_modulo_2_32() -> None:
    data = chunk0(4, 0xFFFFFFF0, 1, 9, 1) + b"a"
    data += basic_header(2, 4) + (0x20).to_bytes(3, "big") + b"b"
    assert [m.timestamp for m in read_all(ChunkReader(), data)] == [0xFFFFFFF0, 0x10]


def test_set_chunk_size_applies_to_following_chunks_and_is_consumed() -> None:
    payload = b"q" * 5000
    data = set_chunk_size(4096) + chunked(payload, csid=4, type_id=9, stream_id=1, chunk_size=4096)
    reader = ChunkReader()
    assert read_all(reader, data) == [Message(9, 1, 0, payload, 4)]
    assert reader.chunk_size == 4096


def test_tiny_chunk_size_of_one_byte() -> None:
    data = set_chunk_size(1) + chunked(b"abcdef", csid=4, type_id=9, stream_id=1, chunk_size=1)
    assert [m.payload for m in read_all(ChunkReader(), data)] == [b"abcdef"]


@pytest.mark.parametrize("size", [0, MAX_CHUNK_SIZE + 1, 0x7FFFFFFF, 0xFFFFFFFF])
def test_absurd_chunk_sizes_are_refused(size: int) -> None:
    with pytest.raises(RTMPProtocolError, match="absurd chunk size"):
        read_all(ChunkReader(), set_chunk_size(size))


def test_short_control_payloads_are_refused() -> None:
    with pytest.raises(RTMPProtocolError, match="Set Chunk Size"):
        read_all(ChunkReader(), chunked(b"\x00\x10", csid=2, type_id=1))
    with pytest.raises(RTMPProtocolError, match="Abort"):
        read_all(ChunkReader(), chunked(b"\x00", csid=2, type_id=2))


def test_abort_discards_the_partial_message() -> None:
    data = chunk0(4, 0, 300, 9, 1) + b"x" * 128
    data += chunked(struct.pack(">I", 4), csid=2, type_id=2)
    data += chunk0(4, 5, 2, 9, 1) + b"ok"
    assert [m.payload for m in read_all(ChunkReader(), data)] == [b"ok"]


def test_empty_message() -> None:
    assert read_all(ChunkReader(), chunk0(3, 0, 0, 20, 0)) == [Message(20, 0, 0, b"", 3)]


def test_oversized_message_is_refused_from_its_header() -> None:
    reader = ChunkReader(max_message_size=1000)
    with pytest.raises(RTMPProtocolError, match="exceeds the 1000-byte limit"):
        read_all(reader, chunk0(4, 0, 1001, 9, 1))


def test_header_without_previous_type0_is_refused() -> None:
    with pytest.raises(RTMPProtocolError, match="type 0 expected"):
        read_all(ChunkReader(), basic_header(1, 5) + bytes(7))
    with pytest.raises(RTMPProtocolError, match="type 0 expected"):
        read_all(ChunkReader(), basic_header(3, 5) + b"x")


def test_new_header_in_the_middle_of_a_message_is_refused() -> None:
    data = chunk0(4, 0, 300, 9, 1) + b"x" * 128 + chunk0(4, 0, 3, 9, 1) + b"abc"
    with pytest.raises(RTMPProtocolError, match="incomplete"):
        read_all(ChunkReader(), data)


def test_too_many_chunk_streams() -> None:
    reader = ChunkReader(max_chunk_streams=4)
    data = b"".join(chunk0(csid, 0, 1, 9, 1) + b"a" for csid in range(3, 7))
    assert len(read_all(reader, data)) == 4
    with pytest.raises(RTMPProtocolError, match="chunk streams"):
        read_all(reader, chunk0(7, 0, 1, 9, 1) + b"a")


def test_partial_bytes_limit_across_chunk_streams() -> None:
    reader = ChunkReader(max_message_size=1000, max_partial_bytes=300)
    data = b"".join(chunk0(csid, 0, 1000, 9, 1) + b"x" * 128 for csid in (3, 4))
    read_all(reader, data)
    with pytest.raises(RTMPProtocolError, match="incomplete messages"):
        read_all(reader, chunk0(5, 0, 1000, 9, 1) + b"x" * 128)


# --------------------------------------------------------------------------- writer


@pytest.mark.parametrize("chunk_size", [1, 128, 4096])
@pytest.mark.parametrize("timestamp", [0, 0xFFFFFE, 0xFFFFFF, 0xFFFFFFFF])
@pytest.mark.parametrize("csid", [2, 64, 320, 65599])
def test_writer_output_reads_back(chunk_size: int, timestamp: int, csid: int) -> None:
    writer = ChunkWriter()
    reader = ChunkReader()
    data = b""
    if chunk_size != 128:
        data += writer.set_chunk_size(chunk_size)
    payloads = [b"", b"m" * 5, bytes(range(256)) * 20]
    for payload in payloads:
        data += writer.message(csid, 9, 1, timestamp, payload)
    messages = read_all(reader, data)
    assert [(m.payload, m.timestamp, m.stream_id, m.chunk_stream_id) for m in messages] == [
        (p, timestamp, 1, csid) for p in payloads
    ]
    assert reader.chunk_size == chunk_size


def test_writer_rejects_local_mistakes() -> None:
    writer = ChunkWriter()
    with pytest.raises(ValueError):
        writer.message(1, 9, 1, 0, b"")
    with pytest.raises(ValueError):
        writer.message(3, 9, 1, 0, b"x" * 0x1000000)
    with pytest.raises(ValueError):
        writer.set_chunk_size(0)


def test_control_payloads() -> None:
    assert acknowledgement_payload(0x1_0000_0005) == b"\x00\x00\x00\x05"
    assert set_peer_bandwidth_payload(2_500_000, 2) == struct.pack(">I", 2_500_000) + b"\x02"
    assert user_control_payload(7, 99) == b"\x00\x07\x00\x00\x00\x63"
