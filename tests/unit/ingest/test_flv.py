from __future__ import annotations

import struct

import av
import pytest

from ingest import amf0
from ingest.flv import (
    FLVError,
    FLVParser,
    FLVUnsupportedCodec,
    TimestampUnwrapper,
    h264_sps_dimensions,
    parse_audio_specific_config,
    parse_avc_decoder_config,
    split_tags,
)
from player.media import AccessUnit, AudioConfig, VideoConfig

from .media_fixtures import EncodedFLV, demux_packets, encode_audio_flv, encode_video_flv

BFRAMES = (("x264-params", "bframes=2"),)


def parse_all(flv: EncodedFLV, parser: FLVParser | None = None) -> list[object]:
    parser = parser or FLVParser()
    out: list[object] = []
    for tag in flv.tags:
        if tag.tag_type == 9:
            out.append(parser.parse_video(tag.body, tag.timestamp))
        elif tag.tag_type == 8:
            out.append(parser.parse_audio(tag.body, tag.timestamp))
    return [item for item in out if item is not None]


# --------------------------------------------------------------------------- video


@pytest.mark.parametrize(
    ("codec", "width", "height", "pix_fmt", "options"),
    [
        ("libx264", 640, 360, "yuv420p", ()),  # cropped: 368 coded rows
        ("libx264", 1920, 1080, "yuv420p", (("x264-params", "interlaced=1:cqm=jvt"),)),  # fields + scaling lists
        ("libx264", 320, 240, "yuv444p", ()),  # High 4:4:4 profile
        ("libx264", 176, 144, "yuv422p", ()),  # High 4:2:2 profile
        ("libx265", 640, 360, "yuv420p", ()),  # enhanced RTMP hvc1, conformance window
        ("libx265", 1280, 720, "yuv420p", ()),
    ],
)
def test_sequence_header_gives_config_with_sps_dimensions(
    codec: str, width: int, height: int, pix_fmt: str, options: tuple[tuple[str, str], ...]
) -> None:
    flv = encode_video_flv(codec, width, height, 4, pix_fmt, options)
    items = parse_all(flv)
    config = items[0]
    assert isinstance(config, VideoConfig)
    assert config.codec == ("h264" if codec == "libx264" else "hevc")
    assert (config.width, config.height) == (width, height)
    with av.open(__import__("io").BytesIO(flv.data), format="flv") as container:
        assert bytes(container.streams.video[0].codec_context.extradata) == config.extradata


@pytest.mark.parametrize("codec", ["libx264", "libx265"])
def test_frames_match_pyav_demuxer_and_decode(codec: str) -> None:
    flv = encode_video_flv(codec, 320, 240, 8, "yuv420p", BFRAMES if codec == "libx264" else ())
    items = parse_all(flv)
    config = items[0]
    assert isinstance(config, VideoConfig)
    units = [item for item in items if isinstance(item, AccessUnit)]
    reference = demux_packets(flv.data)
    assert len(units) == len(reference) == 8
    for unit, (dts_ms, pts_ms, payload, keyframe) in zip(units, reference, strict=True):
        assert unit.kind == "video"
        assert unit.dts == dts_ms * 90
        assert unit.pts == pts_ms * 90
        assert unit.data == payload
        assert unit.keyframe == keyframe
    if codec == "libx264":
        assert any(unit.pts != unit.dts for unit in units), "B-frames give composition offsets"
    decoder = av.CodecContext.create("h264" if codec == "libx264" else "hevc", "r")
    decoder.extradata = config.extradata
    frames = []
    for unit in units:
        frames += decoder.decode(av.Packet(unit.data))
    frames += decoder.decode(None)
    assert len(frames) == 8
    assert (frames[0].width, frames[0].height) == (320, 240)


