"""The optional 480p rendition end to end: the ffmpeg command line publishes 720p
over RTMP, the server transcodes (PyAV + libx264 in a worker thread) into a
second LL-HLS rendition listed by a multivariant playlist, a client parses the
playlists with ``m3u8`` and decodes the media with PyAV.

The transcode's CPU cost is measured (printed, never asserted): the worker's
thread CPU time over the media time it transcoded.
"""

from __future__ import annotations

import asyncio
import io
import shutil
import threading
import uuid

import av
import httpx
import m3u8
import pytest

from player.renditions import LOW_RENDITION, set_low_rendition
from tests.conftest import LiveServer, browser
from tests.integration.test_studio_live import finished, rtmp_url, studio_webinar, wait_playlist
from tests.support.ffmpeg import finish, publisher
from tests.world import PASSWORD, make_world

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="the ffmpeg command line is needed"),
]

FRAME_S = 1 / 30
"""One frame of the published 30 fps stream, in seconds: the alignment tolerance."""


def first_video(init: bytes, segment: bytes) -> tuple[float, bool, int, int, int]:
    """(presentation time s of the first video packet, it is a keyframe, width, height,
    decoded frames) of one fMP4 segment, decoded with PyAV."""
    with av.open(io.BytesIO(init + segment), format="mp4") as container:
        stream = container.streams.video[0]
        first: tuple[float, bool] | None = None
        frames = 0
        width = height = 0
        for packet in container.demux(stream):
            if packet.size and first is None:
                assert packet.pts is not None
                first = (float(packet.pts * stream.time_base), bool(packet.is_keyframe))
            for frame in packet.decode():
                frames += 1
                width, height = frame.width, frame.height
    assert first is not None
    return first[0], first[1], width, height, frames


@pytest.mark.settings(live_grace_s=1.0)
async def test_low_rendition_master_parts_alignment_and_cost(live: LiveServer) -> None:
    webinar_id, key = await studio_webinar(live)
    await set_low_rendition(live.services.db, webinar_id, True)
    base = f"{live.url}/hls/{webinar_id}"
    manager = live.services.extras["live"]
    async with httpx.AsyncClient(timeout=20) as client, publisher(
        rtmp_url(live, key), 12, size="1280x720", gop=30, bitrate="2500k"
    ) as proc:
        # The multivariant playlist: the source first, then 480p, parsed by m3u8.
        master = await wait_playlist(client, f"{base}/master.m3u8", lambda p: len(p.playlists) == 2, timeout=30)
        transcoder = manager.transcoder(webinar_id)
        assert transcoder is not None and transcoder.running
        assert master.is_variant
        source_variant, low_variant = master.playlists
        assert source_variant.uri == "index.m3u8" and low_variant.uri == f"{LOW_RENDITION}/index.m3u8"
        assert source_variant.stream_info.resolution == (1280, 720)
        assert low_variant.stream_info.resolution == (854, 480)
        for variant in master.playlists:
            assert variant.stream_info.bandwidth > 0
            assert variant.stream_info.codecs.startswith("avc1.") and "mp4a.40.2" in variant.stream_info.codecs
        # The 480p rendition is LL-HLS like the source: parts, preload hint, blocking reload.
        low = await wait_playlist(client, f"{base}/480p/index.m3u8", lambda p: len(finished(p)) >= 3, timeout=30)
        raw = (await client.get(f"{base}/480p/index.m3u8")).text
        assert "#EXT-X-PART-INF:PART-TARGET=" in raw and "#EXT-X-PRELOAD-HINT:TYPE=PART" in raw
        assert "CAN-BLOCK-RELOAD=YES" in raw and '#EXT-X-RENDITION-REPORT:URI="../index.m3u8"' in raw
        assert low.server_control.can_block_reload and low.part_inf.part_target > 0
        assert [p for seg in low.segments for p in seg.parts], "the 480p playlist advertises parts"
        source_raw = (await client.get(f"{base}/index.m3u8")).text
        assert '#EXT-X-RENDITION-REPORT:URI="480p/index.m3u8"' in source_raw
        next_msn = low.media_sequence + len(finished(low)) + 1
        blocked = await client.get(f"{base}/480p/index.m3u8", params={"_HLS_msn": next_msn, "_HLS_part": 0})
        assert blocked.status_code == 200
        answer = m3u8.loads(blocked.text)
        assert answer.media_sequence + len(finished(answer)) >= next_msn
        hint = m3u8.loads((await client.get(f"{base}/480p/index.m3u8")).text).preload_hint
        assert hint is not None
        hinted = await client.get(f"{base}/480p/{hint.uri}")
        assert hinted.status_code == 200 and hinted.content and "immutable" in hinted.headers["cache-control"]
        assert (await client.get(f"{base}/720p/index.m3u8")).status_code == 404
        # Init + first segment of 480p decode at 480 lines.
        low_init = (await client.get(f"{base}/480p/{low.segment_map[0].uri}")).content
        first_segment = await client.get(f"{base}/480p/{low.segments[0].uri}")
        assert first_segment.status_code == 200 and "immutable" in first_segment.headers["cache-control"]
        _, keyframe, width, height, frames = first_video(low_init, first_segment.content)
        assert (width, height) == (854, 480) and keyframe and frames >= 25
        status, err = await finish(proc, 40)
        assert status == 0, err

    # The end applies to both renditions: ENDLIST and VOD for each, the master stays.
    async with httpx.AsyncClient(timeout=20) as client:
        source_vod = await wait_playlist(client, f"{base}/index.m3u8", lambda p: p.is_endlist, timeout=30)
        low_vod = await wait_playlist(client, f"{base}/480p/index.m3u8", lambda p: p.is_endlist, timeout=30)
        assert source_vod.playlist_type == "vod" and low_vod.playlist_type == "vod"
        assert not transcoder.running and not transcoder.failed and not transcoder.cut
        replay_master = m3u8.loads((await client.get(f"{base}/master.m3u8")).text)
        assert [p.uri for p in replay_master.playlists] == ["index.m3u8", "480p/index.m3u8"]
        # Segment msn N of both renditions starts at the same media time (one frame at most).
        assert len(source_vod.segments) == len(low_vod.segments) >= 5
        source_init = (await client.get(f"{base}/{source_vod.segment_map[0].uri}")).content
        low_init = (await client.get(f"{base}/480p/{low_vod.segment_map[0].uri}")).content
        starts = []
        for src_seg, low_seg in zip(source_vod.segments, low_vod.segments, strict=True):
            assert src_seg.uri == low_seg.uri  # same msn
            assert abs(src_seg.duration - low_seg.duration) <= FRAME_S + 1e-6
            src_start, src_key, sw, sh, _ = first_video(source_init, (await client.get(f"{base}/{src_seg.uri}")).content)
            low_start, low_key, lw, lh, _ = first_video(low_init, (await client.get(f"{base}/480p/{low_seg.uri}")).content)
            assert src_key and low_key and (sw, sh, lw, lh) == (1280, 720, 854, 480)
            assert abs(src_start - low_start) <= FRAME_S + 1e-6, f"{src_seg.uri}: {src_start} vs {low_start}"
            starts.append((src_seg.uri, round(src_start, 3), round(low_start, 3)))
        # The replay MP4 is made from the source rendition.
        async with asyncio.timeout(30):
            while (r := await client.get(f"{base}/replay.mp4")).status_code != 200:
                await asyncio.sleep(0.2)
        with av.open(io.BytesIO(r.content)) as mp4:
            assert mp4.streams.video[0].codec_context.height == 720

    stats = transcoder.stats
    media = stats.media_seconds
    assert media > 8 and stats.frames_out > 240 and stats.decode_errors == 0
    print(f"\n720p30 -> 480p transcode: {stats.cpu_seconds:.2f} CPU s for {media:.2f} media s = "
          f"{stats.cpu_seconds / media:.3f} CPU s per media s ({100 * stats.cpu_seconds / media:.1f} % of one core); "
          f"fps {transcoder.frame_rate}; stats {stats.as_dict()}; segment starts {starts[:4]}")
    print(f"bandwidth source {source_variant.stream_info.bandwidth} b/s, 480p {low_variant.stream_info.bandwidth} b/s")


