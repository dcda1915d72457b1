"""Shared content of webcam rooms: uploads are told by their content and checked
against R-ROOM-1 in a bounded child process. Every file here is real, made in the
test (fpdf2, Pillow, ffmpeg, hand-written hostile PDFs)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rooms.webcam import content_sandbox
from rooms.webcam.content_limits import (
    CLIP_MAX_BYTES,
    IMAGES_MAX_BYTES,
    MB,
    PDF_MAX_BYTES,
    UPLOAD_CEILING,
    ContentRefused,
    clean_name,
    sniff,
)
from rooms.webcam.content_store import UploadLimits
from rooms.webcam.uploads import receive
from tests.support import content_files as cf

ELF = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 56
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + os.urandom(2000)


async def chunks_of(data: bytes, size: int = 64 * 1024, seen: list[int] | None = None) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        if seen is not None:
            seen.append(start)
        yield data[start:start + size]


def new_set(file_type: str) -> int:
    return UploadLimits(set_id=None, images_left=IMAGES_MAX_BYTES).limit_for(file_type)  # type: ignore[arg-type]


async def refused(coro: object) -> ContentRefused:
    with pytest.raises(ContentRefused) as info:
        await coro  # type: ignore[misc]
    return info.value


# Telling the kind by content --------------------------------------------------------------
def test_sniff_by_content_not_name(tmp_path: Path) -> None:
    assert sniff(cf.slides_pdf(tmp_path / "deck.png", 1).read_bytes()[:16]) == "pdf"
    assert sniff(cf.image(tmp_path / "a.pdf").read_bytes()[:16]) == "png"
    assert sniff(cf.image(tmp_path / "a.mp4", fmt="JPEG").read_bytes()[:16]) == "jpeg"
    assert sniff(cf.colour_clip(tmp_path / "clip.pdf", ("red",), 0.5).read_bytes()[:16]) == "mp4"
    for other in (EXE, ELF, b"PK\x03\x04" + b"\x00" * 20, b"<html><body>hi</body></html>", b"GIF89a" + b"\x00" * 10):
        assert sniff(other[:16]) is None


def test_clean_name() -> None:
    assert clean_name("  my\tdeck\x00.pdf ", "x") == "my deck .pdf"
    assert clean_name("../../etc/passwd", "x") == ".._.._etc_passwd"
    assert clean_name("", "fallback.pdf") == "fallback.pdf"
    assert len(clean_name("a" * 500, "x")) == 200


# Streaming to disk with the limit enforced while reading ---------------------------------------
async def test_receive_writes_hashes_and_sniffs(tmp_path: Path) -> None:
    data = cf.slides_pdf(tmp_path / "deck.pdf", 2).read_bytes()
    got = await receive(chunks_of(data, 100), tmp_path / "in", len(data), new_set)
    assert got.file_type == "pdf" and got.size == len(data) and got.path.read_bytes() == data
    import hashlib

    assert got.sha256 == hashlib.sha256(data).hexdigest()


async def test_renamed_executable_is_refused_before_anything_is_stored(tmp_path: Path) -> None:
    exc = await refused(receive(chunks_of(EXE), tmp_path, len(EXE), new_set))
    assert (exc.code, exc.status) == ("unknown_type", 415)
    assert "PDF, PNG, JPEG or MP4" in str(exc)
    assert list(tmp_path.iterdir()) == []
    assert (await refused(receive(chunks_of(b""), tmp_path, 0, new_set))).code == "empty"


async def test_declared_length_over_the_limit_is_refused_before_reading(tmp_path: Path) -> None:
    seen: list[int] = []
    body = b"%PDF-1.7\n" + b"x" * (2 * 1024 * 1024)
    exc = await refused(receive(chunks_of(body, seen=seen), tmp_path, PDF_MAX_BYTES + 1, new_set))
    assert (exc.code, exc.status) == ("too_large", 413) and exc.params["max_mb"] == 12
    assert len(seen) == 1  # only the first chunk (to sniff) was read
    ceiling = await refused(receive(chunks_of(body, seen=seen), tmp_path, UPLOAD_CEILING + 1, new_set))
    assert ceiling.code == "too_large" and ceiling.params["max_mb"] == 300
    assert list(tmp_path.iterdir()) == []


async def test_body_growing_past_the_limit_is_cut_while_reading(tmp_path: Path) -> None:
    """No Content-Length (chunked): the limit applies as bytes arrive; the partial file goes."""
    seen: list[int] = []
    limit = 1 * MB

    def small(file_type: str) -> int:
        return limit

    body = b"\x89PNG\r\n\x1a\n" + b"\x00" * (4 * MB)
    exc = await refused(receive(chunks_of(body, seen=seen), tmp_path, None, small))
    assert exc.code == "too_large"
    assert len(seen) * 64 * 1024 <= limit + 2 * 64 * 1024  # stopped right after the limit, not at 4 MB
    assert list(tmp_path.iterdir()) == []


async def test_13_mb_pdf_is_refused(tmp_path: Path) -> None:
    data = cf.heavy_pdf(tmp_path / "big.pdf", 13).read_bytes()
    assert len(data) > PDF_MAX_BYTES
    # Declared honestly, or not at all: refused either way.
    for declared in (len(data), None):
        exc = await refused(receive(chunks_of(data), tmp_path / "in", declared, new_set))
        assert (exc.code, exc.status) == ("too_large", 413)
        assert "12 MB" in str(exc)


def test_limits_by_type() -> None:
    fresh = UploadLimits(set_id=None, images_left=IMAGES_MAX_BYTES)
    assert fresh.limit_for("pdf") == PDF_MAX_BYTES and fresh.limit_for("mp4") == CLIP_MAX_BYTES
    assert fresh.limit_for("png") == IMAGES_MAX_BYTES
    partial = UploadLimits(set_id=7, images_left=2 * MB)
    assert partial.limit_for("jpeg") == 2 * MB
    with pytest.raises(ContentRefused) as info:
        partial.limit_for("pdf")
    assert info.value.code == "set_needs_image"


# PDFs ---------------------------------------------------------------------------------------
async def test_pdf_is_rendered_to_page_images(tmp_path: Path) -> None:
    facts = await content_sandbox.run("pdf", cf.slides_pdf(tmp_path / "deck.pdf", 3), tmp_path / "pages", timeout_s=30)
    assert facts["pages"] == 3 and facts["sizes"] == [[1280, 720]] * 3
    assert sorted(p.name for p in (tmp_path / "pages").iterdir()) == ["page-000.png", "page-001.png", "page-002.png"]


async def test_101_pages_refused_100_accepted(tmp_path: Path) -> None:
    exc = await refused(content_sandbox.run("pdf", cf.slides_pdf(tmp_path / "101.pdf", 101), tmp_path / "p101",
                                            timeout_s=60))
    assert exc.code == "pdf_pages" and exc.params == {"pages": 101, "max": 100}
    assert str(exc) == "This PDF has 101 pages: 100 at most (R-ROOM-1)."
    assert not (tmp_path / "p101").exists()  # refused before rendering anything
    facts = await content_sandbox.run("pdf", cf.slides_pdf(tmp_path / "100.pdf", 100), tmp_path / "p100", timeout_s=120)
    assert facts["pages"] == 100


async def test_encrypted_pdf_refused(tmp_path: Path) -> None:
    exc = await refused(content_sandbox.run("pdf", cf.encrypted_pdf(tmp_path / "e.pdf"), tmp_path / "o", timeout_s=30))
    assert exc.code == "pdf_encrypted"


async def test_corrupt_pdf_refused(tmp_path: Path) -> None:
    path = tmp_path / "broken.pdf"
    path.write_bytes(b"%PDF-1.7\n" + os.urandom(5000))
    assert (await refused(content_sandbox.run("pdf", path, tmp_path / "o", timeout_s=30))).code == "pdf_corrupt"


async def test_absurd_page_size_refused(tmp_path: Path) -> None:
    exc = await refused(content_sandbox.run("pdf", cf.absurd_page_pdf(tmp_path / "a.pdf"), tmp_path / "o", timeout_s=30))
    assert exc.code == "pdf_page_size" and exc.params == {"page": 1, "width": 14400, "height": 2}


async def test_pdf_bomb_is_stopped_by_the_bounds(tmp_path: Path) -> None:
    """10^9 nested drawing operations in 3 kB: the child runs out of its time or memory
    and is killed; the caller gets a refusal, this process is untouched."""
    bomb = cf.bomb_pdf(tmp_path / "bomb.pdf")
    assert bomb.stat().st_size < 10_000
    exc = await refused(content_sandbox.run("pdf", bomb, tmp_path / "o", timeout_s=2.0))
    assert exc.code in ("timeout", "too_complex")
    tight = await refused(content_sandbox.run("pdf", bomb, tmp_path / "o2", timeout_s=30, memory_bytes=400 * MB))
    assert tight.code in ("timeout", "too_complex")


# Images ---------------------------------------------------------------------------------------
async def test_png_and_jpeg_accepted(tmp_path: Path) -> None:
    png = await content_sandbox.run("image", cf.image(tmp_path / "a.png", size=(640, 360)), timeout_s=20)
    assert png == {"width": 640, "height": 360, "format": "png"}
    jpeg = await content_sandbox.run("image", cf.image(tmp_path / "a.jpg", fmt="JPEG"), timeout_s=20)
    assert jpeg["format"] == "jpeg"


async def test_decompression_bomb_png_refused_from_its_header(tmp_path: Path) -> None:
    bomb = cf.png_bomb(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 200_000  # 400 M pixels in a few tens of kB
    exc = await refused(content_sandbox.run("image", bomb, timeout_s=20))
    assert exc.code == "image_dimensions" and exc.params["width"] == 20_000


async def test_truncated_image_refused(tmp_path: Path) -> None:
    data = cf.image(tmp_path / "full.jpg", size=(800, 600), fmt="JPEG").read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    assert (await refused(content_sandbox.run("image", cut, timeout_s=20))).code == "image_corrupt"


# MP4 clips ----------------------------------------------------------------------------------------
async def test_mp4_probed(tmp_path: Path) -> None:
    facts = await content_sandbox.run("clip", cf.colour_clip(tmp_path / "c.mp4"), timeout_s=30)
    assert facts == {"duration_s": 3.0, "video": "h264", "width": 320, "height": 240, "audio": "aac"}


@pytest.mark.parametrize("where", ["moov_at_end", "faststart"])
async def test_truncated_mp4_refused(tmp_path: Path, where: str) -> None:
    clip = cf.colour_clip(tmp_path / "c.mp4")
    if where == "faststart":  # the index comes first: only the missing samples betray the cut
        clip = cf.faststart(clip, tmp_path / "fs.mp4")
    data = clip.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    assert (await refused(content_sandbox.run("clip", cut, timeout_s=30))).code == "clip_corrupt"


async def test_corrupt_mp4_refused(tmp_path: Path) -> None:
    data = cf.colour_clip(tmp_path / "c.mp4").read_bytes()
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(data[:32] + os.urandom(40_000))
    assert sniff(junk.read_bytes()[:16]) == "mp4"  # looks like an MP4 ...
    assert (await refused(content_sandbox.run("clip", junk, timeout_s=30))).code == "clip_corrupt"  # ... is not


async def test_mp4_without_accepted_codecs_refused(tmp_path: Path) -> None:
    path = cf.lavfi_mp4(tmp_path / "mpeg4.mp4", "testsrc=d=1:s=160x120", "-c:v", "mpeg4")
    exc = await refused(content_sandbox.run("clip", path, timeout_s=30))
    assert exc.code == "clip_codecs" and exc.params == {"found": "mpeg4"}


async def test_audio_only_opus_mp4_accepted(tmp_path: Path) -> None:
    path = cf.lavfi_mp4(tmp_path / "voice.mp4", "sine=frequency=300:duration=1", "-c:a", "libopus")
    facts = await content_sandbox.run("clip", path, timeout_s=30)
    assert facts["audio"] == "opus" and facts["video"] is None and abs(facts["duration_s"] - 1.0) < 0.1
