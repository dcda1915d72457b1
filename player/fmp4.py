"""Fragmented MP4 (CMAF) box writer: one init segment, then moof+mdat fragments.

Sans-I/O: functions take plain data (the :mod:`player.media` configs, encoded
samples) and return ``bytes``. Facts come from ISO/IEC 14496-12 (ISOBMFF),
14496-15 (``avcC``/``hvcC``), 14496-14 and 14496-3 (``esds``,
AudioSpecificConfig) and Apple's HLS authoring rules for fMP4.

Layout written by :func:`init_segment`::

    ftyp (major iso6; compatible iso6, cmfc, mp41)
    moov
      mvhd                       movie timescale 1000, duration 0 (live)
      trak per track             track_ID = position in the list + 1
        tkhd                     enabled|in_movie|in_preview, width/height 16.16
        mdia
          mdhd                   timescale: video 90000, audio = sample rate
          hdlr                   vide / soun
          minf
            vmhd | smhd
            dinf/dref            one self-contained 'url ' entry
            stbl                 stsd (avc1+avcC | hvc1+hvcC | mp4a+esds),
                                 empty stts/stsc/stsz/stco
      mvex
        trex per track           all defaults 0 (every fragment states its own)

and by :func:`fragment`::

    moof
      mfhd                       sequence_number
      traf per run
        tfhd                     default-base-is-moof + default_sample_flags
        tfdt (version 1)         64-bit baseMediaDecodeTime
        trun                     data_offset, per-sample duration and size,
                                 sample flags only where the defaults do not
                                 say it, composition offsets (version 1,
                                 signed) only when some offset is non-zero
    mdat                         the runs' sample bytes, in run order

Negative composition offsets (``trun`` version 1) are how a CMAF writer makes
the first presented frame start at presentation time 0 without an edit list;
the ``iso6`` brand allows them.

Limits: 32-bit box sizes (a fragment must stay under 4 GiB), 32-bit sample
durations and sizes, signed 32-bit composition offsets, 64-bit decode times.
Violations raise :class:`Fmp4Error`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from player.media import TIMESCALE, AudioConfig, TrackConfig, VideoConfig
from player.nal import BitReader, NALError, parse_h264_sps, parse_hevc_sps

__all__ = [
    "MOVIE_TIMESCALE",
    "SAMPLE_FLAGS_NON_SYNC",
    "SAMPLE_FLAGS_SYNC",
    "AacInfo",
    "Fmp4Error",
    "Sample",
    "TrackRun",
    "aac_info",
    "check_config",
    "codec_string",
    "fragment",
    "init_segment",
    "timescale_of",
    "video_dimensions",
]

MOVIE_TIMESCALE = 1000
"""Ticks per second of the ``mvhd``/``tkhd`` durations (all 0: a live has none)."""

SAMPLE_FLAGS_SYNC = 0x0200_0000
"""ISOBMFF sample_flags of a sync sample: sample_depends_on = 2 (depends on no other)."""

SAMPLE_FLAGS_NON_SYNC = 0x0101_0000
"""sample_flags of a non-sync sample: sample_depends_on = 1, sample_is_non_sync_sample = 1."""

_U32 = 0xFFFF_FFFF
_U64 = 0xFFFF_FFFF_FFFF_FFFF
_I32_MIN = -(2**31)
_I32_MAX = 2**31 - 1

# tfhd / trun flag bits (ISO/IEC 14496-12, 8.8.7 and 8.8.8)
_TFHD_DEFAULT_SAMPLE_FLAGS = 0x00_0020
_TFHD_DEFAULT_BASE_IS_MOOF = 0x02_0000
_TRUN_DATA_OFFSET = 0x00_0001
_TRUN_FIRST_SAMPLE_FLAGS = 0x00_0004
_TRUN_SAMPLE_DURATION = 0x00_0100
_TRUN_SAMPLE_SIZE = 0x00_0200
_TRUN_SAMPLE_FLAGS = 0x00_0400
_TRUN_COMPOSITION_OFFSETS = 0x00_0800

_UNITY_MATRIX = struct.pack(">9I", 0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000)

# MPEG-4 Audio sampling frequency table (ISO/IEC 14496-3, 1.6.3.4), index -> Hz
_AAC_SAMPLE_RATES = (
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050,
    16000, 12000, 11025, 8000, 7350,
)  # fmt: skip
# Audio object types whose GASpecificConfig starts with frameLengthFlag
_GA_OBJECT_TYPES = frozenset({1, 2, 3, 4, 6, 7, 17, 19, 20, 21, 22, 23})


class Fmp4Error(ValueError):
    """Input that cannot be written as fragmented MP4 (bad config record, out-of-range value)."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One sample of a run.

    ``duration`` and ``composition_offset`` are in the track's media timescale
    (see :func:`timescale_of`); ``composition_offset`` = presentation time minus
    decode time, may be negative. ``sync`` marks a sample a decoder can start
    from (IDR/IRAP; every AAC frame).
    """

    data: bytes
    duration: int
    sync: bool = True
    composition_offset: int = 0


@dataclass(frozen=True, slots=True)
class TrackRun:
    """The samples of one track in one fragment.

    ``track_id`` is the ID :func:`init_segment` gave the track (its position
    in the list + 1); ``base_decode_time`` is the decode time of the first
    sample, in the track's media timescale.
    """

    track_id: int
    base_decode_time: int
    samples: Sequence[Sample]


@dataclass(frozen=True, slots=True)
class AacInfo:
    """What :func:`aac_info` reads from an AudioSpecificConfig.

    ``object_type`` is the MPEG-4 audio object type (2 = AAC-LC, 5 = SBR, 29 =
    PS); ``core_sample_rate`` the rate of the AAC core in Hz; ``frame_length``
    the number of core samples per frame (1024 or 960).
    """

    object_type: int
    core_sample_rate: int
    channel_configuration: int
    frame_length: int

    def frame_duration(self, timescale: int) -> int:
        """Duration of one frame in ``timescale`` ticks (the output sample rate).

        An HE-AAC stream whose config announces the doubled output rate gets
        ``2 * frame_length``; the value is rounded when the ratio is not whole.
        """
        return max(1, round(self.frame_length * timescale / self.core_sample_rate))


# --------------------------------------------------------------------------- boxes


def _box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    size = 8 + len(body)
    if size > _U32:
        raise Fmp4Error(f"box {kind.decode()} too large ({size} bytes)")
    return struct.pack(">I4s", size, kind) + body


def _full_box(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    return _box(kind, struct.pack(">I", (version << 24) | flags), *payload)


# --------------------------------------------------------------------------- avcC / hvcC


@dataclass(frozen=True, slots=True)
class _ConfigRecord:
    record: bytes  # normalized: lengthSizeMinusOne forced to 3
    sps: bytes | None  # first SPS NAL unit (with its header), if any


def _parse_avcc(record: bytes) -> _ConfigRecord:
    """Check an AVCDecoderConfigurationRecord (14496-15, 5.3.3.1) and return it normalized."""
    if len(record) < 7 or record[0] != 1:
        raise Fmp4Error("avcC: not an AVCDecoderConfigurationRecord (version 1, 7+ bytes)")
    pos = 5
    first_sps: bytes | None = None
    for count_mask in (0x1F, 0xFF):  # SPS then PPS
        if pos >= len(record):
            raise Fmp4Error("avcC: truncated parameter set list")
        count = record[pos] & count_mask
        pos += 1
        for _ in range(count):
            if pos + 2 > len(record):
                raise Fmp4Error("avcC: truncated parameter set length")
            (length,) = struct.unpack_from(">H", record, pos)
            pos += 2
            if length == 0 or pos + length > len(record):
                raise Fmp4Error("avcC: parameter set overruns the record")
            if count_mask == 0x1F and first_sps is None:
                first_sps = record[pos : pos + length]
            pos += length
    # The units are 4-byte length prefixed (player.media contract): say so.
    normalized = record[:4] + bytes([record[4] | 0xFF]) + record[5:]
    return _ConfigRecord(normalized, first_sps)


def _parse_hvcc(record: bytes) -> _ConfigRecord:
    """Check an HEVCDecoderConfigurationRecord (14496-15, 8.3.3.1) and return it normalized."""
    if len(record) < 23 or record[0] != 1:
        raise Fmp4Error("hvcC: not an HEVCDecoderConfigurationRecord (version 1, 23+ bytes)")
    pos = 23
    first_sps: bytes | None = None
    for _ in range(record[22]):
        if pos + 3 > len(record):
            raise Fmp4Error("hvcC: truncated NAL unit array")
        nal_type = record[pos] & 0x3F
        (count,) = struct.unpack_from(">H", record, pos + 1)
        pos += 3
        for _ in range(count):
            if pos + 2 > len(record):
                raise Fmp4Error("hvcC: truncated NAL unit length")
            (length,) = struct.unpack_from(">H", record, pos)
            pos += 2
            if length == 0 or pos + length > len(record):
                raise Fmp4Error("hvcC: NAL unit overruns the record")
            if nal_type == 33 and first_sps is None:
                first_sps = record[pos : pos + length]
            pos += length
    normalized = record[:21] + bytes([(record[21] & 0xFC) | 3]) + record[22:]
    return _ConfigRecord(normalized, first_sps)


def _config_record(config: VideoConfig) -> _ConfigRecord:
    if config.codec == "h264":
        return _parse_avcc(config.extradata)
    if config.codec == "hevc":
        return _parse_hvcc(config.extradata)
    raise Fmp4Error(f"unsupported video codec {config.codec!r}")


def video_dimensions(config: VideoConfig) -> tuple[int, int]:
    """Display width and height in pixels, read from the config record's first SPS.

    Falls back to ``config.width``/``config.height`` when the record holds no
    SPS or the SPS cannot be read (they may then be 0). Sample aspect ratio is
    ignored. Raises :class:`Fmp4Error` when the record itself is malformed.
    """
    record = _config_record(config)
    if record.sps is not None:
        try:
            parsed = parse_h264_sps(record.sps) if config.codec == "h264" else parse_hevc_sps(record.sps)
        except NALError:
            pass
        else:
            if 0 < parsed.width <= 0xFFFF and 0 < parsed.height <= 0xFFFF:
                return parsed.width, parsed.height
    return config.width, config.height


# --------------------------------------------------------------------------- AAC


def aac_info(extradata: bytes) -> AacInfo:
    """Read an MPEG-4 AudioSpecificConfig (14496-3, 1.6.2.1) far enough for timing.

    Explicit SBR/PS signalling (object types 5 and 29) is followed to the
    core object type's frame length. Raises :class:`Fmp4Error` when the bytes
    are too short or name a reserved sampling frequency index.
    """
    reader = BitReader(extradata)

    def object_type() -> int:
        value = reader.u(5)
        return 32 + reader.u(6) if value == 31 else value

    def sample_rate() -> int:
        index = reader.u(4)
        if index == 15:
            return reader.u(24)
        if index >= len(_AAC_SAMPLE_RATES):
            raise Fmp4Error(f"AudioSpecificConfig: reserved sampling frequency index {index}")
        return _AAC_SAMPLE_RATES[index]

    try:
        announced = object_type()
        core_rate = sample_rate()
        channels = reader.u(4)
        core_type = announced
        if announced in (5, 29):
            sample_rate()  # extensionSamplingFrequency
            core_type = object_type()
        frame_length = 1024
        if core_type in _GA_OBJECT_TYPES and reader.u(1):
            frame_length = 960
    except NALError as exc:
        raise Fmp4Error(f"AudioSpecificConfig unreadable: {exc}") from None
    if core_rate <= 0:
        raise Fmp4Error("AudioSpecificConfig: sampling frequency 0")
    return AacInfo(announced, core_rate, channels, frame_length)


def _descriptor(tag: int, payload: bytes) -> bytes:
    """An MPEG-4 descriptor (14496-1, 8.3.3): tag, expandable size, payload."""
    length = len(payload)
    if length > 0x0FFF_FFFF:
        raise Fmp4Error("descriptor too large")
    size = [length & 0x7F]
    length >>= 7
    while length:
        size.append(0x80 | (length & 0x7F))
        length >>= 7
    return bytes([tag, *reversed(size)]) + payload


def _esds(config: AudioConfig, track_id: int) -> bytes:
    decoder_specific = _descriptor(0x05, config.extradata)
    decoder_config = _descriptor(
        0x04,
        struct.pack(
            ">BBBHII",
            0x40,  # objectTypeIndication: MPEG-4 Audio (14496-3)
            (0x05 << 2) | 1,  # streamType AudioStream, upStream 0, reserved 1
            0,
            0,  # bufferSizeDB (24 bits, unknown)
            0,  # maxBitrate (unknown)
            0,  # avgBitrate (unknown: variable)
        )
        + decoder_specific,
    )
    sl_config = _descriptor(0x06, b"\x02")  # predefined: MP4 files
    es = _descriptor(0x03, struct.pack(">HB", track_id & 0xFFFF, 0) + decoder_config + sl_config)
    return _full_box(b"esds", 0, 0, es)


# --------------------------------------------------------------------------- configs


def timescale_of(config: TrackConfig) -> int:
    """Media timescale of a track: 90000 for video, the sample rate for audio."""
    return TIMESCALE if isinstance(config, VideoConfig) else config.sample_rate


def check_config(config: TrackConfig) -> None:
    """Raise :class:`Fmp4Error` unless ``config`` can go into an init segment."""
    if isinstance(config, VideoConfig):
        _config_record(config)
        if not (0 <= config.width <= 0xFFFF and 0 <= config.height <= 0xFFFF):
            raise Fmp4Error("video width/height out of range 0..65535")
    elif isinstance(config, AudioConfig):
        if config.codec != "aac":
            raise Fmp4Error(f"unsupported audio codec {config.codec!r}")
        if not 1 <= config.sample_rate <= _U32:
            raise Fmp4Error(f"audio sample rate {config.sample_rate} out of range")
        if not 1 <= config.channels <= 0xFFFF:
            raise Fmp4Error(f"audio channel count {config.channels} out of range")
        aac_info(config.extradata)
    else:
        raise Fmp4Error(f"not a track config: {type(config).__name__}")


def codec_string(config: TrackConfig) -> str:
    """RFC 6381 ``CODECS`` value of a track: ``avc1.PPCCLL``, ``hvc1.…``, ``mp4a.40.N``."""
    check_config(config)
    if isinstance(config, AudioConfig):
        return f"mp4a.40.{aac_info(config.extradata).object_type}"
    record = config.extradata
    if config.codec == "h264":
        return f"avc1.{record[1]:02X}{record[2]:02X}{record[3]:02X}"
    # ISO/IEC 14496-15 Annex E.3
    space = "" if record[1] >> 6 == 0 else "ABC"[(record[1] >> 6) - 1]
    profile = record[1] & 0x1F
    tier = "H" if record[1] & 0x20 else "L"
    (compat,) = struct.unpack_from(">I", record, 2)
    compat_reversed = int(f"{compat:032b}"[::-1], 2)
    constraints = bytearray(record[6:12])
    while constraints and constraints[-1] == 0:
        constraints.pop()
    parts = [f"hvc1.{space}{profile}", f"{compat_reversed:X}", f"{tier}{record[12]}"]
    parts.extend(f"{byte:X}" for byte in constraints)
    return ".".join(parts)


# --------------------------------------------------------------------------- init segment


def _ftyp() -> bytes:
    return _box(b"ftyp", b"iso6", struct.pack(">I", 0), b"iso6", b"cmfc", b"mp41")


def _mvhd(next_track_id: int) -> bytes:
    return _full_box(
        b"mvhd",
        0,
        0,
        struct.pack(">IIII", 0, 0, MOVIE_TIMESCALE, 0),  # creation, modification, timescale, duration
        struct.pack(">IH", 0x0001_0000, 0x0100),  # rate 1.0, volume 1.0
        bytes(10),  # reserved
        _UNITY_MATRIX,
        bytes(24),  # pre_defined
        struct.pack(">I", next_track_id),
    )


def _tkhd(track_id: int, audio: bool, width: int, height: int) -> bytes:
    return _full_box(
        b"tkhd",
        0,
        0x000007,  # track_enabled | track_in_movie | track_in_preview
        struct.pack(">IIII", 0, 0, track_id, 0),  # creation, modification, ID, reserved
        struct.pack(">I", 0),  # duration
        bytes(8),  # reserved
        struct.pack(">hhhH", 0, 0, 0x0100 if audio else 0, 0),  # layer, alternate_group, volume
        _UNITY_MATRIX,
        struct.pack(">II", width << 16, height << 16),
    )


def _mdhd(timescale: int) -> bytes:
    language = ((ord("u") - 0x60) << 10) | ((ord("n") - 0x60) << 5) | (ord("d") - 0x60)
    return _full_box(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, timescale, 0, language, 0))


def _hdlr(handler: bytes, name: bytes) -> bytes:
    return _full_box(b"hdlr", 0, 0, struct.pack(">I4s", 0, handler), bytes(12), name + b"\x00")


def _visual_sample_entry(config: VideoConfig, width: int, height: int) -> bytes:
    record = _config_record(config).record
    if config.codec == "h264":
        entry_type, record_type, compressor = b"avc1", b"avcC", b"AVC Coding"
    else:
        entry_type, record_type, compressor = b"hvc1", b"hvcC", b"HEVC Coding"
    return _box(
        entry_type,
        bytes(6),
        struct.pack(">H", 1),  # data_reference_index
        bytes(16),  # pre_defined, reserved, pre_defined[3]
        struct.pack(">HH", width, height),
        struct.pack(">II", 0x0048_0000, 0x0048_0000),  # 72 dpi
        struct.pack(">IH", 0, 1),  # reserved, frame_count
        bytes([len(compressor)]) + compressor.ljust(31, b"\x00"),
        struct.pack(">Hh", 0x0018, -1),  # depth, pre_defined
        _box(record_type, record),
    )


def _audio_sample_entry(config: AudioConfig, track_id: int) -> bytes:
    # samplerate is 16.16 fixed point: rates above 65535 Hz are written as 0
    # (the decoder takes the rate from the AudioSpecificConfig).
    rate = config.sample_rate << 16 if config.sample_rate <= 0xFFFF else 0
    return _box(
        b"mp4a",
        bytes(6),
        struct.pack(">H", 1),
        bytes(8),  # reserved
        struct.pack(">HHHHI", config.channels, 16, 0, 0, rate),
        _esds(config, track_id),
    )


def _trak(config: TrackConfig, track_id: int) -> bytes:
    if isinstance(config, VideoConfig):
        width, height = video_dimensions(config)
        tkhd = _tkhd(track_id, False, width, height)
        handler = _hdlr(b"vide", b"VideoHandler")
        media_header = _full_box(b"vmhd", 0, 1, bytes(8))  # graphicsmode, opcolor
        entry = _visual_sample_entry(config, width, height)
    else:
        tkhd = _tkhd(track_id, True, 0, 0)
        handler = _hdlr(b"soun", b"SoundHandler")
        media_header = _full_box(b"smhd", 0, 0, bytes(4))  # balance, reserved
        entry = _audio_sample_entry(config, track_id)
    dinf = _box(b"dinf", _full_box(b"dref", 0, 0, struct.pack(">I", 1), _full_box(b"url ", 0, 1)))
    stbl = _box(
        b"stbl",
        _full_box(b"stsd", 0, 0, struct.pack(">I", 1), entry),
        _full_box(b"stts", 0, 0, struct.pack(">I", 0)),
        _full_box(b"stsc", 0, 0, struct.pack(">I", 0)),
        _full_box(b"stsz", 0, 0, struct.pack(">II", 0, 0)),
        _full_box(b"stco", 0, 0, struct.pack(">I", 0)),
    )
    minf = _box(b"minf", media_header, dinf, stbl)
    mdia = _box(b"mdia", _mdhd(timescale_of(config)), handler, minf)
    return _box(b"trak", tkhd, mdia)


def init_segment(tracks: Sequence[TrackConfig]) -> bytes:
    """The CMAF header (ftyp + moov with mvex) for ``tracks``.

    Track IDs are assigned in list order, starting at 1. Raises
    :class:`Fmp4Error` for an empty list or a config :func:`check_config`
    refuses.
    """
    if not tracks:
        raise Fmp4Error("an init segment needs at least one track")
    for config in tracks:
        check_config(config)
    traks = [_trak(config, index + 1) for index, config in enumerate(tracks)]
    trexes = [
        _full_box(b"trex", 0, 0, struct.pack(">IIIII", index + 1, 1, 0, 0, 0))
        for index in range(len(tracks))
    ]
    moov = _box(b"moov", _mvhd(len(tracks) + 1), *traks, _box(b"mvex", *trexes))
    return _ftyp() + moov


# --------------------------------------------------------------------------- fragments


def _check_run(run: TrackRun) -> None:
    if not 1 <= run.track_id <= _U32:
        raise Fmp4Error(f"track_id {run.track_id} out of range")
    if not 0 <= run.base_decode_time <= _U64:
        raise Fmp4Error(f"base_decode_time {run.base_decode_time} out of range")
    if not run.samples:
        raise Fmp4Error(f"run of track {run.track_id} has no samples")
    for sample in run.samples:
        if not 0 <= sample.duration <= _U32:
            raise Fmp4Error(f"sample duration {sample.duration} out of range")
        if not _I32_MIN <= sample.composition_offset <= _I32_MAX:
            raise Fmp4Error(f"composition offset {sample.composition_offset} out of range")
        if len(sample.data) > _U32:
            raise Fmp4Error("sample too large")


_TRAF_DATA_OFFSET_AT: Final = 8 + 20 + 20 + 12 + 4
"""Where trun's data_offset sits in a traf from :func:`_traf`: traf header, tfhd
(12 + 8), tfdt version 1 (12 + 8), trun header (12), sample_count (4)."""


def _traf(run: TrackRun, data_offset: int) -> bytes:
    samples = run.samples
    syncs = [sample.sync for sample in samples]
    first_flags: int | None = None
    per_sample_flags = False
    if all(syncs):
        default_flags = SAMPLE_FLAGS_SYNC
    elif not any(syncs[1:]):
        default_flags = SAMPLE_FLAGS_NON_SYNC
        if syncs[0]:
            first_flags = SAMPLE_FLAGS_SYNC
    else:
        default_flags = SAMPLE_FLAGS_NON_SYNC
        per_sample_flags = True
    offsets = any(sample.composition_offset for sample in samples)

    flags = _TRUN_DATA_OFFSET | _TRUN_SAMPLE_DURATION | _TRUN_SAMPLE_SIZE
    if first_flags is not None:
        flags |= _TRUN_FIRST_SAMPLE_FLAGS
    if per_sample_flags:
        flags |= _TRUN_SAMPLE_FLAGS
    if offsets:
        flags |= _TRUN_COMPOSITION_OFFSETS
    fields = [struct.pack(">Ii", len(samples), data_offset)]
    if first_flags is not None:
        fields.append(struct.pack(">I", first_flags))
    for sample in samples:
        fields.append(struct.pack(">II", sample.duration, len(sample.data)))
        if per_sample_flags:
            fields.append(struct.pack(">I", SAMPLE_FLAGS_SYNC if sample.sync else SAMPLE_FLAGS_NON_SYNC))
        if offsets:
            fields.append(struct.pack(">i", sample.composition_offset))
    trun = _full_box(b"trun", 1 if offsets else 0, flags, *fields)
    tfhd = _full_box(
        b"tfhd",
        0,
        _TFHD_DEFAULT_BASE_IS_MOOF | _TFHD_DEFAULT_SAMPLE_FLAGS,
        struct.pack(">II", run.track_id, default_flags),
    )
    tfdt = _full_box(b"tfdt", 1, 0, struct.pack(">Q", run.base_decode_time))
    return _box(b"traf", tfhd, tfdt, trun)


def fragment(sequence_number: int, runs: Iterable[TrackRun]) -> bytes:
    """One CMAF chunk: a moof with one traf per run, then one mdat.

    ``sequence_number`` (mfhd) should grow by one per fragment, from 1. Each
    run's samples are stored contiguously in the mdat in run order; every
    ``trun`` data_offset counts from the first byte of the moof
    (default-base-is-moof). Raises :class:`Fmp4Error` for no runs, a run
    without samples, two runs of one track, or an out-of-range value.
    """
    runs = list(runs)
    if not 0 <= sequence_number <= _U32:
        raise Fmp4Error(f"sequence_number {sequence_number} out of range")
    if not runs:
        raise Fmp4Error("a fragment needs at least one run")
    for run in runs:
        _check_run(run)
    if len({run.track_id for run in runs}) != len(runs):
        raise Fmp4Error("two runs of the same track in one fragment")

    mfhd = _full_box(b"mfhd", 0, 0, struct.pack(">I", sequence_number))
    # A traf's size does not depend on its data offset: build each once with
    # offset 0, then write the offset in place (trun's data_offset field).
    trafs = [bytearray(_traf(run, 0)) for run in runs]
    moof_size = 8 + len(mfhd) + sum(len(traf) for traf in trafs)
    offset = moof_size + 8  # first byte after the mdat header
    for run, traf in zip(runs, trafs, strict=True):
        if offset > _I32_MAX:
            raise Fmp4Error("fragment too large")
        struct.pack_into(">i", traf, _TRAF_DATA_OFFSET_AT, offset)
        offset += sum(len(sample.data) for sample in run.samples)
    mdat_size = offset - moof_size
    if mdat_size > _U32:
        raise Fmp4Error(f"box mdat too large ({mdat_size} bytes)")
    # one copy of the media: a single join of headers and sample data
    return b"".join([
        struct.pack(">I4s", moof_size, b"moof"), mfhd, *trafs, struct.pack(">I4s", mdat_size, b"mdat"),
        *[sample.data for run in runs for sample in run.samples],
    ])
