"""Real encoded media for the packager tests, made with PyAV (libx264, libx265, aac).

The encoders' Annex-B output is converted to what :mod:`player.media`
promises: 4-byte length-prefixed NAL units and an ISO/IEC 14496-15 decoder
configuration record (``avcC``/``hvcC``) built here from the parameter sets.
Also a small ISOBMFF reader to look inside what the packager wrote, and a
decoder helper (PyAV over a file) to prove it plays.
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from player.media import TIMESCALE, AccessUnit, AudioConfig, VideoConfig

GLOBAL_HEADER = 1 << 22  # AV_CODEC_FLAG_GLOBAL_HEADER


# --------------------------------------------------------------------------- Annex B


def split_annexb(data: bytes) -> list[bytes]:
    """NAL units of an Annex-B byte stream (start codes 00 00 01 / 00 00 00 01)."""
    starts: list[tuple[int, int]] = []  # (start code position, payload position)
    index = 0
    while True:
        index = data.find(b"\x00\x00\x01", index)
        if index < 0:
            break
        code_start = index - 1 if index > 0 and data[index - 1] == 0 else index
        starts.append((code_start, index + 3))
        index += 3
    nals = []
    for number, (_, payload) in enumerate(starts):
        end = starts[number + 1][0] if number + 1 < len(starts) else len(data)
        nal = data[payload:end]
        if nal:
            nals.append(nal)
    return nals


def to_length_prefixed(nals: Iterable[bytes]) -> bytes:
    return b"".join(struct.pack(">I", len(nal)) + nal for nal in nals)


def avcc_from_parameter_sets(sps: list[bytes], pps: list[bytes]) -> bytes:
    """AVCDecoderConfigurationRecord (14496-15 5.3.3.1) for 4-byte lengths."""
    first = sps[0]
    out = bytearray([1, first[1], first[2], first[3], 0xFC | 3, 0xE0 | len(sps)])
    for nal in sps:
        out += struct.pack(">H", len(nal)) + nal
    out.append(len(pps))
    for nal in pps:
        out += struct.pack(">H", len(nal)) + nal
    return bytes(out)


def hvcc_from_parameter_sets(vps: bytes, sps: bytes, pps: bytes) -> bytes:
    """HEVCDecoderConfigurationRecord (14496-15 8.3.3.1), 4:2:0 8-bit, 4-byte lengths."""
    # general_profile_space .. general_level_idc: the 12 bytes after the SPS's
    # 2-byte NAL header and its first byte (vps id, max sub layers, nesting),
    # read from the RBSP (emulation prevention bytes removed).
    rbsp = bytearray()
    zeros = 0
    for byte in sps[2:]:
        if zeros >= 2 and byte == 3:
            zeros = 0
            continue
        rbsp.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    profile_tier_level = bytes(rbsp[1:13])
    out = bytearray([1])
    out += profile_tier_level
    out += struct.pack(">H", 0xF000)  # min_spatial_segmentation_idc 0
    out += bytes([0xFC, 0xFC | 1, 0xF8, 0xF8])  # parallelism, chroma 4:2:0, 8-bit, 8-bit
    out += struct.pack(">H", 0)  # avgFrameRate unknown
    out.append(0x0F)  # constantFrameRate 0, 1 temporal layer, nested, lengthSizeMinusOne 3
    arrays = [(32, vps), (33, sps), (34, pps)]
    out.append(len(arrays))
    for nal_type, nal in arrays:
        out.append(0x80 | nal_type)
        out += struct.pack(">HH", 1, len(nal)) + nal
    return bytes(out)


# --------------------------------------------------------------------------- encoders


def _pattern_frame(index: int, width: int, height: int) -> av.VideoFrame:
    """A moving gradient, so inter frames carry real motion."""
    frame = av.VideoFrame(width, height, "yuv420p")
    luma = frame.planes[0]
    row = bytes(((x * 2 + index * 5) & 0xFF) for x in range(luma.line_size + 64))
    luma.update(b"".join(row[(y + index) % 64 : (y + index) % 64 + luma.line_size] for y in range(luma.height)))
    for plane_index in (1, 2):
        plane = frame.planes[plane_index]
        plane.update(bytes([(128 + 40 * plane_index + index) & 0xFF]) * plane.buffer_size)
    return frame


@dataclass(frozen=True)
class EncodedVideo:
    config: VideoConfig
    units: list[AccessUnit]
    fps: int

    @property
    def frame_ticks(self) -> int:
        return TIMESCALE // self.fps


def encode_video(
    *,
    codec: str = "h264",
    frames: int = 60,
    fps: int = 30,
    gop: int = 30,
    width: int = 160,
    height: int = 96,
    bframes: int = 2,
) -> EncodedVideo:
    """Encode ``frames`` pattern frames; keyframe every ``gop`` frames, B-frames as asked."""
    if codec == "h264":
        context = av.CodecContext.create("libx264", "w")
        context.options = {
            "preset": "veryfast",
            "x264-params": f"bframes={bframes}",
            "sc_threshold": "0",
            "keyint_min": str(gop),
        }
    else:
        context = av.CodecContext.create("libx265", "w")
        context.options = {
            "preset": "ultrafast",
            "x265-params": f"bframes={bframes}:keyint={gop}:min-keyint={gop}:scenecut=0"
            ":open-gop=0:log-level=error",
        }
    context.width = width
    context.height = height
    context.pix_fmt = "yuv420p"
    context.time_base = Fraction(1, fps)
    context.framerate = Fraction(fps)
    context.gop_size = gop
    context.flags |= GLOBAL_HEADER
    context.open()
    assert context.extradata is not None
    header = split_annexb(bytes(context.extradata))
    if codec == "h264":
        sps = [nal for nal in header if nal[0] & 0x1F == 7]
        pps = [nal for nal in header if nal[0] & 0x1F == 8]
        extradata = avcc_from_parameter_sets(sps, pps)
        parameter_types = {7, 8, 9}  # SPS, PPS, AUD: kept out of the samples
        nal_type = lambda nal: nal[0] & 0x1F  # noqa: E731
    else:
        by_type = {(nal[0] >> 1) & 0x3F: nal for nal in header}
        extradata = hvcc_from_parameter_sets(by_type[32], by_type[33], by_type[34])
        parameter_types = {32, 33, 34, 35}
        nal_type = lambda nal: (nal[0] >> 1) & 0x3F  # noqa: E731
    packets = []
    for index in range(frames):
        frame = _pattern_frame(index, width, height)
        frame.pts = index
        packets.extend(context.encode(frame))
    packets.extend(context.encode(None))
    units = []
    ticks = TIMESCALE // fps
    for packet in packets:
        assert packet.pts is not None and packet.dts is not None
        nals = [nal for nal in split_annexb(bytes(packet)) if nal_type(nal) not in parameter_types]
        units.append(
            AccessUnit(
                kind="video",
                dts=packet.dts * ticks,
                pts=packet.pts * ticks,
                data=to_length_prefixed(nals),
                keyframe=bool(packet.is_keyframe),
            )
        )
    config = VideoConfig(codec="h264" if codec == "h264" else "hevc", extradata=extradata)
    return EncodedVideo(config, units, fps)


@dataclass(frozen=True)
class EncodedAudio:
    config: AudioConfig
    units: list[AccessUnit]


def encode_audio(*, seconds: float = 2.0, sample_rate: int = 48000, channels: int = 2) -> EncodedAudio:
    """AAC-LC of a 440 Hz tone; unit timestamps are the encoder's, in 90 kHz (rounded)."""
    context = av.CodecContext.create("aac", "w")
    context.sample_rate = sample_rate
    context.layout = "stereo" if channels == 2 else "mono"
    context.format = "fltp"
    context.flags |= GLOBAL_HEADER
    context.open()
    frame_size = context.frame_size
    packets = []
    count = math.ceil(seconds * sample_rate / frame_size)
    for index in range(count):
        frame = av.AudioFrame(format="fltp", layout=context.layout, samples=frame_size)
        tone = struct.pack(
            f"<{frame_size}f",
            *(0.3 * math.sin(2 * math.pi * 440 * (index * frame_size + k) / sample_rate) for k in range(frame_size)),
        )
        for plane in frame.planes:
            plane.update(tone)
        frame.pts = index * frame_size
        frame.sample_rate = sample_rate
        packets.extend(context.encode(frame))
    packets.extend(context.encode(None))
    units = []
    for packet in packets:
        assert packet.pts is not None
        time = round(packet.pts * TIMESCALE / sample_rate)
        units.append(AccessUnit(kind="audio", dts=time, pts=time, data=bytes(packet), keyframe=True))
    assert context.extradata is not None
    config = AudioConfig(codec="aac", extradata=bytes(context.extradata), sample_rate=sample_rate, channels=channels)
    return EncodedAudio(config, units)


