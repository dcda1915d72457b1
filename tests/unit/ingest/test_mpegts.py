"""ingest.mpegts: the sans-I/O TS demuxer.

Real streams come from the ffmpeg command line; FFmpeg (through PyAV) is
the reference: its demuxer gives the expected timestamps and keyframes, its
decoders prove the units and configs valid. Damaged and hand-built streams
cover resync, losses, duplicates, CRC, timestamp wrap and ADTS splitting.
"""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import av
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.mpegts import TS_PACKET_SIZE, TSDemuxer, TSError, crc32_mpeg2
from player.media import AccessUnit, AudioConfig, VideoConfig
from player.nal import split_annexb, split_length_prefixed
from tests.unit.test_nal import adts_header, encode_video

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg CLI needed")

# ---------------------------------------------------------------- fixtures


def ffmpeg_ts(path: Path, seconds: float, *video: str, audio: bool = True, size: str = "320x240") -> bytes:
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30"]
    if audio:
        cmd += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]
    cmd += ["-t", str(seconds), *video, "-pix_fmt", "yuv420p"]
    if audio:
        cmd += ["-c:a", "aac", "-b:a", "64k"]
    cmd += ["-f", "mpegts", str(path)]
    subprocess.run(cmd, check=True, timeout=60)
    return path.read_bytes()