def test_nal_length_size_two_is_rewritten_to_four() -> None:
    flv = encode_video_flv("libx264", 320, 240, 4)
    header, frame = flv.tags[1].body, flv.tags[2].body
    assert header[1] == 0 and frame[1] == 1
    record = bytearray(header[5:])
    record[4] = (record[4] & 0xFC) | 0x01  # lengthSizeMinusOne = 1
    payload = frame[5:]
    two_byte = bytearray()
    pos = 0
    while pos < len(payload):
        size = int.from_bytes(payload[pos : pos + 4], "big")
        two_byte += size.to_bytes(2, "big") + payload[pos + 4 : pos + 4 + size]
        pos += 4 + size
    parser = FLVParser()
    config = parser.parse_video(header[:5] + bytes(record), 0)
    assert isinstance(config, VideoConfig)
    unit = parser.parse_video(frame[:5] + bytes(two_byte), 40)
    assert isinstance(unit, AccessUnit)
    assert unit.data == payload
    assert unit.dts == 40 * 90


def test_avc_composition_time_is_signed() -> None:
    flv = encode_video_flv("libx264", 320, 240, 4)
    parser = FLVParser()
    parser.parse_video(flv.tags[1].body, 0)
    body = flv.tags[2].body
    negative = body[:2] + (-5 & 0xFFFFFF).to_bytes(3, "big") + body[5:]
    unit = parser.parse_video(negative, 100)
    assert isinstance(unit, AccessUnit)
    assert (unit.dts, unit.pts) == (9000, 9000 - 450)


def test_frames_before_sequence_header_are_dropped() -> None:
    flv = encode_video_flv("libx264", 320, 240, 4)
    parser = FLVParser()
    assert parser.parse_video(flv.tags[2].body, 0) is None
    assert parser.parse_video(flv.tags[1].body, 0) is not None
    assert isinstance(parser.parse_video(flv.tags[2].body, 0), AccessUnit)


def test_keyframe_flag_follows_frame_type() -> None:
    flv = encode_video_flv("libx264", 320, 240, 4)
    parser = FLVParser()
    parser.parse_video(flv.tags[1].body, 0)
    body = flv.tags[2].body
    assert body[0] >> 4 == 1
    assert parser.parse_video(body, 0).keyframe is True  # type: ignore[union-attr]
    inter = bytes([0x27]) + body[1:]
    assert parser.parse_video(inter, 33).keyframe is False  # type: ignore[union-attr]


def test_enhanced_rtmp_coded_frames_x_and_modex_nano_offset() -> None:
    flv = encode_video_flv("libx265", 320, 240, 4)
    parser = FLVParser()
    header = flv.tags[1].body
    assert header[:5] == b"\x90hvc1"
    assert isinstance(parser.parse_video(header, 0), VideoConfig)
    coded = next(t.body for t in flv.tags[2:] if t.tag_type == 9 and t.body[0] & 0x0F == 1)
    nal_data = coded[8:]
    # CodedFramesX: no composition time.
    unit_x = parser.parse_video(bytes([0x80 | (1 << 4) | 3]) + b"hvc1" + nal_data, 10)
    assert isinstance(unit_x, AccessUnit)
    assert (unit_x.dts, unit_x.pts, unit_x.keyframe) == (900, 900, True)
    # ModEx TimestampOffsetNano of 500000 ns (0.5 ms = 45 ticks), then CodedFrames with cts 2 ms.
    modex = bytes([0x80 | (2 << 4) | 7, 2]) + (500000).to_bytes(3, "big") + bytes([(0 << 4) | 1])
    unit_m = parser.parse_video(modex + b"hvc1" + (2).to_bytes(3, "big") + nal_data, 20)
    assert isinstance(unit_m, AccessUnit)
    assert (unit_m.dts, unit_m.pts, unit_m.keyframe) == (1800 + 45, 1800 + 45 + 180, False)