def interleave(*streams: Iterable[AccessUnit]) -> list[AccessUnit]:
    """Units of all streams in dts order (stable: earlier streams first on ties), as a muxer sends them."""
    tagged = [
        (unit.dts, order, index, unit) for order, stream in enumerate(streams) for index, unit in enumerate(stream)
    ]
    tagged.sort(key=lambda item: (item[0], item[1], item[2]))
    return [unit for *_, unit in tagged]


def shifted(units: Iterable[AccessUnit], ticks: int) -> list[AccessUnit]:
    return [AccessUnit(u.kind, u.dts + ticks, u.pts + ticks, u.data, u.keyframe) for u in units]


# --------------------------------------------------------------------------- ISOBMFF reading


@dataclass(frozen=True)
class Box:
    kind: str
    payload: bytes
    offset: int  # of the box header, in the buffer it was read from

    def children(self, skip: int = 0) -> list[Box]:
        return list(iter_boxes(self.payload[skip:], base=self.offset + 8 + skip))

    def child(self, kind: str, skip: int = 0) -> Box:
        found = [box for box in self.children(skip) if box.kind == kind]
        assert len(found) == 1, f"{kind} x{len(found)} in {self.kind}"
        return found[0]


def iter_boxes(data: bytes, base: int = 0) -> Iterator[Box]:
    pos = 0
    while pos < len(data):
        size, kind = struct.unpack_from(">I4s", data, pos)
        assert size >= 8 and pos + size <= len(data), f"bad box size {size} at {pos}"
        yield Box(kind.decode("latin-1"), data[pos + 8 : pos + size], base + pos)
        pos += size


