"""Program sources of shared content: a rendered PDF page or an image as a
SlidePicture, an MP4 clip as a ClipPlayer (picture and resampled sound on the
program clock). Files are made in the test (fpdf2, Pillow, ffmpeg)."""

from __future__ import annotations

from pathlib import Path

import numpy
import pytest

from rooms.webcam import content_sandbox
from rooms.webcam.clip_player import ClipPlayer
from rooms.webcam.slides import SlidePicture
from rooms.webcam.sources import SAMPLE_RATE, ContentSlots
from tests.support import content_files as cf

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def rgb_at(frame: object, x: int, y: int) -> tuple[int, int, int]:
    pixels = frame.to_ndarray(format="rgb24")  # type: ignore[attr-defined]
    return tuple(int(v) for v in pixels[y, x])  # type: ignore[return-value]


def near(colour: tuple[int, int, int], expected: tuple[int, int, int], tolerance: int = 40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(colour, expected))


async def test_slide_picture_shows_the_rendered_page(tmp_path: Path) -> None:
    await content_sandbox.run("pdf", cf.slides_pdf(tmp_path / "deck.pdf", 2), tmp_path / "pages", timeout_s=30)
    slide = SlidePicture.load(tmp_path / "pages" / "page-000.png", "deck.pdf 1/2")
    frame = slide.picture(0.0)
    assert (frame.width, frame.height) == (1280, 720)  # 1280 x 720 pt page rendered into the 720p box
    x, y, w, h = cf.RED_RECT_PT  # 1 pt = 1 px at this scale
    assert near(rgb_at(frame, x + w // 2, y + h // 2), RED)
    assert near(rgb_at(frame, x + 5, y + 5), RED) and near(rgb_at(frame, x + w - 5, y + h - 5), RED)
    assert near(rgb_at(frame, x - 20, y - 20), WHITE) and near(rgb_at(frame, x + w + 50, y + h // 2), WHITE)
    red = numpy.all(numpy.abs(frame.to_ndarray(format="rgb24").astype(int) - RED) < 40, axis=2).sum()
    assert abs(red - w * h) < 0.02 * w * h  # the red area is the rectangle, not more, not less
    assert slide.picture(5.0) is frame  # decoded once, the same frame every program frame
    second = SlidePicture.load(tmp_path / "pages" / "page-001.png")
    assert near(rgb_at(second.picture(0.0), x + w // 2, y + h // 2), BLUE)


def test_slide_picture_of_an_image_is_bounded(tmp_path: Path) -> None:
    big = SlidePicture.load(cf.image(tmp_path / "big.jpg", GREEN, size=(4000, 3000), fmt="JPEG"))
    assert big.size == (1440, 1080)  # fitted in 1920 x 1080, aspect kept
    assert near(rgb_at(big.picture(0.0), 700, 500), GREEN)


def test_slot_carries_the_slide(tmp_path: Path) -> None:
    slots = ContentSlots()
    slide = SlidePicture.load(cf.image(tmp_path / "a.png", BLUE))
    import uuid

    webinar = uuid.uuid4()
    version = slots.slot(webinar).version
    slots.slot(webinar).show(slide, None, "a.png 1/1")
    assert slots.slot(webinar).picture is slide and slots.slot(webinar).version == version + 1


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 s: red 0-1 s, green 1-2 s, blue 2-3 s, with a 440 Hz tone."""
    return cf.colour_clip(tmp_path_factory.mktemp("clip") / "colours.mp4")


def play(player: ClipPlayer, start_now: float, until_s: float, step_s: float = 0.02) -> tuple[dict[float, object], list[numpy.ndarray | None]]:
    """Drive the player like the compositor does, on a program clock starting at ``start_now``."""
    frames: dict[float, object] = {}
    sounds: list[numpy.ndarray | None] = []
    steps = round(until_s / step_s)
    for i in range(steps):
        position = i * step_s
        assert player.wait_decoded(position + step_s, 5.0)
        frames[round(position, 2)] = player.picture(start_now + position)
        sounds.append(player.sound(start_now + position, int(SAMPLE_RATE * step_s)))
    return frames, sounds


def test_clip_player_picture_and_sound_follow_the_program_clock(clip: Path) -> None:
    player = ClipPlayer(clip, label="colours.mp4")
    try:
        assert abs(player.duration_s - 3.0) < 0.05 and player.has_video and player.has_audio
        player.play()
        frames, sounds = play(player, start_now=1000.0, until_s=3.6)
        for at, colour in ((0.0, RED), (0.5, RED), (0.96, RED), (1.04, GREEN), (1.5, GREEN), (2.5, BLUE)):
            assert near(rgb_at(frames[at], 160, 120), colour), (at, rgb_at(frames[at], 160, 120))
        assert near(rgb_at(frames[3.5], 160, 120), BLUE)  # ended: the last frame stays
        assert player.ended(1003.5)
        audio = [s for s in sounds if s is not None]
        assert all(len(s) == 960 for s in audio)
        total = numpy.concatenate(audio)
        assert abs(len(total) - 3 * SAMPLE_RATE) <= 960  # the clip's 3 s of sound, then silence (None)
        assert all(s is None for s in sounds[-20:])
        body = total[SAMPLE_RATE // 10: -SAMPLE_RATE // 10].astype(float)
        assert numpy.sqrt(numpy.mean(body ** 2)) > 1000  # a tone, not silence
        spectrum = numpy.abs(numpy.fft.rfft(body))
        peak_hz = numpy.argmax(spectrum) * SAMPLE_RATE / len(body)
        assert abs(peak_hz - 440) < 5  # resampled 44.1 kHz -> 48 kHz at the right pitch
    finally:
        player.close()


def test_clip_player_pause_and_seek(clip: Path) -> None:
    player = ClipPlayer(clip, ahead_frames=4)
    try:
        player.play()
        play(player, start_now=50.0, until_s=0.5)
        player.pause()
        paused_at = player.position()
        assert 0.45 <= paused_at <= 0.5
        assert player.sound(60.0, 960) is None  # paused: no sound
        still = player.picture(60.0)
        assert near(rgb_at(still, 10, 10), RED) and player.position(70.0) == paused_at  # time passes, the clip does not
        player.seek(2.2)
        assert player.wait_decoded(2.2, 5.0)
        assert near(rgb_at(player.picture(71.0), 10, 10), BLUE)
        player.seek(1.5)
        player.play()
        assert player.wait_decoded(1.6, 5.0)
        assert near(rgb_at(player.picture(80.0), 10, 10), GREEN)
        assert abs(player.position(80.3) - 1.8) < 1e-6
        assert len(player._frames) <= 4  # decoding ahead is bounded
    finally:
        player.close()
