"""What a webcam room accepts as shared content (R-ROOM-1), and how a file's
kind is told from its first bytes (never from its name or declared type).

Sans-I/O: constants, the refusal type and :func:`sniff`. Sizes are bytes,
durations seconds, dimensions pixels.
"""

from __future__ import annotations

from typing import Any, Literal

Kind = Literal["pdf", "images", "clip"]
FileType = Literal["pdf", "png", "jpeg", "mp4"]

MB = 1024 * 1024
PDF_MAX_BYTES = 12 * MB
"""R-ROOM-1: a PDF is at most 12 MB ..."""
PDF_MAX_PAGES = 100
"""... and 100 pages."""
IMAGES_MAX_COUNT = 19
"""R-ROOM-1: an image set holds at most 19 PNG/JPEG images ..."""
IMAGES_MAX_BYTES = 12 * MB
"""... of 12 MB in total."""
CLIP_MAX_BYTES = 300 * MB
"""R-ROOM-1: an MP4 clip is at most 300 MB."""
UPLOAD_CEILING = CLIP_MAX_BYTES
"""No upload body is read beyond this, whatever it holds."""

IMAGE_MAX_SIDE = 8192
"""Largest decoded width or height of an uploaded image (a decompression bomb is refused
from its header, before any pixel is decoded)."""
IMAGE_MAX_PIXELS = 40_000_000
"""Largest decoded width × height of an uploaded image."""
PAGE_MIN_PT = 36.0
"""Smallest page side accepted in a PDF, in points (half an inch)."""
PAGE_MAX_PT = 14_400.0
"""Largest page side accepted in a PDF, in points (200 inches, the PDF format's own limit)."""
PAGE_MAX_ASPECT = 8.0
"""Largest ratio of a page's long side to its short side (a slide is about 1.8)."""
RENDER_BOX = (1280, 720)
"""PDF pages are rendered to fit in this box (the program is 720p), aspect kept."""

CLIP_VIDEO_CODECS = frozenset({"h264", "hevc", "vp9", "av1"})
CLIP_AUDIO_CODECS = frozenset({"aac", "opus"})
CLIP_MAX_SIDE = 4096
"""Largest clip width or height (4K)."""
CLIP_MAX_DURATION_S = 4 * 3600.0
"""A clip longer than a live (R-ROOM-2) is refused."""

MAX_NAME_CHARS = 200


class ContentRefused(Exception):
    """An upload the room does not accept. ``code`` is the locale key suffix
    (``content.refused.<code>`` in server/locales), ``params`` its values; the
    HTTP layer answers with ``status`` and the translated text."""

    def __init__(self, code: str, status: int = 422, **params: Any) -> None:
        super().__init__(code, params)
        self.code = code
        self.status = status
        self.params = params

    @property
    def key(self) -> str:
        return f"content.refused.{self.code}"

    def __str__(self) -> str:
        from server.i18n import translate

        return translate("en", self.key, **self.params)


SNIFF_BYTES = 16
"""Bytes :func:`sniff` needs."""
_MP4_BRANDS_BOX = (b"ftyp",)


def sniff(head: bytes) -> FileType | None:
    """The file type from its first :data:`SNIFF_BYTES` bytes, or ``None`` for
    anything else (a renamed executable, a text file, a ZIP ...)."""
    if head.startswith(b"%PDF-"):
        return "pdf"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if len(head) >= 12 and head[4:8] in _MP4_BRANDS_BOX:
        return "mp4"
    return None


def kind_of(file_type: FileType) -> Kind:
    return {"pdf": "pdf", "png": "images", "jpeg": "images", "mp4": "clip"}[file_type]  # type: ignore[return-value]


def byte_limit(file_type: FileType) -> int:
    """Largest accepted file of this type (an image also counts against its set's total)."""
    return {"pdf": PDF_MAX_BYTES, "png": IMAGES_MAX_BYTES, "jpeg": IMAGES_MAX_BYTES, "mp4": CLIP_MAX_BYTES}[file_type]


def in_mb(size: int) -> float | int:
    """``size`` bytes in MB for messages: ``12`` rather than ``12.0``, else one decimal."""
    value = round(size / MB, 1)
    return int(value) if value.is_integer() else value


def clean_name(name: str | None, fallback: str) -> str:
    """A display name for an item: printable, trimmed, at most :data:`MAX_NAME_CHARS`."""
    cleaned = " ".join("".join(ch if ch.isprintable() else " " for ch in (name or "")).split())
    cleaned = cleaned.replace("/", "_").replace("\\", "_")
    return cleaned[:MAX_NAME_CHARS] or fallback
