"""Real files for the shared-content tests, made on the spot: PDFs (fpdf2 and hand-written
hostile ones), PNG/JPEG (Pillow), MP4 clips (the ffmpeg command line)."""

from __future__ import annotations

import subprocess
import zlib
from pathlib import Path

import numpy
from fpdf import FPDF
from PIL import Image

from tests.support.ffmpeg import FFMPEG

RED_RECT_PT = (100, 100, 800, 400)
"""x, y, w, h (points, from the top left) of the red rectangle on pages of :func:`slides_pdf` (1280 × 720 pt)."""


def slides_pdf(path: Path, pages: int = 3) -> Path:
    """``pages`` 1280 × 720 pt pages; page 1 has a red rectangle, page 2 a blue one, then green."""
    pdf = FPDF(orientation="L", unit="pt", format=(720, 1280))
    colours = [(255, 0, 0), (0, 0, 255), (0, 160, 0)]
    for index in range(pages):
        pdf.add_page()
        pdf.set_fill_color(*colours[min(index, 2)])
        pdf.rect(*RED_RECT_PT, style="F")
        pdf.set_font("helvetica", size=40)
        pdf.text(100, 650, f"Slide {index + 1}")
    pdf.output(str(path))
    return path


def heavy_pdf(path: Path, megabytes: float) -> Path:
    """A valid one-page PDF of at least ``megabytes`` MB (an incompressible noise image)."""
    side = int((megabytes * 1024 * 1024 / 3) ** 0.5) + 16
    noise = numpy.random.default_rng(5).integers(0, 256, (side, side, 3), dtype=numpy.uint8)
    pdf = FPDF(unit="pt", format=(800, 600))
    pdf.add_page()
    pdf.image(Image.fromarray(noise), x=0, y=0, w=800, h=600)
    pdf.output(str(path))
    return path


def encrypted_pdf(path: Path) -> Path:
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=20)
    pdf.text(20, 20, "secret")
    pdf.set_encryption(owner_password="owner", user_password="user")
    pdf.output(str(path))
    return path


def _raw_pdf(objects: list[bytes]) -> bytes:
    """A PDF from numbered object bodies (object 1 is the catalog), with a correct xref."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def _stream(data: bytes, extra: bytes = b"") -> bytes:
    return b"<< /Length %d %s >>\nstream\n" % (len(data), extra) + data + b"\nendstream"


def bomb_pdf(path: Path, depth: int = 9, fanout: int = 10) -> Path:
    """A "billion laughs" PDF: form XObject i draws form i-1 ``fanout`` times, so one
    small page asks for ``fanout ** depth`` rectangles (a few kB on disk)."""
    forms_start = 4
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
               b"/Resources << /XObject << /X %d 0 R >> >> >>" % (forms_start + depth + 1, forms_start + depth)]
    objects.append(_stream(b"0 0 1 1 re f", b"/Type /XObject /Subtype /Form /BBox [0 0 612 792]"))
    for level in range(1, depth + 1):
        body = b"/X Do " * fanout
        objects.append(_stream(body, b"/Type /XObject /Subtype /Form /BBox [0 0 612 792] "
                                     b"/Resources << /XObject << /X %d 0 R >> >>" % (forms_start + level - 1)))
    objects.append(_stream(b"/X Do"))
    path.write_bytes(_raw_pdf(objects))
    return path


def absurd_page_pdf(path: Path) -> Path:
    """A one-page PDF whose page is 14 400 × 2 points (200 inches by a line)."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 14400 2] /Contents 4 0 R >>",
               _stream(b"0 0 1 1 re f")]
    path.write_bytes(_raw_pdf(objects))
    return path


def image(path: Path, colour: tuple[int, int, int] = (255, 0, 0), size: tuple[int, int] = (320, 240),
          fmt: str = "PNG") -> Path:
    Image.new("RGB", size, colour).save(path, format=fmt)
    return path


def png_bomb(path: Path, side: int = 20_000) -> Path:
    """A valid PNG header of ``side`` × ``side`` 1-bit pixels (400 M pixels, ~50 MB of rows,
    zlib-compressed to a few tens of kB): a decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    row = b"\x00" + b"\x00" * ((side + 7) // 8)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = side.to_bytes(4, "big") * 2 + bytes([1, 0, 0, 0, 0])
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def colour_clip(path: Path, colours: tuple[str, ...] = ("red", "lime", "blue"), seconds_each: float = 1.0,
                tone_hz: int = 440, size: str = "320x240", rate: int = 30, video: str = "libx264",
                audio: str = "aac") -> Path:
    """An MP4 whose picture is each colour for ``seconds_each`` s in turn, with a sine tone."""
    inputs: list[str] = []
    for colour in colours:
        inputs += ["-f", "lavfi", "-i", f"color=c={colour}:s={size}:r={rate}:d={seconds_each}"]
    total = seconds_each * len(colours)
    inputs += ["-f", "lavfi", "-i", f"sine=frequency={tone_hz}:sample_rate=44100:duration={total}"]
    chain = "".join(f"[{i}:v]" for i in range(len(colours))) + f"concat=n={len(colours)}:v=1:a=0[v]"
    codec = ["-c:v", video, "-pix_fmt", "yuv420p", "-g", str(rate // 2)]
    if video == "libx264":
        codec += ["-preset", "ultrafast"]
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *inputs,
                    "-filter_complex", chain, "-map", "[v]", "-map", f"{len(colours)}:a", *codec,
                    "-c:a", audio, "-b:a", "96k", "-f", "mp4", str(path)], check=True, timeout=60)
    return path


def faststart(src: Path, dst: Path) -> Path:
    """``src`` remuxed with its index (moov) first, as web videos usually are."""
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i", str(src), "-c", "copy",
                    "-movflags", "+faststart", str(dst)], check=True, timeout=60)
    return dst


def lavfi_mp4(path: Path, source: str, *codec: str) -> Path:
    """An MP4 of one lavfi ``source`` encoded with ``codec`` options (e.g. ``-c:v mpeg4``)."""
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f", "lavfi", "-i", source,
                    *codec, "-f", "mp4", str(path)], check=True, timeout=60)
    return path


def noise_png(path: Path, megabytes: float) -> Path:
    """A PNG of random pixels (incompressible) weighing about ``megabytes`` MB."""
    side = int((megabytes * 1024 * 1024 / 3) ** 0.5)
    noise = numpy.random.default_rng(int(megabytes * 1000) + len(path.name)).integers(0, 256, (side, side, 3),
                                                                                      dtype=numpy.uint8)
    Image.fromarray(noise).save(path, format="PNG", compress_level=1)
    return path
