"""player.fmp4: box layout read back independently, and real H.264/HEVC/AAC decoded by PyAV and ffprobe."""

from __future__ import annotations

import itertools
import json
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from player.fmp4 import (
    Fmp4Error,
    Sample,
    TrackRun,
    aac_info,
    codec_string,
    fragment,
    init_segment,
    timescale_of,
    video_dimensions,
)
from player.media import TIMESCALE, AccessUnit, AudioConfig, VideoConfig
from tests.unit.player.encoded_media import (
    Box,
    audio,
    decode_file,
    has_encoder,
    iter_boxes,
    read_fragment,
    video,
)

FFPROBE = shutil.which("ffprobe")


def _moov(init: bytes) -> tuple[Box, Box]:
    boxes = list(iter_boxes(init))
    assert [box.kind for box in boxes] == ["ftyp", "moov"]
    return boxes[0], boxes[1]


def _sample_entry(trak: Box) -> Box:
    stsd = trak.child("mdia").child("minf").child("stbl").child("stsd")
    (count,) = struct.unpack_from(">I", stsd.payload, 4)
    assert count == 1
    entries = stsd.children(skip=8)
    assert len(entries) == 1
    return entries[0]


def _units_to_fragments(units: list[AccessUnit], track_id: int, timescale: int, per: int) -> list[bytes]:
    """Hand-made fragments of ``per`` units each (durations from the next dts), via the public API."""
    origin = units[0].dts
    times = [round((unit.dts - origin) * timescale / TIMESCALE) for unit in units]
    ends = times[1:] + [times[-1] + (times[-1] - times[-2])]
    fragments: list[bytes] = []
    for start in range(0, len(units), per):
        chunk = range(start, min(start + per, len(units)))
        samples = [
            Sample(
                units[i].data,
                ends[i] - times[i],
                units[i].keyframe,
                round((units[i].pts - units[i].dts) * timescale / TIMESCALE),
            )
            for i in chunk
        ]
        fragments.append(fragment(len(fragments) + 1, [TrackRun(track_id, times[start], samples)]))
    return fragments


