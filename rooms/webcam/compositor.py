"""The program picture: 1280x720 frames composed from the speakers on stage and the
content slot, per layout, with name captions.

Geometry (:func:`layout_regions`) is a pure function, unit-tested on its own.
Pixel work is done by swscale (``VideoFrame.reformat``, in C) and numpy slice
copies on yuv420p planes; there is no per-pixel Python. A composed frame costs
about 2-4 ms for 4 speakers on this machine (see benchmarks/bench_webcam_program.py).

All rectangles are in program pixels, with even coordinates and sizes (yuv420p
chroma is subsampled by 2 in both directions).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np

from rooms.webcam.stage import MAX_ON_STAGE

WIDTH = 1280
HEIGHT = 720
FPS = 30
"""Program frame rate (frames per second)."""
BACKGROUND = (16, 128, 128)
"""Y, U, V of the empty program (video black)."""
CONTENT_BACKGROUND = (32, 128, 128)
"""Y, U, V of a content region with nothing to show yet (dark grey)."""
CAPTION_HEIGHT = 28
"""Height of a name caption in pixels (on tiles at least 320 px wide; 22 px below that)."""
_CAPTION_CACHE_MAX = 64


@dataclass(frozen=True, slots=True)
class Rect:
    x: int
    y: int
    w: int
    h: int


@dataclass(frozen=True, slots=True)
class Regions:
    """Where things go in one program frame: the content (or None: not shown) and one
    rectangle per speaker, in tile order."""

    content: Rect | None
    speakers: tuple[Rect, ...]


def _even(value: float) -> int:
    return int(value) // 2 * 2


def _grid(count: int) -> list[Rect]:
    if count <= 0:
        return []
    if count == 1:
        return [Rect(0, 0, WIDTH, HEIGHT)]
    w, h = WIDTH // 2, HEIGHT // 2
    if count == 2:
        return [Rect(0, h // 2, w, h), Rect(w, h // 2, w, h)]
    tiles = [Rect(0, 0, w, h), Rect(w, 0, w, h)]
    if count == 3:
        return tiles + [Rect(w // 2, h, w, h)]
    return tiles + [Rect(0, h, w, h), Rect(w, h, w, h)]


def layout_regions(layout: str, speakers: int, *, spotlight: bool = False) -> Regions:
    """Regions for ``speakers`` people on stage (0-4) in ``layout``.

    - ``auto``: a grid (1 full frame; 2 side by side; 3 as 2+1; 4 as 2x2); with a
      spotlight the first speaker fills the frame and the others are 320x180
      picture-in-picture tiles along the bottom right;
    - ``speaker_slide``: the content 960x540 on the left, speakers 320x180 in a column on the right;
    - ``slide``: the content full frame, no speaker;
    - ``screen_pip``: the content full frame, speakers 256x144 along the bottom right.
    """
    if not 0 <= speakers <= MAX_ON_STAGE:
        raise ValueError(f"0 to {MAX_ON_STAGE} speakers, not {speakers}")
    if layout == "auto":
        if spotlight and speakers > 1:
            return Regions(None, (Rect(0, 0, WIDTH, HEIGHT), *_pips(speakers - 1, 320, 180)))
        return Regions(None, tuple(_grid(speakers)))
    if layout == "speaker_slide":
        tile_w, tile_h = 320, 180
        top = (HEIGHT - speakers * tile_h) // 2 // 2 * 2
        column = tuple(Rect(WIDTH - tile_w, top + i * tile_h, tile_w, tile_h) for i in range(speakers))
        if not speakers:
            return Regions(Rect(0, 0, WIDTH, HEIGHT), ())
        return Regions(Rect(0, (HEIGHT - 540) // 2, 960, 540), column)
    if layout == "slide":
        return Regions(Rect(0, 0, WIDTH, HEIGHT), ())
    if layout == "screen_pip":
        return Regions(Rect(0, 0, WIDTH, HEIGHT), tuple(_pips(speakers, 256, 144)))
    raise ValueError(f"unknown layout {layout!r}")


def _pips(count: int, w: int, h: int, margin: int = 16, gap: int = 8) -> list[Rect]:
    """``count`` tiles of ``w`` x ``h`` in a row at the bottom right, the first rightmost."""
    y = HEIGHT - margin - h
    return [Rect(WIDTH - margin - (i + 1) * w - i * gap, y, w, h) for i in range(count)]


def fit(src_w: int, src_h: int, rect: Rect) -> Rect:
    """The largest rectangle of the source's aspect ratio centred in ``rect`` (even values)."""
    if src_w <= 0 or src_h <= 0:
        return rect
    scale = min(rect.w / src_w, rect.h / src_h)
    w = max(2, min(rect.w, _even(src_w * scale + 1)))
    h = max(2, min(rect.h, _even(src_h * scale + 1)))
    return Rect(rect.x + _even((rect.w - w) / 2), rect.y + _even((rect.h - h) / 2), w, h)


@dataclass
class Tile:
    """One speaker to draw: the latest camera frame (None: not received yet) and the caption."""

    name: str
    frame: av.VideoFrame | None


@dataclass
class Scene:
    """Everything one program frame depends on."""

    layout: str = "auto"
    tiles: Sequence[Tile] = ()
    content: av.VideoFrame | None = None
    spotlight: bool = False
    """Whether the first tile is spotlighted."""


Planes = tuple[np.ndarray, np.ndarray, np.ndarray]


def plane_views(frame: av.VideoFrame) -> Planes:
    """Numpy views (no copy) of a yuv420p frame's Y, U and V planes, line padding cut off."""
    views = []
    for plane in frame.planes:
        rows = np.frombuffer(memoryview(plane), np.uint8).reshape(-1, plane.line_size)
        views.append(rows[:plane.height, :plane.width])
    return views[0], views[1], views[2]


