"""H.264 / HEVC bitstream helpers and AAC ADTS parsing, shared by every producer.

Pure functions on ``bytes``: no I/O, no clock. Every malformed input raises
:class:`NALError` (ADTS problems raise its subclass :class:`ADTSError`);
nothing else escapes for any byte string.

What is covered:

- Annex-B byte streams (ITU-T H.264 Annex B / H.265 Annex B): split into NAL
  units on 3- and 4-byte start codes, and re-frame with 4-byte big-endian
  lengths (AVCC/HVCC, ISO/IEC 14496-15) for MP4 and FLV;
- decoder configuration records: ``AVCDecoderConfigurationRecord`` (avcC)
  from SPS/PPS and ``HEVCDecoderConfigurationRecord`` (hvcC) from
  VPS/SPS/PPS, plus a parser for avcC;
- sequence parameter sets: picture size (cropping applied), profile, level,
  chroma format and bit depths, for H.264 (all profiles, including the high
  profiles' ``chroma_format_idc`` and scaling lists) and HEVC;
- random access: IDR for H.264, IRAP (BLA/IDR/CRA) for HEVC;
- AAC: ADTS headers (ISO/IEC 13818-7 / 14496-3) to the MPEG-4
  ``AudioSpecificConfig``, sample rate, channels and raw frames.

Limits: parameter sets are parsed from their first :data:`MAX_PARAMETER_SET_SIZE`
bytes only (real ones are under 1 KiB); larger ones are refused. Pictures
larger than :data:`MAX_PICTURE_DIMENSION` pixels on a side are refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "ADTSError",
    "ADTSFrame",
    "ADTSHeader",
    "AAC_SAMPLES_PER_FRAME",
    "AVCConfig",
    "H264SPS",
    "HEVCSPS",
    "BitReader",
    "NALError",
    "annexb_to_avcc",
    "audio_specific_config",
    "avc_decoder_config",
    "h264_nal_type",
    "h264_pps_id",
    "hevc_decoder_config",
    "hevc_nal_type",
    "hevc_pps_id",
    "hevc_vps_id",
    "is_h264_idr",
    "is_hevc_irap",
    "length_prefixed",
    "parse_adts_header",
    "parse_audio_specific_config",
    "parse_avc_decoder_config",
    "parse_h264_sps",
    "parse_hevc_sps",
    "split_adts",
    "split_annexb",
    "split_length_prefixed",
    "unescape_rbsp",
]

MAX_PARAMETER_SET_SIZE = 65_535
"""Largest SPS/PPS/VPS accepted, in bytes (the avcC/hvcC length field is 16 bits)."""

MAX_PICTURE_DIMENSION = 16_384
"""Largest accepted picture width or height, in pixels."""

AAC_SAMPLES_PER_FRAME = 1024
"""PCM samples per channel in one AAC-LC raw data block."""


class NALError(ValueError):
    """Malformed or unsupported H.264/HEVC/AAC bitstream data."""


class ADTSError(NALError):
    """Malformed or unsupported ADTS header."""


# --------------------------------------------------------------------------
# NAL unit framing


H264_NAL_SLICE = 1
H264_NAL_IDR = 5
H264_NAL_SEI = 6
H264_NAL_SPS = 7
H264_NAL_PPS = 8
H264_NAL_AUD = 9
H264_NAL_FILLER = 12

HEVC_NAL_BLA_W_LP = 16
HEVC_NAL_CRA = 21
HEVC_NAL_IRAP_MAX = 23
HEVC_NAL_VPS = 32
HEVC_NAL_SPS = 33
HEVC_NAL_PPS = 34
HEVC_NAL_AUD = 35
HEVC_NAL_FILLER = 38


def split_annexb(data: bytes) -> list[bytes]:
    """Split an Annex-B byte stream into NAL units (start codes removed).

    Start codes are ``00 00 01`` or ``00 00 00 01``; trailing zero bytes of a
    unit (the extra zero of a 4-byte start code, ``trailing_zero_8bits``)
    are removed. Bytes before the first start code are ignored, empty units
    are skipped. Returns ``[]`` when ``data`` holds no start code.
    """
    units: list[bytes] = []
    find = data.find
    start = find(b"\x00\x00\x01")
    while start >= 0:
        begin = start + 3
        nxt = find(b"\x00\x00\x01", begin)
        end = len(data) if nxt < 0 else nxt
        stop = end
        while stop > begin and data[stop - 1] == 0:
            stop -= 1
        if stop > begin:
            units.append(data[begin:stop])
        start = nxt
    return units


def length_prefixed(nals: Iterable[bytes], length_size: int = 4) -> bytes:
    """Frame NAL units with big-endian length prefixes (AVCC/HVCC).

    ``length_size`` is 1, 2 or 4 bytes; a unit too long for it raises
    :class:`NALError`.
    """
    if length_size not in (1, 2, 4):
        raise NALError(f"length size must be 1, 2 or 4, not {length_size}")
    limit = 1 << (8 * length_size)
    out = bytearray()
    for nal in nals:
        if len(nal) >= limit:
            raise NALError(f"NAL unit of {len(nal)} bytes does not fit a {length_size}-byte length")
        out += len(nal).to_bytes(length_size, "big")
        out += nal
    return bytes(out)


def annexb_to_avcc(data: bytes) -> bytes:
    """Convert an Annex-B byte stream to 4-byte length-prefixed NAL units."""
    return length_prefixed(split_annexb(data))


def split_length_prefixed(data: bytes, length_size: int = 4) -> list[bytes]:
    """Split AVCC/HVCC data (``length_size``-byte big-endian lengths) into NAL units.

    Raises :class:`NALError` when a length runs past the end of ``data``.
    """
    if length_size not in (1, 2, 3, 4):
        raise NALError(f"length size must be 1 to 4, not {length_size}")
    units: list[bytes] = []
    pos = 0
    size = len(data)
    while pos < size:
        if pos + length_size > size:
            raise NALError("truncated NAL length prefix")
        n = int.from_bytes(data[pos : pos + length_size], "big")
        pos += length_size
        if pos + n > size:
            raise NALError(f"NAL unit of {n} bytes runs past the end of the sample")
        units.append(data[pos : pos + n])
        pos += n
    return units


def h264_nal_type(nal: bytes) -> int:
    """``nal_unit_type`` (0-31) of an H.264 NAL unit."""
    if not nal:
        raise NALError("empty NAL unit")
    return nal[0] & 0x1F


def hevc_nal_type(nal: bytes) -> int:
    """``nal_unit_type`` (0-63) of an HEVC NAL unit (2-byte header)."""
    if len(nal) < 2:
        raise NALError("HEVC NAL unit shorter than its 2-byte header")
    return (nal[0] >> 1) & 0x3F


def is_h264_idr(nal: bytes) -> bool:
    """True for an IDR slice (a picture a decoder can start from)."""
    return bool(nal) and nal[0] & 0x1F == H264_NAL_IDR


def is_hevc_irap(nal: bytes) -> bool:
    """True for an IRAP picture's slice (BLA, IDR or CRA, types 16-23)."""
    return len(nal) >= 2 and HEVC_NAL_BLA_W_LP <= (nal[0] >> 1) & 0x3F <= HEVC_NAL_IRAP_MAX


