"""player.nal: Annex-B framing, parameter sets and decoder records, ADTS.

Parameter sets come from real encoders (libx264, libx265 through PyAV) and
the records we build are checked by FFmpeg's decoders.
"""

from __future__ import annotations

import io
import struct
from fractions import Fraction

import av
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from player import nal
from player.nal import (
    ADTSError,
    NALError,
    annexb_to_avcc,
    audio_specific_config,
    avc_decoder_config,
    hevc_decoder_config,
    length_prefixed,
    parse_adts_header,
    parse_audio_specific_config,
    parse_avc_decoder_config,
    parse_h264_sps,
    parse_hevc_sps,
    split_adts,
    split_annexb,
    split_length_prefixed,
    unescape_rbsp,
)

# ---------------------------------------------------------------- helpers


def encode_video(codec: str, width: int, height: int, pix_fmt: str = "yuv420p", frames: int = 3, **options: str) -> list[bytes]:
    """Encode grey frames; return the Annex-B packets (parameter sets in-band)."""
    ctx = av.CodecContext.create(codec, "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, pix_fmt
    ctx.time_base = Fraction(1, 30)
    ctx.framerate = Fraction(30, 1)
    opts = {"preset": "ultrafast"}
    if codec == "libx265":
        opts["x265-params"] = "log-level=none"
    opts.update(options)
    ctx.options = opts
    packets: list[bytes] = []
    for i in range(frames):
        frame = av.VideoFrame(width, height, pix_fmt)
        for plane in frame.planes:
            plane.update(bytes([(16 + 9 * i) & 0xFF]) * plane.buffer_size)
        frame.pts = i
        packets += [bytes(p) for p in ctx.encode(frame)]
    packets += [bytes(p) for p in ctx.encode(None)]
    return packets


def nals_of_type(packets: list[bytes], types: set[int], hevc: bool = False) -> list[bytes]:
    out = []
    for packet in packets:
        for unit in split_annexb(packet):
            t = (unit[0] >> 1) & 0x3F if hevc else unit[0] & 0x1F
            if t in types:
                out.append(unit)
    return out


def decode(codec: str, extradata: bytes, samples: list[bytes]) -> list[av.VideoFrame]:
    ctx = av.CodecContext.create(codec, "r")
    ctx.extradata = extradata
    frames = []
    for sample in samples:
        frames += ctx.decode(av.Packet(sample))
    frames += ctx.decode(None)
    return frames


def escape(rbsp: bytes) -> bytes:
    """Insert emulation-prevention bytes (the encoder side of unescape_rbsp)."""
    out = bytearray()
    zeros = 0
    for b in rbsp:
        if zeros >= 2 and b <= 3:
            out.append(3)
            zeros = 0
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return bytes(out)


def adts_header(frame_len: int, *, profile: int = 1, sr_index: int = 3, channels: int = 2, crc: bool = False, blocks: int = 1) -> bytes:
    """Build an ADTS header by the spec (profile 1 = AAC LC). frame_len includes the header."""
    bits = 0
    for value, width in (
        (0xFFF, 12), (0, 1), (0, 2), (0 if crc else 1, 1),
        (profile, 2), (sr_index, 4), (0, 1), (channels, 3),
        (0, 4), (frame_len, 13), (0x7FF, 11), (blocks - 1, 2),
    ):
        bits = (bits << width) | value
    header = bits.to_bytes(7, "big")
    return header + (b"\x00\x00" if crc else b"")


# ---------------------------------------------------------- Annex-B framing


def test_split_annexb_handles_3_and_4_byte_start_codes_and_trailing_zeros() -> None:
    stream = b"\xaa\xbb" + b"\x00\x00\x00\x01\x67\x01\x02" + b"\x00\x00\x01\x68\x03" + b"\x00\x00\x00\x00\x01\x65\x04\x05\x00\x00"
    assert split_annexb(stream) == [b"\x67\x01\x02", b"\x68\x03", b"\x65\x04\x05"]


def test_split_annexb_without_start_code_or_with_empty_units() -> None:
    assert split_annexb(b"") == []
    assert split_annexb(b"\x65\x01\x02") == []
    assert split_annexb(b"\x00\x00\x01\x00\x00\x01\x09\xf0") == [b"\x09\xf0"]


def test_annexb_to_avcc_and_back() -> None:
    stream = b"\x00\x00\x00\x01\x09\xf0\x00\x00\x01\x65" + bytes(range(1, 200))
    avcc = annexb_to_avcc(stream)
    assert avcc[:6] == b"\x00\x00\x00\x02\x09\xf0"
    assert split_length_prefixed(avcc) == [b"\x09\xf0", b"\x65" + bytes(range(1, 200))]


def test_length_prefixed_sizes_and_limits() -> None:
    assert length_prefixed([b"\x01\x02", b"\x03"], 2) == b"\x00\x02\x01\x02\x00\x01\x03"
    with pytest.raises(NALError):
        length_prefixed([b"x" * 256], 1)
    with pytest.raises(NALError):
        length_prefixed([b"x"], 3)


def test_split_length_prefixed_refuses_truncation() -> None:
    with pytest.raises(NALError):
        split_length_prefixed(b"\x00\x00\x00\x05\x65\x01")
    with pytest.raises(NALError):
        split_length_prefixed(b"\x00\x00\x01")


def test_unescape_rbsp() -> None:
    assert unescape_rbsp(b"\x00\x00\x03\x01") == b"\x00\x00\x01"
    assert unescape_rbsp(b"\x00\x00\x03\x00\x00\x03\x00") == b"\x00\x00\x00\x00\x00"
    assert unescape_rbsp(b"\x00\x00\x03\x03") == b"\x00\x00\x03"
    assert unescape_rbsp(b"\x01\x03\x00\x03") == b"\x01\x03\x00\x03"


@given(st.lists(st.binary(min_size=1, max_size=64), max_size=8))
def test_escaped_units_survive_annexb_round_trip(payloads: list[bytes]) -> None:
    units = [b"\x65" + escape(p + b"\x80") for p in payloads]  # rbsp_stop_one_bit: never ends in 0
    stream = b"".join(b"\x00\x00\x00\x01" + u for u in units)
    assert split_annexb(stream) == units
    assert [unescape_rbsp(u[1:])[:-1] for u in units] == payloads
    assert split_length_prefixed(annexb_to_avcc(stream)) == units


# ------------------------------------------------------------------- H.264

H264_CASES = [
    # width, height, pix_fmt, options, profile_idc, chroma_format_idc, bit depth
    (320, 240, "yuv420p", {}, 66, 1, 8),
    (322, 242, "yuv420p", {}, 66, 1, 8),  # cropping of 2 pixels on both axes
    (1920, 1080, "yuv420p", {"preset": "veryfast"}, 100, 1, 8),  # 1088 coded, cropped to 1080
    (176, 144, "yuv444p", {}, 244, 3, 8),
    (176, 144, "yuv422p", {}, 122, 2, 8),
    (176, 144, "yuv420p10le", {}, 110, 1, 10),
    (320, 240, "yuv420p", {"preset": "veryfast", "x264-params": "cqm=jvt"}, 100, 1, 8),  # scaling lists
    (320, 240, "yuv420p", {"preset": "veryfast", "flags": "+ildct", "x264-params": "interlaced=1"}, 100, 1, 8),
]


@pytest.mark.parametrize(("width", "height", "pix_fmt", "options", "profile", "chroma", "depth"), H264_CASES)
def test_h264_sps_and_avcc_from_libx264(
    width: int, height: int, pix_fmt: str, options: dict[str, str], profile: int, chroma: int, depth: int
) -> None:
    packets = encode_video("libx264", width, height, pix_fmt, **options)
    sps = nals_of_type(packets, {7})
    pps = nals_of_type(packets, {8})
    info = parse_h264_sps(sps[0])
    assert (info.width, info.height) == (width, height)
    assert info.profile_idc == profile
    assert info.chroma_format_idc == chroma
    assert info.bit_depth_luma == info.bit_depth_chroma == depth
    assert info.frame_mbs_only == ("interlaced=1" not in options.get("x264-params", ""))

    record = avc_decoder_config(sps[:1], pps[:1])
    parsed = parse_avc_decoder_config(record)
    assert parsed.length_size == 4 and parsed.sps == (sps[0],) and parsed.pps == (pps[0],)
    if profile in (100, 110, 122, 144):
        assert record[-4:] == bytes((0xFC | chroma, 0xF8 | (depth - 8), 0xF8 | (depth - 8), 0))
    else:
        assert len(record) == 6 + 2 + len(sps[0]) + 1 + 2 + len(pps[0])

    samples = [length_prefixed(u for u in split_annexb(p) if u[0] & 0x1F not in (7, 8, 9)) for p in packets]
    frames = decode("h264", record, samples)
    assert len(frames) == len(packets)
    assert (frames[0].width, frames[0].height) == (width, height)
    assert nal.is_h264_idr(nals_of_type(packets[:1], {5})[0])


def test_h264_sps_errors() -> None:
    with pytest.raises(NALError):
        parse_h264_sps(b"\x68\x42\x00\x1e")  # a PPS header
    with pytest.raises(NALError):
        parse_h264_sps(b"\x67\x42\x00")  # truncated
    with pytest.raises(NALError):
        parse_h264_sps(b"\x67" + b"\x00" * 12)  # exp-Golomb longer than 32 bits
    with pytest.raises(NALError):
        avc_decoder_config([], [b"\x68\xce"])


def test_avcc_parser_refuses_bad_records() -> None:
    with pytest.raises(NALError):
        parse_avc_decoder_config(b"\x02\x42\x00\x1e\xff\xe1\x00")
    with pytest.raises(NALError):
        parse_avc_decoder_config(b"\x01\x42\x00\x1e\xff\xe1\x00\x10\x67")


def test_pps_id() -> None:
    assert nal.h264_pps_id(b"\x68\xce\x38\x80") == 0
    assert nal.h264_pps_id(b"\x68\x40") == 1  # ue '010' = 1


# -------------------------------------------------------------------- HEVC


@pytest.mark.parametrize(("width", "height"), [(320, 240), (322, 242)])
def test_hevc_sps_and_hvcc_from_libx265(width: int, height: int) -> None:
    packets = encode_video("libx265", width, height)
    vps = nals_of_type(packets, {32}, hevc=True)
    sps = nals_of_type(packets, {33}, hevc=True)
    pps = nals_of_type(packets, {34}, hevc=True)
    info = parse_hevc_sps(sps[0])
    assert (info.width, info.height) == (width, height)
    assert info.chroma_format_idc == 1 and info.bit_depth_luma == 8
    assert nal.hevc_vps_id(vps[0]) == info.vps_id == 0
    assert nal.hevc_pps_id(pps[0]) == 0

    record = hevc_decoder_config(vps[:1], sps[:1], pps[:1])
    assert record[0] == 1 and record[1:13] == info.profile_tier_level
    assert record[22] == 3 and record[23] == 0x80 | 32  # three arrays, VPS first

    keep = lambda u: (u[0] >> 1) & 0x3F not in (32, 33, 34, 35)  # noqa: E731
    samples = [length_prefixed(u for u in split_annexb(p) if keep(u)) for p in packets]
    frames = decode("hevc", record, samples)
    assert len(frames) == len(packets)
    assert (frames[0].width, frames[0].height) == (width, height)
    first_slice = [u for u in split_annexb(packets[0]) if keep(u) and (u[0] >> 1) & 0x3F < 32]
    assert nal.is_hevc_irap(first_slice[0])


def test_hevc_errors() -> None:
    with pytest.raises(NALError):
        parse_hevc_sps(b"\x40\x01\x0c")  # a VPS
    with pytest.raises(NALError):
        parse_hevc_sps(b"\x42\x01\x01")
    with pytest.raises(NALError):
        hevc_decoder_config([], [b"\x42\x01"], [b"\x44\x01"])
    assert not nal.is_hevc_irap(b"\x02\x01")  # TRAIL_R
    assert nal.is_hevc_irap(b"\x2a\x01")  # CRA (21)


# --------------------------------------------------------------------- AAC


def test_adts_header_fields() -> None:
    header = parse_adts_header(adts_header(107, sr_index=4, channels=2))
    assert (header.object_type, header.sample_rate, header.channels) == (2, 44100, 2)
    assert (header.frame_length, header.header_length) == (107, 7)
    assert header.audio_specific_config == b"\x12\x10"
    assert parse_adts_header(adts_header(50, crc=True)).header_length == 9


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xf1\x50",  # truncated
        b"\xfe\xf1\x50\x80\x10\x1f\xfc",  # no sync
        b"\xff\xf3\x50\x80\x10\x1f\xfc",  # layer 1
        adts_header(100, sr_index=13),
        adts_header(100, channels=0),
        adts_header(5),
        adts_header(100, blocks=2),
    ],
)
def test_adts_header_refusals(data: bytes) -> None:
    with pytest.raises(ADTSError):
        parse_adts_header(data)


