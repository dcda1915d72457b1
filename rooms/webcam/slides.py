"""A still picture in the program: a rendered PDF page or an image of a set.

:class:`SlidePicture` is a :class:`rooms.webcam.sources.PictureSource`: the
image is decoded once, when loaded (call :meth:`SlidePicture.load` in a worker
thread), and every :meth:`~SlidePicture.picture` call returns the same cached
``av.VideoFrame``: no work per program frame.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy

SLIDE_MAX = (1920, 1080)
"""A loaded image is scaled down to fit in this box (pixels), aspect kept; memory per
slide is then at most 1920 × 1080 × 3 bytes (~6 MB)."""


class SlidePicture:
    """One decoded still image as a program picture."""

    def __init__(self, frame: av.VideoFrame, label: str = "") -> None:
        self.frame = frame
        self.label = label

    @classmethod
    def load(cls, path: Path, label: str = "") -> SlidePicture:
        """Decode ``path`` (PNG or JPEG, already checked at upload) into an RGB frame.
        Blocking (a few ms for a 720p page): run it in a worker thread."""
        from PIL import Image, ImageOps

        with Image.open(path) as opened:
            upright = ImageOps.exif_transpose(opened)
            upright.thumbnail(SLIDE_MAX, Image.Resampling.LANCZOS)
            rgb = upright.convert("RGB")
        array = numpy.asarray(rgb)
        return cls(av.VideoFrame.from_ndarray(array, format="rgb24"), label)

    @property
    def size(self) -> tuple[int, int]:
        return self.frame.width, self.frame.height

    def picture(self, now_s: float) -> av.VideoFrame:
        return self.frame