def unescape_rbsp(data: bytes) -> bytes:
    """Remove emulation-prevention bytes (``00 00 03`` -> ``00 00``)."""
    return data.replace(b"\x00\x00\x03", b"\x00\x00")


# --------------------------------------------------------------------------
# Bit reading (RBSP, exp-Golomb)


class BitReader:
    """MSB-first bit reader (RBSP, AudioSpecificConfig...); reading past the end, or an
    exp-Golomb code longer than 32 bits, raises :class:`NALError`."""

    __slots__ = ("_data", "_pos", "_end")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0
        self._end = 8 * len(data)

    def u(self, n: int) -> int:
        if self._pos + n > self._end:
            raise NALError("parameter set truncated")
        value = 0
        data = self._data
        pos = self._pos
        for _ in range(n):
            value = (value << 1) | ((data[pos >> 3] >> (7 - (pos & 7))) & 1)
            pos += 1
        self._pos = pos
        return value

    def skip(self, n: int) -> None:
        if self._pos + n > self._end:
            raise NALError("parameter set truncated")
        self._pos += n

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise NALError("exp-Golomb code longer than 32 bits")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


def _rbsp(nal: bytes, header_size: int) -> bytes:
    if len(nal) > MAX_PARAMETER_SET_SIZE:
        raise NALError(f"parameter set of {len(nal)} bytes is too large")
    if len(nal) <= header_size:
        raise NALError("parameter set has no payload")
    return unescape_rbsp(nal[header_size:])