def _ffprobe_streams(path: Path) -> list[dict[str, object]]:
    assert FFPROBE is not None
    result = subprocess.run(
        [FFPROBE, "-v", "error", "-count_frames", "-show_entries",
         "stream=codec_name,width,height,nb_read_frames", "-of", "json", str(path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return list(json.loads(result.stdout)["streams"])


# --------------------------------------------------------------------------- init segment


def test_init_segment_layout() -> None:
    v = video(frames=30, gop=30)
    a = audio(seconds=0.5)
    init = init_segment([v.config, a.config])
    ftyp, moov = _moov(init)
    assert ftyp.payload[:4] == b"iso6"
    brands = {ftyp.payload[i : i + 4] for i in range(8, len(ftyp.payload), 4)}
    assert {b"iso6", b"cmfc"} <= brands

    kinds = [box.kind for box in moov.children()]
    assert kinds == ["mvhd", "trak", "trak", "mvex"]
    mvhd = moov.child("mvhd").payload
    assert struct.unpack_from(">I", mvhd, 96)[0] == 3  # next_track_ID
    traks = [box for box in moov.children() if box.kind == "trak"]

    expectations = [
        (1, TIMESCALE, b"vide", "vmhd"),
        (2, 48000, b"soun", "smhd"),
    ]
    for trak, (track_id, timescale, handler, header) in zip(traks, expectations, strict=True):
        tkhd = trak.child("tkhd").payload
        assert struct.unpack_from(">I", tkhd, 12)[0] == track_id
        mdia = trak.child("mdia")
        assert struct.unpack_from(">I", mdia.child("mdhd").payload, 12)[0] == timescale
        assert mdia.child("hdlr").payload[8:12] == handler
        minf = mdia.child("minf")
        minf.child(header)
        minf.child("dinf").child("dref")
        stbl = minf.child("stbl")
        for empty, offset in (("stts", 4), ("stsc", 4), ("stco", 4), ("stsz", 8)):
            assert struct.unpack_from(">I", stbl.child(empty).payload, offset)[0] == 0

    avc1 = _sample_entry(traks[0])
    assert avc1.kind == "avc1"
    assert struct.unpack_from(">HH", avc1.payload, 24) == (160, 96)
    assert struct.unpack_from(">II", traks[0].child("tkhd").payload, 76) == (160 << 16, 96 << 16)
    assert avc1.child("avcC", skip=78).payload == v.config.extradata

    mp4a = _sample_entry(traks[1])
    assert mp4a.kind == "mp4a"
    channels, bits, _, _, rate = struct.unpack_from(">HHHHI", mp4a.payload, 16)
    assert (channels, bits, rate >> 16) == (2, 16, 48000)
    esds = mp4a.child("esds", skip=28).payload
    assert a.config.extradata in esds
    assert b"\x05" + bytes([len(a.config.extradata)]) + a.config.extradata in esds

    trexes = moov.child("mvex").children()
    assert [struct.unpack_from(">II", box.payload, 4) for box in trexes] == [(1, 1), (2, 1)]


def test_video_dimensions_come_from_the_sps_with_cropping() -> None:
    v = video(frames=4, gop=4, width=200, height=120, bframes=0)  # 120 = 7.5 macroblocks: cropped
    assert v.config.width == 0
    assert video_dimensions(v.config) == (200, 120)


def test_video_dimensions_fall_back_to_the_config_without_sps() -> None:
    record = bytes([1, 0x64, 0, 0x1F, 0xFF, 0xE0, 0])  # no SPS, no PPS
    assert video_dimensions(VideoConfig("h264", record, 640, 360)) == (640, 360)


def test_avcc_is_rewritten_for_four_byte_lengths() -> None:
    v = video(frames=30, gop=30)
    two_byte = v.config.extradata[:4] + bytes([0xFD]) + v.config.extradata[5:]
    _, moov = _moov(init_segment([VideoConfig("h264", two_byte)]))
    avcc = _sample_entry(moov.child("trak")).child("avcC", skip=78).payload
    assert avcc[4] & 3 == 3
    assert avcc[5:] == v.config.extradata[5:]


def test_codec_strings() -> None:
    v = video(frames=30, gop=30)
    record = v.config.extradata
    assert codec_string(v.config) == f"avc1.{record[1]:02X}{record[2]:02X}{record[3]:02X}"
    assert codec_string(audio(seconds=0.5).config) == "mp4a.40.2"
    assert timescale_of(v.config) == TIMESCALE
    assert timescale_of(audio(seconds=0.5).config) == 48000


@pytest.mark.parametrize(
    ("asc", "rate", "frame"),
    [
        (bytes([0x11, 0x90]), 48000, 1024),  # AAC-LC 48 kHz stereo
        (bytes([0x12, 0x10]), 44100, 1024),  # AAC-LC 44.1 kHz stereo
        (bytes([0x11, 0x94]), 48000, 960),  # frameLengthFlag set
        # HE-AAC, explicit: AOT 5, core 22050 Hz, stereo, extension 44100 Hz, then AOT 2
        (bytes([0x2B, 0x92, 0x08, 0x00]), 44100, 2048),
    ],
)
def test_aac_frame_durations(asc: bytes, rate: int, frame: int) -> None:
    assert aac_info(asc).frame_duration(rate) == frame


# --------------------------------------------------------------------------- fragments


def test_fragment_fields_read_back() -> None:
    video_samples = [
        Sample(b"\x00\x00\x00\x02\x65\x88", 3000, True, 6000),
        Sample(b"\x00\x00\x00\x01\x41", 3000, False, -3000),
        Sample(b"\x00\x00\x00\x03\x01\x02\x03", 2999, False, 0),
    ]
    audio_samples = [Sample(bytes([i]) * (10 + i), 1024) for i in range(4)]
    data = fragment(
        7,
        [TrackRun(1, 2**40 + 5, video_samples), TrackRun(2, 123_456, audio_samples)],
    )
    sequence, runs, payload = read_fragment(data)
    assert sequence == 7
    assert payload == sum(len(s.data) for s in video_samples + audio_samples)
    first, second = runs
    assert (first.track_id, first.base_decode_time) == (1, 2**40 + 5)
    assert first.durations == [3000, 3000, 2999]
    assert first.sync == [True, False, False]
    assert first.composition_offsets == [6000, -3000, 0]
    assert first.data == [s.data for s in video_samples]
    assert (second.track_id, second.base_decode_time) == (2, 123_456)
    assert second.durations == [1024] * 4
    assert second.sync == [True] * 4
    assert second.data == [s.data for s in audio_samples]


@pytest.mark.parametrize(
    "sync",
    [[True, True, True], [True, False, False], [False, False], [False, True, False, True], [False]],
)
def test_sample_flags_round_trip(sync: list[bool]) -> None:
    samples = [Sample(bytes([n]), 10, flag) for n, flag in enumerate(sync)]
    _, runs, _ = read_fragment(fragment(1, [TrackRun(1, 0, samples)]))
    assert runs[0].sync == sync


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: init_segment([]), "at least one track"),
        (lambda: init_segment([VideoConfig("h264", b"\x01\x64")]), "avcC"),
        (lambda: init_segment([VideoConfig("hevc", bytes(30))]), "hvcC"),
        (lambda: init_segment([VideoConfig("h264", bytes([1, 0x64, 0, 0x1F, 0xFF, 0xE1, 0, 9, 1]))]), "overruns"),
        (lambda: init_segment([AudioConfig("aac", bytes([0x16, 0x90]), 48000, 2)]), "reserved"),
        (lambda: init_segment([AudioConfig("aac", b"\x11", 48000, 2)]), "AudioSpecificConfig"),
        (lambda: init_segment([AudioConfig("aac", bytes([0x11, 0x90]), 0, 2)]), "sample rate"),
        (lambda: fragment(1, []), "at least one run"),
        (lambda: fragment(1, [TrackRun(1, 0, [])]), "no samples"),
        (lambda: fragment(-1, [TrackRun(1, 0, [Sample(b"x", 1)])]), "sequence_number"),
        (lambda: fragment(1, [TrackRun(0, 0, [Sample(b"x", 1)])]), "track_id"),
        (lambda: fragment(1, [TrackRun(1, -1, [Sample(b"x", 1)])]), "base_decode_time"),
        (lambda: fragment(1, [TrackRun(1, 0, [Sample(b"x", -1)])]), "duration"),
        (lambda: fragment(1, [TrackRun(1, 0, [Sample(b"x", 1, True, 2**31)])]), "composition offset"),
        (lambda: fragment(1, [TrackRun(1, 0, [Sample(b"x", 1)]), TrackRun(1, 0, [Sample(b"y", 1)])]), "same track"),
    ],
)
def test_bad_input_raises_fmp4_error(call: object, message: str) -> None:
    with pytest.raises(Fmp4Error, match=message):
        call()  # type: ignore[operator]


