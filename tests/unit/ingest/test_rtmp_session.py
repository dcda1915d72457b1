from __future__ import annotations

import struct

import pytest

from ingest import amf0
from ingest.rtmp.errors import RTMPProtocolError
from ingest.rtmp.session import (
    Connected,
    ConnectionClosed,
    ConnectionState,
    MediaConfig,
    MediaUnit,
    Metadata,
    PublishEnded,
    PublishRequested,
    ServerConnection,
    parse_publish_target,
)
from player.media import AccessUnit, AudioConfig, VideoConfig

from .media_fixtures import encode_audio_flv, encode_video_flv
from .rtmp_client import (
    C1_RANDOM,
    Client,
    c0c1,
    chunk0,
    chunked,
    command,
    commands,
    connect,
    media,
    publish_preamble,
    set_chunk_size,
)


def info(command_values: list[amf0.AMFValue]) -> dict[str, amf0.AMFValue]:
    """The information object (4th value) of an onStatus/_result command."""
    value = command_values[3]
    assert isinstance(value, dict)
    return value


def publishing_client(key: str = "good") -> Client:
    client = Client()
    client.handshake()
    client.send(publish_preamble(key))
    client.conn.accept_publish()
    client.drain()
    return client


def media_body_tags() -> list[tuple[int, int, bytes]]:
    """(type, ms timestamp, body) of a real H.264 + AAC stream, interleaved by time."""
    video = encode_video_flv("libx264", 320, 240, 8)
    audio = encode_audio_flv(44100, "stereo", 10)
    tags = [(t.tag_type, t.timestamp, t.body) for t in video.tags + audio.tags if t.tag_type in (8, 9)]
    return sorted(tags, key=lambda t: (t[1], t[0] == 8))


# --------------------------------------------------------------------------- handshake


def test_handshake_answers_s0_s1_s2_echoing_c1() -> None:
    conn = ServerConnection(s1_random=bytes(range(256)) * 5 + bytes(248))
    assert conn.receive_data(c0c1()[:700]) == []
    assert conn.data_to_send() == b""
    assert conn.receive_data(c0c1()[700:]) == []
    out = conn.data_to_send()
    assert len(out) == 1 + 1536 + 1536
    assert out[0] == 3
    assert out[1:9] == bytes(8)  # time 0, zero version: no server digest to check
    assert out[9:1537] == bytes(range(256)) * 5 + bytes(248)
    assert out[1537:] == c0c1()[1:]
    assert not conn.handshake_complete
    conn.receive_data(bytes(1535))
    assert not conn.handshake_complete
    conn.receive_data(b"\x00")
    assert conn.handshake_complete
    assert conn.state is ConnectionState.AWAIT_CONNECT


def test_truncated_handshake_waits_without_events() -> None:
    conn = ServerConnection()
    assert conn.receive_data(c0c1()[:1000]) == []
    assert not conn.handshake_complete
    assert conn.data_to_send() == b""
    assert conn.receive_eof() == [ConnectionClosed("connection closed by the publisher")]