def _ue_max(bits: BitReader, limit: int, what: str) -> int:
    value = bits.ue()
    if value > limit:
        raise NALError(f"{what} = {value} is out of range (max {limit})")
    return value


# --------------------------------------------------------------------------
# H.264 parameter sets


_H264_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})


@dataclass(frozen=True, slots=True)
class H264SPS:
    """Fields of an H.264 sequence parameter set. Sizes in pixels, cropping applied."""

    profile_idc: int
    constraint_flags: int
    level_idc: int
    sps_id: int
    chroma_format_idc: int
    bit_depth_luma: int
    bit_depth_chroma: int
    width: int
    height: int
    frame_mbs_only: bool


def _skip_h264_scaling_list(bits: BitReader, size: int) -> None:
    last = 8
    nxt = 8
    for _ in range(size):
        if nxt != 0:
            delta = bits.se()
            if not -128 <= delta <= 127:
                raise NALError("delta_scale out of range")
            nxt = (last + delta + 256) % 256
        last = nxt if nxt != 0 else last


def parse_h264_sps(nal: bytes) -> H264SPS:
    """Parse an H.264 SPS NAL unit (with its 1-byte header) up to the cropping window.

    Handles every profile (``chroma_format_idc``, bit depths and scaling
    lists of the high profiles), field coding (``frame_mbs_only_flag``) and
    frame cropping. Raises :class:`NALError` on a truncated or
    out-of-range SPS.
    """
    if h264_nal_type(nal) != H264_NAL_SPS:
        raise NALError("not an H.264 SPS")
    bits = BitReader(_rbsp(nal, 1))
    profile_idc = bits.u(8)
    constraint_flags = bits.u(8)
    level_idc = bits.u(8)
    sps_id = _ue_max(bits, 31, "seq_parameter_set_id")
    chroma_format_idc = 1
    separate_colour_plane = False
    bit_depth_luma = bit_depth_chroma = 8
    if profile_idc in _H264_HIGH_PROFILES:
        chroma_format_idc = _ue_max(bits, 3, "chroma_format_idc")
        if chroma_format_idc == 3:
            separate_colour_plane = bits.u(1) == 1
        bit_depth_luma = 8 + _ue_max(bits, 6, "bit_depth_luma_minus8")
        bit_depth_chroma = 8 + _ue_max(bits, 6, "bit_depth_chroma_minus8")
        bits.skip(1)  # qpprime_y_zero_transform_bypass_flag
        if bits.u(1):  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format_idc != 3 else 12):
                if bits.u(1):
                    _skip_h264_scaling_list(bits, 16 if i < 6 else 64)
    _ue_max(bits, 12, "log2_max_frame_num_minus4")
    poc_type = _ue_max(bits, 2, "pic_order_cnt_type")
    if poc_type == 0:
        _ue_max(bits, 12, "log2_max_pic_order_cnt_lsb_minus4")
    elif poc_type == 1:
        bits.skip(1)  # delta_pic_order_always_zero_flag
        bits.se()  # offset_for_non_ref_pic
        bits.se()  # offset_for_top_to_bottom_field
        for _ in range(_ue_max(bits, 255, "num_ref_frames_in_pic_order_cnt_cycle")):
            bits.se()
    _ue_max(bits, 32, "max_num_ref_frames")
    bits.skip(1)  # gaps_in_frame_num_value_allowed_flag
    width_mbs = _ue_max(bits, MAX_PICTURE_DIMENSION // 16, "pic_width_in_mbs_minus1") + 1
    height_map_units = _ue_max(bits, MAX_PICTURE_DIMENSION // 16, "pic_height_in_map_units_minus1") + 1
    frame_mbs_only = bits.u(1) == 1
    if not frame_mbs_only:
        bits.skip(1)  # mb_adaptive_frame_field_flag
    bits.skip(1)  # direct_8x8_inference_flag
    width = width_mbs * 16
    height = (2 - frame_mbs_only) * height_map_units * 16
    if bits.u(1):  # frame_cropping_flag
        left, right, top, bottom = (bits.ue() for _ in range(4))
        chroma_array_type = 0 if separate_colour_plane else chroma_format_idc
        if chroma_array_type == 0:
            crop_x, crop_y = 1, 2 - frame_mbs_only
        else:
            sub_width = 1 if chroma_format_idc == 3 else 2
            sub_height = 2 if chroma_format_idc == 1 else 1
            crop_x, crop_y = sub_width, sub_height * (2 - frame_mbs_only)
        width -= crop_x * (left + right)
        height -= crop_y * (top + bottom)
    if not (0 < width <= MAX_PICTURE_DIMENSION and 0 < height <= MAX_PICTURE_DIMENSION):
        raise NALError(f"invalid picture size {width}x{height}")
    return H264SPS(
        profile_idc=profile_idc,
        constraint_flags=constraint_flags,
        level_idc=level_idc,
        sps_id=sps_id,
        chroma_format_idc=chroma_format_idc,
        bit_depth_luma=bit_depth_luma,
        bit_depth_chroma=bit_depth_chroma,
        width=width,
        height=height,
        frame_mbs_only=frame_mbs_only,
    )


def h264_pps_id(nal: bytes) -> int:
    """``pic_parameter_set_id`` of an H.264 PPS NAL unit."""
    if h264_nal_type(nal) != H264_NAL_PPS:
        raise NALError("not an H.264 PPS")
    return _ue_max(BitReader(_rbsp(nal, 1)), 255, "pic_parameter_set_id")


def avc_decoder_config(sps: Sequence[bytes], pps: Sequence[bytes]) -> bytes:
    """Build an AVCDecoderConfigurationRecord (avcC) with 4-byte NAL lengths.

    ``sps``/``pps`` are NAL units with their header byte. Profile and level
    come from the first SPS; for the high profiles (100, 110, 122, 144) the
    chroma format and bit-depth extension is appended. Raises
    :class:`NALError` when a list is empty or too long (31 SPS, 255 PPS), or
    when the first SPS does not parse.
    """
    if not sps or not pps:
        raise NALError("an avcC needs at least one SPS and one PPS")
    if len(sps) > 31 or len(pps) > 255:
        raise NALError("too many parameter sets for an avcC")
    info = parse_h264_sps(sps[0])
    out = bytearray((1, info.profile_idc, info.constraint_flags, info.level_idc, 0xFC | 3, 0xE0 | len(sps)))
    for nal in sps:
        if not nal or len(nal) > MAX_PARAMETER_SET_SIZE:
            raise NALError("invalid SPS size")
        out += len(nal).to_bytes(2, "big") + nal
    out.append(len(pps))
    for nal in pps:
        if not nal or len(nal) > MAX_PARAMETER_SET_SIZE:
            raise NALError("invalid PPS size")
        out += len(nal).to_bytes(2, "big") + nal
    if info.profile_idc in (100, 110, 122, 144):
        out += bytes(
            (
                0xFC | info.chroma_format_idc,
                0xF8 | (info.bit_depth_luma - 8),
                0xF8 | (info.bit_depth_chroma - 8),
                0,
            )
        )
    return bytes(out)


@dataclass(frozen=True, slots=True)
class AVCConfig:
    """Content of an avcC: NAL length size in bytes and the parameter sets."""

    length_size: int
    sps: tuple[bytes, ...]
    pps: tuple[bytes, ...]


def parse_avc_decoder_config(record: bytes) -> AVCConfig:
    """Parse an AVCDecoderConfigurationRecord (as carried by FLV and MP4 avcC)."""
    if len(record) < 7 or record[0] != 1:
        raise NALError("not an AVCDecoderConfigurationRecord (version 1)")
    length_size = (record[4] & 3) + 1
    if length_size == 3:
        raise NALError("avcC NAL length size of 3 bytes is not allowed")
    pos = 5
    lists: list[tuple[bytes, ...]] = []
    for mask in (0x1F, 0xFF):
        if pos >= len(record):
            raise NALError("truncated avcC")
        count = record[pos] & mask
        pos += 1
        items = []
        for _ in range(count):
            if pos + 2 > len(record):
                raise NALError("truncated avcC")
            n = int.from_bytes(record[pos : pos + 2], "big")
            pos += 2
            if n == 0 or pos + n > len(record):
                raise NALError("truncated avcC parameter set")
            items.append(record[pos : pos + n])
            pos += n
        lists.append(tuple(items))
    return AVCConfig(length_size=length_size, sps=lists[0], pps=lists[1])


# --------------------------------------------------------------------------
# HEVC parameter sets


@dataclass(frozen=True, slots=True)
class HEVCSPS:
    """Fields of an HEVC sequence parameter set. Sizes in pixels, conformance window applied.

    ``profile_tier_level`` is the 12 raw bytes of the general profile, tier
    and level (profile space .. general_level_idc) as copied into hvcC.
    """

    vps_id: int
    sps_id: int
    max_sub_layers: int
    temporal_id_nesting: bool
    profile_tier_level: bytes
    chroma_format_idc: int
    bit_depth_luma: int
    bit_depth_chroma: int
    width: int
    height: int


def parse_hevc_sps(nal: bytes) -> HEVCSPS:
    """Parse an HEVC SPS NAL unit (2-byte header) up to the bit depths."""
    if hevc_nal_type(nal) != HEVC_NAL_SPS:
        raise NALError("not an HEVC SPS")
    rbsp = _rbsp(nal, 2)
    bits = BitReader(rbsp)
    vps_id = bits.u(4)
    max_sub_layers_minus1 = bits.u(3)
    if max_sub_layers_minus1 > 6:
        raise NALError("sps_max_sub_layers_minus1 out of range")
    temporal_id_nesting = bits.u(1) == 1
    if len(rbsp) < 13:
        raise NALError("parameter set truncated")
    general_ptl = rbsp[1:13]
    bits.skip(96)
    flags = [(bits.u(1), bits.u(1)) for _ in range(max_sub_layers_minus1)]
    if max_sub_layers_minus1 > 0:
        bits.skip(2 * (8 - max_sub_layers_minus1))
    for profile_present, level_present in flags:
        if profile_present:
            bits.skip(88)
        if level_present:
            bits.skip(8)
    sps_id = _ue_max(bits, 15, "sps_seq_parameter_set_id")
    chroma_format_idc = _ue_max(bits, 3, "chroma_format_idc")
    separate_colour_plane = False
    if chroma_format_idc == 3:
        separate_colour_plane = bits.u(1) == 1
    width = _ue_max(bits, MAX_PICTURE_DIMENSION, "pic_width_in_luma_samples")
    height = _ue_max(bits, MAX_PICTURE_DIMENSION, "pic_height_in_luma_samples")
    if bits.u(1):  # conformance_window_flag
        left, right, top, bottom = (bits.ue() for _ in range(4))
        chroma_array_type = 0 if separate_colour_plane else chroma_format_idc
        sub_width = 2 if chroma_array_type in (1, 2) else 1
        sub_height = 2 if chroma_array_type == 1 else 1
        width -= sub_width * (left + right)
        height -= sub_height * (top + bottom)
    bit_depth_luma = 8 + _ue_max(bits, 8, "bit_depth_luma_minus8")
    bit_depth_chroma = 8 + _ue_max(bits, 8, "bit_depth_chroma_minus8")
    if not (0 < width <= MAX_PICTURE_DIMENSION and 0 < height <= MAX_PICTURE_DIMENSION):
        raise NALError(f"invalid picture size {width}x{height}")
    return HEVCSPS(
        vps_id=vps_id,
        sps_id=sps_id,
        max_sub_layers=max_sub_layers_minus1 + 1,
        temporal_id_nesting=temporal_id_nesting,
        profile_tier_level=general_ptl,
        chroma_format_idc=chroma_format_idc,
        bit_depth_luma=bit_depth_luma,
        bit_depth_chroma=bit_depth_chroma,
        width=width,
        height=height,
    )


def hevc_vps_id(nal: bytes) -> int:
    """``vps_video_parameter_set_id`` of an HEVC VPS NAL unit."""
    if hevc_nal_type(nal) != HEVC_NAL_VPS:
        raise NALError("not an HEVC VPS")
    return _rbsp(nal, 2)[0] >> 4


def hevc_pps_id(nal: bytes) -> int:
    """``pps_pic_parameter_set_id`` of an HEVC PPS NAL unit."""
    if hevc_nal_type(nal) != HEVC_NAL_PPS:
        raise NALError("not an HEVC PPS")
    return _ue_max(BitReader(_rbsp(nal, 2)), 63, "pps_pic_parameter_set_id")


def hevc_decoder_config(vps: Sequence[bytes], sps: Sequence[bytes], pps: Sequence[bytes]) -> bytes:
    """Build an HEVCDecoderConfigurationRecord (hvcC) with 4-byte NAL lengths.

    Profile, tier, level, chroma format, bit depths and temporal layering
    come from the first SPS. ``min_spatial_segmentation_idc``,
    ``parallelismType``, ``avgFrameRate`` and ``constantFrameRate`` are
    written as 0 (unknown), which the format allows.
    """
    if not vps or not sps or not pps:
        raise NALError("an hvcC needs at least one VPS, SPS and PPS")
    info = parse_hevc_sps(sps[0])
    out = bytearray((1,))
    out += info.profile_tier_level
    out += bytes(
        (
            0xF0,
            0x00,  # min_spatial_segmentation_idc = 0
            0xFC,  # parallelismType = 0
            0xFC | info.chroma_format_idc,
            0xF8 | (info.bit_depth_luma - 8),
            0xF8 | (info.bit_depth_chroma - 8),
            0,
            0,  # avgFrameRate
            (info.max_sub_layers << 3) | (int(info.temporal_id_nesting) << 2) | 3,
            3,  # numOfArrays
        )
    )
    for nal_type, nals in ((HEVC_NAL_VPS, vps), (HEVC_NAL_SPS, sps), (HEVC_NAL_PPS, pps)):
        if len(nals) > 0xFFFF:
            raise NALError("too many parameter sets for an hvcC")
        out.append(0x80 | nal_type)  # array_completeness = 1
        out += len(nals).to_bytes(2, "big")
        for nal in nals:
            if len(nal) < 2 or len(nal) > MAX_PARAMETER_SET_SIZE:
                raise NALError("invalid parameter set size")
            out += len(nal).to_bytes(2, "big") + nal
    return bytes(out)


# --------------------------------------------------------------------------
# AAC: ADTS and AudioSpecificConfig


SAMPLE_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)
"""MPEG-4 sampling frequency table, indexed by ``sampling_frequency_index``."""

ADTS_MAX_FRAME = 8191
"""Largest ADTS frame (13-bit ``aac_frame_length``), header included, in bytes."""


@dataclass(frozen=True, slots=True)
class ADTSHeader:
    """One ADTS header. ``frame_length`` and ``header_length`` in bytes."""

    object_type: int
    sample_rate_index: int
    channels: int
    frame_length: int
    header_length: int
    raw_blocks: int

    @property
    def sample_rate(self) -> int:
        """Sampling rate in Hz."""
        return SAMPLE_RATES[self.sample_rate_index]

    @property
    def audio_specific_config(self) -> bytes:
        """The MPEG-4 AudioSpecificConfig equivalent to this header."""
        return audio_specific_config(self.object_type, self.sample_rate_index, self.channels)


@dataclass(frozen=True, slots=True)
class ADTSFrame:
    """A raw AAC frame cut out of an ADTS stream, at byte ``offset`` of the input."""

    header: ADTSHeader
    payload: bytes
    offset: int


def parse_adts_header(data: bytes, offset: int = 0) -> ADTSHeader:
    """Parse the ADTS header at ``data[offset:]``.

    Refused with :class:`ADTSError`: no sync word, ``layer`` not 0, reserved
    sampling index, channel configuration 0 (a program config element would
    be needed), a frame length shorter than its header, and frames holding
    more than one raw data block (they cannot be split without decoding).
    """
    if offset < 0 or len(data) - offset < 7:
        raise ADTSError("truncated ADTS header")
    b = data[offset : offset + 7]
    if b[0] != 0xFF or b[1] & 0xF0 != 0xF0:
        raise ADTSError("no ADTS sync word")
    if b[1] & 0x06:
        raise ADTSError("ADTS layer must be 0")
    protection_absent = b[1] & 1
    object_type = (b[2] >> 6) + 1
    sr_index = (b[2] >> 2) & 0x0F
    if sr_index >= len(SAMPLE_RATES):
        raise ADTSError(f"reserved sampling frequency index {sr_index}")
    channels = ((b[2] & 1) << 2) | (b[3] >> 6)
    if channels == 0:
        raise ADTSError("channel configuration 0 (program config element) is not supported")
    frame_length = ((b[3] & 0x03) << 11) | (b[4] << 3) | (b[5] >> 5)
    header_length = 7 if protection_absent else 9
    if frame_length <= header_length:
        raise ADTSError(f"ADTS frame length {frame_length} is shorter than its header")
    raw_blocks = (b[6] & 0x03) + 1
    if raw_blocks != 1:
        raise ADTSError("ADTS frames with several raw data blocks are not supported")
    return ADTSHeader(object_type, sr_index, channels, frame_length, header_length, raw_blocks)


def split_adts(data: bytes) -> tuple[list[ADTSFrame], bytes]:
    """Cut an ADTS byte stream into frames.

    Returns the complete frames and the tail that may start an incomplete
    frame (to prepend to the next chunk; at most :data:`ADTS_MAX_FRAME`
    bytes). Bytes that do not start a valid header are skipped one by one
    (resynchronisation); this never raises.
    """
    frames: list[ADTSFrame] = []
    pos = 0
    size = len(data)
    while pos < size:
        sync = data.find(b"\xff", pos)
        if sync < 0:
            return frames, b""
        if size - sync < 7:
            return frames, data[sync:]
        try:
            header = parse_adts_header(data, sync)
        except ADTSError:
            pos = sync + 1
            continue
        end = sync + header.frame_length
        if end > size:
            return frames, data[sync:]
        frames.append(ADTSFrame(header, data[sync + header.header_length : end], sync))
        pos = end
    return frames, b""


def audio_specific_config(object_type: int, sample_rate_index: int, channels: int) -> bytes:
    """Build a 2-byte AudioSpecificConfig (object type < 31, table sample rate)."""
    if not 1 <= object_type <= 30:
        raise NALError(f"audio object type {object_type} is out of range")
    if not 0 <= sample_rate_index < len(SAMPLE_RATES):
        raise NALError(f"sampling frequency index {sample_rate_index} is out of range")
    if not 0 <= channels <= 15:
        raise NALError(f"channel configuration {channels} is out of range")
    value = (object_type << 11) | (sample_rate_index << 7) | (channels << 3)
    return value.to_bytes(2, "big")


def parse_audio_specific_config(asc: bytes) -> tuple[int, int, int]:
    """Return ``(object_type, sample_rate_hz, channel_configuration)`` of an AudioSpecificConfig.

    Handles the escaped object type (31 -> 32 + 6 bits) and the explicit
    24-bit sampling frequency (index 15). Channel configuration 0 is
    returned as is (the layout is then in a program config element).
    """
    bits = BitReader(bytes(asc[:16]))
    object_type = bits.u(5)
    if object_type == 31:
        object_type = 32 + bits.u(6)
    index = bits.u(4)
    if index == 15:
        rate = bits.u(24)
    elif index < len(SAMPLE_RATES):
        rate = SAMPLE_RATES[index]
    else:
        raise NALError(f"reserved sampling frequency index {index}")
    if rate == 0:
        raise NALError("sampling frequency 0")
    channels = bits.u(4)
    return object_type, rate, channels
