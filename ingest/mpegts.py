"""Sans-I/O MPEG-TS demuxer (ISO/IEC 13818-1) for live ingest.

:class:`TSDemuxer` takes transport-stream bytes in chunks of any size and
returns the media units of :mod:`player.media`: a :class:`VideoConfig` or
:class:`AudioConfig` when parameter sets first appear or change, then one
:class:`AccessUnit` per picture (4-byte length-prefixed NAL units, parameter
sets, access unit delimiters and filler removed) and one per AAC frame (ADTS
header removed). There is no socket and no clock in here.

Scope and limits:

- 188-byte packets only (no 192-byte M2TS, no 204-byte FEC packets);
- the first program of the PAT; in its PMT the first H.264 (stream type
  0x1B) or HEVC (0x24) stream and the first AAC-in-ADTS (0x0F) stream;
  other streams (LATM AAC, AC-3, data, SCTE-35...) are ignored;
- PAT/PMT sections are checked with their CRC-32; a bad one is ignored;
- one video PES holds one access unit, with a PTS (what encoders send); a
  video PES without PTS is dropped. An audio PES may hold several ADTS
  frames, each gets its own timestamp (1024 samples apart) and an ADTS
  frame may straddle two PES packets;
- timestamps are 33-bit 90 kHz values unwrapped onto one monotonic
  timeline shared by audio and video (jumps of more than 2**32 ticks, about
  13 hours, cannot be told from a wrap);
- a PES larger than ``max_pes_size`` bytes (default :data:`MAX_PES_SIZE`)
  is dropped;
- video units are held back until the first keyframe that follows a video
  config, so a sink can always start decoding at the first unit it gets;
- at the start, output waits until every track the PMT announced has its
  config (an AAC config only appears with the first ADTS frame, which may
  come after the first video keyframe), at most :data:`START_GATE_TICKS` of
  media time or :data:`START_GATE_UNITS` units; then all configs are given
  first, so a sink sees every track before the first unit (the segmenter
  would otherwise start video-only and open a new generation for audio).

Damage is tolerated, not reported as an exception: lost sync bytes are
resynchronised (a candidate packet boundary must be confirmed by two more
sync bytes 188 and 376 bytes later), a continuity-counter gap or a
transport error drops the PES being assembled, one duplicate packet is
skipped, undecodable PES or NAL data is dropped. :attr:`TSDemuxer.stats`
counts all of it.

The only exception raised by :meth:`TSDemuxer.feed` and :meth:`TSDemuxer.flush`
is :class:`TSError`, when the input is not a transport stream at all: more
than ``max_garbage`` bytes (default :data:`MAX_GARBAGE`) in a row without
a packet boundary. The demuxer is closed after that and keeps raising.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from player.media import TIMESCALE, AccessUnit, AudioConfig, VideoCodec, VideoConfig
from player.nal import (
    AAC_SAMPLES_PER_FRAME,
    ADTS_MAX_FRAME,
    H264_NAL_AUD,
    H264_NAL_FILLER,
    H264_NAL_IDR,
    H264_NAL_PPS,
    H264_NAL_SPS,
    HEVC_NAL_AUD,
    HEVC_NAL_BLA_W_LP,
    HEVC_NAL_FILLER,
    HEVC_NAL_IRAP_MAX,
    HEVC_NAL_PPS,
    HEVC_NAL_SPS,
    HEVC_NAL_VPS,
    NALError,
    avc_decoder_config,
    h264_pps_id,
    hevc_decoder_config,
    hevc_pps_id,
    hevc_vps_id,
    length_prefixed,
    parse_h264_sps,
    parse_hevc_sps,
    split_adts,
    split_annexb,
)

__all__ = [
    "MAX_GARBAGE",
    "MAX_PES_SIZE",
    "STREAM_TYPE_AAC_ADTS",
    "STREAM_TYPE_H264",
    "STREAM_TYPE_HEVC",
    "TS_PACKET_SIZE",
    "MediaEvent",
    "TSDemuxer",
    "TSError",
    "TSStats",
    "crc32_mpeg2",
]

TS_PACKET_SIZE = 188
SYNC_BYTE = 0x47

MAX_PES_SIZE = 8 * 1024 * 1024
"""Default limit of one PES packet, in bytes (a large 4K intra picture fits)."""

START_GATE_TICKS = 90_000
"""Most media time (90 kHz ticks, 1 s) held at the start waiting for every announced track's config."""
START_GATE_UNITS = 600
"""Most units held at the start (whatever their times)."""
MAX_GARBAGE = 1024 * 1024
"""Default number of consecutive bytes without a packet boundary before :class:`TSError`."""