@dataclass(frozen=True)
class RunInfo:
    track_id: int
    base_decode_time: int
    durations: list[int]
    sizes: list[int]
    sync: list[bool]
    composition_offsets: list[int]
    data: list[bytes]


def read_fragment(data: bytes) -> tuple[int, list[RunInfo], int]:
    """(sequence_number, runs, mdat payload size) of one moof+mdat, read independently of the writer."""
    boxes = list(iter_boxes(data))
    assert [box.kind for box in boxes] == ["moof", "mdat"], [box.kind for box in boxes]
    moof, mdat = boxes
    (sequence,) = struct.unpack_from(">I", moof.child("mfhd").payload, 4)
    runs = []
    for traf in (box for box in moof.children() if box.kind == "traf"):
        tfhd = traf.child("tfhd").payload
        flags = int.from_bytes(tfhd[1:4], "big")
        (track_id,) = struct.unpack_from(">I", tfhd, 4)
        assert flags & 0x020000, "default-base-is-moof"
        pos = 8
        for bit, width in ((0x1, 8), (0x2, 4), (0x8, 4), (0x10, 4)):
            if flags & bit:
                pos += width
        default_flags = struct.unpack_from(">I", tfhd, pos)[0] if flags & 0x20 else 0
        tfdt = traf.child("tfdt").payload
        base = struct.unpack_from(">Q" if tfdt[0] == 1 else ">I", tfdt, 4)[0]
        trun = traf.child("trun").payload
        version, tflags = trun[0], int.from_bytes(trun[1:4], "big")
        count, offset = struct.unpack_from(">Ii", trun, 4)
        assert tflags & 0x1
        pos = 12
        first_flags = None
        if tflags & 0x4:
            (first_flags,) = struct.unpack_from(">I", trun, pos)
            pos += 4
        info = RunInfo(track_id, base, [], [], [], [], [])
        cursor = offset
        for number in range(count):
            duration = size = 0
            sample_flags = first_flags if number == 0 and first_flags is not None else default_flags
            cto = 0
            if tflags & 0x100:
                (duration,) = struct.unpack_from(">I", trun, pos)
                pos += 4
            if tflags & 0x200:
                (size,) = struct.unpack_from(">I", trun, pos)
                pos += 4
            if tflags & 0x400:
                (sample_flags,) = struct.unpack_from(">I", trun, pos)
                pos += 4
            if tflags & 0x800:
                (cto,) = struct.unpack_from(">i" if version == 1 else ">I", trun, pos)
                pos += 4
            info.durations.append(duration)
            info.sizes.append(size)
            info.sync.append(not (sample_flags >> 16) & 1)
            info.composition_offsets.append(cto)
            info.data.append(data[cursor : cursor + size])
            cursor += size
        runs.append(info)
    return sequence, runs, len(mdat.payload)