@pytest.mark.parametrize(
    "garbage",
    [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x16\x03\x01\x02\x00", b"\x06" + bytes(1536), b"\x00"],
)
def test_garbage_on_the_rtmp_port_fails_at_the_first_byte(garbage: bytes) -> None:
    conn = ServerConnection()
    with pytest.raises(RTMPProtocolError, match="RTMP version"):
        conn.receive_data(garbage)
    assert conn.closing
    with pytest.raises(RTMPProtocolError):
        conn.receive_data(c0c1())


def test_chunk_stream_bytes_following_c2_in_the_same_read_are_parsed() -> None:
    conn = ServerConnection()
    events = conn.receive_data(c0c1() + bytes(1536) + connect())
    assert events == [
        Connected(app="live", tc_url="rtmp://127.0.0.1:1935/live", flash_ver="FMLE/3.0 (compatible; FMSc/1.0)")
    ]


# --------------------------------------------------------------------------- full conversation


def test_full_publish_conversation() -> None:
    client = Client()
    client.handshake()
    assert client.output.handshake[1537:] == c0c1()[1:]

    client.send(connect())
    replies = client.drain()
    assert [(m.type_id, m.payload) for m in replies[:2]] == [
        (5, struct.pack(">I", 2_500_000)),
        (6, struct.pack(">I", 2_500_000) + b"\x02"),
    ]
    assert client.output.reader.chunk_size == 4096  # Set Chunk Size applied by the client reader
    (result,) = commands(replies)
    assert result[0] == "_result" and result[1] == 1.0
    assert isinstance(result[2], dict) and result[2]["fmsVer"] == "FMS/3,0,1,123" and result[2]["capabilities"] == 31.0
    assert isinstance(result[3], dict)
    assert (result[3]["level"], result[3]["code"], result[3]["objectEncoding"]) == (
        "status",
        "NetConnection.Connect.Success",
        0.0,
    )

    client.send(command("releaseStream", 2, None, "good"))
    client.send(command("FCPublish", 3, None, "good"))
    client.send(command("createStream", 4, None))
    assert commands(client.drain()) == [
        ["_result", 2.0, None],
        ["onFCPublish", 0.0, None, {"code": "NetStream.Publish.Start", "description": "good"}],
        ["_result", 4.0, None, 1.0],
    ]

    events = client.send(command("publish", 5, None, "good", "live", stream_id=1))
    assert events == [
        PublishRequested(
            app="live",
            stream_key="good",
            stream_id=1,
            query="",
            publish_type="live",
            tc_url="rtmp://127.0.0.1:1935/live",
        )
    ]
    assert client.drain() == []  # nothing until the caller decides
    client.conn.accept_publish()
    replies = client.drain()
    assert (replies[0].type_id, replies[0].payload) == (4, b"\x00\x00\x00\x00\x00\x01")  # StreamBegin 1
    (status,) = commands(replies)
    assert status[0] == "onStatus" and replies[1].stream_id == 1
    assert isinstance(status[3], dict)
    assert (status[3]["level"], status[3]["code"]) == ("status", "NetStream.Publish.Start")
    assert client.conn.publishing

    meta = amf0.encode("@setDataFrame", "onMetaData", amf0.ECMAArray(width=320.0, height=240.0))
    events = client.send(chunked(meta, csid=4, type_id=18, stream_id=1))
    assert events == [Metadata({"width": 320.0, "height": 240.0})]

    tags = media_body_tags()
    stream = set_chunk_size(4096) + b"".join(media(t, body, ts, chunk_size=4096) for t, ts, body in tags)
    events = client.send(stream)
    configs = [e.config for e in events if isinstance(e, MediaConfig)]
    units = [e.unit for e in events if isinstance(e, MediaUnit)]
    assert [type(c) for c in configs] == [VideoConfig, AudioConfig]
    assert configs[0].width == 320 and configs[0].height == 240  # type: ignore[union-attr]
    assert configs[1].sample_rate == 44100 and configs[1].channels == 2  # type: ignore[union-attr]
    video = [u for u in units if u.kind == "video"]
    audio = [u for u in units if u.kind == "audio"]
    assert len(video) == 8 and len(audio) == sum(1 for t, _, b in tags if t == 8 and b[1] == 1)
    assert [u.dts for u in video] == [ts * 90 for t, ts, b in tags if t == 9 and b[1] == 1]
    assert video[0].keyframe

    events = client.send(command("FCUnpublish", 6, None, "good"))
    assert events == [PublishEnded(1, "FCUnpublish", clean=True)]
    assert commands(client.drain())[0][0] == "onFCUnpublish"
    assert client.send(command("deleteStream", 7, None, 1.0)) == []
    assert client.conn.receive_eof() == [ConnectionClosed("connection closed by the publisher")]


def test_media_pipelined_after_publish_is_kept_until_the_decision() -> None:
    client = Client()
    client.handshake()
    tags = media_body_tags()[:6]
    first_batch = publish_preamble() + b"".join(media(t, body, ts) for t, ts, body in tags)
    events = client.send(first_batch)
    assert isinstance(events[-1], PublishRequested)
    assert not any(isinstance(e, (MediaConfig, MediaUnit)) for e in events)
    assert client.send(media(*tags[0][:1], tags[0][2], tags[0][1])) == []  # still paused
    client.conn.accept_publish()
    resumed = client.send(b"")
    kinds = [type(e) for e in resumed]
    assert kinds.count(MediaConfig) >= 1 and MediaUnit in kinds


def test_eof_while_publishing_ends_the_publish() -> None:
    client = publishing_client()
    assert client.conn.receive_eof() == [
        PublishEnded(1, "connection closed by the publisher"),
        ConnectionClosed("connection closed by the publisher"),
    ]
    with pytest.raises(RTMPProtocolError, match="closed"):
        client.conn.receive_data(b"x")


def test_delete_stream_ends_the_publish() -> None:
    client = publishing_client()
    assert client.send(command("deleteStream", 0, None, 1.0)) == [PublishEnded(1, "deleteStream", clean=True)]
    assert not client.conn.publishing


def test_publish_again_after_unpublish_on_the_same_connection() -> None:
    client = publishing_client()
    client.send(command("FCUnpublish", 6, None, "good"))
    events = client.send(command("publish", 8, None, "other", "live", stream_id=1))
    assert [e.stream_key for e in events if isinstance(e, PublishRequested)] == ["other"]


# --------------------------------------------------------------------------- refusals


def test_reject_publish_sends_an_error_status_and_closes() -> None:
    client = Client()
    client.handshake()
    client.send(publish_preamble("wrong"))
    client.drain()
    client.conn.reject_publish("unknown stream key")
    (status,) = commands(client.drain())
    assert status[0] == "onStatus"
    assert isinstance(status[3], dict)
    assert (status[3]["level"], status[3]["code"], status[3]["description"]) == (
        "error",
        "NetStream.Publish.BadName",
        "unknown stream key",
    )
    assert client.conn.closing
    assert client.send(media(9, b"\x17\x01\x00\x00\x00", 0)) == []  # ignored afterwards
    with pytest.raises(RuntimeError):
        client.conn.accept_publish()


def test_accept_without_pending_publish_is_a_caller_error() -> None:
    client = Client()
    client.handshake()
    with pytest.raises(RuntimeError):
        client.conn.accept_publish()
    with pytest.raises(RuntimeError):
        client.conn.reject_publish("no")


def test_play_is_refused() -> None:
    client = Client()
    client.handshake()
    client.send(connect() + command("createStream", 2, None))
    client.drain()
    client.send(command("play", 3, None, "good", stream_id=1))
    (status,) = commands(client.drain())
    assert info(status)["code"] == "NetStream.Play.Failed"
    assert client.conn.closing


def test_absurd_chunk_size_kills_the_connection() -> None:
    client = Client()
    client.handshake()
    with pytest.raises(RTMPProtocolError, match="absurd chunk size 0"):
        client.send(set_chunk_size(0))
    with pytest.raises(RTMPProtocolError, match="already failed"):
        client.send(connect())


def test_oversized_message_is_refused() -> None:
    client = Client(ServerConnection(max_message_size=64 * 1024))
    client.handshake()
    with pytest.raises(RTMPProtocolError, match="exceeds"):
        client.send(chunk0(4, 0, 64 * 1024 + 1, 9, 1) + b"x" * 128)


def test_default_message_limit_is_eight_mib() -> None:
    client = publishing_client()
    with pytest.raises(RTMPProtocolError, match="8388608-byte limit"):
        client.send(chunk0(4, 0, 8 * 1024 * 1024 + 1, 9, 1))


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (command("createStream", 2, None), "before connect"),
        (chunked(amf0.encode("connect"), csid=3, type_id=20), "malformed command"),
        (chunked(b"\x02\x00\x09conn", csid=3, type_id=20), "truncated"),
        (chunked(b"\x02\x00\x02\xff\xfe\x00", csid=3, type_id=20), "UTF-8"),
    ],
)
def test_bad_commands_before_connect(data: bytes, match: str) -> None:
    client = Client()
    client.handshake()
    with pytest.raises(RTMPProtocolError, match=match):
        client.send(data)