STREAM_TYPE_AAC_ADTS = 0x0F
STREAM_TYPE_H264 = 0x1B
STREAM_TYPE_HEVC = 0x24

_PID_PAT = 0x0000
_PID_NULL = 0x1FFF
_MAX_SECTION_LENGTH = 1021  # PAT and PMT section_length limit
_WRAP = 1 << 33
_HALF = 1 << 32

MediaEvent = VideoConfig | AudioConfig | AccessUnit


class TSError(Exception):
    """The input is not an MPEG transport stream (fatal for this demuxer)."""


@dataclass(slots=True)
class TSStats:
    """Counters of what the demuxer saw and what it dropped."""

    packets: int = 0
    resyncs: int = 0
    skipped_bytes: int = 0
    transport_errors: int = 0
    cc_errors: int = 0
    duplicates: int = 0
    crc_errors: int = 0
    dropped_pes: int = 0
    dropped_frames: int = 0
    video_units: int = 0
    audio_units: int = 0


def _make_crc_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        c = i << 24
        for _ in range(8):
            c = ((c << 1) ^ 0x04C11DB7) if c & 0x80000000 else (c << 1)
        table.append(c & 0xFFFFFFFF)
    return tuple(table)


_CRC_TABLE = _make_crc_table()


def crc32_mpeg2(data: bytes) -> int:
    """CRC-32/MPEG-2 (poly 0x04C11DB7, init 0xFFFFFFFF, no reflection, no final xor).

    Run over a whole PSI section, CRC field included, it gives 0.
    """
    crc = 0xFFFFFFFF
    table = _CRC_TABLE
    for b in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ table[((crc >> 24) ^ b) & 0xFF]
    return crc


class _PESBuffer:
    """Reassembly of one PES packet on one PID."""

    __slots__ = ("chunks", "size", "expected")

    def __init__(self) -> None:
        self.chunks: list[bytes] | None = None  # None: waiting for a payload unit start
        self.size = 0
        self.expected = 0  # full PES size from PES_packet_length, 0 = unbounded

    def reset(self) -> None:
        self.chunks = None
        self.size = 0
        self.expected = 0


class _VideoTrack:
    __slots__ = ("codec", "vps", "sps", "pps", "config_key", "waiting_key")

    def __init__(self, codec: str) -> None:
        self.codec = codec
        self.vps: dict[int, bytes] = {}
        self.sps: dict[int, bytes] = {}
        self.pps: dict[int, bytes] = {}
        self.config_key: tuple[object, ...] | None = None
        self.waiting_key = True


class _AudioTrack:
    __slots__ = ("carry", "next_pts", "asc")

    def __init__(self) -> None:
        self.carry = b""
        self.next_pts: int | None = None
        self.asc: bytes | None = None


