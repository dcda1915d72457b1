"""Media units that flow from a source (RTMP, SRT, the webcam compositor) to the packager.

This module is the contract between ``ingest``/``rooms`` (producers) and
``player`` (consumer). It holds plain data only: no I/O, no clock.

Timestamps are integers on one clock, :data:`TIMESCALE` ticks per second
(90 kHz, the MPEG clock). A source converts its own units once, at the edge:
RTMP/FLV milliseconds are multiplied by 90; MPEG-TS timestamps are already
90 kHz.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

TIMESCALE = 90_000
"""Ticks per second of every ``pts``/``dts`` in this module."""

TrackKind = Literal["video", "audio"]
VideoCodec = Literal["h264", "hevc"]
AudioCodec = Literal["aac"]


@dataclass(frozen=True, slots=True)
class VideoConfig:
    """Decoder configuration of a video track.

    ``extradata`` is the ISO/IEC 14496-15 decoder configuration record as it
    goes into an MP4 sample entry: an AVCDecoderConfigurationRecord (``avcC``)
    for H.264, an HEVCDecoderConfigurationRecord (``hvcC``) for HEVC.
    ``width``/``height`` are in pixels (0 when not known yet).
    """

    codec: VideoCodec
    extradata: bytes
    width: int = 0
    height: int = 0
    kind: TrackKind = field(default="video", init=False)


@dataclass(frozen=True, slots=True)
class AudioConfig:
    """Decoder configuration of an AAC track.

    ``extradata`` is the MPEG-4 AudioSpecificConfig (2+ bytes), as carried by
    the FLV AAC sequence header and the MP4 ``esds`` box. ``sample_rate`` in Hz.
    """

    codec: AudioCodec
    extradata: bytes
    sample_rate: int
    channels: int
    kind: TrackKind = field(default="audio", init=False)


TrackConfig = VideoConfig | AudioConfig


@dataclass(frozen=True, slots=True)
class AccessUnit:
    """One encoded frame of one track.

    - video: the NAL units of one picture, each prefixed by its 4-byte
      big-endian length (AVCC/HVCC framing, as in FLV and MP4), without
      parameter sets that are already in the config (they may be repeated);
    - audio: one raw AAC frame (no ADTS header).

    ``dts``/``pts`` are in :data:`TIMESCALE` ticks on the source's clock; they
    may start anywhere (the packager rebases them). ``keyframe`` is True for a
    picture a decoder can start from (IDR/IRAP); always True for audio.
    """

    kind: TrackKind
    dts: int
    pts: int
    data: bytes
    keyframe: bool


@runtime_checkable
class PartClock(Protocol):
    """A sink that can tell when its packager will next publish: a source that reads in
    batches (the RTMP listener) times its next read by it instead of a fixed pause."""

    def seconds_to_next_part(self) -> float | None:
        """Media seconds from the newest unit fed until the unit that will let the next
        part be published, or None when unknown."""
        ...


class MediaSink(Protocol):
    """What a source feeds: a packager, a recorder, a test collector.

    Calls come in source order: a track's config before its first unit; a
    config may be sent again (new parameters after a reconnect or a change).
    ``on_end`` is called once when the source stops, cleanly or not.
    Implementations must not block: they are called from the event loop.
    """

    def on_config(self, config: TrackConfig) -> None: ...

    def on_access_unit(self, unit: AccessUnit) -> None: ...

    def on_end(self, clean: bool = False) -> None:
        """The source stopped. ``clean`` is True only when the encoder said it
        was done (RTMP ``FCUnpublish``/``deleteStream``/``closeStream``): the
        program is over. False for anything else — a dropped or timed-out
        connection, a protocol error, a source that cannot tell (SRT, whose
        MPEG-TS has no end-of-program signal): the encoder may come back."""
        ...