def test_second_connect_and_publish_on_unknown_stream() -> None:
    client = Client()
    client.handshake()
    client.send(connect())
    with pytest.raises(RTMPProtocolError, match="second connect"):
        client.send(connect())
    other = Client()
    other.handshake()
    other.send(connect())
    with pytest.raises(RTMPProtocolError, match="not created"):
        other.send(command("publish", 5, None, "good", "live", stream_id=3))


def test_second_publish_on_the_same_connection_is_refused() -> None:
    client = publishing_client()
    client.send(command("createStream", 9, None))
    with pytest.raises(RTMPProtocolError, match="already live"):
        client.send(command("publish", 10, None, "good", "live", stream_id=2))


def test_stream_count_limit() -> None:
    client = Client(ServerConnection(max_streams=2))
    client.handshake()
    client.send(connect() + command("createStream", 2, None) + command("createStream", 3, None))
    with pytest.raises(RTMPProtocolError, match="streams"):
        client.send(command("createStream", 4, None))


def test_pending_bytes_limit_while_deciding() -> None:
    client = Client(ServerConnection(max_pending_bytes=1000))
    client.handshake()
    client.send(publish_preamble())
    with pytest.raises(RTMPProtocolError, match="pending"):
        client.send(media(9, b"\x17\x01\x00\x00\x00" + bytes(2000), 0))


