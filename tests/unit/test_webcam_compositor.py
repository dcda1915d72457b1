"""Program compositor and encoders (rooms/webcam/compositor.py, program.py): tile
geometry per layout, pixels of composed frames, captions, one encode for WebRTC and HLS."""

from __future__ import annotations

import itertools

import av
import numpy as np
import pytest

from player.media import TIMESCALE
from player.nal import h264_nal_type, split_length_prefixed
from rooms.webcam.compositor import (
    BACKGROUND,
    CONTENT_BACKGROUND,
    HEIGHT,
    WIDTH,
    Compositor,
    Rect,
    Scene,
    Tile,
    fit,
    layout_regions,
)
from rooms.webcam.program import AudioEncoder, VideoEncoder

# Distinct colours (Y, U, V) for speakers, as yuv420p frames.
COLOURS = [(81, 90, 240), (145, 54, 34), (41, 240, 110), (210, 16, 146)]


def solid(yuv: tuple[int, int, int], width: int = 640, height: int = 360) -> av.VideoFrame:
    y = np.full((height, width), yuv[0], np.uint8)
    u = np.full((height // 2, width // 2), yuv[1], np.uint8)
    v = np.full((height // 2, width // 2), yuv[2], np.uint8)
    packed = np.concatenate((y.ravel(), u.ravel(), v.ravel())).reshape(-1, width)
    return av.VideoFrame.from_ndarray(packed, format="yuv420p")


def planes(frame: av.VideoFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    flat = frame.to_ndarray().reshape(-1)
    luma = frame.width * frame.height
    return (flat[:luma].reshape(frame.height, frame.width),
            flat[luma:luma * 5 // 4].reshape(frame.height // 2, frame.width // 2),
            flat[luma * 5 // 4:].reshape(frame.height // 2, frame.width // 2))


def colour_at(frame: av.VideoFrame, rect: Rect, inset: int = 40) -> tuple[float, float, float]:
    """Mean Y, U, V inside ``rect`` (away from its edges and its caption)."""
    y, u, v = planes(frame)
    x0, y0, x1, y1 = rect.x + inset, rect.y + inset, rect.x + rect.w - inset, rect.y + rect.h - inset
    return (float(y[y0:y1, x0:x1].mean()), float(u[y0 // 2:y1 // 2, x0 // 2:x1 // 2].mean()),
            float(v[y0 // 2:y1 // 2, x0 // 2:x1 // 2].mean()))


def close(found: tuple[float, ...], wanted: tuple[int, ...], tolerance: float = 3) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(found, wanted))


@pytest.mark.parametrize("count", [1, 2, 3, 4])
def test_grid_tiles_cover_distinct_areas_inside_the_frame(count: int) -> None:
    regions = layout_regions("auto", count)
    assert regions.content is None and len(regions.speakers) == count
    area = 0
    for i, a in enumerate(regions.speakers):
        assert 0 <= a.x and a.x + a.w <= WIDTH and 0 <= a.y and a.y + a.h <= HEIGHT
        assert a.x % 2 == a.y % 2 == a.w % 2 == a.h % 2 == 0
        area += a.w * a.h
        for b in regions.speakers[i + 1:]:
            assert a.x + a.w <= b.x or b.x + b.w <= a.x or a.y + a.h <= b.y or b.y + b.h <= a.y
    assert area == {1: WIDTH * HEIGHT, 2: WIDTH * HEIGHT // 2, 3: WIDTH * HEIGHT * 3 // 4, 4: WIDTH * HEIGHT}[count]


def test_other_layouts() -> None:
    slide = layout_regions("slide", 3)
    assert slide.content == Rect(0, 0, WIDTH, HEIGHT) and slide.speakers == ()
    side = layout_regions("speaker_slide", 2)
    assert side.content == Rect(0, 90, 960, 540)
    assert [r.x for r in side.speakers] == [960, 960] and side.speakers[0].y + 180 == side.speakers[1].y
    pip = layout_regions("screen_pip", 4)
    assert pip.content == Rect(0, 0, WIDTH, HEIGHT)
    assert all(r.w == 256 and r.y + r.h == HEIGHT - 16 for r in pip.speakers)
    spot = layout_regions("auto", 3, spotlight=True)
    assert spot.speakers[0] == Rect(0, 0, WIDTH, HEIGHT) and all(r.w == 320 for r in spot.speakers[1:])
    with pytest.raises(ValueError):
        layout_regions("auto", 5)
    with pytest.raises(ValueError):
        layout_regions("mosaic", 1)


def test_fit_keeps_the_aspect_ratio_centred() -> None:
    assert fit(640, 360, Rect(0, 0, 1280, 720)) == Rect(0, 0, 1280, 720)
    portrait = fit(360, 640, Rect(0, 0, 640, 360))
    assert portrait.h == 360 and portrait.w in (202, 204) and portrait.x == (640 - portrait.w) // 2 // 2 * 2


@pytest.mark.parametrize("count", [1, 2, 3, 4])
def test_each_speaker_shows_in_its_tile_and_the_rest_is_background(count: int) -> None:
    compositor = Compositor()
    frame = compositor.render(Scene("auto", [Tile(f"Speaker {i}", solid(COLOURS[i])) for i in range(count)]))
    assert (frame.width, frame.height, frame.format.name) == (WIDTH, HEIGHT, "yuv420p")
    regions = layout_regions("auto", count)
    for i, rect in enumerate(regions.speakers):
        assert close(colour_at(frame, rect), COLOURS[i]), (i, colour_at(frame, rect))
    if count == 2:  # bands above and below the two tiles
        assert close(colour_at(frame, Rect(0, 0, WIDTH, 180), inset=20), BACKGROUND)
    if count == 3:  # the bottom corners
        assert close(colour_at(frame, Rect(0, 360, 320, 360), inset=20), BACKGROUND)


def test_a_speaker_without_picture_yet_is_a_background_tile_with_caption() -> None:
    frame = Compositor().render(Scene("auto", [Tile("Ada", None), Tile("Bob", solid(COLOURS[1]))]))
    left, right = layout_regions("auto", 2).speakers
    assert close(colour_at(frame, left), BACKGROUND)
    assert close(colour_at(frame, right), COLOURS[1])


def test_captions_write_the_name_at_the_bottom_of_the_tile() -> None:
    compositor = Compositor()
    tile = layout_regions("auto", 1).speakers[0]
    with_name = planes(compositor.render(Scene("auto", [Tile("Ada Lovelace", solid(COLOURS[0]))])))[0]
    without = planes(compositor.render(Scene("auto", [Tile("", solid(COLOURS[0]))])))[0]
    band = slice(tile.h - 40, tile.h)
    diff = np.abs(with_name[band, :400].astype(int) - without[band, :400].astype(int))
    assert (with_name[band, :400] > 200).sum() > 50  # white letters
    assert diff.sum() > 0 and (with_name[:tile.h - 40] == without[:tile.h - 40]).all()


def test_content_is_scaled_into_its_region() -> None:
    slide = solid(COLOURS[2], 800, 600)  # 4:3: pillarboxed inside 960x540
    frame = Compositor().render(Scene("speaker_slide", [Tile("Ada", solid(COLOURS[0]))], content=slide))
    regions = layout_regions("speaker_slide", 1)
    assert regions.content is not None
    inner = fit(800, 600, regions.content)
    assert close(colour_at(frame, inner), COLOURS[2])
    assert close(colour_at(frame, Rect(regions.content.x, regions.content.y, inner.x - regions.content.x, 540), inset=10),
                 CONTENT_BACKGROUND)
    assert close(colour_at(frame, regions.speakers[0], inset=20), COLOURS[0], tolerance=5)
    empty = Compositor().render(Scene("slide", [], content=None))
    assert close(colour_at(empty, Rect(0, 0, WIDTH, HEIGHT)), CONTENT_BACKGROUND)


def test_one_encode_gives_webrtc_packets_and_hls_access_units() -> None:
    compositor, encoder = Compositor(), VideoEncoder(WIDTH, HEIGHT, 30)
    pictures = []
    for i in range(45):
        scene = Scene("auto", [Tile("Ada", solid(COLOURS[i % 2])), Tile("Bob", solid(COLOURS[2]))])
        pictures += encoder.encode(compositor.render(scene), i * TIMESCALE // 30)
    assert len(pictures) == 45  # zerolatency: one packet per picture, no delay
    keys = [p for p in pictures if p.keyframe]
    assert [p.pts for p in keys] == [0, 30 * 3000]  # an IDR every second
    first = split_annexb_types(bytes(keys[0].packet))
    assert 7 in first and 8 in first and 5 in first  # WebRTC: parameter sets in band
    config, unit = encoder.access_units(keys[0])
    assert config is not None and config.codec == "h264" and config.extradata[1] == 66  # Baseline profile
    assert unit is not None and unit.keyframe and unit.dts == unit.pts == 0
    assert {h264_nal_type(n) for n in split_length_prefixed(unit.data)} & {7, 8} == set()
    config2, unit2 = encoder.access_units(pictures[1])
    assert config2 is None and unit2 is not None and not unit2.keyframe and unit2.pts == 3000
    encoder.request_keyframe()
    forced = encoder.encode(compositor.render(Scene()), 45 * 3000)
    assert forced[0].keyframe
    decoder = av.CodecContext.create("h264", "r")
    decoded = [f for p in pictures[:3] for f in decoder.decode(av.Packet(bytes(p.packet)))]
    assert decoded and (decoded[0].width, decoded[0].height) == (WIDTH, HEIGHT)


def split_annexb_types(data: bytes) -> set[int]:
    from player.nal import split_annexb

    return {h264_nal_type(n) for n in split_annexb(data)}


def test_aac_units_are_on_the_program_clock() -> None:
    encoder = AudioEncoder()
    assert encoder.config.sample_rate == 48_000 and encoder.config.channels == 1 and encoder.config.extradata
    t = np.arange(48_000) / 48_000
    beep = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
    units = []
    for start in range(0, 48_000, 960):
        units += encoder.encode(beep[start:start + 960], start)
    assert len(units) >= 44
    ticks = [u.pts for u in units]
    assert ticks == sorted(ticks) and all(b - a == 1024 * 90_000 // 48_000 for a, b in itertools.pairwise(ticks))
    assert all(u.kind == "audio" and u.keyframe and u.data for u in units)
