"""Multivariant playlist: the list of renditions of one live (sans-I/O).

One ``EXT-X-STREAM-INF`` per :class:`Variant` (RFC 8216bis §4.4.6.2), in the
order given: players start with the first, so put the default first.
Bandwidths are in bits per second, frame rates in frames per second
(written with 3 decimals), resolutions in pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["MultivariantError", "Variant", "render_multivariant"]


class MultivariantError(ValueError):
    """A variant cannot be written in a multivariant playlist."""


@dataclass(frozen=True, slots=True)
class Variant:
    """One rendition of the live.

    - ``uri``: its media playlist, relative to the multivariant playlist;
    - ``bandwidth``: peak bit rate, bits/s (``BANDWIDTH``), > 0;
    - ``codecs``: RFC 6381 codec list, e.g. ``"avc1.64001f,mp4a.40.2"``;
      must name every format in the rendition;
    - ``resolution``: ``(width, height)`` in pixels, or None (audio only);
    - ``frame_rate``: frames per second, or None;
    - ``average_bandwidth``: average bit rate, bits/s, or None.
    """

    uri: str
    bandwidth: int
    codecs: str
    resolution: tuple[int, int] | None = None
    frame_rate: float | None = None
    average_bandwidth: int | None = None


def _positive_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise MultivariantError(f"{what} must be a positive integer, got {value!r}")
    return value


def _stream_inf(variant: Variant) -> str:
    uri = variant.uri
    if not isinstance(uri, str) or not uri or uri != uri.strip() or uri.startswith("#") or any(
        ch in uri for ch in "\r\n"
    ):
        raise MultivariantError(f"variant URI {uri!r} cannot be written in a playlist")
    attributes = [f"BANDWIDTH={_positive_int(variant.bandwidth, 'bandwidth')}"]
    if variant.average_bandwidth is not None:
        attributes.append(f"AVERAGE-BANDWIDTH={_positive_int(variant.average_bandwidth, 'average_bandwidth')}")
    codecs = variant.codecs
    if not isinstance(codecs, str) or not codecs or any(ch in codecs for ch in '"\r\n '):
        raise MultivariantError(f"codecs {codecs!r} must be a non-empty RFC 6381 list without blanks or quotes")
    attributes.append(f'CODECS="{codecs}"')
    if variant.resolution is not None:
        try:
            width, height = variant.resolution
        except (TypeError, ValueError):
            raise MultivariantError(f"resolution must be (width, height), got {variant.resolution!r}") from None
        attributes.append(f"RESOLUTION={_positive_int(width, 'width')}x{_positive_int(height, 'height')}")
    if variant.frame_rate is not None:
        rate = variant.frame_rate
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) or rate <= 0:
            raise MultivariantError(f"frame_rate must be a positive number, got {rate!r}")
        attributes.append(f"FRAME-RATE={rate:.3f}")
    return f"#EXT-X-STREAM-INF:{','.join(attributes)}\n{uri}"


def render_multivariant(variants: Sequence[Variant]) -> str:
    """The multivariant playlist listing ``variants`` (at least one).

    Raises :class:`MultivariantError` for an empty list, a duplicate URI or
    a variant with a bad field.
    """
    if not variants:
        raise MultivariantError("a multivariant playlist needs at least one variant")
    uris = [v.uri for v in variants]
    if len(set(uris)) != len(uris):
        raise MultivariantError("two variants share a URI")
    lines = ["#EXTM3U"]
    lines += [_stream_inf(v) for v in variants]
    return "\n".join(lines) + "\n"