def test_unsupported_codec_is_a_protocol_error_with_a_clear_message() -> None:
    client = publishing_client()
    with pytest.raises(RTMPProtocolError, match="unsupported audio codec: MP3"):
        client.send(media(8, b"\x2f\xff\xfb\x90", 0))


def test_malformed_media_is_a_protocol_error() -> None:
    client = publishing_client()
    with pytest.raises(RTMPProtocolError, match="avcC"):
        client.send(media(9, b"\x17\x00\x00\x00\x00\x05", 0))


def test_media_on_another_stream_id_is_ignored() -> None:
    client = publishing_client()
    assert client.send(media(8, b"\xaf\x00\x12\x10", 0, stream_id=7)) == []
    assert client.send(media(8, b"\xaf\x00\x12\x10", 0, stream_id=1)) != []


# --------------------------------------------------------------------------- control messages


def test_ping_request_gets_a_ping_response() -> None:
    client = Client()
    client.handshake()
    client.send(chunked(b"\x00\x06\x00\x00\x30\x39", csid=2, type_id=4))
    (reply,) = client.drain()
    assert (reply.type_id, reply.payload) == (4, b"\x00\x07\x00\x00\x30\x39")


def test_acknowledgement_sent_when_the_peer_window_is_reached() -> None:
    client = publishing_client()
    client.send(chunked(struct.pack(">I", 1000), csid=2, type_id=5))
    sent = client.conn.bytes_received
    assert sent < 1000
    assert [m for m in client.drain() if m.type_id == 3] == []  # window not reached yet
    client.send(media(8, b"\xaf\x00\x12\x10" + bytes(1200), 0))
    acks = [m for m in client.drain() if m.type_id == 3]
    assert len(acks) == 1
    (sequence,) = struct.unpack(">I", acks[0].payload)
    assert sequence == client.conn.bytes_received > sent
    client.send(media(8, b"\xaf\x01\x21", 1))
    assert [m for m in client.drain() if m.type_id == 3] == []  # window not reached again


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (chunked(b"\x00", csid=2, type_id=4), "User Control"),
        (chunked(b"\x00\x06\x00", csid=2, type_id=4), "PingRequest"),
        (chunked(b"\x00\x00", csid=2, type_id=5), "Window Acknowledgement"),
        (chunked(bytes(4), csid=2, type_id=5), "of 0 bytes"),
        (chunked(bytes(4), csid=2, type_id=6), "Peer Bandwidth"),
    ],
)
def test_malformed_control_messages(data: bytes, match: str) -> None:
    client = Client()
    client.handshake()
    with pytest.raises(RTMPProtocolError, match=match):
        client.send(data)


def test_unknown_command_with_transaction_gets_an_error_reply() -> None:
    client = Client()
    client.handshake()
    client.send(connect())
    client.drain()
    client.send(command("_checkbw", 2, None) + command("someNotification", 0, None))
    (reply,) = commands(client.drain())
    assert reply[0] == "_error" and reply[1] == 2.0


