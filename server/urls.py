"""Public URLs of a webinar, in one place (pages, demo output, emails).

Some of them are served by later parts of the product (viewer page, LL-HLS,
moderator panel, registration); until then they answer 404.
"""

from __future__ import annotations

import uuid

from server.settings import Settings


def webinar_urls(settings: Settings, webinar_id: uuid.UUID) -> dict[str, str]:
    base = settings.base_url
    return {
        "viewer_url": f"{base}/w/{webinar_id}",
        "moderator_url": f"{base}/w/{webinar_id}/moderate",
        "speaker_url": f"{base}/w/{webinar_id}/speak",
        "register_url": f"{base}/w/{webinar_id}/register",
        "hls_url": f"{base}/hls/{webinar_id}/index.m3u8",
        "manage_url": f"{base}/webinars/{webinar_id}",
    }


def ingest_urls(settings: Settings, stream_key: str | None) -> dict[str, str]:
    """rtmp_url is what OBS calls "Server" (the key goes in "Stream key");
    srt_url is complete (the key is the stream id)."""
    host = settings.public_media_host
    key = stream_key or "STREAM_KEY"
    return {
        "rtmp_url": f"rtmp://{host}:{settings.rtmp_port}/live",
        "rtmp_full_url": f"rtmp://{host}:{settings.rtmp_port}/live/{key}",
        "srt_url": f"srt://{host}:{settings.srt_port}?streamid={key}&latency=200000",
    }
