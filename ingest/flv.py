"""FLV tag bodies (as carried by RTMP messages) to :mod:`player.media` units.

RTMP audio (message type 8), video (type 9) and data (type 18) messages carry
the *body* of an FLV tag. :class:`FLVParser` turns them into
:class:`~player.media.AudioConfig` / :class:`~player.media.VideoConfig` /
:class:`~player.media.AccessUnit` values:

- audio: AAC only (SoundFormat 10): the sequence header (AudioSpecificConfig)
  gives an :class:`AudioConfig`; raw frames give audio access units;
- video: H.264 (legacy CodecID 7, or enhanced RTMP FourCC ``avc1``) and HEVC
  (enhanced RTMP FourCC ``hvc1``, or the non-standard legacy CodecID 12).
  The sequence header (``avcC``/``hvcC``) gives a :class:`VideoConfig`, with
  the picture size read from the first SPS when it parses (0 otherwise);
  coded frames give video access units with ``pts = dts + composition time``;
- data: ``onMetaData`` (optionally behind ``@setDataFrame``) gives a dict.

Timestamps: RTMP gives 32-bit millisecond timestamps that wrap after about
49.7 days. :class:`TimestampUnwrapper` extends them to an unbounded
millisecond timeline (a step of less than 2**31 ms forward or backward is
taken as the nearest interpretation); units are then stamped in
:data:`~player.media.TIMESCALE` ticks (ms x 90).

Anything else (other codecs, multitrack enhanced RTMP, malformed bodies)
raises :class:`FLVError` (:class:`FLVUnsupportedCodec` for well-formed but
unsupported codecs). Frames that arrive before their track's configuration,
empty bodies, end-of-sequence markers and video command frames are ignored
(the parser returns ``None``). A sequence header identical to the previous one
of its track is also ignored (some encoders repeat it before every key
frame): a new configuration is returned only when it changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ingest import amf0
from player.media import TIMESCALE, AccessUnit, AudioConfig, TrackConfig, VideoCodec, VideoConfig
from player.nal import BitReader, NALError, parse_h264_sps, parse_hevc_sps
from player.nal import parse_avc_decoder_config as nal_parse_avc_decoder_config

__all__ = [
    "MAX_DIMENSION",
    "MAX_NAL_UNITS_PER_FRAME",
    "AACConfigInfo",
    "FLVError",
    "FLVParser",
    "FLVTag",
    "FLVUnsupportedCodec",
    "TimestampUnwrapper",
    "h264_sps_dimensions",
    "hevc_sps_dimensions",
    "parse_audio_specific_config",
    "parse_avc_decoder_config",
    "parse_hevc_decoder_config",
    "split_tags",
]

TICKS_PER_MS: Final = TIMESCALE // 1000
"""90 kHz ticks in one RTMP millisecond."""

MAX_NAL_UNITS_PER_FRAME: Final = 4096
"""Most NAL units accepted in one video frame."""

MAX_DIMENSION: Final = 16384
"""Largest width or height (pixels) reported from an SPS; larger sizes are reported as 0."""

MAX_PARAMETER_SETS: Final = 64
"""Most parameter-set NAL units accepted in one avcC/hvcC record."""

MAX_TAGS: Final = 65536
"""Most FLV tags :func:`split_tags` returns from one buffer."""

TAG_AUDIO: Final = 8
TAG_VIDEO: Final = 9
TAG_SCRIPT: Final = 18

_AAC_SAMPLE_RATES: Final = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)
_AAC_CHANNELS: Final = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 8, 11: 7, 12: 8, 13: 24, 14: 8}
_SOUND_FORMATS: Final = {
    0: "linear PCM",
    1: "ADPCM",
    2: "MP3",
    3: "linear PCM (little endian)",
    4: "Nellymoser 16 kHz",
    5: "Nellymoser 8 kHz",
    6: "Nellymoser",
    7: "G.711 A-law",
    8: "G.711 mu-law",
    9: "enhanced audio (ExAudioTagHeader)",
    11: "Speex",
    14: "MP3 8 kHz",
    15: "device-specific",
}
_VIDEO_CODECS: Final = {2: "Sorenson H.263", 3: "Screen video", 4: "VP6", 5: "VP6 alpha", 6: "Screen video 2"}

_FRAME_KEY: Final = 1
_FRAME_GENERATED_KEY: Final = 4
_FRAME_COMMAND: Final = 5

# Enhanced RTMP video packet types.
_EX_SEQUENCE_START: Final = 0
_EX_CODED_FRAMES: Final = 1
_EX_SEQUENCE_END: Final = 2
_EX_CODED_FRAMES_X: Final = 3
_EX_METADATA: Final = 4
_EX_MPEG2TS_SEQUENCE_START: Final = 5
_EX_MULTITRACK: Final = 6
_EX_MODEX: Final = 7
_MODEX_TIMESTAMP_OFFSET_NANO: Final = 0


class FLVError(ValueError):
    """Malformed or unsupported FLV tag body."""


class FLVUnsupportedCodec(FLVError):
    """A well-formed tag of a codec (or enhanced RTMP feature) this server does not ingest."""


# --------------------------------------------------------------------------- timestamps


class TimestampUnwrapper:
    """Extend 32-bit RTMP millisecond timestamps to an unbounded timeline.

    The first timestamp is taken as is. Each next one is placed at the nearest
    value congruent to it modulo 2**32 (so the clock goes on past 2**32 - 1
    after about 49.7 days, and a small step backwards, e.g. audio slightly
    behind video, stays a small step backwards).
    """

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: int | None = None

    def unwrap(self, timestamp: int) -> int:
        """Return the unwrapped millisecond timestamp of a 32-bit ``timestamp``."""
        timestamp &= 0xFFFFFFFF
        if self._last is None:
            self._last = timestamp
            return timestamp
        delta = (timestamp - self._last) & 0xFFFFFFFF
        if delta >= 1 << 31:
            delta -= 1 << 32
        self._last += delta
        return self._last


# --------------------------------------------------------------------------- bit reading


def _crop(width: int, height: int) -> tuple[int, int]:
    if 0 < width <= MAX_DIMENSION and 0 < height <= MAX_DIMENSION:
        return width, height
    return 0, 0


def h264_sps_dimensions(sps: bytes) -> tuple[int, int]:
    """Display width and height (pixels, after cropping) of an H.264 SPS NAL unit.

    ``sps`` starts with the NAL header byte. Returns ``(0, 0)`` if the SPS is
    not an SPS, is truncated, or gives a size outside 1..:data:`MAX_DIMENSION`.
    Never raises. The parsing is :func:`player.nal.parse_h264_sps`.
    """
    try:
        parsed = parse_h264_sps(sps)
    except NALError:
        return 0, 0
    return _crop(parsed.width, parsed.height)


def hevc_sps_dimensions(sps: bytes) -> tuple[int, int]:
    """Display width and height (pixels, after the conformance window) of an HEVC SPS NAL unit.

    ``sps`` starts with the 2-byte NAL header. Returns ``(0, 0)`` when it does
    not parse or the size is outside 1..:data:`MAX_DIMENSION`. Never raises.
    The parsing is :func:`player.nal.parse_hevc_sps`.
    """
    try:
        parsed = parse_hevc_sps(sps)
    except NALError:
        return 0, 0
    return _crop(parsed.width, parsed.height)


# --------------------------------------------------------------------------- decoder configuration records


@dataclass(frozen=True, slots=True)
class _VideoRecord:
    codec: VideoCodec
    nal_length_size: int
    width: int
    height: int


def parse_avc_decoder_config(record: bytes) -> tuple[int, list[bytes]]:
    """Validate an AVCDecoderConfigurationRecord (``avcC``) with :func:`player.nal.parse_avc_decoder_config`.

    Returns the NAL unit length size (1, 2 or 4 bytes) and the SPS NAL units.
    Raises :class:`FLVError` if the record is malformed or holds more than
    :data:`MAX_PARAMETER_SETS` SPS or PPS.
    """
    try:
        config = nal_parse_avc_decoder_config(record)
    except NALError as exc:
        raise FLVError(f"avcC record: {exc}") from None
    if max(len(config.sps), len(config.pps)) > MAX_PARAMETER_SETS:
        raise FLVError(f"avcC record with more than {MAX_PARAMETER_SETS} parameter sets")
    return config.length_size, list(config.sps)


def parse_hevc_decoder_config(record: bytes) -> tuple[int, list[bytes]]:
    """Validate an HEVCDecoderConfigurationRecord (``hvcC``).

    Returns the NAL unit length size (1, 2 or 4 bytes) and the SPS NAL units.
    Raises :class:`FLVError` if the record is malformed.
    """
    if len(record) < 23:
        raise FLVError(f"hvcC record too short ({len(record)} bytes)")
    if record[0] != 1:
        raise FLVError(f"hvcC configurationVersion {record[0]} is not 1")
    length_size = (record[21] & 0x03) + 1
    if length_size == 3:
        raise FLVError("hvcC NAL unit length size of 3 bytes is not allowed")
    arrays = record[22]
    pos = 23
    sps_list: list[bytes] = []
    total = 0
    for _ in range(arrays):
        if pos + 3 > len(record):
            raise FLVError("hvcC record truncated in a NAL unit array header")
        nal_type = record[pos] & 0x3F
        count = (record[pos + 1] << 8) | record[pos + 2]
        pos += 3
        total += count
        if total > MAX_PARAMETER_SETS:
            raise FLVError(f"hvcC record with more than {MAX_PARAMETER_SETS} NAL units")
        for _ in range(count):
            if pos + 2 > len(record):
                raise FLVError("hvcC record truncated in a NAL unit length")
            size = (record[pos] << 8) | record[pos + 1]
            pos += 2
            if size == 0 or pos + size > len(record):
                raise FLVError("hvcC NAL unit truncated or empty")
            if nal_type == 33:
                sps_list.append(record[pos : pos + size])
            pos += size
    return length_size, sps_list


def _video_record(codec: VideoCodec, record: bytes) -> _VideoRecord:
    if codec == "h264":
        length_size, sps_list = parse_avc_decoder_config(record)
        width, height = h264_sps_dimensions(sps_list[0]) if sps_list else (0, 0)
    else:
        length_size, sps_list = parse_hevc_decoder_config(record)
        width, height = hevc_sps_dimensions(sps_list[0]) if sps_list else (0, 0)
    return _VideoRecord(codec, length_size, width, height)


@dataclass(frozen=True, slots=True)
class AACConfigInfo:
    """What an AudioSpecificConfig says: object type, output sample rate (Hz), channels (0 = in a PCE)."""

    object_type: int
    sample_rate: int
    channels: int


def parse_audio_specific_config(asc: bytes) -> AACConfigInfo:
    """Parse the head of an MPEG-4 AudioSpecificConfig.

    ``sample_rate`` is the output rate: the SBR extension rate for explicit
    HE-AAC (object types 5 and 29), else the core rate. ``channels`` is 2 for
    parametric stereo (object type 29) over a mono core, 0 when the channel
    configuration is carried in a program config element.
    Raises :class:`FLVError` on a truncated or invalid config.
    """
    reader = BitReader(bytes(asc))
    try:
        object_type = reader.u(5)
        if object_type == 31:
            object_type = 32 + reader.u(6)
        if object_type == 0:
            raise FLVError("AudioSpecificConfig with audio object type 0 (null)")
        sample_rate = _aac_sample_rate(reader)
        channel_config = reader.u(4)
        if object_type in (5, 29):
            sample_rate = _aac_sample_rate(reader)
    except NALError as exc:
        raise FLVError(f"AudioSpecificConfig truncated ({len(asc)} bytes)") from exc
    if channel_config and channel_config not in _AAC_CHANNELS:
        raise FLVError(f"AudioSpecificConfig with reserved channel configuration {channel_config}")
    channels = _AAC_CHANNELS.get(channel_config, 0)
    if object_type == 29 and channels == 1:
        channels = 2
    return AACConfigInfo(object_type, sample_rate, channels)


def _aac_sample_rate(reader: BitReader) -> int:
    index = reader.u(4)
    if index == 15:
        rate = reader.u(24)
        if rate == 0:
            raise FLVError("AudioSpecificConfig with an explicit sample rate of 0 Hz")
        return rate
    if index >= len(_AAC_SAMPLE_RATES):
        raise FLVError(f"AudioSpecificConfig with reserved sampling frequency index {index}")
    return _AAC_SAMPLE_RATES[index]


# --------------------------------------------------------------------------- NAL unit framing


def _to_four_byte_lengths(data: bytes, length_size: int) -> bytes:
    """Check AVCC/HVCC framing of ``data`` and return it with 4-byte NAL lengths."""
    pos = 0
    end = len(data)
    count = 0
    if length_size == 4:
        while pos < end:
            if pos + 4 > end:
                raise FLVError("video frame truncated in a NAL unit length")
            size = int.from_bytes(data[pos : pos + 4], "big")
            pos += 4 + size
            count += 1
            if pos > end:
                raise FLVError(f"video frame NAL unit of {size} bytes overruns the frame")
            if count > MAX_NAL_UNITS_PER_FRAME:
                raise FLVError(f"video frame with more than {MAX_NAL_UNITS_PER_FRAME} NAL units")
        return data
    out = bytearray()
    while pos < end:
        if pos + length_size > end:
            raise FLVError("video frame truncated in a NAL unit length")
        size = int.from_bytes(data[pos : pos + length_size], "big")
        pos += length_size
        if pos + size > end:
            raise FLVError(f"video frame NAL unit of {size} bytes overruns the frame")
        count += 1
        if count > MAX_NAL_UNITS_PER_FRAME:
            raise FLVError(f"video frame with more than {MAX_NAL_UNITS_PER_FRAME} NAL units")
        out += size.to_bytes(4, "big")
        out += data[pos : pos + size]
        pos += size
    return bytes(out)


def _si24(data: bytes, pos: int) -> int:
    value = (data[pos] << 16) | (data[pos + 1] << 8) | data[pos + 2]
    return value - (1 << 24) if value & 0x800000 else value


# --------------------------------------------------------------------------- tags


@dataclass(frozen=True, slots=True)
class FLVTag:
    """One FLV tag: ``tag_type`` (8 audio, 9 video, 18 script), 32-bit ms ``timestamp``, ``body``."""

    tag_type: int
    timestamp: int
    body: bytes


def split_tags(data: bytes) -> list[FLVTag]:
    """Split a sequence of FLV tags, each followed by its 4-byte PreviousTagSize.

    This is the body of an RTMP aggregate message (type 22), and an FLV file
    after its 9-byte header and first PreviousTagSize. Timestamps are returned
    as written (24 bits + extension byte). The PreviousTagSize fields are not
    checked (encoders disagree on them); a trailing one may be missing.
    Raises :class:`FLVError` on truncation or more than :data:`MAX_TAGS` tags.
    """
    tags: list[FLVTag] = []
    pos = 0
    end = len(data)
    while pos < end:
        if pos + 11 > end:
            raise FLVError("FLV tag header truncated")
        tag_type = data[pos] & 0x1F
        size = (data[pos + 1] << 16) | (data[pos + 2] << 8) | data[pos + 3]
        timestamp = (data[pos + 7] << 24) | (data[pos + 4] << 16) | (data[pos + 5] << 8) | data[pos + 6]
        body_start = pos + 11
        if body_start + size > end:
            raise FLVError(f"FLV tag body of {size} bytes truncated")
        tags.append(FLVTag(tag_type, timestamp, bytes(data[body_start : body_start + size])))
        if len(tags) > MAX_TAGS:
            raise FLVError(f"more than {MAX_TAGS} FLV tags")
        pos = body_start + size
        if 0 < end - pos < 4:
            raise FLVError("FLV PreviousTagSize truncated")
        pos = min(pos + 4, end)  # PreviousTagSize (may be absent after the last tag)
    return tags


class FLVParser:
    """Stateful parser of one publisher's FLV tag bodies.

    State: the current video NAL length size (from the last sequence header),
    whether each track has a configuration, and the timestamp unwrapper
    shared by all tracks of the stream (they share one RTMP clock).

    ``timestamp`` arguments are 32-bit RTMP milliseconds.
    """

    def __init__(self) -> None:
        self._clock = TimestampUnwrapper()
        self._video: _VideoRecord | None = None
        self._video_config: VideoConfig | None = None
        self._audio: AudioConfig | None = None

    @property
    def video_config_seen(self) -> bool:
        """True once a video sequence header has been parsed."""
        return self._video is not None

    @property
    def audio_config_seen(self) -> bool:
        """True once an AAC sequence header has been parsed."""
        return self._audio is not None

    def _ticks(self, timestamp: int) -> int:
        return self._clock.unwrap(timestamp) * TICKS_PER_MS

    # ----------------------------------------------------------------- audio

    def parse_audio(self, body: bytes, timestamp: int) -> TrackConfig | AccessUnit | None:
        """Parse an audio tag body: returns an :class:`AudioConfig`, an audio unit, or ``None``.

        Raises :class:`FLVUnsupportedCodec` for non-AAC audio and
        :class:`FLVError` for malformed AAC tags.
        """
        if not body:
            return None
        sound_format = body[0] >> 4
        if sound_format != 10:
            name = _SOUND_FORMATS.get(sound_format, f"format {sound_format}")
            raise FLVUnsupportedCodec(f"unsupported audio codec: {name} (only AAC is ingested)")
        if len(body) < 2:
            raise FLVError("AAC audio tag without its AACPacketType byte")
        packet_type = body[1]
        payload = bytes(body[2:])
        if packet_type == 0:
            info = parse_audio_specific_config(payload)
            channels = info.channels or (2 if body[0] & 0x01 else 1)
            config = AudioConfig(codec="aac", extradata=payload, sample_rate=info.sample_rate, channels=channels)
            if config == self._audio:
                return None  # a repeated, identical sequence header
            self._audio = config
            return config
        if packet_type != 1:
            raise FLVError(f"unknown AACPacketType {packet_type}")
        ticks = self._ticks(timestamp)
        if self._audio is None or not payload:
            return None
        return AccessUnit(kind="audio", dts=ticks, pts=ticks, data=payload, keyframe=True)

    # ----------------------------------------------------------------- video

    def parse_video(self, body: bytes, timestamp: int) -> TrackConfig | AccessUnit | None:
        """Parse a video tag body: returns a :class:`VideoConfig`, a video unit, or ``None``.

        Raises :class:`FLVUnsupportedCodec` for codecs other than H.264/HEVC
        and :class:`FLVError` for malformed tags.
        """
        if not body:
            return None
        if body[0] & 0x80:
            return self._parse_enhanced_video(body, timestamp)
        frame_type = (body[0] >> 4) & 0x0F
        codec_id = body[0] & 0x0F
        if frame_type == _FRAME_COMMAND:
            return None
        if codec_id not in (7, 12):
            name = _VIDEO_CODECS.get(codec_id, f"codec id {codec_id}")
            raise FLVUnsupportedCodec(f"unsupported video codec: {name} (only H.264 and HEVC are ingested)")
        codec: VideoCodec = "h264" if codec_id == 7 else "hevc"
        if len(body) < 5:
            raise FLVError("AVC video tag shorter than its 5-byte header")
        packet_type = body[1]
        composition = _si24(body, 2)
        payload = bytes(body[5:])
        if packet_type == 0:
            return self._sequence_start(codec, payload)
        if packet_type == 1:
            return self._coded_frame(codec, frame_type, payload, timestamp, composition * TICKS_PER_MS)
        if packet_type == 2:
            return None
        raise FLVError(f"unknown AVCPacketType {packet_type}")

    def _parse_enhanced_video(self, body: bytes, timestamp: int) -> TrackConfig | AccessUnit | None:
        frame_type = (body[0] >> 4) & 0x07
        packet_type = body[0] & 0x0F
        pos = 1
        nano_offset = 0
        modex_count = 0
        while packet_type == _EX_MODEX:
            modex_count += 1
            if modex_count > 16:
                raise FLVError("enhanced RTMP video tag with more than 16 ModEx entries")
            if pos >= len(body):
                raise FLVError("enhanced RTMP ModEx entry truncated")
            size = body[pos] + 1
            pos += 1
            if size == 256:
                if pos + 2 > len(body):
                    raise FLVError("enhanced RTMP ModEx entry truncated")
                size = ((body[pos] << 8) | body[pos + 1]) + 1
                pos += 2
            if pos + size + 1 > len(body):
                raise FLVError("enhanced RTMP ModEx entry truncated")
            modex_data = body[pos : pos + size]
            pos += size
            modex_type = body[pos] >> 4
            packet_type = body[pos] & 0x0F
            pos += 1
            if modex_type == _MODEX_TIMESTAMP_OFFSET_NANO and size >= 3:
                nano_offset = (modex_data[0] << 16) | (modex_data[1] << 8) | modex_data[2]
        if frame_type == _FRAME_COMMAND and packet_type != _EX_METADATA:
            return None
        if packet_type == _EX_MULTITRACK:
            raise FLVUnsupportedCodec("enhanced RTMP multitrack video is not ingested")
        if pos + 4 > len(body):
            raise FLVError("enhanced RTMP video tag truncated in its FourCC")
        fourcc = bytes(body[pos : pos + 4])
        pos += 4
        if fourcc == b"avc1":
            codec: VideoCodec = "h264"
        elif fourcc == b"hvc1":
            codec = "hevc"
        else:
            shown = fourcc.decode("latin-1").encode("unicode_escape").decode("ascii")
            raise FLVUnsupportedCodec(f"unsupported video codec: FourCC {shown!r} (only avc1 and hvc1 are ingested)")
        if packet_type == _EX_SEQUENCE_START:
            return self._sequence_start(codec, bytes(body[pos:]))
        if packet_type in (_EX_SEQUENCE_END, _EX_METADATA):
            return None
        if packet_type == _EX_MPEG2TS_SEQUENCE_START:
            raise FLVUnsupportedCodec("enhanced RTMP MPEG2TSSequenceStart is not ingested")
        extra = nano_offset * TICKS_PER_MS // 1_000_000
        if packet_type == _EX_CODED_FRAMES:
            if pos + 3 > len(body):
                raise FLVError("enhanced RTMP coded frame truncated in its composition time")
            composition = _si24(body, pos)
            return self._coded_frame(
                codec, frame_type, bytes(body[pos + 3 :]), timestamp, composition * TICKS_PER_MS, extra
            )
        if packet_type == _EX_CODED_FRAMES_X:
            return self._coded_frame(codec, frame_type, bytes(body[pos:]), timestamp, 0, extra)
        raise FLVError(f"unknown enhanced RTMP video packet type {packet_type}")

    def _sequence_start(self, codec: VideoCodec, record: bytes) -> VideoConfig | None:
        parsed = _video_record(codec, record)
        self._video = parsed
        config = VideoConfig(codec=codec, extradata=record, width=parsed.width, height=parsed.height)
        if config == self._video_config:
            return None  # a repeated, identical sequence header
        self._video_config = config
        return config

    def _coded_frame(
        self, codec: VideoCodec, frame_type: int, payload: bytes, timestamp: int, composition: int, extra: int = 0
    ) -> AccessUnit | None:
        dts = self._ticks(timestamp) + extra
        if self._video is None or not payload:
            return None
        if self._video.codec != codec:
            raise FLVError(f"{codec} frame after a {self._video.codec} sequence header")
        data = _to_four_byte_lengths(payload, self._video.nal_length_size)
        keyframe = frame_type in (_FRAME_KEY, _FRAME_GENERATED_KEY)
        return AccessUnit(kind="video", dts=dts, pts=dts + composition, data=data, keyframe=keyframe)

    # ----------------------------------------------------------------- data

    def parse_script(self, body: bytes) -> dict[str, amf0.AMFValue] | None:
        """Parse a data message: return the ``onMetaData`` properties, or ``None`` for other data.

        Accepts ``onMetaData, {..}`` and ``@setDataFrame, onMetaData, {..}``
        (what encoders send over RTMP). Raises :class:`FLVError` on malformed AMF0.
        """
        try:
            values = amf0.decode(body)
        except amf0.AMFError as exc:
            raise FLVError(f"malformed AMF0 in data message: {exc}") from exc
        if values and values[0] == "@setDataFrame":
            values = values[1:]
        if len(values) >= 2 and values[0] == "onMetaData" and isinstance(values[1], dict):
            return dict(values[1])
        return None
