"""Charts as inline SVG, drawn on the server: no JavaScript, no charting library.

Each function takes plain numbers and labels and returns SVG markup
(:class:`markupsafe.Markup`, every label escaped) that scales to its
container (``viewBox``, width 100 %). Each chart is ``role="img"`` with a
``<title>`` and a ``<desc>`` that says what the chart shows in words; the
page puts the same numbers in a table next to it for screen readers and for
people who prefer numbers. Colours meet 3:1 contrast against white for
graphical objects (WCAG 1.4.11).

Limits: up to :data:`MAX_POINTS` points per series and :data:`MAX_BARS` bars;
more is refused with :class:`ValueError` (the caller aggregates first).
"""

from __future__ import annotations

import itertools
import math
from typing import Sequence

from markupsafe import Markup, escape

MAX_POINTS = 2000
MAX_BARS = 60
ACCENT = "#0a58ca"
FILL = "#0a58ca22"
SERIES = ("#0a58ca", "#b35c00", "#1a7f37", "#8250df", "#cf222e", "#0969da")
"""Bar colours in order (all ≥ 3:1 against white)."""
GRID = "#d0d7de"
MUTED = "#57606a"
_ids = itertools.count(1)


def axis(value: float, integer: bool = True) -> tuple[float, int]:
    """(top, steps) of a value axis covering ``value`` with 3 to 5 equal steps of 1, 2, 2.5 or 5 × 10^n
    (whole steps only when ``integer``); the lowest such top wins (fewer steps on a tie). (4, 4) for 0 or less."""
    if value <= 0 or not math.isfinite(value):
        return 4.0, 4
    best: tuple[float, int] | None = None
    for ticks in (3, 4, 5):
        raw = value / ticks
        exponent = math.floor(math.log10(raw))
        for s in (1.0, 2.0, 2.5, 5.0, 10.0):
            step = s * 10.0 ** exponent
            if integer and (step < 1 or step != int(step)):
                continue
            if step >= raw - 1e-9:
                if best is None or step * ticks < best[0]:
                    best = (step * ticks, ticks)
                break
        else:
            continue
    if best is None:  # integer axis for a tiny value
        return 4.0, 4
    return best


def _num(value: float) -> str:
    """A number for labels: integers without decimals, others with one."""
    return str(int(round(value))) if abs(value - round(value)) < 1e-9 or abs(value) >= 100 else f"{value:.1f}"


def _frame(width: int, height: int, title: str, desc: str, body: list[str]) -> Markup:
    n = next(_ids)
    head = (f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
            f'aria-labelledby="chart{n}-t chart{n}-d" xmlns="http://www.w3.org/2000/svg" '
            f'font-family="system-ui, sans-serif" font-size="12">'
            f'<title id="chart{n}-t">{escape(title)}</title><desc id="chart{n}-d">{escape(desc)}</desc>')
    return Markup(head + "".join(body) + "</svg>")


def _y_axis(left: int, top: int, width: int, plot_h: int, ymax: float, ticks: int) -> list[str]:
    out = []
    for i in range(ticks + 1):
        value = ymax * i / ticks
        y = top + plot_h - plot_h * i / ticks
        dash = "" if i == 0 else ' stroke-dasharray="3 3"'
        out.append(f'<line x1="{left}" x2="{left + width}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}" '
                   f'stroke-width="1"{dash}/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="{MUTED}">{escape(_num(value))}</text>')
    return out


def line_chart(points: Sequence[tuple[str, float]], *, title: str, desc: str, y_label: str,
               label_every: int | None = None, step: bool = False, integer: bool = True, width: int = 720,
               height: int = 260) -> Markup:
    """A filled line (or staircase with ``step``) of ``points`` = (x label, value), in order.

    ``label_every``: print one x label every so many points (default: about 8 labels).
    """
    if len(points) > MAX_POINTS:
        raise ValueError(f"at most {MAX_POINTS} points per chart")
    left, right, top, bottom = 48, 12, 16, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    body: list[str] = []
    values = [max(0.0, float(v)) for _, v in points]
    ymax, ticks = axis(max(values, default=0.0), integer)
    body += _y_axis(left, top, plot_w, plot_h, ymax, ticks)
    body.append(f'<text x="{left}" y="{top - 4}" fill="{MUTED}">{escape(y_label)}</text>')
    if not points:
        body.append(f'<text x="{left + plot_w / 2}" y="{top + plot_h / 2}" text-anchor="middle" fill="{MUTED}">—</text>')
        return _frame(width, height, title, desc, body)
    n = len(points)
    xs = [left + (plot_w * i / (n - 1) if n > 1 else plot_w / 2) for i in range(n)]
    ys = [top + plot_h - plot_h * v / ymax for v in values]
    coords: list[tuple[float, float]] = []
    for i, (x, y) in enumerate(zip(xs, ys)):
        if step and i > 0:
            coords.append((x, ys[i - 1]))
        coords.append((x, y))
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    base = top + plot_h
    body.append(f'<polygon points="{xs[0]:.1f},{base} {path} {xs[-1]:.1f},{base}" fill="{FILL}" stroke="none"/>')
    body.append(f'<polyline points="{path}" fill="none" stroke="{ACCENT}" stroke-width="2" '
                f'stroke-linejoin="round" stroke-linecap="round"/>')
    peak = max(range(n), key=lambda i: values[i])
    if values[peak] > 0:
        body.append(f'<circle cx="{xs[peak]:.1f}" cy="{ys[peak]:.1f}" r="4" fill="{ACCENT}"/>')
        anchor = "end" if xs[peak] > left + plot_w * 0.8 else "start"
        body.append(f'<text x="{xs[peak] + (-6 if anchor == "end" else 6):.1f}" y="{ys[peak] - 6:.1f}" '
                    f'text-anchor="{anchor}" font-weight="600">{escape(_num(values[peak]))}</text>')
    every = label_every or max(1, math.ceil(n / 8))
    for i in range(0, n, every):
        body.append(f'<text x="{xs[i]:.1f}" y="{base + 18}" text-anchor="middle" fill="{MUTED}">'
                    f'{escape(points[i][0])}</text>')
    return _frame(width, height, title, desc, body)


