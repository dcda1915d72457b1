"""The glass-to-glass barcode (benchmarks/g2g.py): timestamps painted into a luma
plane read back exactly, at any resolution and through noise; a damaged code is
refused by its checksum, never read as another time. The JS reader of the same
format is checked in Chromium by tests/integration/test_g2g_probe.py."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks import g2g
from benchmarks.g2g import (
    LAYOUT,
    TIMESTAMP_MODULUS,
    TOTAL_BITS,
    Background,
    BarcodeLayout,
    crc16_ccitt,
    decode_bits,
    encode_bits,
    paint_luma,
    read_bits,
    read_luma,
    unwrap_timestamp,
)

NOW_MS = 1_795_000_000_000  # November 2026


def test_crc16_ccitt_false_check_value() -> None:
    # The catalogue's check value for CRC-16/CCITT-FALSE over "123456789".
    assert crc16_ccitt(b"123456789") == 0x29B1


@given(st.integers(min_value=0, max_value=TIMESTAMP_MODULUS - 1))
def test_bits_round_trip(timestamp: int) -> None:
    bits = encode_bits(timestamp)
    assert len(bits) == TOTAL_BITS and set(bits) <= {0, 1}
    assert decode_bits(bits) == timestamp


def test_timestamp_is_msb_first_then_crc() -> None:
    bits = encode_bits(1)
    assert bits[:48] == [0] * 47 + [1]
    crc = crc16_ccitt((1).to_bytes(6, "big"))
    assert bits[48:] == [(crc >> (15 - i)) & 1 for i in range(16)]


def test_every_single_and_double_bit_error_is_refused() -> None:
    bits = encode_bits(NOW_MS)
    for i in range(TOTAL_BITS):
        flipped = list(bits)
        flipped[i] ^= 1
        assert decode_bits(flipped) is None, i
    for i in range(TOTAL_BITS):
        for j in range(i + 1, TOTAL_BITS):
            flipped = list(bits)
            flipped[i] ^= 1
            flipped[j] ^= 1
            assert decode_bits(flipped) is None, (i, j)


def test_bad_input_is_an_error() -> None:
    with pytest.raises(ValueError):
        encode_bits(-1)
    with pytest.raises(ValueError):
        decode_bits([0, 1] * 10)
    with pytest.raises(ValueError):
        decode_bits([2] * TOTAL_BITS)
    with pytest.raises(ValueError):
        BarcodeLayout(columns=30, rows=2)
    with pytest.raises(ValueError):
        paint_luma(bytearray(10), 1280, 720, NOW_MS)
    with pytest.raises(ValueError):
        read_luma(bytes(10), 1280, 720)


def test_timestamps_wrap_modulo_48_bits_and_unwrap_near_now() -> None:
    assert decode_bits(encode_bits(NOW_MS + TIMESTAMP_MODULUS)) == NOW_MS
    assert unwrap_timestamp(NOW_MS % TIMESTAMP_MODULUS, NOW_MS + 1500) == NOW_MS
    late = TIMESTAMP_MODULUS * 3 - 10  # painted just before a wrap, read just after it
    assert unwrap_timestamp(late % TIMESTAMP_MODULUS, TIMESTAMP_MODULUS * 3 + 20) == late


@pytest.mark.parametrize("size", [(1280, 720), (1920, 1080), (640, 360), (854, 480), (320, 180)])
def test_plane_round_trip_at_any_resolution(size: tuple[int, int]) -> None:
    width, height = size
    plane = bytearray([128]) * (width * height)
    for timestamp in (0, 1, NOW_MS, TIMESTAMP_MODULUS - 1):
        paint_luma(plane, width, height, timestamp)
        assert read_luma(plane, width, height) == timestamp


def test_only_the_band_is_painted() -> None:
    width, height = 1280, 720
    plane = Background(width, height).luma(7)
    before = bytes(plane)
    paint_luma(plane, width, height, NOW_MS)
    band = LAYOUT.band_height(height) * width
    assert band == 80 * width  # two rows of 40-pixel blocks at 720p
    assert plane[band:] == before[band:]
    assert plane[:band] != before[:band]
    assert set(plane[:band]) == {g2g.BLACK_LUMA, g2g.WHITE_LUMA}


def test_reads_through_noise_and_a_background_that_moves() -> None:
    width, height = 1280, 720
    background = Background(width, height)
    rng = random.Random(7)
    for frame in range(5):
        plane = background.luma(frame)
        timestamp = NOW_MS + frame * 33
        paint_luma(plane, width, height, timestamp)
        # coding noise of +/-60 luma levels on every pixel of the band
        band = LAYOUT.band_height(height) * width
        for i in range(band):
            plane[i] = max(0, min(255, plane[i] + rng.randint(-60, 60)))
        assert read_luma(plane, width, height) == timestamp


def test_block_edges_do_not_matter() -> None:
    """Ringing at block edges (x264 around sharp edges) does not change the bits:
    the reader only averages each block's middle half."""
    width, height = 1280, 720
    plane = bytearray(width * height)
    paint_luma(plane, width, height, NOW_MS)
    expected = read_bits(plane, width, height)
    for index in range(TOTAL_BITS):
        x0, y0, x1, y1 = LAYOUT.block(index, width, height)
        for y in range(y0, y1):
            for x in (x0, x0 + 1, x1 - 2, x1 - 1):  # the outer columns of every block inverted
                plane[y * width + x] = 255 - plane[y * width + x]
    assert read_bits(plane, width, height) == expected


def test_a_picture_without_a_code_is_not_read_as_a_time() -> None:
    width, height = 640, 360
    for frame in range(20):
        plane = Background(width, height, noise_frames=2).luma(frame)
        assert read_luma(plane, width, height) is None


@settings(max_examples=20)
@given(st.integers(min_value=0, max_value=TIMESTAMP_MODULUS - 1))
def test_layout_as_js_is_the_layout(timestamp: int) -> None:
    layout = BarcodeLayout(columns=16, rows=4, height_divisions=24)
    assert layout.as_js() == {"columns": 16, "rows": 4, "heightDivisions": 24}
    plane = bytearray(640 * 360)
    paint_luma(plane, 640, 360, timestamp, layout)
    assert read_luma(plane, 640, 360, layout) == timestamp