# --------------------------------------------------------------------------- decoding


def test_h264_and_aac_fragments_decode(tmp_path: Path) -> None:
    v = video(frames=90, gop=30)
    a = audio(seconds=3.0)
    path = tmp_path / "av.mp4"
    parts = [init_segment([v.config, a.config])]
    video_fragments = _units_to_fragments(v.units, 1, TIMESCALE, 30)
    audio_fragments = _units_to_fragments(a.units, 2, 48000, 47)
    pairs = itertools.zip_longest(video_fragments, audio_fragments, fillvalue=b"")
    parts += [chunk for pair in pairs for chunk in pair]
    path.write_bytes(b"".join(parts))

    decoded = decode_file(path)
    assert len(decoded.video_frames) == 90
    assert (decoded.width, decoded.height) == (160, 96)
    keyframe_times = [t for t, key in decoded.video_frames if key]
    first_pts = (v.units[0].pts - v.units[0].dts) / TIMESCALE
    assert keyframe_times == pytest.approx([first_pts, first_pts + 1, first_pts + 2])
    assert len(decoded.audio_frames) == len(a.units)
    assert all(samples == 1024 for _, samples in decoded.audio_frames)
    audio_times = [t for t, _ in decoded.audio_frames]
    assert audio_times == pytest.approx([n * 1024 / 48000 for n in range(len(a.units))])

    if FFPROBE:
        streams = _ffprobe_streams(path)
        assert [s["codec_name"] for s in streams] == ["h264", "aac"]
        assert int(str(streams[0]["nb_read_frames"])) == 90
        assert (streams[0]["width"], streams[0]["height"]) == (160, 96)


@pytest.mark.skipif(not has_encoder("libx265"), reason="libx265 not in this PyAV build")
def test_hevc_fragments_decode(tmp_path: Path) -> None:
    v = video(codec="hevc", frames=40, gop=20, width=192, height=108)
    assert codec_string(v.config).startswith("hvc1.1.6.L")
    assert video_dimensions(v.config) == (192, 108)
    init = init_segment([v.config])
    _, moov = _moov(init)
    hvc1 = _sample_entry(moov.child("trak"))
    assert hvc1.kind == "hvc1"
    assert hvc1.child("hvcC", skip=78).payload == v.config.extradata
    path = tmp_path / "hevc.mp4"
    path.write_bytes(init + b"".join(_units_to_fragments(v.units, 1, TIMESCALE, 20)))
    decoded = decode_file(path)
    assert len(decoded.video_frames) == 40
    assert (decoded.width, decoded.height) == (192, 108)
    assert sum(key for _, key in decoded.video_frames) == 2
    if FFPROBE:
        streams = _ffprobe_streams(path)
        assert streams[0]["codec_name"] == "hevc"
        assert int(str(streams[0]["nb_read_frames"])) == 40
