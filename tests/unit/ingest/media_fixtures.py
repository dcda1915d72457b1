"""Real encoded media for the ingest tests, made with PyAV (FFmpeg) into in-memory FLV files.

The FLV muxer of PyAV's FFmpeg writes H.264 with legacy FLV headers and HEVC
with enhanced RTMP (FourCC ``hvc1``) headers: the same tag bodies RTMP
encoders send. PyAV's FLV demuxer gives an independent reading of the same
bytes to compare with.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass

import av

from ingest.flv import FLVTag, split_tags

FLV_FILE_HEADER_SIZE = 9 + 4  # header + PreviousTagSize0


@dataclass(frozen=True)
class EncodedFLV:
    data: bytes
    tags: tuple[FLVTag, ...]


def _frame(width: int, height: int, index: int, pix_fmt: str) -> av.VideoFrame:
    frame = av.VideoFrame(width, height, pix_fmt)
    for plane_index, plane in enumerate(frame.planes):
        row = bytes(((x * 3 + index * 7 + plane_index * 50 + (x // 16) * index) & 0xFF) for x in range(plane.line_size))
        plane.update(row * (plane.buffer_size // plane.line_size))
    frame.pts = index
    return frame


@functools.cache
def encode_video_flv(
    codec: str,
    width: int,
    height: int,
    frames: int = 8,
    pix_fmt: str = "yuv420p",
    options: tuple[tuple[str, str], ...] = (),
) -> EncodedFLV:
    """Encode ``frames`` synthetic pictures with ``codec`` (libx264/libx265) into an FLV file."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="flv") as container:
        stream = container.add_stream(codec, rate=30)
        assert isinstance(stream, av.VideoStream)
        stream.width = width
        stream.height = height
        stream.pix_fmt = pix_fmt
        stream.options = dict(options)
        if codec == "libx265":
            stream.options.setdefault("x265-params", "log-level=error")
        for index in range(frames):
            for packet in stream.encode(_frame(width, height, index, pix_fmt)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    data = buffer.getvalue()
    return EncodedFLV(data, tuple(split_tags(data[FLV_FILE_HEADER_SIZE:])))


@functools.cache
def encode_audio_flv(sample_rate: int = 44100, layout: str = "stereo", frames: int = 20) -> EncodedFLV:
    """Encode ``frames`` AAC frames of a tone into an FLV file."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="flv") as container:
        stream = container.add_stream("aac", rate=sample_rate)
        assert isinstance(stream, av.AudioStream)
        stream.layout = layout
        channels = len(av.AudioLayout(layout).channels)
        samples = 1024
        for index in range(frames):
            frame = av.AudioFrame(format="s16", layout=layout, samples=samples)
            value = bytes([(index * 13) & 0x7F, 0]) * (samples * channels)
            frame.planes[0].update(value)
            frame.sample_rate = sample_rate
            frame.pts = index * samples
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    data = buffer.getvalue()
    return EncodedFLV(data, tuple(split_tags(data[FLV_FILE_HEADER_SIZE:])))


def demux_packets(flv: bytes) -> list[tuple[int, int, bytes, bool]]:
    """(dts ms, pts ms, payload, keyframe) of every video packet, as PyAV's FLV demuxer reads them."""
    result: list[tuple[int, int, bytes, bool]] = []
    with av.open(io.BytesIO(flv), "r", format="flv") as container:
        for packet in container.demux(video=0):
            if packet.size == 0 or packet.dts is None or packet.pts is None:
                continue
            result.append((int(packet.dts), int(packet.pts), bytes(packet), bool(packet.is_keyframe)))
    return result