def bar_chart(bars: Sequence[tuple[str, float]], *, title: str, desc: str, y_label: str, integer: bool = True,
              width: int = 720, height: int = 240, color: str = ACCENT) -> Markup:
    """Vertical bars (label, value), with the value above each bar."""
    if len(bars) > MAX_BARS:
        raise ValueError(f"at most {MAX_BARS} bars per chart")
    left, right, top, bottom = 48, 12, 20, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [max(0.0, float(v)) for _, v in bars]
    ymax, ticks = axis(max(values, default=0.0), integer)
    body = _y_axis(left, top, plot_w, plot_h, ymax, ticks)
    body.append(f'<text x="{left}" y="{top - 6}" fill="{MUTED}">{escape(y_label)}</text>')
    n = max(1, len(bars))
    slot = plot_w / n
    bar_w = max(2.0, slot * 0.72)
    base = top + plot_h
    for i, ((label, _), value) in enumerate(zip(bars, values)):
        x = left + slot * i + (slot - bar_w) / 2
        h = plot_h * value / ymax
        body.append(f'<rect x="{x:.1f}" y="{base - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}" rx="3" fill="{color}"/>')
        if value > 0:
            body.append(f'<text x="{x + bar_w / 2:.1f}" y="{base - h - 4:.1f}" text-anchor="middle" '
                        f'font-weight="600">{escape(_num(value))}</text>')
        body.append(f'<text x="{x + bar_w / 2:.1f}" y="{base + 16}" text-anchor="middle" fill="{MUTED}">'
                    f'{escape(label)}</text>')
    return _frame(width, height, title, desc, body)


def hbar_chart(bars: Sequence[tuple[str, float]], *, title: str, desc: str, total: float | None = None,
               width: int = 720, row_h: int = 30, label_w: int = 220, colors: Sequence[str] | None = None,
               suffix: str = "") -> Markup:
    """Horizontal bars (label, value), longest = full width; with ``total``, each value also as a percentage of it.

    Used for poll results (one bar per option) and CTA funnels (impressions → clicks → submissions).
    """
    if len(bars) > MAX_BARS:
        raise ValueError(f"at most {MAX_BARS} bars per chart")
    top = 6
    height = top * 2 + row_h * max(1, len(bars))
    plot_w = width - label_w - 90
    vmax = max([max(0.0, float(v)) for _, v in bars] + [0.0]) or 1.0
    palette = list(colors or SERIES)
    body: list[str] = []
    for i, (label, raw) in enumerate(bars):
        value = max(0.0, float(raw))
        y = top + row_h * i
        w = plot_w * value / vmax
        shown = _num(value) + suffix
        if total:
            shown += f" ({100.0 * value / total:.0f} %)"
        text = label if len(label) <= 34 else label[:33] + "…"
        body.append(f'<text x="{label_w - 8}" y="{y + row_h / 2 + 4:.1f}" text-anchor="end">{escape(text)}</text>')
        body.append(f'<rect x="{label_w}" y="{y + 5}" width="{plot_w:.1f}" height="{row_h - 10}" rx="3" fill="#f6f8fa"/>')
        body.append(f'<rect x="{label_w}" y="{y + 5}" width="{max(w, 1.5 if value else 0):.1f}" height="{row_h - 10}" '
                    f'rx="3" fill="{palette[i % len(palette)]}"/>')
        body.append(f'<text x="{label_w + plot_w + 6:.1f}" y="{y + row_h / 2 + 4:.1f}" font-weight="600">'
                    f'{escape(shown)}</text>')
    return _frame(width, height, title, desc, body)