def test_split_adts_skips_garbage_and_keeps_the_tail() -> None:
    f1 = adts_header(7 + 10) + bytes(range(10))
    f2 = adts_header(7 + 3) + b"abc"
    partial = adts_header(7 + 50) + b"12345"
    frames, rest = split_adts(b"\x00\xff\x12" + f1 + b"junk" + f2 + partial)
    assert [f.payload for f in frames] == [bytes(range(10)), b"abc"]
    assert frames[0].offset == 3
    assert rest == partial
    frames, rest = split_adts(rest + bytes(45))
    assert len(frames) == 1 and rest == b""


def test_adts_from_ffmpeg_aac_encoder() -> None:
    buf = io.BytesIO()
    with av.open(buf, "w", format="adts") as out:
        stream = out.add_stream("aac", rate=44100)
        stream.layout = "stereo"
        for i in range(20):
            frame = av.AudioFrame(format="fltp", layout="stereo", samples=1024)
            for plane in frame.planes:
                plane.update(struct.pack("<f", 0.1 * (i % 3)) * 1024)
            frame.sample_rate = 44100
            frame.pts = i * 1024
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
        asc = bytes(stream.codec_context.extradata or b"")
    frames, rest = split_adts(buf.getvalue())
    assert rest == b"" and len(frames) >= 20
    # FFmpeg's record may carry a backward-compatible SBR sync extension after the 2 core bytes
    assert {f.header.audio_specific_config for f in frames} == {asc[:2]}
    assert parse_audio_specific_config(asc) == (2, 44100, 2)
    decoder = av.CodecContext.create("aac", "r")
    decoder.extradata = frames[0].header.audio_specific_config
    decoded = []
    for f in frames:
        decoded += decoder.decode(av.Packet(f.payload))
    assert len(decoded) >= len(frames) - 2
    assert decoded[-1].sample_rate == 44100 and decoded[-1].samples == 1024