def yuv_planes(frame: av.VideoFrame, width: int, height: int) -> Planes:
    """``frame`` scaled to ``width`` x ``height`` (even) as yuv420p (Y, U, V) arrays, by swscale
    (a frame already of that size and format is only viewed, not copied)."""
    same = frame.width == width and frame.height == height and frame.format.name == "yuv420p"
    return plane_views(frame if same else frame.reformat(width=width, height=height, format="yuv420p"))


@dataclass
class _Caption:
    luma: np.ndarray
    """Box with the text (Y values), even width and height."""


@dataclass
class Compositor:
    """Composes program frames; keeps small caches (captions, the scaled content picture).
    Not thread-safe: one compositor per program, called from one thread at a time."""

    width: int = WIDTH
    height: int = HEIGHT
    _captions: dict[tuple[str, int], _Caption] = field(default_factory=dict)
    _content_key: tuple[Any, int, int] | None = None
    _content_planes: Planes | None = None
    _font_cache: dict[int, Any] = field(default_factory=dict)

    def render(self, scene: Scene) -> av.VideoFrame:
        """One program frame (yuv420p, ``width`` x ``height``)."""
        out = av.VideoFrame(self.width, self.height, "yuv420p")
        y, u, v = plane_views(out)  # drawn in place: no copy at the end
        y.fill(BACKGROUND[0])
        u.fill(BACKGROUND[1])
        v.fill(BACKGROUND[2])
        canvas = (y, u, v)
        tiles = list(scene.tiles)[:MAX_ON_STAGE]
        regions = layout_regions(scene.layout, len(tiles), spotlight=scene.spotlight)
        if regions.content is not None:
            self._draw_content(canvas, scene.content, regions.content)
        for tile, rect in zip(tiles, regions.speakers):
            self._fill(canvas, rect, BACKGROUND)
            if tile.frame is not None:
                self._draw_frame(canvas, tile.frame, rect)
            if tile.name:
                self._draw_caption(canvas, tile.name, rect)
        return out

    # Drawing -----------------------------------------------------------------------
    @staticmethod
    def _fill(canvas: Planes, rect: Rect, yuv: tuple[int, int, int]) -> None:
        y, u, v = canvas
        y[rect.y:rect.y + rect.h, rect.x:rect.x + rect.w] = yuv[0]
        cy, cx, ch, cw = rect.y // 2, rect.x // 2, rect.h // 2, rect.w // 2
        u[cy:cy + ch, cx:cx + cw] = yuv[1]
        v[cy:cy + ch, cx:cx + cw] = yuv[2]

    @staticmethod
    def _blit(canvas: Planes, planes: Planes, at: Rect) -> None:
        y, u, v = canvas
        py, pu, pv = planes
        y[at.y:at.y + at.h, at.x:at.x + at.w] = py
        cy, cx = at.y // 2, at.x // 2
        u[cy:cy + at.h // 2, cx:cx + at.w // 2] = pu
        v[cy:cy + at.h // 2, cx:cx + at.w // 2] = pv

    def _draw_frame(self, canvas: Planes, frame: av.VideoFrame, rect: Rect) -> None:
        at = fit(frame.width, frame.height, rect)
        self._blit(canvas, yuv_planes(frame, at.w, at.h), at)

    def _draw_content(self, canvas: Planes, picture: av.VideoFrame | None, rect: Rect) -> None:
        self._fill(canvas, rect, CONTENT_BACKGROUND)
        if picture is None:
            return
        at = fit(picture.width, picture.height, rect)
        key = (picture, at.w, at.h)
        if self._content_key is None or self._content_key[0] is not picture or self._content_key[1:] != key[1:]:
            self._content_planes = yuv_planes(picture, at.w, at.h)  # slides change rarely: scale once
            self._content_key = key
        assert self._content_planes is not None
        self._blit(canvas, self._content_planes, at)

    def _draw_caption(self, canvas: Planes, name: str, rect: Rect) -> None:
        height = CAPTION_HEIGHT if rect.w >= 320 else 22
        caption = self._caption(name, height, rect.w - 8)
        box_h, box_w = caption.luma.shape
        at = Rect(rect.x + 4, rect.y + rect.h - box_h - 4, box_w, box_h)
        y, u, v = canvas
        y[at.y:at.y + at.h, at.x:at.x + at.w] = caption.luma
        cy, cx = at.y // 2, at.x // 2
        u[cy:cy + at.h // 2, cx:cx + at.w // 2] = 128
        v[cy:cy + at.h // 2, cx:cx + at.w // 2] = 128

    def _caption(self, name: str, height: int, max_width: int) -> _Caption:
        key = (name, height * 10000 + max_width)
        found = self._captions.get(key)
        if found is not None:
            return found
        from PIL import Image, ImageDraw, ImageFont

        font = self._font_cache.get(height)
        if font is None:
            font = self._font_cache[height] = ImageFont.load_default(size=height - 10)
        text = name
        while True:
            left, top, right, bottom = font.getbbox(text)
            if right - left + 16 <= max_width or len(text) <= 2:
                break
            text = text[:-2] + "…"
        width = max(2, min(max_width, _even(right - left + 16 + 1)))
        image = Image.new("L", (width, height), 40)
        ImageDraw.Draw(image).text((8, (height - (bottom - top)) // 2 - top), text, fill=235, font=font)
        caption = _Caption(np.asarray(image, dtype=np.uint8).copy())
        if len(self._captions) >= _CAPTION_CACHE_MAX:
            self._captions.clear()
        self._captions[key] = caption
        return caption