def test_amf3_command_message_with_format_byte() -> None:
    client = Client()
    client.handshake()
    body = b"\x00" + amf0.encode("connect", 1, {"app": "live", "tcUrl": "rtmp://h/live"})
    events = client.send(chunked(body, csid=3, type_id=17))
    assert events == [Connected(app="live", tc_url="rtmp://h/live", flash_ver="")]


def test_aggregate_message_is_split_with_rebased_timestamps() -> None:
    client = publishing_client()

    def tag(tag_type: int, ts: int, body: bytes) -> bytes:
        header = bytes([tag_type]) + len(body).to_bytes(3, "big") + ts.to_bytes(3, "big") + b"\x00\x00\x00\x00"
        return header + body + struct.pack(">I", 11 + len(body))

    aggregate = tag(8, 500, b"\xaf\x00\x12\x10") + tag(8, 523, b"\xaf\x01\x21\x10") + tag(8, 546, b"\xaf\x01\x21\x20")
    events = client.send(chunked(aggregate, csid=4, type_id=22, stream_id=1, timestamp=10_000))
    units = [e.unit for e in events if isinstance(e, MediaUnit)]
    assert [u.dts for u in units] == [10_023 * 90, 10_046 * 90]
    assert [u.data for u in units] == [b"\x21\x10", b"\x21\x20"]


def test_extended_and_wrapping_media_timestamps() -> None:
    client = publishing_client()
    client.send(media(8, b"\xaf\x00\x12\x10", 0xFFFFFF00))
    stamps = [0xFFFFFF00, 0xFFFFFFE0, 0x10, 0x1000000]
    units = []
    for ts in stamps:
        units += [e.unit for e in client.send(media(8, b"\xaf\x01\x21", ts)) if isinstance(e, MediaUnit)]
    assert [u.dts for u in units] == [ts * 90 for ts in (0xFFFFFF00, 0xFFFFFFE0, 0x1_0000_0010, 0x1_0100_0000)]
    assert all(isinstance(u, AccessUnit) for u in units)


# --------------------------------------------------------------------------- stream keys


@pytest.mark.parametrize(
    ("app", "name", "expected"),
    [
        ("live", "KEY", ("live", "KEY", "")),
        ("live", "KEY?token=1&x=2", ("live", "KEY", "token=1&x=2")),
        ("live?secret=s", "KEY", ("live", "KEY", "secret=s")),
        ("live/KEY", "", ("live", "KEY", "")),
        ("live/KEY/", "", ("live", "KEY", "")),
        ("/live/", "KEY", ("live", "KEY", "")),
        ("live", "", ("live", "", "")),
        ("", "KEY", ("", "KEY", "")),
    ],
)
def test_parse_publish_target(app: str, name: str, expected: tuple[str, str, str]) -> None:
    assert parse_publish_target(app, name) == expected


def test_key_in_the_app_path_with_an_empty_publish_name() -> None:
    client = Client()
    client.handshake()
    client.send(connect(app="live/SECRET", tc_url="rtmp://h:1935/live/SECRET"))
    client.send(command("createStream", 2, None))
    events = client.send(command("publish", 3, None, "", "live", stream_id=1))
    assert [(e.app, e.stream_key) for e in events if isinstance(e, PublishRequested)] == [("live", "SECRET")]


def test_query_string_on_the_publish_name() -> None:
    client = Client()
    client.handshake()
    client.send(connect() + command("createStream", 2, None))
    client.drain()
    events = client.send(command("publish", 3, None, "KEY?sig=abc", "live", stream_id=1))
    (request,) = [e for e in events if isinstance(e, PublishRequested)]
    assert (request.stream_key, request.query) == ("KEY", "sig=abc")
    client.conn.accept_publish()
    (status,) = commands(client.drain())
    description = info(status)["description"]
    assert isinstance(description, str) and "KEY" in description and "sig" not in description


def test_c1_random_fixture_is_what_the_server_echoes() -> None:
    conn = ServerConnection()
    conn.receive_data(c0c1(epoch=99))
    assert conn.data_to_send()[1537 + 8 :] == C1_RANDOM