# --------------------------------------------------------------------------- decoding


@dataclass
class Decoded:
    video_frames: list[tuple[float, bool]]  # (presentation seconds, keyframe)
    audio_frames: list[tuple[float, int]]  # (seconds, samples)
    width: int
    height: int
    video_packets: list[tuple[float, float, bool]]  # (dts s, pts s, keyframe), demux order


def _seconds(value: int | None, base: Fraction | None) -> float:
    assert value is not None and base is not None
    return float(value * base)


def decode_file(path: Path) -> Decoded:
    """Demux and decode every stream of ``path`` with PyAV (decoders flushed at the end)."""
    video_frames: list[tuple[float, bool]] = []
    audio_frames: list[tuple[float, int]] = []
    packets: list[tuple[float, float, bool]] = []
    width = height = 0
    with av.open(str(path)) as container:
        streams = [s for s in container.streams if s.type in ("video", "audio")]
        for packet in container.demux(*streams):  # ends with one empty (flush) packet per stream
            base = packet.stream.time_base
            if packet.stream.type == "video" and packet.size:
                packets.append((_seconds(packet.dts, base), _seconds(packet.pts, base), bool(packet.is_keyframe)))
            for frame in packet.decode():
                if isinstance(frame, av.VideoFrame):
                    width, height = frame.width, frame.height
                    video_frames.append((_seconds(frame.pts, base), bool(frame.key_frame)))
                elif isinstance(frame, av.AudioFrame):
                    audio_frames.append((_seconds(frame.pts, base), frame.samples))
    return Decoded(video_frames, audio_frames, width, height, packets)


# --------------------------------------------------------------------------- shared encodes


@functools.cache
def video(**options: int | str) -> EncodedVideo:
    """:func:`encode_video` with ``options``, encoded once per test session."""
    return encode_video(**options)  # type: ignore[arg-type]


@functools.cache
def audio(**options: float | int) -> EncodedAudio:
    """:func:`encode_audio` with ``options``, encoded once per test session."""
    return encode_audio(**options)  # type: ignore[arg-type]


def has_encoder(name: str) -> bool:
    return name in av.codecs_available