def test_audio_specific_config() -> None:
    assert audio_specific_config(2, 3, 1) == b"\x11\x88"
    assert parse_audio_specific_config(b"\x11\x88") == (2, 48000, 1)
    # escaped object type 31 -> 32 + 2, explicit 24-bit sampling frequency 22222 Hz, 2 channels
    bits = (31 << 6 | 2) << 4 | 15
    bits = ((bits << 24) | 22222) << 4 | 2
    raw = (bits << 5).to_bytes(6, "big")
    assert parse_audio_specific_config(raw) == (34, 22222, 2)
    with pytest.raises(NALError):
        parse_audio_specific_config(b"\x17")
    with pytest.raises(NALError):
        audio_specific_config(0, 3, 2)


# ---------------------------------------------------------------- fuzzing


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_parsers_only_raise_nal_error(data: bytes) -> None:
    for fn in (
        lambda: parse_h264_sps(b"\x67" + data),
        lambda: parse_hevc_sps(b"\x42\x01" + data),
        lambda: nal.h264_pps_id(b"\x68" + data),
        lambda: nal.hevc_pps_id(b"\x44\x01" + data),
        lambda: nal.hevc_vps_id(b"\x40\x01" + data),
        lambda: parse_avc_decoder_config(data),
        lambda: parse_adts_header(data),
        lambda: parse_audio_specific_config(data),
        lambda: avc_decoder_config([b"\x67" + data], [b"\x68\xce"]),
        lambda: hevc_decoder_config([b"\x40\x01"], [b"\x42\x01" + data], [b"\x44\x01"]),
        lambda: split_length_prefixed(data),
    ):
        try:
            fn()
        except NALError:
            pass
    split_annexb(data)
    frames, rest = split_adts(data)
    assert len(rest) <= nal.ADTS_MAX_FRAME
    assert all(len(f.payload) == f.header.frame_length - f.header.header_length for f in frames)