class TSDemuxer:
    """Turn MPEG-TS bytes into :mod:`player.media` units. See the module docstring for limits."""

    def __init__(self, *, max_pes_size: int = MAX_PES_SIZE, max_garbage: int = MAX_GARBAGE) -> None:
        if max_pes_size < TS_PACKET_SIZE or max_garbage < 3 * TS_PACKET_SIZE:
            raise ValueError("limits too small")
        self.max_pes_size = max_pes_size
        self.max_garbage = max_garbage
        self.stats = TSStats()
        self._buf = bytearray()
        self._synced = False
        self._garbage = 0
        self._closed = False
        self._program: int | None = None
        self._pmt_pid: int | None = None
        self._sections: dict[int, bytearray | None] = {}
        self._cc: dict[int, int] = {}
        self._video_pid: int | None = None
        self._audio_pid: int | None = None
        self._video: _VideoTrack | None = None
        self._audio: _AudioTrack | None = None
        self._pes: dict[int, _PESBuffer] = {}
        self._ts_ref: int | None = None
        self._out: list[MediaEvent] = []
        self._gate: list[MediaEvent] | None = []  # None once open

    # ------------------------------------------------------------------ API

    @property
    def video_codec(self) -> str | None:
        """``"h264"``/``"hevc"`` once the PMT announced a video stream, else None."""
        return self._video.codec if self._video else None

    @property
    def has_audio(self) -> bool:
        """True once the PMT announced an AAC stream."""
        return self._audio is not None

    def feed(self, data: bytes) -> list[MediaEvent]:
        """Consume transport-stream bytes; return the units completed by them, in stream order."""
        if self._closed:
            raise TSError("demuxer closed after a fatal error")
        buf = self._buf
        buf += data
        size = len(buf)
        pos = 0
        skipped = 0
        while True:
            if self._synced:
                if size - pos < TS_PACKET_SIZE:
                    break
                if buf[pos] != SYNC_BYTE:
                    self._synced = False
                    self.stats.resyncs += 1
                    continue
                self._packet(bytes(buf[pos : pos + TS_PACKET_SIZE]))
                pos += TS_PACKET_SIZE
                self._garbage = 0
                continue
            found = buf.find(SYNC_BYTE, pos)
            gap = (size if found < 0 else found) - pos
            skipped += gap
            self._garbage += gap
            pos += gap
            if found < 0 or self._garbage > self.max_garbage or size - pos < 2 * TS_PACKET_SIZE + 1:
                break
            if buf[pos + TS_PACKET_SIZE] == SYNC_BYTE and buf[pos + 2 * TS_PACKET_SIZE] == SYNC_BYTE:
                self._synced = True
                self._garbage = 0
            else:
                pos += 1
                skipped += 1
                self._garbage += 1
        del buf[:pos]
        self.stats.skipped_bytes += skipped
        return self._take_or_fail()

    def flush(self) -> list[MediaEvent]:
        """End of stream: complete the PES packets still open and return their units.

        Packets still in the resynchronisation window are processed if they
        start with a sync byte. The demuxer can be fed again afterwards.
        """
        if self._closed:
            raise TSError("demuxer closed after a fatal error")
        buf = self._buf
        pos = 0
        while len(buf) - pos >= TS_PACKET_SIZE and buf[pos] == SYNC_BYTE:
            self._packet(bytes(buf[pos : pos + TS_PACKET_SIZE]))
            pos += TS_PACKET_SIZE
        del buf[:pos]
        for pid, pes in list(self._pes.items()):
            if pes.chunks is None:
                continue
            if 0 < pes.size < pes.expected:
                self.stats.dropped_pes += 1
                pes.reset()
                continue
            data = b"".join(pes.chunks)
            pes.reset()
            self._on_pes(pid, data)
        if self._audio is not None:
            self._audio.carry = b""
        out = self._take_or_fail()
        if self._gate is not None:
            out = self._open_gate()
        return out

    # ------------------------------------------------------------ internals

    def _take_or_fail(self) -> list[MediaEvent]:
        if self._garbage > self.max_garbage:
            self._closed = True
            self._buf.clear()
            self._out.clear()
            raise TSError(f"no MPEG-TS packet boundary in {self._garbage} bytes: not a transport stream")
        out, self._out = self._out, []
        if self._gate is None:
            return out
        self._gate.extend(out)
        return self._open_gate() if self._gate_ready() else []

    def _gate_ready(self) -> bool:
        gate = self._gate
        assert gate is not None
        video_ready = self._video is None or self._video.config_key is not None
        audio_ready = self._audio is None or self._audio.asc is not None
        if (self._video is not None or self._audio is not None) and video_ready and audio_ready:
            return True
        times = [e.dts for e in gate if isinstance(e, AccessUnit)]
        return len(times) >= START_GATE_UNITS or (bool(times) and max(times) - min(times) >= START_GATE_TICKS)

    def _open_gate(self) -> list[MediaEvent]:
        gate, self._gate = self._gate or [], None
        return [e for e in gate if not isinstance(e, AccessUnit)] + [e for e in gate if isinstance(e, AccessUnit)]

    def _packet(self, pkt: bytes) -> None:
        self.stats.packets += 1
        b1 = pkt[1]
        pid = ((b1 & 0x1F) << 8) | pkt[2]
        if pid == _PID_NULL:
            return
        if pid == _PID_PAT or pid == self._pmt_pid:
            is_pes = False
        elif pid in self._pes:
            is_pes = True
        else:
            return
        if b1 & 0x80:  # transport_error_indicator
            self.stats.transport_errors += 1
            self._damage(pid, is_pes)
            return
        b3 = pkt[3]
        afc = (b3 >> 4) & 3
        if afc == 0:
            return
        idx = 4
        discontinuity = False
        if afc & 2:
            af_len = pkt[4]
            if af_len > (182 if afc == 3 else 183):
                self.stats.transport_errors += 1
                self._damage(pid, is_pes)
                return
            if af_len:
                discontinuity = bool(pkt[5] & 0x80)
            idx = 5 + af_len
        if not afc & 1:
            return
        cc = b3 & 0x0F
        last = self._cc.get(pid)
        self._cc[pid] = cc
        error = False
        if last is not None and not discontinuity:
            if cc == last:
                self.stats.duplicates += 1
                return
            if cc != (last + 1) & 0x0F:
                self.stats.cc_errors += 1
                error = True
        if b3 & 0xC0:  # scrambled: nothing we can read
            self._damage(pid, is_pes)
            return
        payload = pkt[idx:]
        pusi = bool(b1 & 0x40)
        if is_pes:
            self._pes_payload(pid, payload, pusi, error)
        else:
            self._section_payload(pid, payload, pusi, error)

    def _damage(self, pid: int, is_pes: bool) -> None:
        if is_pes:
            pes = self._pes[pid]
            if pes.chunks is not None:
                self.stats.dropped_pes += 1
            pes.reset()
        else:
            self._sections[pid] = None

    # PSI ------------------------------------------------------------------

    def _section_payload(self, pid: int, payload: bytes, pusi: bool, error: bool) -> None:
        buf = None if error else self._sections.get(pid)
        if pusi:
            if not payload:
                self._sections[pid] = None
                return
            pointer = payload[0]
            if 1 + pointer > len(payload):
                self._sections[pid] = None
                return
            if buf is not None:
                buf += payload[1 : 1 + pointer]
                self._drain_sections(pid, buf)
            buf = bytearray(payload[1 + pointer :])
        elif buf is None:
            return
        else:
            buf += payload
        self._sections[pid] = buf
        self._drain_sections(pid, buf)

    def _drain_sections(self, pid: int, buf: bytearray) -> None:
        while True:
            if not buf or buf[0] == 0xFF:  # stuffing: the rest of the packet is padding
                self._sections[pid] = None
                return
            if len(buf) < 3:
                return
            length = ((buf[1] & 0x0F) << 8) | buf[2]
            if length > _MAX_SECTION_LENGTH or length < 9:
                self.stats.crc_errors += 1
                self._sections[pid] = None
                return
            total = 3 + length
            if len(buf) < total:
                return
            section = bytes(buf[:total])
            del buf[:total]
            if crc32_mpeg2(section) != 0:
                self.stats.crc_errors += 1
                continue
            if not section[1] & 0x80 or not section[5] & 0x01:  # syntax indicator, current_next
                continue
            if pid == _PID_PAT and section[0] == 0x00:
                self._on_pat(section)
            elif pid == self._pmt_pid and section[0] == 0x02:
                self._on_pmt(section)

    def _on_pat(self, section: bytes) -> None:
        end = len(section) - 4
        for pos in range(8, end - 3, 4):
            program = (section[pos] << 8) | section[pos + 1]
            pid = ((section[pos + 2] & 0x1F) << 8) | section[pos + 3]
            if program == 0 or pid in (_PID_PAT, _PID_NULL):
                continue
            if pid != self._pmt_pid or program != self._program:
                if self._pmt_pid is not None:
                    self._sections.pop(self._pmt_pid, None)
                    self._cc.pop(self._pmt_pid, None)
                self._program = program
                self._pmt_pid = pid
            return

    def _on_pmt(self, section: bytes) -> None:
        program = (section[3] << 8) | section[4]
        if program != self._program:
            return
        end = len(section) - 4
        pos = 12 + (((section[10] & 0x0F) << 8) | section[11])
        video: tuple[int, int] | None = None
        audio: int | None = None
        while pos + 5 <= end:
            stream_type = section[pos]
            pid = ((section[pos + 1] & 0x1F) << 8) | section[pos + 2]
            pos += 5 + (((section[pos + 3] & 0x0F) << 8) | section[pos + 4])
            if pid in (_PID_PAT, _PID_NULL, self._pmt_pid):
                continue
            if video is None and stream_type in (STREAM_TYPE_H264, STREAM_TYPE_HEVC):
                video = (pid, stream_type)
            elif audio is None and stream_type == STREAM_TYPE_AAC_ADTS and (video is None or pid != video[0]):
                audio = pid
        new_video_pid = video[0] if video else None
        codec = None if video is None else ("h264" if video[1] == STREAM_TYPE_H264 else "hevc")
        if new_video_pid != self._video_pid or (self._video and self._video.codec != codec):
            self._drop_pid(self._video_pid)
            old_key = self._video.config_key if self._video else None
            self._video_pid = new_video_pid
            self._video = _VideoTrack(codec) if codec else None
            if self._video is not None and new_video_pid is not None:
                self._video.config_key = old_key
                self._pes[new_video_pid] = _PESBuffer()
        if audio != self._audio_pid:
            self._drop_pid(self._audio_pid)
            old_asc = self._audio.asc if self._audio else None
            self._audio_pid = audio
            self._audio = None
            if audio is not None:
                self._audio = _AudioTrack()
                self._audio.asc = old_asc
                self._pes[audio] = _PESBuffer()

    def _drop_pid(self, pid: int | None) -> None:
        if pid is not None:
            self._pes.pop(pid, None)
            self._cc.pop(pid, None)

    # PES ------------------------------------------------------------------

    def _pes_payload(self, pid: int, payload: bytes, pusi: bool, error: bool) -> None:
        pes = self._pes[pid]
        if error and pes.chunks is not None:
            self.stats.dropped_pes += 1
            pes.reset()
        if pusi:
            if pes.chunks is not None:
                if 0 < pes.size < pes.expected:  # shorter than its PES_packet_length
                    self.stats.dropped_pes += 1
                    pes.reset()
                else:
                    data = b"".join(pes.chunks)
                    pes.reset()
                    self._on_pes(pid, data)
            pes.chunks = [payload]
            pes.size = len(payload)
        elif pes.chunks is None:
            return
        else:
            pes.chunks.append(payload)
            pes.size += len(payload)
        if pes.expected == 0 and pes.size >= 6:
            head = pes.chunks[0] if len(pes.chunks[0]) >= 6 else b"".join(pes.chunks)
            length = (head[4] << 8) | head[5]
            pes.expected = 6 + length if length else -1
        if pes.size > self.max_pes_size:
            self.stats.dropped_pes += 1
            pes.reset()
        elif pes.expected > 0 and pes.size >= pes.expected:
            data = b"".join(pes.chunks)[: pes.expected]
            pes.reset()
            self._on_pes(pid, data)

    def _on_pes(self, pid: int, data: bytes) -> None:
        if len(data) < 9 or data[0] != 0 or data[1] != 0 or data[2] != 1 or data[6] & 0xC0 != 0x80:
            self.stats.dropped_pes += 1
            return
        flags = data[7] >> 6
        header_end = 9 + data[8]
        if header_end > len(data):
            self.stats.dropped_pes += 1
            return
        pts = dts = None
        if flags & 2 and header_end >= 14:
            pts = _read_timestamp(data, 9)
            dts = pts
            if flags == 3 and header_end >= 19:
                dts = _read_timestamp(data, 14)
        payload = data[header_end:]
        if pts is not None and dts is not None:
            dts = self._unwrap(dts)
            pts = dts + ((pts - (dts % _WRAP) + _HALF) % _WRAP - _HALF)
        try:
            if pid == self._video_pid and self._video is not None:
                self._on_video(self._video, pts, dts, payload)
            elif pid == self._audio_pid and self._audio is not None:
                self._on_audio(self._audio, pts, payload)
        except NALError:
            self.stats.dropped_pes += 1

    def _unwrap(self, ts: int) -> int:
        ref = self._ts_ref
        if ref is None:
            value = ts
        else:
            value = ref + ((ts - ref + _HALF) % _WRAP - _HALF)
        self._ts_ref = value
        return value

    # video ----------------------------------------------------------------

    def _on_video(self, track: _VideoTrack, pts: int | None, dts: int | None, payload: bytes) -> None:
        if pts is None or dts is None:
            self.stats.dropped_pes += 1
            return
        nals = split_annexb(payload)
        keep: list[bytes] = []
        keyframe = False
        if track.codec == "h264":
            for nal in nals:
                t = nal[0] & 0x1F
                if t == H264_NAL_SPS:
                    self._store(track.sps, nal, lambda n: parse_h264_sps(n).sps_id)
                elif t == H264_NAL_PPS:
                    self._store(track.pps, nal, h264_pps_id)
                elif t in (H264_NAL_AUD, H264_NAL_FILLER):
                    continue
                else:
                    keep.append(nal)
                    keyframe = keyframe or t == H264_NAL_IDR
        else:
            for nal in nals:
                if len(nal) < 2:
                    continue
                t = (nal[0] >> 1) & 0x3F
                if t == HEVC_NAL_VPS:
                    self._store(track.vps, nal, hevc_vps_id)
                elif t == HEVC_NAL_SPS:
                    self._store(track.sps, nal, lambda n: parse_hevc_sps(n).sps_id)
                elif t == HEVC_NAL_PPS:
                    self._store(track.pps, nal, hevc_pps_id)
                elif t in (HEVC_NAL_AUD, HEVC_NAL_FILLER):
                    continue
                else:
                    keep.append(nal)
                    keyframe = keyframe or HEVC_NAL_BLA_W_LP <= t <= HEVC_NAL_IRAP_MAX
        self._maybe_video_config(track)
        if not keep:
            return
        if track.config_key is None:
            self.stats.dropped_frames += 1
            return
        if track.waiting_key:
            if not keyframe:
                self.stats.dropped_frames += 1
                return
            track.waiting_key = False
        self.stats.video_units += 1
        self._out.append(AccessUnit("video", dts, pts, length_prefixed(keep), keyframe))

    @staticmethod
    def _store(table: dict[int, bytes], nal: bytes, ident: Callable[[bytes], int]) -> None:
        try:
            key = ident(nal)
        except NALError:
            return
        table[key] = nal

    def _maybe_video_config(self, track: _VideoTrack) -> None:
        if not track.sps or not track.pps or (track.codec == "hevc" and not track.vps):
            return
        key = (
            track.codec,
            tuple(sorted(track.vps.items())),
            tuple(sorted(track.sps.items())),
            tuple(sorted(track.pps.items())),
        )
        if key == track.config_key:
            return
        sps = [nal for _, nal in sorted(track.sps.items())]
        pps = [nal for _, nal in sorted(track.pps.items())]
        if track.codec == "h264":
            extradata = avc_decoder_config(sps, pps)
            info = parse_h264_sps(sps[0])
            width, height = info.width, info.height
        else:
            vps = [nal for _, nal in sorted(track.vps.items())]
            extradata = hevc_decoder_config(vps, sps, pps)
            hinfo = parse_hevc_sps(sps[0])
            width, height = hinfo.width, hinfo.height
        codec: VideoCodec = "h264" if track.codec == "h264" else "hevc"
        track.config_key = key
        track.waiting_key = True
        self._out.append(VideoConfig(codec, extradata, width, height))

    # audio ----------------------------------------------------------------

    def _on_audio(self, track: _AudioTrack, pts: int | None, payload: bytes) -> None:
        carried = len(track.carry)
        frames, rest = split_adts(track.carry + payload)
        track.carry = rest[-ADTS_MAX_FRAME:] if rest else b""
        index_in_pes = 0
        for frame in frames:
            header = frame.header
            duration = AAC_SAMPLES_PER_FRAME * TIMESCALE // header.sample_rate
            if frame.offset < carried:
                frame_pts = track.next_pts
            elif pts is not None:
                frame_pts = pts + index_in_pes * AAC_SAMPLES_PER_FRAME * TIMESCALE // header.sample_rate
                index_in_pes += 1
            else:
                frame_pts = track.next_pts
            if frame_pts is None:
                self.stats.dropped_frames += 1
                continue
            track.next_pts = frame_pts + duration
            asc = header.audio_specific_config
            if asc != track.asc:
                track.asc = asc
                self._out.append(AudioConfig("aac", asc, header.sample_rate, header.channels))
            self.stats.audio_units += 1
            self._out.append(AccessUnit("audio", frame_pts, frame_pts, frame.payload, True))


def _read_timestamp(data: bytes, pos: int) -> int:
    """33-bit PTS/DTS from its 5-byte PES encoding (marker bits ignored)."""
    return (
        ((data[pos] >> 1) & 0x07) << 30
        | data[pos + 1] << 22
        | (data[pos + 2] >> 1) << 15
        | data[pos + 3] << 7
        | data[pos + 4] >> 1
    )
