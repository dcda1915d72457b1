"""WebRTC test media: aiortc tracks standing in for a speaker's browser."""

from __future__ import annotations

import asyncio
import fractions
from typing import Any


def solid_video_track(yuv: tuple[int, int, int], width: int, height: int, fps: float) -> Any:
    """An aiortc video track of one colour (``yuv``: Y, U, V bytes) at ``width``x``height``
    and ``fps`` pictures per second. Its ``sharing`` event gates the pictures: clear it and
    the track sends nothing more (as a browser does for a stopped screen share)."""
    import av
    import numpy as np
    from aiortc import MediaStreamTrack

    y, u, v = yuv
    planes = np.concatenate((np.full(width * height, y, np.uint8), np.full(width * height // 4, u, np.uint8),
                             np.full(width * height // 4, v, np.uint8))).reshape(-1, width)
    ticks = round(90_000 / fps)

    class SolidTrack(MediaStreamTrack):
        kind = "video"

        def __init__(self) -> None:
            super().__init__()
            self.index = 0
            self.sharing = asyncio.Event()
            self.sharing.set()

        async def recv(self) -> av.VideoFrame:
            await asyncio.sleep(1 / fps)
            await self.sharing.wait()
            frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
            frame.pts, frame.time_base = self.index * ticks, fractions.Fraction(1, 90_000)
            self.index += 1
            return frame

    return SolidTrack()
