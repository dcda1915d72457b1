"""Multivariant playlist rendering, checked with the m3u8 parser."""

from __future__ import annotations

import m3u8
import pytest

from player.multivariant import MultivariantError, Variant, render_multivariant


def test_two_renditions() -> None:
    text = render_multivariant(
        [
            Variant("720p/index.m3u8", 3_000_000, "avc1.64001f,mp4a.40.2", (1280, 720), 30, 2_500_000),
            Variant("360p/index.m3u8", 900_000, "avc1.42c01e,mp4a.40.2", (640, 360), 29.97),
        ]
    )
    pl = m3u8.M3U8(text, strict=True)
    assert pl.is_variant
    assert [p.uri for p in pl.playlists] == ["720p/index.m3u8", "360p/index.m3u8"]
    first, second = (p.stream_info for p in pl.playlists)
    assert (first.bandwidth, first.average_bandwidth, first.codecs) == (3_000_000, 2_500_000, "avc1.64001f,mp4a.40.2")
    assert (first.resolution, first.frame_rate) == ((1280, 720), 30.0)
    assert (second.bandwidth, second.average_bandwidth, second.resolution) == (900_000, None, (640, 360))
    assert second.frame_rate == pytest.approx(29.97)
    assert "FRAME-RATE=29.970" in text


def test_audio_only_variant_has_no_resolution_or_frame_rate() -> None:
    text = render_multivariant([Variant("audio/index.m3u8", 128_000, "mp4a.40.2")])
    assert text == '#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=128000,CODECS="mp4a.40.2"\naudio/index.m3u8\n'


@pytest.mark.parametrize(
    "variants",
    [
        [],
        [Variant("a.m3u8", 1000, "mp4a.40.2"), Variant("a.m3u8", 2000, "mp4a.40.2")],
        [Variant("a.m3u8", 0, "mp4a.40.2")],
        [Variant("a.m3u8", True, "mp4a.40.2")],  # type: ignore[arg-type]
        [Variant("a.m3u8", 1000, "mp4a.40.2", average_bandwidth=-1)],
        [Variant("a.m3u8", 1000, "")],
        [Variant("a.m3u8", 1000, 'mp4a"')],
        [Variant("a.m3u8", 1000, "avc1.64001f, mp4a.40.2")],
        [Variant("a.m3u8", 1000, "mp4a.40.2", resolution=(0, 720))],
        [Variant("a.m3u8", 1000, "mp4a.40.2", resolution=(1280,))],  # type: ignore[arg-type]
        [Variant("a.m3u8", 1000, "mp4a.40.2", frame_rate=float("nan"))],
        [Variant("a.m3u8", 1000, "mp4a.40.2", frame_rate=0)],
        [Variant("a\n.m3u8", 1000, "mp4a.40.2")],
        [Variant("#a.m3u8", 1000, "mp4a.40.2")],
        [Variant("", 1000, "mp4a.40.2")],
    ],
)
def test_bad_variants_are_refused(variants: list[Variant]) -> None:
    with pytest.raises(MultivariantError):
        render_multivariant(variants)
