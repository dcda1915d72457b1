"""The 480p Transcoder with real encoded media (libx264 sources, PyAV decoding the output).

No network, no database: a source Publication and the Transcoder are fed the
same units, as the live manager's tee does, and the two renditions written to
a temporary media store are compared segment by segment.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import av
import pytest

from player.live import LiveManager
from player.media import AccessUnit, TrackConfig
from player.publication import PackagingOptions, Publication, rendition_prefix
from player.renditions import LOW_RENDITION, MASTER_PLAYLIST
from player.storage import LocalMediaStore
from player.transcode import TranscodeOptions, Transcoder, output_size
from tests.unit.player.encoded_media import audio, decode_file, interleave, shifted, video

FRAME = 3000  # 90 kHz ticks of one frame at 30 fps
OPTIONS = PackagingOptions(part_target=0.3, playlist_part_target=0.4, segment_target=1.0)


class Sinks:
    """The tee of the live manager: the source Publication, then the Transcoder."""

    def __init__(self, *sinks: Any) -> None:
        self.sinks = sinks

    def on_config(self, config: TrackConfig) -> None:
        for sink in self.sinks:
            sink.on_config(config)

    def on_access_unit(self, unit: AccessUnit) -> None:
        for sink in self.sinks:
            sink.on_access_unit(unit)


async def drained(transcoder: Transcoder, timeout: float = 30) -> None:
    """Wait until the worker has taken every queued event (bounded)."""
    async with asyncio.timeout(timeout):
        while True:
            with transcoder._lock:
                if not transcoder._queue:
                    return
            await asyncio.sleep(0.005)


async def feed(sink: Any, transcoder: Transcoder, units: list[AccessUnit], *, paced: bool) -> None:
    """Feed ``units``; ``paced`` lets the worker catch up at each keyframe (no thinning)."""
    for unit in units:
        if paced and unit.kind == "video" and unit.keyframe:
            await drained(transcoder)
        sink.on_access_unit(unit)


def segments_of(store: LocalMediaStore, wid: uuid.UUID, rendition: str, tmp: Path) -> list[tuple[int, float, bool, int, int]]:
    """(msn, first video pts s, first packet is a keyframe, width, height) of each VOD segment."""
    prefix = store.root / rendition_prefix(wid, rendition)
    lines = (prefix / "vod.m3u8").read_text().splitlines()
    init = (prefix / "init0.mp4").read_bytes()
    out = []
    for msn, name in enumerate(line for line in lines if line.startswith("seg")):
        path = tmp / f"{rendition or 'src'}-{name}.mp4"
        path.write_bytes(init + (prefix / name).read_bytes())
        decoded = decode_file(path)
        first = decoded.video_packets[0]
        out.append((msn, min(p for _, p, _ in decoded.video_packets), first[2], decoded.width, decoded.height))
    return out


def test_output_size_keeps_aspect_and_even_sizes() -> None:
    assert output_size(1280, 720, 480) == (854, 480)
    assert output_size(1920, 1080, 480) == (854, 480)
    assert output_size(640, 360, 480) == (640, 360)  # never upscaled
    assert output_size(720, 576, 480) == (600, 480)
    assert output_size(1080, 1920, 480) == (270, 480)  # portrait
    with pytest.raises(ValueError):
        output_size(0, 720, 480)


@pytest.mark.parametrize("bframes", [0, 2])
async def test_renditions_align_segment_by_segment(tmp_path: Path, bframes: int) -> None:
    """Keyframes forced where the source has them, same decode times: segment N of
    both renditions starts at the same media time; audio is passed through."""
    store = LocalMediaStore(tmp_path / "media")
    wid = uuid.uuid4()
    source_video = video(frames=150, fps=30, gop=30, width=1280, height=720, bframes=bframes)
    source_audio = audio(seconds=5.0)
    source = Publication(wid, store, OPTIONS)
    low = Publication(wid, store, OPTIONS, rendition=LOW_RENDITION, wall_clock=lambda: source.started_at or 0.0)
    transcoder = Transcoder(low)
    sink = Sinks(source, transcoder)
    sink.on_config(source_video.config)
    sink.on_config(source_audio.config)
    await feed(sink, transcoder, interleave(shifted(source_video.units, 90_000), source_audio.units), paced=True)
    source.on_end()
    assert await transcoder.wait_closed(30)
    assert not transcoder.failed and not transcoder.running
    assert transcoder.stats.gops_thinned == 0 and transcoder.stats.frames_out == 150

    src = segments_of(store, wid, "", tmp_path)
    out = segments_of(store, wid, LOW_RENDITION, tmp_path)
    assert len(src) == len(out) >= 4
    for (msn, src_pts, _, sw, sh), (_, low_pts, low_key, lw, lh) in zip(src, out, strict=True):
        assert abs(src_pts - low_pts) <= 1 / 30 + 1e-6, f"segment {msn}: {src_pts} vs {low_pts}"
        assert low_key, f"480p segment {msn} starts on a keyframe"
        assert (sw, sh, lw, lh) == (1280, 720, 854, 480)
    src_durations = [s.duration for s in source.playlist.segments]
    low_durations = [s.duration for s in low.playlist.segments]
    assert src_durations == pytest.approx(low_durations, abs=1 / 30)
    # Program date-times are shared, so players align the renditions by PDT too.
    assert [s.program_date_time for s in source.playlist.segments] == [s.program_date_time for s in low.playlist.segments]
    # Audio went through untouched: as many AAC frames in both renditions.
    full = tmp_path / "full.mp4"
    prefix = store.root / rendition_prefix(wid, LOW_RENDITION)
    full.write_bytes((prefix / "init0.mp4").read_bytes() + b"".join(
        (prefix / f"seg{s.msn}.m4s").read_bytes() for s in low.playlist.segments))
    low_decoded = decode_file(full)
    src_full = tmp_path / "src-full.mp4"
    src_prefix = store.root / rendition_prefix(wid)
    src_full.write_bytes((src_prefix / "init0.mp4").read_bytes() + b"".join(
        (src_prefix / f"seg{s.msn}.m4s").read_bytes() for s in source.playlist.segments))
    src_decoded = decode_file(src_full)
    assert abs(len(low_decoded.audio_frames) - len(src_decoded.audio_frames)) <= 3
    assert len(low_decoded.video_frames) == len(src_decoded.video_frames) == 150
    # Keyframes exactly where the source has them, and nowhere else.
    assert [t for t, key in low_decoded.video_frames if key] == [t for t, key in src_decoded.video_frames if key]


async def test_a_slow_worker_thins_gops_and_never_blocks_the_caller(tmp_path: Path) -> None:
    """Backpressure: the caller is never held; a GOP that starts while the worker is
    behind is reduced to its keyframe, so segment boundaries stay aligned."""
    store = LocalMediaStore(tmp_path / "media")
    wid = uuid.uuid4()
    source_video = video(frames=150, fps=30, gop=30, width=1280, height=720, bframes=0)
    source = Publication(wid, store, OPTIONS)
    low = Publication(wid, store, OPTIONS, rendition=LOW_RENDITION)
    release = threading.Event()

    class Slow(Transcoder):
        def _handle(self, event: Any) -> None:
            release.wait(10)  # the worker is stuck until the test lets it go
            super()._handle(event)

    transcoder = Slow(low, TranscodeOptions(max_backlog_frames=10, max_queued_frames=20))
    sink = Sinks(source, transcoder)
    sink.on_config(source_video.config)
    started = time.perf_counter()
    for unit in source_video.units:  # all at once, while the worker cannot move
        sink.on_access_unit(unit)
    feeding = time.perf_counter() - started
    assert transcoder.running and transcoder.stats.frames_out == 0, "the caller never waited for the worker"
    assert len(source.playlist.segments) >= 3, "the source rendition went on"
    stats = transcoder.stats
    # GOP 1 admitted up to the hard bound (20 frames), GOPs 2..5 reduced to their keyframe.
    assert stats.gops_thinned == 4 and stats.frames_in == 20
    assert stats.frames_dropped == 150 - 20
    release.set()
    source.on_end()
    assert await transcoder.wait_closed(30)
    # Held pictures stand for the dropped frames: same timeline, parts within PART-TARGET.
    assert stats.held_frames >= 4 * 8 and low.clamped_parts == 0
    assert [s.duration for s in low.playlist.segments] == pytest.approx(
        [s.duration for s in source.playlist.segments], abs=1 / 30)
    out = segments_of(store, wid, LOW_RENDITION, tmp_path)
    src = segments_of(store, wid, "", tmp_path)
    assert len(out) == len(src) == 5
    for (msn, src_pts, *_), (_, low_pts, low_key, *_) in zip(src, out, strict=True):
        assert abs(src_pts - low_pts) <= 1 / 30 + 1e-6 and low_key, msn
    print(f"\nfeeding 150 frames to a stuck worker took {feeding * 1000:.1f} ms; {stats.as_dict()}")


async def test_undecodable_frames_skip_to_the_next_keyframe(tmp_path: Path) -> None:
    store = LocalMediaStore(tmp_path / "media")
    wid = uuid.uuid4()
    source_video = video(frames=90, fps=30, gop=30, width=320, height=240, bframes=0)
    low = Publication(wid, store, OPTIONS, rendition=LOW_RENDITION)
    transcoder = Transcoder(low)
    transcoder.on_config(source_video.config)
    units = list(source_video.units)
    broken = units[35]
    units[35] = AccessUnit("video", broken.dts, broken.pts, b"\x00\x00\x00\x05\x65\xff\xff\xff\xff", False)
    await feed(transcoder, transcoder, units, paced=True)
    assert await transcoder.wait_closed(30)
    assert not transcoder.failed
    # GOP 2 from the broken frame on is lost; GOPs 1 and 3 are whole.
    assert transcoder.stats.frames_out >= 60 and low.playlist.segments


async def test_a_failing_encoder_stops_the_480p_rendition_only(tmp_path: Path) -> None:
    store = LocalMediaStore(tmp_path / "media")
    wid = uuid.uuid4()
    source_video = video(frames=60, fps=30, gop=30, width=320, height=240, bframes=0)
    source = Publication(wid, store, OPTIONS)
    low = Publication(wid, store, OPTIONS, rendition=LOW_RENDITION)

    class Broken(Transcoder):
        def _open_encoder(self, frame: Any) -> None:
            raise av.FFmpegError(1, "no encoder today")

    transcoder = Broken(low)
    sink = Sinks(source, transcoder)
    sink.on_config(source_video.config)
    async with asyncio.timeout(10):
        for unit in source_video.units:
            sink.on_access_unit(unit)
            await asyncio.sleep(0)
        while not transcoder.failed:
            await asyncio.sleep(0.01)
    source.on_end()
    assert len(source.playlist.segments) == 2, "the source rendition is whole"
    assert await transcoder.wait_closed(5)
    assert low.ended and not low.playlist.segments and not transcoder.running


class Recorder:
    def __init__(self) -> None:
        self.states: list[str] = []

    async def set_state(self, webinar_id: uuid.UUID, state: str) -> None:
        self.states.append(state)


async def test_live_manager_tees_reconnects_and_ends_both_renditions(tmp_path: Path) -> None:
    store = LocalMediaStore(tmp_path)
    rec = Recorder()

    async def wanted(webinar_id: uuid.UUID) -> bool:
        return True

    manager = LiveManager(store, set_state=rec.set_state, options=OPTIONS, grace_s=30, low_rendition=wanted)
    wid = uuid.uuid4()
    source_video = video(frames=90, fps=30, gop=30, width=640, height=360, bframes=0)
    source_audio = audio(seconds=3.0)
    units = interleave(source_video.units, source_audio.units)
    for attempt in range(2):  # a publisher, a drop, the same publisher back
        sink = await manager.open_source(wid)
        assert not isinstance(sink, str)
        transcoder = manager.transcoder(wid)
        assert transcoder is not None and manager.variants(wid) is not None
        sink.on_config(source_video.config)
        sink.on_config(source_audio.config)
        await feed(sink, transcoder, shifted(units, attempt * 10 * 90_000), paced=True)
        sink.on_end()
    low = manager.rendition(wid, LOW_RENDITION)
    assert low is not None and manager.rendition(wid, "nope") is None
    await manager.end_live(wid, "test over")
    assert manager.rendition(wid) is None and not transcoder.running
    source_vod = (tmp_path / rendition_prefix(wid) / "vod.m3u8").read_text()
    low_vod = (tmp_path / rendition_prefix(wid, LOW_RENDITION) / "vod.m3u8").read_text()

    def layout(text: str) -> list[str]:
        return [line for line in text.splitlines() if line.startswith(("seg", "#EXT-X-DISCONTINUITY"))
                and not line.startswith("#EXT-X-DISCONTINUITY-SEQUENCE")]

    assert layout(source_vod) == layout(low_vod)
    assert "#EXT-X-DISCONTINUITY" in layout(low_vod)
    master = (tmp_path / rendition_prefix(wid) / MASTER_PLAYLIST).read_text()
    assert master.count("#EXT-X-STREAM-INF") == 2 and "RESOLUTION=640x360" in master
    assert "480p/index.m3u8" in master and "RESOLUTION=640x360" in master.split("480p")[0]
    assert rec.states == ["live", "ended", "replay"]
    await manager.close()


async def test_passthrough_by_default(tmp_path: Path) -> None:
    rec = Recorder()
    manager = LiveManager(LocalMediaStore(tmp_path), set_state=rec.set_state)
    wid = uuid.uuid4()
    before = {t.name for t in threading.enumerate()}
    sink = await manager.open_source(wid)
    assert not isinstance(sink, str)
    assert manager.transcoder(wid) is None and manager.variants(wid) is None
    assert manager.rendition(wid, LOW_RENDITION) is None
    assert {t.name for t in threading.enumerate()} - before == set(), "no worker thread started"
    await manager.end_live(wid, "test over")
    assert not (tmp_path / rendition_prefix(wid) / MASTER_PLAYLIST).exists()


async def test_a_broken_switch_means_passthrough(tmp_path: Path) -> None:
    async def broken(webinar_id: uuid.UUID) -> bool:
        raise RuntimeError("database down")

    manager = LiveManager(LocalMediaStore(tmp_path), set_state=Recorder().set_state, low_rendition=broken)
    wid = uuid.uuid4()
    assert not isinstance(await manager.open_source(wid), str)
    assert manager.transcoder(wid) is None
    await manager.close()
