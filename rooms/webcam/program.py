"""The program's encoders: one H.264 encode of the composed picture and one AAC
encode of the program mix, whatever the number of speakers and viewers.

The same H.264 access units go to

- every speaker's WebRTC connection: :meth:`VideoEncoder.encode` returns Annex B
  packets with SPS/PPS before each IDR (aiortc packetizes an ``av.Packet`` a track
  returns without re-encoding it, :mod:`rooms.webcam.peer`), and
- the LL-HLS packager: :meth:`VideoEncoder.access_units` turns them into
  :class:`player.media.AccessUnit` (length-prefixed NAL units, parameter sets in
  the :class:`player.media.VideoConfig`), exactly what a studio source feeds.

Constrained Baseline profile (no B-frames, no CABAC) at level 3.1: what every
WebRTC H.264 decoder accepts (``profile-level-id=42e01f``), and one encode fits
both outputs. Keyframe every :data:`KEYFRAME_INTERVAL_S`; :meth:`VideoEncoder.request_keyframe`
forces one (a new speaker, the live starting).

Timestamps: video ``pts`` in 90 kHz ticks (:data:`player.media.TIMESCALE`) on the
program clock, on a millisecond grid (:func:`picture_pts`); audio in samples at 48 kHz, converted to 90 kHz for the packager.
Not thread-safe: each encoder is used by one thread at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from player.media import TIMESCALE, AccessUnit, AudioConfig, VideoConfig
from player.nal import (
    NALError,
    avc_decoder_config,
    h264_nal_type,
    length_prefixed,
    split_annexb,
)
from rooms.webcam.sources import SAMPLE_RATE

KEYFRAME_INTERVAL_S = 1.0
"""Seconds between two IDR pictures (HLS segments are cut on them; late joiners wait at most this)."""
VIDEO_BITRATE = 2_500_000
"""Program video bit rate, bits per second (720p30 talking heads and slides)."""
AUDIO_BITRATE = 96_000
AAC_FRAME = 1024
"""Samples per AAC frame."""
_PARAMETER_SETS = (7, 8, 9)  # SPS, PPS, access unit delimiter
_VIDEO_TIME_BASE = Fraction(1, TIMESCALE)


def picture_pts(index: int, fps: int) -> int:
    """Program clock time of picture ``index`` at ``fps``: 90 kHz ticks on a whole-millisecond grid
    (``floor(index * 1000 / fps)`` ms), as an RTMP source's timestamps are.

    Why not the exact ``index * 90000 / fps``: at 30 fps the packager's parts of 8 pictures then last
    0.26666... s, which the playlist writes rounded to 10 µs (0.26667), so a 2 s segment is announced
    as 2.00002 s. hls.js takes a segment's end as its start plus the announced duration; its buffer
    end then stops short of that end, it picks the segment it has just loaded again instead of the
    next one and, when a back-buffer eviction has cleared a part of it from its tracker, loads
    nothing for 2-4 s: a stall (measured, see benchmarks/RESULTS.md, webcam_glass_to_glass_p95_s).
    On the millisecond grid every part and segment duration is exact in the playlist's units (a
    picture lasts 33 or 34 ms; 30 pictures are 1 s exactly).
    """
    return index * 1000 // fps * (TIMESCALE // 1000)


@dataclass(frozen=True, slots=True)
class EncodedPicture:
    """One program picture, encoded: ``packet`` (Annex B, for WebRTC) and its timing."""

    packet: av.Packet
    pts: int
    keyframe: bool


class VideoEncoder:
    """libx264 for the program (yuv420p frames of ``width`` x ``height`` at ``fps``)."""

    def __init__(self, width: int, height: int, fps: int = 30, *, bitrate: int = VIDEO_BITRATE,
                 preset: str = "veryfast", threads: int = 2) -> None:
        encoder = av.CodecContext.create("libx264", "w")
        encoder.width, encoder.height = width, height
        encoder.pix_fmt = "yuv420p"
        encoder.time_base = _VIDEO_TIME_BASE
        encoder.framerate = Fraction(fps)
        encoder.bit_rate = bitrate
        encoder.max_b_frames = 0
        encoder.gop_size = round(fps * KEYFRAME_INTERVAL_S)
        encoder.thread_count = threads
        encoder.options = {
            "preset": preset,
            "tune": "zerolatency",
            "profile": "baseline",
            "level": "3.1",
            "forced-idr": "1",
            "sc_threshold": "0",
            "maxrate": str(bitrate * 3 // 2),
            "bufsize": str(bitrate),
        }
        encoder.open()
        self._encoder = encoder
        self.width, self.height = width, height
        self._force_key = True
        self._config: VideoConfig | None = None

    @property
    def config(self) -> VideoConfig | None:
        """The packager config of the latest parameter sets (None before the first IDR)."""
        return self._config

    def request_keyframe(self) -> None:
        """The next picture will be an IDR."""
        self._force_key = True

    def encode(self, frame: av.VideoFrame, pts: int) -> list[EncodedPicture]:
        """Encode one picture at ``pts`` (90 kHz ticks, increasing)."""
        frame.pts = pts
        frame.time_base = _VIDEO_TIME_BASE
        if self._force_key:
            frame.pict_type = av.video.frame.PictureType.I
            self._force_key = False
        else:
            frame.pict_type = av.video.frame.PictureType.NONE
        out = []
        for packet in self._encoder.encode(frame):
            if packet.pts is None:
                continue
            packet.time_base = _VIDEO_TIME_BASE
            out.append(EncodedPicture(packet, int(packet.pts), bool(packet.is_keyframe)))
        return out

    def access_units(self, picture: EncodedPicture) -> tuple[VideoConfig | None, AccessUnit | None]:
        """The packager's view of ``picture``: a new config when its parameter sets are
        new (first IDR, or changed), and the access unit (None if it held no picture)."""
        nals = split_annexb(bytes(picture.packet))
        config = None
        if picture.keyframe:
            sps = [n for n in nals if h264_nal_type(n) == 7]
            pps = [n for n in nals if h264_nal_type(n) == 8]
            if sps and pps:
                try:
                    record = avc_decoder_config(sps, pps)
                except NALError:
                    record = None
                if record is not None and (self._config is None or self._config.extradata != record):
                    config = self._config = VideoConfig("h264", record, self.width, self.height)
        body = [n for n in nals if h264_nal_type(n) not in _PARAMETER_SETS]
        if not body:
            return config, None
        return config, AccessUnit("video", picture.pts, picture.pts, length_prefixed(body), picture.keyframe)


class AudioEncoder:
    """AAC-LC mono 48 kHz for the packager; takes int16 blocks of any size."""

    def __init__(self, bitrate: int = AUDIO_BITRATE) -> None:
        encoder = av.CodecContext.create("aac", "w")
        encoder.sample_rate = SAMPLE_RATE
        encoder.layout = "mono"
        encoder.format = "fltp"
        encoder.bit_rate = bitrate
        encoder.time_base = Fraction(1, SAMPLE_RATE)
        encoder.open()
        self._encoder = encoder
        self._pending = np.zeros(0, np.float32)
        self._next_pts: int | None = None
        self.config = AudioConfig("aac", bytes(encoder.extradata or b""), SAMPLE_RATE, 1)

    def encode(self, samples: np.ndarray, pts: int) -> list[AccessUnit]:
        """Encode int16 mono ``samples`` starting at ``pts`` (samples on the program clock);
        a gap or overlap with the previous call restarts the buffer at ``pts``."""
        if self._next_pts is None or pts != self._next_pts + len(self._pending):
            self._pending = np.zeros(0, np.float32)
            self._next_pts = pts
        self._pending = np.concatenate((self._pending, samples.astype(np.float32) / 32768.0))
        units = []
        while len(self._pending) >= AAC_FRAME:
            chunk, self._pending = self._pending[:AAC_FRAME], self._pending[AAC_FRAME:]
            frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="fltp", layout="mono")
            frame.sample_rate = SAMPLE_RATE
            frame.pts = self._next_pts
            frame.time_base = Fraction(1, SAMPLE_RATE)
            self._next_pts += AAC_FRAME
            for packet in self._encoder.encode(frame):
                if packet.pts is None or packet.pts < 0:
                    continue  # encoder priming
                ticks = int(packet.pts) * TIMESCALE // SAMPLE_RATE
                units.append(AccessUnit("audio", ticks, ticks, bytes(packet), True))
        return units