@pytest.mark.settings(live_grace_s=1.0)
async def test_switch_off_is_passthrough(live: LiveServer) -> None:
    webinar_id, key = await studio_webinar(live)
    base = f"{live.url}/hls/{webinar_id}"
    manager = live.services.extras["live"]
    async with httpx.AsyncClient(timeout=20) as client, publisher(rtmp_url(live, key), 4) as proc:
        await wait_playlist(client, f"{base}/index.m3u8", lambda p: len(finished(p)) >= 1)
        assert manager.transcoder(webinar_id) is None and manager.variants(webinar_id) is None
        assert not [t for t in threading.enumerate() if str(webinar_id) in t.name], "no transcoder thread"
        assert (await client.get(f"{base}/master.m3u8")).status_code == 404
        assert (await client.get(f"{base}/480p/index.m3u8")).status_code == 404
        assert "#EXT-X-RENDITION-REPORT" not in (await client.get(f"{base}/index.m3u8")).text
        page = (await client.get(f"{live.url}/w/{webinar_id}")).text
        assert f'data-hls-url="/hls/{webinar_id}/index.m3u8"' in page
        status, err = await finish(proc, 30)
        assert status == 0, err
        await wait_playlist(client, f"{base}/index.m3u8", lambda p: p.is_endlist)
        assert (await client.get(f"{base}/master.m3u8")).status_code == 404
    assert not (live.settings.media_dir / f"hls/{webinar_id}/{LOW_RENDITION}").exists()


async def test_organizer_checkbox_turns_the_rendition_on_and_the_viewer_follows(live: LiveServer) -> None:
    world = await make_world(live.services.db)
    webinar = world.a.webinar  # a studio webinar in draft
    db = live.services.db
    async with browser(live) as org:
        await org.login(world.a.organizer.email, PASSWORD)
        page = (await org.get(f"/webinars/{webinar.id}")).text
        assert 'name="low_rendition"' in page and "checked" not in page.split('name="low_rendition"')[1][:40]
        form = {"title": webinar.title, "starts_at": webinar.starts_at.strftime("%Y-%m-%dT%H:%M"),
                "timezone": "UTC", "duration_minutes": str(webinar.duration_minutes), "language": "fr"}
        response = await org.post_form(f"/webinars/{webinar.id}", {**form, "low_rendition": "on"})
        assert response.status_code == 200, response.text[:300]
        assert await db.fetchval("SELECT low_rendition FROM webinars WHERE id = $1", webinar.id) is True
        assert "checked" in response.text.split('name="low_rendition"')[1][:40]
        await db.execute("UPDATE webinars SET state = 'announced' WHERE id = $1", webinar.id)
        viewer = (await org.get(f"/w/{webinar.id}")).text
        assert f'data-hls-url="/hls/{webinar.id}/master.m3u8"' in viewer  # the next live will have it
        response = await org.post_form(f"/webinars/{webinar.id}", form)  # unticked
        assert response.status_code == 200
        assert await db.fetchval("SELECT low_rendition FROM webinars WHERE id = $1", webinar.id) is False
        viewer = (await org.get(f"/w/{webinar.id}")).text
        assert f'data-hls-url="/hls/{webinar.id}/index.m3u8"' in viewer
    assert uuid.UUID(str(webinar.id))