def test_ignored_video_bodies() -> None:
    parser = FLVParser()
    assert parser.parse_video(b"", 0) is None
    assert parser.parse_video(b"\x57\x00", 0) is None  # legacy command frame (type 5)
    assert parser.parse_video(b"\xd1\x00", 0) is None  # enhanced command frame
    flv = encode_video_flv("libx264", 320, 240, 4)
    parser.parse_video(flv.tags[1].body, 0)
    assert parser.parse_video(b"\x17\x02\x00\x00\x00", 0) is None  # end of sequence
    assert parser.parse_video(b"\x92avc1", 0) is None  # enhanced SequenceEnd


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\x12\x00", "Sorenson"),
        (b"\x14\x00", "VP6"),
        (b"\x90av01\x01", "av01"),
        (b"\x96avc1", "multitrack"),
    ],
)
def test_unsupported_video_codecs(body: bytes, message: str) -> None:
    with pytest.raises(FLVUnsupportedCodec, match=message):
        FLVParser().parse_video(body, 0)


@pytest.mark.parametrize(
    "body",
    [
        b"\x17\x00\x00",  # short AVC header
        b"\x17\x00\x00\x00\x00\x01",  # avcC too short
        b"\x17\x00\x00\x00\x00\x02\x42\x00\x1e\xff\xe1\x00\x10",  # avcC wrong version
        b"\x17\x00\x00\x00\x00\x01\x42\x00\x1e\xff\xe1\x00\x10gB",  # SPS truncated
        b"\x17\x00\x00\x00\x00\x01\x42\x00\x1e\xfe\xe0\x00",  # 3-byte NAL lengths
        b"\x17\x07\x00\x00\x00",  # unknown AVCPacketType
        b"\x90hvc1\x01\x02",  # hvcC too short
        b"\x90hv",  # FourCC truncated
        b"\x97",  # ModEx truncated
        b"\x9fhvc1",  # unknown packet type
    ],
)
def test_malformed_video_raises_flv_error(body: bytes) -> None:
    parser = FLVParser()
    with pytest.raises(FLVError):
        parser.parse_video(body, 0)


def test_nal_unit_overrunning_the_frame_raises() -> None:
    flv = encode_video_flv("libx264", 320, 240, 4)
    parser = FLVParser()
    parser.parse_video(flv.tags[1].body, 0)
    body = flv.tags[2].body
    with pytest.raises(FLVError, match="overruns"):
        parser.parse_video(body[:-1], 0)
    with pytest.raises(FLVError, match="truncated"):
        parser.parse_video(body + b"\x00\x00", 0)


def test_sps_parser_never_raises_on_garbage() -> None:
    assert h264_sps_dimensions(b"") == (0, 0)
    assert h264_sps_dimensions(b"\x67\x64") == (0, 0)
    assert h264_sps_dimensions(b"\x68\x64\x00\x1e\xac") == (0, 0)  # a PPS, not an SPS
    assert h264_sps_dimensions(b"\x67" + b"\x00" * 40) == (0, 0)  # exp-Golomb with no end


def test_parse_avc_decoder_config_returns_sps() -> None:
    flv = encode_video_flv("libx264", 640, 360, 4)
    length_size, sps = parse_avc_decoder_config(flv.tags[1].body[5:])
    assert length_size == 4
    assert len(sps) == 1 and sps[0][0] & 0x1F == 7
    assert h264_sps_dimensions(sps[0]) == (640, 360)


# --------------------------------------------------------------------------- audio


