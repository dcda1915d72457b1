"""The renditions of a live: the source one (passthrough) and the optional 480p.

A webinar's live is always published as the encoder sent it, the *source*
rendition (``hls/<id>/index.m3u8``). When the organizer turns on
``webinars.low_rendition`` (migration 0007, off by default), the live also
gets a transcoded lower rendition named :data:`LOW_RENDITION`
(``hls/<id>/480p/index.m3u8``, made by :mod:`player.transcode`) and a
multivariant playlist (``hls/<id>/master.m3u8``) listing both, source first.

This module holds the names, the per-webinar switch (database), and the
construction of the multivariant playlist from the publications (sans-I/O:
:func:`variant_of` and :func:`render_master` read published state only).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from player.fmp4 import Fmp4Error, video_dimensions
from player.media import VideoConfig
from player.multivariant import Variant, render_multivariant
from player.publication import Publication
from server.db import Database

__all__ = [
    "LOW_RENDITION",
    "MASTER_PLAYLIST",
    "MEDIA_PLAYLIST",
    "RENDITIONS",
    "low_rendition_enabled",
    "render_master",
    "set_low_rendition",
    "variant_of",
]

SOURCE_RENDITION = ""
"""Name of the source rendition (its files sit at the top of ``hls/<id>/``)."""
LOW_RENDITION = "480p"
"""Name (and folder) of the transcoded lower rendition."""
RENDITIONS = frozenset({LOW_RENDITION})
"""Names a URL may use for a rendition in its own folder."""
MASTER_PLAYLIST = "master.m3u8"
MEDIA_PLAYLIST = "index.m3u8"


async def low_rendition_enabled(db: Database, webinar_id: uuid.UUID) -> bool:
    """Whether the webinar asks for the 480p rendition (False for an unknown webinar)."""
    return bool(await db.fetchval("SELECT low_rendition FROM webinars WHERE id = $1", webinar_id))


async def set_low_rendition(db: Database, webinar_id: uuid.UUID, enabled: bool) -> None:
    """Turn the 480p rendition on or off; it applies from the next live start."""
    await db.execute("UPDATE webinars SET low_rendition = $2 WHERE id = $1", webinar_id, enabled)


def variant_of(publication: Publication, uri: str, frame_rate: float | None = None) -> Variant | None:
    """The ``EXT-X-STREAM-INF`` entry of one rendition, or None before its first init segment.

    ``BANDWIDTH`` is the measured peak segment bit rate (bits/s; before the
    first segment, the rate of the parts so far), ``AVERAGE-BANDWIDTH`` the
    mean over the finished segments, ``CODECS`` and ``RESOLUTION`` come from
    the current init segment's tracks.
    """
    if not publication.codecs:
        return None
    peak, average = publication.bitrate()
    if peak <= 0:
        return None
    resolution = None
    video = next((t for t in publication.tracks if isinstance(t, VideoConfig)), None)
    if video is not None:
        try:
            width, height = video_dimensions(video)
        except Fmp4Error:
            width = height = 0
        if width > 0 and height > 0:
            resolution = (width, height)
    return Variant(uri, peak, publication.codecs, resolution, frame_rate, average or None)


def render_master(renditions: Sequence[tuple[Publication, str, float | None]]) -> str | None:
    """The multivariant playlist of ``(publication, uri, frame rate)`` in order, or None
    when none of them has published an init segment yet."""
    variants = [v for pub, uri, rate in renditions if (v := variant_of(pub, uri, rate)) is not None]
    if not variants:
        return None
    return render_multivariant(variants)