@pytest.fixture(scope="module")
def h264_ts(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """3 s of H.264 (B-frames, closed GOP of 30) + AAC 48 kHz mono."""
    x264 = ["-c:v", "libx264", "-preset", "veryfast", "-bf", "2", "-g", "30", "-sc_threshold", "0"]
    return ffmpeg_ts(tmp_path_factory.mktemp("ts") / "h264.ts", 3, *x264)


def ffmpeg_reference(path: Path) -> dict[str, list[tuple[int, int, bool, int]]]:
    """What FFmpeg's own demuxer finds: (pts, dts, keyframe, size) per packet and track."""
    found: dict[str, list[tuple[int, int, bool, int]]] = {"video": [], "audio": []}
    with av.open(str(path)) as container:
        for packet in container.demux():
            if packet.size:
                found[packet.stream.type].append((packet.pts, packet.dts, packet.is_keyframe, packet.size))
    return found


@pytest.fixture(scope="module")
def reference(h264_ts: bytes, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[tuple[int, int, bool, int]]]:
    path = tmp_path_factory.mktemp("ref") / "h264.ts"
    path.write_bytes(h264_ts)
    return ffmpeg_reference(path)


def demux_chunks(data: bytes, seed: int = 0, max_chunk: int = 5000, demuxer: TSDemuxer | None = None) -> list:
    demuxer = demuxer or TSDemuxer()
    rng = random.Random(seed)
    events = []
    pos = 0
    while pos < len(data):
        n = rng.randint(1, max_chunk)
        events += demuxer.feed(data[pos : pos + n])
        pos += n
    return events + demuxer.flush()


def units(events: list, kind: str) -> list[AccessUnit]:
    return [e for e in events if isinstance(e, AccessUnit) and e.kind == kind]


def configs(events: list) -> list[VideoConfig | AudioConfig]:
    return [e for e in events if not isinstance(e, AccessUnit)]


def decode_video(config: VideoConfig, video: list[AccessUnit]) -> list[av.VideoFrame]:
    ctx = av.CodecContext.create(config.codec, "r")
    ctx.extradata = config.extradata
    frames = []
    for unit in video:
        frames += ctx.decode(av.Packet(unit.data))
    return frames + ctx.decode(None)


# --------------------------------------------------------- real streams


def test_ffmpeg_stream_in_random_chunks(h264_ts: bytes, reference: dict) -> None:
    events = demux_chunks(h264_ts, seed=1)
    video_config, audio_config = configs(events)
    assert isinstance(video_config, VideoConfig)
    assert (video_config.codec, video_config.width, video_config.height) == ("h264", 320, 240)
    assert audio_config == AudioConfig("aac", b"\x11\x88", 48000, 1)
    assert events.index(video_config) < events.index(units(events, "video")[0])
    assert events.index(audio_config) < events.index(units(events, "audio")[0])

    video = units(events, "video")
    assert len(video) == 90
    assert [i for i, u in enumerate(video) if u.keyframe] == [0, 30, 60]
    assert [(u.pts, u.dts, u.keyframe) for u in video] == [r[:3] for r in reference["video"]]
    assert any(u.pts != u.dts for u in video)  # B-frames were reordered
    for unit in video:  # AVCC framing, no AUD/SPS/PPS left
        assert all(n[0] & 0x1F not in (7, 8, 9) for n in split_length_prefixed(unit.data))

    frames = decode_video(video_config, video)
    assert len(frames) == 90
    assert {(f.width, f.height) for f in frames} == {(320, 240)}

    audio = units(events, "audio")
    assert [u.pts for u in audio] == [r[0] for r in reference["audio"]]
    assert [len(u.data) + 7 for u in audio] == [r[3] for r in reference["audio"]]
    assert all(u.keyframe and u.dts == u.pts for u in audio)
    assert audio[1].pts - audio[0].pts == 1920  # 1024 samples at 48 kHz in 90 kHz ticks
    decoder = av.CodecContext.create("aac", "r")
    decoder.extradata = audio_config.extradata
    decoded = [f for u in audio for f in decoder.decode(av.Packet(u.data))]
    assert len(decoded) >= len(audio) - 1
    assert decoded[-1].sample_rate == 48000


def test_chunking_does_not_change_the_result(h264_ts: bytes) -> None:
    data = h264_ts[: 300 * TS_PACKET_SIZE]
    whole = TSDemuxer()
    expected = whole.feed(data) + whole.flush()
    assert len(units(expected, "video")) > 5
    assert demux_chunks(data, seed=2, max_chunk=7) == expected
    assert demux_chunks(data, seed=3, max_chunk=700) == expected


def test_hevc_stream(tmp_path: Path) -> None:
    x265 = ["-c:v", "libx265", "-preset", "ultrafast", "-g", "15", "-x265-params", "log-level=none"]
    data = ffmpeg_ts(tmp_path / "hevc.ts", 1, *x265, audio=False, size="322x242")
    events = demux_chunks(data, seed=4)
    (config,) = configs(events)
    assert isinstance(config, VideoConfig)
    assert (config.codec, config.width, config.height) == ("hevc", 322, 242)
    video = units(events, "video")
    assert len(video) == 30
    assert [(u.pts, u.dts, u.keyframe) for u in video] == [r[:3] for r in ffmpeg_reference(tmp_path / "hevc.ts")["video"]]
    assert sum(u.keyframe for u in video) == 2
    frames = decode_video(config, video)
    assert len(frames) == 30 and (frames[0].width, frames[0].height) == (322, 242)


# ------------------------------------------------------------ damage


def packets(data: bytes) -> list[bytes]:
    return [data[i : i + TS_PACKET_SIZE] for i in range(0, len(data), TS_PACKET_SIZE)]


def pid_of(packet: bytes) -> int:
    return ((packet[1] & 0x1F) << 8) | packet[2]


def test_resync_after_garbage_between_packets(h264_ts: bytes) -> None:
    clean = demux_chunks(h264_ts)
    rng = random.Random(5)
    damaged = bytearray()
    for i, packet in enumerate(packets(h264_ts)):
        if i % 97 == 50:
            damaged += bytes(rng.choice(range(0x48, 0x100)) for _ in range(rng.randint(1, 400)))
        damaged += packet
    demuxer = TSDemuxer()
    assert demux_chunks(bytes(damaged), seed=6, demuxer=demuxer) == clean
    assert demuxer.stats.resyncs > 5
    assert demuxer.stats.cc_errors == 0


def test_lost_packet_drops_only_its_access_unit(h264_ts: bytes, reference: dict) -> None:
    pkts = packets(h264_ts)
    video_pid = pid_of(next(p for p in pkts if p[1] & 0x40 and p[4:] and b"\x00\x00\x01\xe0" in p))
    starts = [i for i, p in enumerate(pkts) if pid_of(p) == video_pid and p[1] & 0x40]
    # a packet in the middle of the 40th picture's PES
    victim = next(i for i in range(starts[40] + 1, starts[41]) if pid_of(pkts[i]) == video_pid)
    demuxer = TSDemuxer()
    events = demux_chunks(b"".join(pkts[:victim] + pkts[victim + 1 :]), demuxer=demuxer)
    video = units(events, "video")
    assert demuxer.stats.cc_errors == 1 and demuxer.stats.dropped_pes == 1
    assert [u.pts for u in video] == [r[0] for j, r in enumerate(reference["video"]) if j != 40]


def test_duplicate_packet_is_ignored(h264_ts: bytes) -> None:
    pkts = packets(h264_ts)
    clean = demux_chunks(h264_ts)
    demuxer = TSDemuxer()
    events = demux_chunks(b"".join(pkts[:500] + [pkts[499]] + pkts[500:]), demuxer=demuxer)
    assert events == clean
    assert demuxer.stats.duplicates == 1 and demuxer.stats.cc_errors == 0


def test_bad_pat_crc_is_ignored_until_next_pat(h264_ts: bytes) -> None:
    pkts = packets(h264_ts)
    first_pat = next(i for i, p in enumerate(pkts) if pid_of(p) == 0)
    broken = bytearray(pkts[first_pat])
    section_end = 5 + 3 + (((broken[6] & 0x0F) << 8) | broken[7])  # pointer 0, then the section
    broken[section_end - 1] ^= 0xFF  # last CRC byte
    pkts[first_pat] = bytes(broken)
    demuxer = TSDemuxer()
    events = demux_chunks(b"".join(pkts), demuxer=demuxer)
    assert demuxer.stats.crc_errors == 1
    video = units(events, "video")
    assert 0 < len(video) < 90  # the start is lost: no PMT was known yet
    assert video[0].keyframe
    assert isinstance(configs(events)[0], (VideoConfig, AudioConfig))


def rewrite_timestamps(data: bytes, offset: int) -> bytes:
    """Add ``offset`` (mod 2**33) to every PES PTS/DTS of a TS where headers fit one packet."""
    out = bytearray()
    for p in packets(data):
        p = bytearray(p)
        if p[1] & 0x40 and p[3] & 0x10:
            start = 4 + (1 + p[4] if p[3] & 0x20 else 0)
            if p[start : start + 3] == b"\x00\x00\x01" and p[start + 3] >= 0xC0:
                flags = p[start + 7] >> 6
                for k in range({2: 1, 3: 2}.get(flags, 0)):
                    pos = start + 9 + 5 * k
                    b = p[pos : pos + 5]
                    ts = ((b[0] >> 1) & 7) << 30 | b[1] << 22 | (b[2] >> 1) << 15 | b[3] << 7 | b[4] >> 1
                    ts = (ts + offset) % (1 << 33)
                    p[pos] = (b[0] & 0xF1) | ((ts >> 29) & 0x0E)
                    p[pos + 1] = (ts >> 22) & 0xFF
                    p[pos + 2] = ((ts >> 14) & 0xFE) | 1
                    p[pos + 3] = (ts >> 7) & 0xFF
                    p[pos + 4] = ((ts << 1) & 0xFE) | 1
        out += p
    return bytes(out)


def test_timestamps_unwrap_across_33_bit_wrap(h264_ts: bytes) -> None:
    clean = demux_chunks(h264_ts)
    first = units(clean, "video")[0].dts
    offset = (1 << 33) - first - 90_000  # wrap one second into the stream
    events = demux_chunks(rewrite_timestamps(h264_ts, offset))
    for kind in ("video", "audio"):
        before, after = units(clean, kind), units(events, kind)
        assert len(after) == len(before)
        assert [u.dts - after[0].dts for u in after] == [u.dts - before[0].dts for u in before]
        assert [u.pts - u.dts for u in after] == [u.pts - u.dts for u in before]
        assert after[-1].dts > 1 << 33  # continued past the wrap instead of jumping back
    assert min(u.dts for u in units(events, "video")) == (1 << 33) - 90_000


def test_garbage_only_input_is_fatal() -> None:
    demuxer = TSDemuxer(max_garbage=10_000)
    rng = random.Random(7)
    with pytest.raises(TSError):
        for _ in range(20):
            demuxer.feed(bytes(rng.randrange(256) for _ in range(1000)))
    with pytest.raises(TSError):
        demuxer.feed(b"\x47" * 188)


def test_crc32_mpeg2_check_value() -> None:
    assert crc32_mpeg2(b"123456789") == 0x0376E6E7


# ------------------------------------------------------- hand-built streams


class Muxer:
    """A minimal TS writer for edge cases (PAT/PMT with CRC, PES packetisation)."""

    PMT_PID, VIDEO_PID, AUDIO_PID = 0x1000, 0x100, 0x101

    def __init__(self, video_type: int = 0x1B, audio: bool = True) -> None:
        self.cc: dict[int, int] = {}
        self.video_type = video_type
        self.audio = audio

    def packet(self, pid: int, payload: bytes, pusi: bool, *, discontinuity: bool = False) -> bytes:
        cc = self.cc.get(pid, -1) + 1 & 0x0F
        self.cc[pid] = cc
        header = bytes((0x47, (0x40 if pusi else 0) | pid >> 8, pid & 0xFF))
        room = 184
        if len(payload) >= room and not discontinuity:
            return header + bytes((0x10 | cc,)) + payload[:room]
        af_len = max(1, room - 1 - len(payload))
        af = bytes((af_len, 0x80 if discontinuity else 0)) + b"\xff" * (af_len - 1)
        return header + bytes((0x30 | cc,)) + af + payload[: room - 1 - af_len]

    def section(self, table_id: int, ext: int, body: bytes) -> bytes:
        head = bytes((table_id,)) + (0xB000 | len(body) + 9).to_bytes(2, "big")
        sec = head + ext.to_bytes(2, "big") + b"\xc1\x00\x00" + body
        return sec + crc32_mpeg2(sec).to_bytes(4, "big")

    def psi(self) -> bytes:
        pat = self.section(0, 1, (1).to_bytes(2, "big") + (0xE000 | self.PMT_PID).to_bytes(2, "big"))
        es = bytes((self.video_type,)) + (0xE000 | self.VIDEO_PID).to_bytes(2, "big") + b"\xf0\x00"
        if self.audio:
            es += b"\x0f" + (0xE000 | self.AUDIO_PID).to_bytes(2, "big") + b"\xf0\x00"
        pmt = self.section(2, 1, (0xE000 | self.VIDEO_PID).to_bytes(2, "big") + b"\xf0\x00" + es)
        return self.packet(0, b"\x00" + pat, True) + self.packet(self.PMT_PID, b"\x00" + pmt, True)

    @staticmethod
    def pes(stream_id: int, payload: bytes, pts: int | None, dts: int | None = None, sized: bool = True) -> bytes:
        def ts(prefix: int, value: int) -> bytes:
            return bytes((
                prefix << 4 | (value >> 29) & 0x0E | 1, (value >> 22) & 0xFF,
                (value >> 14) & 0xFE | 1, (value >> 7) & 0xFF, (value << 1) & 0xFE | 1,
            ))

        fields = b""
        flags = 0
        if pts is not None:
            flags = 0x80
            fields = ts(2, pts)
            if dts is not None:
                flags = 0xC0
                fields = ts(3, pts) + ts(1, dts)
        body = bytes((0x80, flags, len(fields))) + fields + payload
        length = len(body) if sized else 0
        return b"\x00\x00\x01" + bytes((stream_id,)) + length.to_bytes(2, "big") + body

    def send(self, pid: int, pes: bytes, **kw: bool) -> bytes:
        out = b""
        for i in range(0, len(pes), 184):
            out += self.packet(pid, pes[i : i + 184], i == 0, **kw)
        return out


def adts(payload: bytes) -> bytes:
    return adts_header(7 + len(payload), sr_index=3, channels=2) + payload


def test_several_adts_frames_per_pes_and_one_across_pes() -> None:
    mux = Muxer()
    frames = [bytes([i]) * (20 + i) for i in range(5)]
    stream = b"".join(adts(f) for f in frames)
    cut = len(adts(frames[0])) + len(adts(frames[1])) + 10  # frame 2 straddles the two PES
    data = mux.psi()
    data += mux.send(mux.AUDIO_PID, mux.pes(0xC0, stream[:cut], 9000))
    data += mux.send(mux.AUDIO_PID, mux.pes(0xC0, stream[cut:], 9000 + 3 * 1920))
    events = demux_chunks(data)
    assert configs(events) == [AudioConfig("aac", b"\x11\x90", 48000, 2)]
    audio = units(events, "audio")
    assert [u.data for u in audio] == frames
    assert [u.pts for u in audio] == [9000 + k * 1920 for k in range(5)]


def test_video_waits_for_keyframe_and_needs_pts() -> None:
    mux = Muxer(audio=False)
    pkts = encode_video("libx264", 64, 64, frames=4, **{"x264-params": "keyint=2:min-keyint=2:scenecut=0"})
    idr, p1, idr2, p2 = pkts  # keyint 2: I P I P
    params = b"".join(b"\x00\x00\x00\x01" + n for n in split_annexb(idr) if n[0] & 0x1F in (7, 8))
    data = mux.psi()
    data += mux.send(mux.VIDEO_PID, mux.pes(0xE0, params + p1, 3000, sized=False))  # no IDR yet
    data += mux.send(mux.VIDEO_PID, mux.pes(0xE0, idr2, 6000, sized=False))
    data += mux.send(mux.VIDEO_PID, mux.pes(0xE0, p2, None, sized=False))  # no PTS: dropped
    data += mux.send(mux.VIDEO_PID, mux.pes(0xE0, p2, 12000, 9000, sized=False))
    demuxer = TSDemuxer()
    events = demux_chunks(data, demuxer=demuxer)
    video = units(events, "video")
    assert [(u.pts, u.dts, u.keyframe) for u in video] == [(6000, 6000, True), (12000, 9000, False)]
    assert isinstance(events[0], VideoConfig) and (events[0].width, events[0].height) == (64, 64)
    assert demuxer.stats.dropped_frames == 1 and demuxer.stats.dropped_pes == 1
    assert len(decode_video(events[0], video)) == 2


def test_discontinuity_indicator_is_not_a_cc_error() -> None:
    mux = Muxer()
    data = mux.psi() + mux.send(mux.AUDIO_PID, mux.pes(0xC0, adts(b"x" * 30), 900))
    mux.cc[mux.AUDIO_PID] = 9  # the counter jumps ...
    data += mux.send(mux.AUDIO_PID, mux.pes(0xC0, adts(b"y" * 30), 2820), discontinuity=True)  # ... announced
    mux.cc[mux.AUDIO_PID] = 3  # unannounced jump: the PES in progress (none here) would be dropped
    data += mux.send(mux.AUDIO_PID, mux.pes(0xC0, adts(b"z" * 30), 4740))
    demuxer = TSDemuxer()
    events = demux_chunks(data, demuxer=demuxer)
    assert [u.data for u in units(events, "audio")] == [b"x" * 30, b"y" * 30, b"z" * 30]
    assert demuxer.stats.cc_errors == 1


def test_truncated_sized_pes_is_dropped() -> None:
    mux = Muxer()
    whole = mux.pes(0xC0, adts(b"a" * 400), 900)
    data = mux.psi() + mux.send(mux.AUDIO_PID, whole)
    pkts = packets(data)
    del pkts[3]  # second packet of the audio PES
    mux.cc[mux.AUDIO_PID] = pkts[-1][3] & 0x0F
    demuxer = TSDemuxer()
    events = demux_chunks(b"".join(pkts) + mux.send(mux.AUDIO_PID, mux.pes(0xC0, adts(b"b" * 10), 90000)), demuxer=demuxer)
    assert [u.data for u in units(events, "audio")] == [b"b" * 10]
    assert demuxer.stats.dropped_pes == 1


# ---------------------------------------------------------------- fuzzing


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=3000), st.integers(min_value=1, max_value=400))
def test_random_bytes_only_raise_ts_error(data: bytes, chunk: int) -> None:
    demuxer = TSDemuxer(max_garbage=1000)
    try:
        for i in range(0, len(data), chunk):
            demuxer.feed(data[i : i + chunk])
        demuxer.flush()
    except TSError:
        pass


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(min_value=0, max_value=80 * 188 - 1), st.integers(0, 255)), max_size=40), st.integers(0, 1000))
def test_corrupted_stream_yields_wellformed_units(h264_ts: bytes, flips: list[tuple[int, int]], seed: int) -> None:
    data = bytearray(h264_ts[: 80 * 188])
    for pos, value in flips:
        data[pos] = value
    for event in demux_chunks(bytes(data), seed=seed, max_chunk=1000):
        if isinstance(event, AccessUnit) and event.kind == "video":
            assert split_length_prefixed(event.data)
        elif isinstance(event, AccessUnit):
            assert event.data and event.keyframe
        else:
            assert event.extradata


def test_start_gate_gives_every_announced_config_before_any_unit(tmp_path: Path) -> None:
    """An AAC config only appears with the first ADTS frame; the sink must still
    see both configs before the first unit, or it would start video-only."""
    out = tmp_path / "gate.ts"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-f", "lavfi",
                    "-i", "sine=sample_rate=48000", "-t", "2", "-c:v", "libx264", "-preset", "ultrafast", "-g", "30",
                    "-c:a", "aac", "-f", "mpegts", str(out)], check=True, timeout=60)
    data = out.read_bytes()
    demuxer = TSDemuxer()
    events = []
    for i in range(0, len(data), 1316):
        events += demuxer.feed(data[i : i + 1316])
    events += demuxer.flush()
    first_unit = next(i for i, e in enumerate(events) if isinstance(e, AccessUnit))
    kinds_before = {e.kind for e in events[:first_unit]}
    assert kinds_before == {"video", "audio"}
    assert sum(1 for e in events if isinstance(e, AccessUnit) and e.kind == "video") == 60