@pytest.mark.parametrize(
    ("rate", "layout", "channels"), [(44100, "stereo", 2), (48000, "mono", 1), (22050, "stereo", 2)]
)
def test_aac_sequence_header_and_frames(rate: int, layout: str, channels: int) -> None:
    flv = encode_audio_flv(rate, layout)
    items = parse_all(flv)
    config = items[0]
    assert isinstance(config, AudioConfig)
    assert (config.codec, config.sample_rate, config.channels) == ("aac", rate, channels)
    with av.open(__import__("io").BytesIO(flv.data), format="flv") as container:
        stream = container.streams.audio[0]
        assert bytes(stream.codec_context.extradata) == config.extradata
        reference = [(int(p.dts), bytes(p)) for p in container.demux(stream) if p.size]
    units = [item for item in items if isinstance(item, AccessUnit)]
    assert [(u.dts // 90, u.data) for u in units] == reference
    assert all(u.kind == "audio" and u.keyframe and u.pts == u.dts for u in units)
    decoder = av.CodecContext.create("aac", "r")
    decoder.extradata = config.extradata
    decoded = []
    for unit in units:
        decoded += decoder.decode(av.Packet(unit.data))
    assert decoded and decoded[0].sample_rate == rate


@pytest.mark.parametrize(
    ("asc", "object_type", "rate", "channels"),
    [
        (bytes([0x12, 0x10]), 2, 44100, 2),  # AAC-LC 44.1 kHz stereo
        (bytes([0x11, 0x88]), 2, 48000, 1),  # AAC-LC 48 kHz mono
        (bytes([0x13, 0x90]), 2, 22050, 2),
        # HE-AAC explicit: aot 5, core 24 kHz (idx 6), stereo, extension 48 kHz (idx 3), then aot 2.
        (bytes([0x2B, 0x11, 0x88, 0x00]), 5, 48000, 2),
        # HE-AACv2 explicit: aot 29, core 24 kHz mono, extension 48 kHz: parametric stereo gives 2.
        (bytes([0xEB, 0x09, 0x88, 0x00]), 29, 48000, 2),
        # Explicit 24-bit sampling frequency (idx 15) of 16000 Hz, 1 channel.
        (bytes([0x17, 0x80, 0x1F, 0x40, 0x08]), 2, 16000, 1),
        # Escaped object type 31 -> 32 + 10 = 42 (USAC), 44.1 kHz (idx 4), channel configuration 6.
        (bytes([0xF9, 0x48, 0xC0]), 42, 44100, 6),
        # Channel configuration 0 (program config element): 0 here, FLV header decides.
        (bytes([0x12, 0x00]), 2, 44100, 0),
    ],
)
def test_audio_specific_config(asc: bytes, object_type: int, rate: int, channels: int) -> None:
    info = parse_audio_specific_config(asc)
    assert (info.object_type, info.sample_rate, info.channels) == (object_type, rate, channels)


@pytest.mark.parametrize("asc", [b"", b"\x12", b"\x00\x00", bytes([0x16, 0x90]), bytes([0x12, 0x48])])
def test_bad_audio_specific_config(asc: bytes) -> None:
    with pytest.raises(FLVError):
        parse_audio_specific_config(asc)


def test_channel_config_zero_takes_channels_from_flv_header() -> None:
    parser = FLVParser()
    stereo = parser.parse_audio(b"\xaf\x00\x12\x00", 0)
    mono = parser.parse_audio(b"\xae\x00\x12\x00", 0)
    assert isinstance(stereo, AudioConfig) and stereo.channels == 2
    assert isinstance(mono, AudioConfig) and mono.channels == 1


def test_audio_edge_cases() -> None:
    parser = FLVParser()
    assert parser.parse_audio(b"", 0) is None
    assert parser.parse_audio(b"\xaf\x01\x21\x00", 0) is None  # raw before config: dropped
    with pytest.raises(FLVUnsupportedCodec, match="MP3"):
        parser.parse_audio(b"\x2f\xff\xfb", 0)
    with pytest.raises(FLVError, match="AACPacketType"):
        parser.parse_audio(b"\xaf", 0)
    with pytest.raises(FLVError, match="AACPacketType"):
        parser.parse_audio(b"\xaf\x05", 0)
    parser.parse_audio(b"\xaf\x00\x12\x10", 0)
    assert parser.parse_audio(b"\xaf\x01", 0) is None  # empty frame


# --------------------------------------------------------------------------- timestamps


def test_timestamp_unwrapper_wraps_forward_and_tolerates_small_steps_back() -> None:
    clock = TimestampUnwrapper()
    assert clock.unwrap(0xFFFFFF00) == 0xFFFFFF00
    assert clock.unwrap(0xFFFFFFF0) == 0xFFFFFFF0
    assert clock.unwrap(0x10) == 0x1_0000_0010
    assert clock.unwrap(0x05) == 0x1_0000_0005  # slightly behind: stays close
    assert clock.unwrap(0xFFFFFFFA) == 0xFFFFFFFA  # back across the wrap
    assert clock.unwrap(0x20) == 0x1_0000_0020


def test_parser_dts_keeps_increasing_across_the_32_bit_wrap() -> None:
    parser = FLVParser()
    parser.parse_audio(b"\xaf\x00\x12\x10", 0)
    stamps = [0xFFFFFF00, 0xFFFFFFE0, 0x00000000 + 3, 0x40]
    units = [parser.parse_audio(b"\xaf\x01\x21", ts) for ts in stamps]
    dts = [u.dts for u in units if isinstance(u, AccessUnit)]
    assert dts == [ts * 90 for ts in (0xFFFFFF00, 0xFFFFFFE0, 0x1_0000_0003, 0x1_0000_0040)]


# --------------------------------------------------------------------------- tags and metadata


def test_split_tags_of_an_aggregate_body() -> None:
    def tag(tag_type: int, ts: int, body: bytes) -> bytes:
        header = bytes([tag_type]) + len(body).to_bytes(3, "big") + (ts & 0xFFFFFF).to_bytes(3, "big")
        header += bytes([ts >> 24]) + b"\x00\x00\x00"
        return header + body + struct.pack(">I", len(body) + 11)

    data = tag(9, 0x01000005, b"\x17\x01") + tag(8, 7, b"\xaf\x01\x21")
    tags = split_tags(data)
    assert [(t.tag_type, t.timestamp, t.body) for t in tags] == [(9, 0x01000005, b"\x17\x01"), (8, 7, b"\xaf\x01\x21")]
    assert split_tags(data[:-4]) == tags  # last PreviousTagSize may be missing
    with pytest.raises(FLVError):
        split_tags(data[:5])
    with pytest.raises(FLVError):
        split_tags(data[:14])


def test_script_data_metadata() -> None:
    parser = FLVParser()
    meta = amf0.ECMAArray(width=640.0, height=360.0)
    assert parser.parse_script(amf0.encode("@setDataFrame", "onMetaData", meta)) == {"width": 640.0, "height": 360.0}
    assert parser.parse_script(amf0.encode("onMetaData", meta)) == {"width": 640.0, "height": 360.0}
    assert parser.parse_script(amf0.encode("onCuePoint", meta)) is None
    with pytest.raises(FLVError):
        parser.parse_script(b"\x02\x00\x10on")
    flv = encode_video_flv("libx264", 320, 240, 4)
    assert flv.tags[0].tag_type == 18
    real = parser.parse_script(flv.tags[0].body)
    assert real is not None and real["width"] == 320.0


def test_repeated_identical_sequence_headers_are_reported_once() -> None:
    flv = encode_video_flv("libx264", 320, 240, 4)
    other = encode_video_flv("libx264", 640, 360, 4)
    parser = FLVParser()
    header = flv.tags[1].body
    assert isinstance(parser.parse_video(header, 0), VideoConfig)
    assert parser.parse_video(header, 1000) is None  # repeated before a later key frame
    changed = parser.parse_video(other.tags[1].body, 2000)
    assert isinstance(changed, VideoConfig) and (changed.width, changed.height) == (640, 360)
    assert isinstance(parser.parse_video(header, 3000), VideoConfig)  # back to the first: a change again
    assert isinstance(parser.parse_audio(b"\xaf\x00\x12\x10", 0), AudioConfig)
    assert parser.parse_audio(b"\xaf\x00\x12\x10", 0) is None
    assert isinstance(parser.parse_audio(b"\xaf\x00\x11\x90", 0), AudioConfig)
