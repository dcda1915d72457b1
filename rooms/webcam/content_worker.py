"""The child process that opens uploaded files: PDF rendering (pypdfium2), image
decoding (Pillow), MP4 probing (PyAV).

Run only through :mod:`rooms.webcam.content_sandbox`, which bounds its memory
(``RLIMIT_AS``), CPU time and wall time, so a PDF bomb, a decompression bomb
or a hostile MP4 can at worst kill this process, never the server.

Usage: ``python -m rooms.webcam.content_worker TASK SRC [OUTDIR]`` with TASK
``pdf`` (renders every page to ``OUTDIR/page-NNN.png``), ``image`` or
``clip``. Prints one JSON object on stdout: ``{"ok": true, ...facts}`` or
``{"ok": false, "code": ..., "params": {...}}`` (codes of
:class:`rooms.webcam.content_limits.ContentRefused`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from rooms.webcam.content_limits import (
    CLIP_AUDIO_CODECS,
    CLIP_MAX_DURATION_S,
    CLIP_MAX_SIDE,
    CLIP_VIDEO_CODECS,
    IMAGE_MAX_PIXELS,
    IMAGE_MAX_SIDE,
    PAGE_MAX_ASPECT,
    PAGE_MAX_PT,
    PAGE_MIN_PT,
    PDF_MAX_PAGES,
    RENDER_BOX,
    ContentRefused,
)

DECODE_CHECK_FRAMES = 3
"""Frames of each accepted clip stream decoded to prove it decodes."""


def render_pdf(src: Path, outdir: Path) -> dict[str, Any]:
    """Check and render every page; facts: ``pages``, ``sizes`` (rendered [w, h])."""
    import pypdfium2 as pdfium
    from pypdfium2 import raw

    try:
        doc = pdfium.PdfDocument(str(src))
    except pdfium.PdfiumError as exc:
        if "password" in str(exc).lower():
            raise ContentRefused("pdf_encrypted") from None
        raise ContentRefused("pdf_corrupt") from None
    try:
        if raw.FPDF_GetSecurityHandlerRevision(doc.raw) != -1:
            raise ContentRefused("pdf_encrypted")
        count = len(doc)
        if count == 0:
            raise ContentRefused("pdf_corrupt")
        if count > PDF_MAX_PAGES:
            raise ContentRefused("pdf_pages", pages=count, max=PDF_MAX_PAGES)
        sizes = []
        for index in range(count):
            w_pt, h_pt = doc.get_page_size(index)
            long_side, short_side = max(w_pt, h_pt), min(w_pt, h_pt)
            if short_side < PAGE_MIN_PT or long_side > PAGE_MAX_PT or long_side / short_side > PAGE_MAX_ASPECT:
                raise ContentRefused("pdf_page_size", page=index + 1, width=round(w_pt), height=round(h_pt))
        outdir.mkdir(parents=True, exist_ok=True)
        for index in range(count):
            page = doc[index]
            w_pt, h_pt = page.get_size()
            scale = min(RENDER_BOX[0] / w_pt, RENDER_BOX[1] / h_pt)
            image = page.render(scale=scale, may_draw_forms=False).to_pil().convert("RGB")
            image.save(outdir / f"page-{index:03d}.png", compress_level=1)
            sizes.append(list(image.size))
            page.close()
        return {"pages": count, "sizes": sizes}
    finally:
        doc.close()


def check_image(src: Path) -> dict[str, Any]:
    """A PNG or JPEG whose header dimensions are bounded and whose pixels all decode."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None  # the header check below refuses bombs, with their real size
    try:
        with Image.open(src) as image:
            if image.format not in ("PNG", "JPEG"):
                raise ContentRefused("unknown_type")
            width, height = image.size
            if width > IMAGE_MAX_SIDE or height > IMAGE_MAX_SIDE or width * height > IMAGE_MAX_PIXELS:
                raise ContentRefused("image_dimensions", width=width, height=height, max=IMAGE_MAX_SIDE)
            if getattr(image, "n_frames", 1) > 1:
                raise ContentRefused("image_animated")
            image.load()
            return {"width": width, "height": height, "format": image.format.lower()}
    except ContentRefused:
        raise
    except (OSError, ValueError, SyntaxError):
        raise ContentRefused("image_corrupt") from None


def probe_clip(src: Path) -> dict[str, Any]:
    """An MP4 (ISO BMFF) with decodable H.264/H.265/VP9/AV1 video or AAC/Opus audio,
    every packet readable to the end (a truncated file is refused)."""
    import av

    try:
        container = av.open(str(src), mode="r")
    except (av.FFmpegError, OSError, ValueError):
        raise ContentRefused("clip_corrupt") from None
    with container:
        if "mp4" not in container.format.name.split(","):
            raise ContentRefused("unknown_type")
        video = next((s for s in container.streams.video if s.codec_context.name in CLIP_VIDEO_CODECS), None)
        audio = next((s for s in container.streams.audio if s.codec_context.name in CLIP_AUDIO_CODECS), None)
        if video is None and audio is None:
            found = sorted({s.codec_context.name for s in container.streams if s.type in ("video", "audio")})
            raise ContentRefused("clip_codecs", found=", ".join(found) or "-")
        if video is not None and (video.codec_context.width > CLIP_MAX_SIDE or video.codec_context.height > CLIP_MAX_SIDE):
            raise ContentRefused("clip_dimensions", width=video.codec_context.width,
                                 height=video.codec_context.height, max=CLIP_MAX_SIDE)
        duration_s = float(container.duration or 0) / 1_000_000
        if duration_s > CLIP_MAX_DURATION_S:
            raise ContentRefused("clip_duration", seconds=round(duration_s))
        wanted = [s for s in (video, audio) if s is not None]
        decoded = {s.index: 0 for s in wanted}
        packets = {s.index: 0 for s in wanted}
        last_pts_s = 0.0
        try:
            for packet in container.demux(*wanted):
                if packet.size == 0 and packet.pts is None:
                    continue  # the flush packet at the end
                packets[packet.stream.index] += 1
                if packet.pts is not None and packet.time_base is not None:
                    last_pts_s = max(last_pts_s, float(packet.pts * packet.time_base))
                if decoded[packet.stream.index] < DECODE_CHECK_FRAMES:
                    decoded[packet.stream.index] += len(packet.decode())
        except av.FFmpegError:
            raise ContentRefused("clip_corrupt") from None
        for stream in wanted:
            expected = stream.frames
            if decoded[stream.index] == 0 or (expected and packets[stream.index] < expected):
                raise ContentRefused("clip_corrupt")
        return {
            "duration_s": round(duration_s or last_pts_s, 3),
            "video": video.codec_context.name if video is not None else None,
            "width": video.codec_context.width if video is not None else 0,
            "height": video.codec_context.height if video is not None else 0,
            "audio": audio.codec_context.name if audio is not None else None,
        }


def main(argv: list[str]) -> int:
    task, src = argv[0], Path(argv[1])
    try:
        if task == "pdf":
            facts = render_pdf(src, Path(argv[2]))
        elif task == "image":
            facts = check_image(src)
        elif task == "clip":
            facts = probe_clip(src)
        else:
            raise SystemExit(f"unknown task {task!r}")
        result: dict[str, Any] = {"ok": True, **facts}
    except ContentRefused as exc:
        result = {"ok": False, "code": exc.code, "params": exc.params}
    except MemoryError:
        result = {"ok": False, "code": "too_complex", "params": {}}
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
