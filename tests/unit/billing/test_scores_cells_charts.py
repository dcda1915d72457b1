"""Engagement formula, CSV cells (injection), SVG charts: pure functions of billing/."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import xml.etree.ElementTree as ET

import pytest

from billing import charts
from billing.engagement import engagement_score
from billing.exports import Column, Counter, csv_cell, csv_stream, neutralise


def test_engagement_formula_weights_and_caps() -> None:
    base = dict(reference_s=3600, polls=0, questions=0, chat=0, cta_clicks=0)
    assert engagement_score(attention_s=0, **base) == 0
    assert engagement_score(attention_s=3600, **base) == 60
    assert engagement_score(attention_s=1800, **base) == 30
    assert engagement_score(attention_s=99999, **base) == 60  # share capped at 1
    full = dict(reference_s=3600, polls=3, questions=1, chat=5, cta_clicks=1)
    assert engagement_score(attention_s=3600, **full) == 100
    many = dict(reference_s=3600, polls=50, questions=9, chat=400, cta_clicks=7)
    assert engagement_score(attention_s=0, **many) == 40  # taking part alone: at most 40
    assert engagement_score(attention_s=0, reference_s=3600, polls=1, questions=0, chat=2, cta_clicks=0) == 7
    # 60 × 45/3600 = 0.75 → 1 (half up); a reference under a minute counts as a minute
    assert engagement_score(attention_s=45, **base) == 1
    assert engagement_score(attention_s=30, reference_s=10, polls=0, questions=0, chat=0, cta_clicks=0) == 30
    with pytest.raises(ValueError):
        engagement_score(attention_s=-1, **base)
    with pytest.raises(ValueError):
        engagement_score(attention_s=1, reference_s=60, polls=-1, questions=0, chat=0, cta_clicks=0)


@pytest.mark.parametrize("raw, shown", [
    ("=HYPERLINK(\"http://evil\")", "'=HYPERLINK(\"http://evil\")"),
    ("+33 6 12 34 56 78", "'+33 6 12 34 56 78"),
    ("-2+3", "'-2+3"),
    ("@SUM(A1)", "'@SUM(A1)"),
    ("\t=1+1", "'\t=1+1"),
    ("\r=1+1", "'\r=1+1"),
    ("  =1+1", "'  =1+1"),
    ("Jeanne", "Jeanne"),
    ("a=b", "a=b"),
    ("", ""),
])
def test_cells_that_a_spreadsheet_would_run_are_neutralised(raw: str, shown: str) -> None:
    assert neutralise(raw) == shown
    assert csv_cell(raw, "text") == shown


def test_numbers_and_dates_are_typed_not_neutralised() -> None:
    assert csv_cell(-12.5, "number") == -12.5 and csv_cell(3, "number") == 3  # the writer prints numbers
    assert csv_cell(None, "text") is None and csv_cell(7, "text") == "7"
    assert csv_cell(dt.datetime(2026, 7, 1, 8, 30, tzinfo=dt.UTC), "datetime") == "2026-07-01T10:30:00+02:00"
    assert csv_cell(dt.datetime(2026, 1, 5, 8, 30, tzinfo=dt.UTC), "datetime") == "2026-01-05T09:30:00+01:00"
    assert csv_cell("2026-07-01T10:30:00+02:00", "datetime") == "2026-07-01T10:30:00+02:00"  # formatted by the query


async def test_csv_stream_is_rfc4180_with_bom_and_one_chunk_per_batch() -> None:
    cols = [Column("name", "Name"), Column("n", "N", "number"), Column("at", "At", "datetime")]
    moment = dt.datetime(2026, 7, 1, 8, 30, tzinfo=dt.UTC)

    async def batches():  # type: ignore[no-untyped-def]
        yield [("=cmd", 1, moment), ('Quote "me", please', 2.5, None)]
        yield [("line\nbreak", 0.0, "2026-07-01T10:30:00+02:00"), (" -1", None, None)]

    counter = Counter()
    chunks = [c async for c in csv_stream(cols, batches(), lambda r: list(r), counter)]
    assert len(chunks) == 3 and counter.rows == 4
    text = b"".join(chunks).decode("utf-8")
    assert text.startswith("\ufeffName,N,At\r\n")
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    assert rows == [["Name", "N", "At"], ["'=cmd", "1", "2026-07-01T10:30:00+02:00"], ['Quote "me", please', "2.5", ""],
                    ["line\nbreak", "0.0", "2026-07-01T10:30:00+02:00"], ["' -1", "", ""]]


def _svg(markup: str) -> ET.Element:
    return ET.fromstring(str(markup))


def test_charts_are_valid_accessible_svg_with_escaped_labels() -> None:
    line = charts.line_chart([("10:00", 3), ("10:01", 12), ("<b>", 7)], title="Viewers & co", desc="Peak 12",
                             y_label="viewers")
    root = _svg(line)
    ns = "{http://www.w3.org/2000/svg}"
    assert root.get("role") == "img"
    title_id, desc_id = root.get("aria-labelledby", "").split()
    assert root.find(f"{ns}title").get("id") == title_id and root.find(f"{ns}title").text == "Viewers & co"
    assert root.find(f"{ns}desc").get("id") == desc_id
    assert "&lt;b&gt;" in str(line) and "<b>" not in str(line).replace("&lt;b&gt;", "")
    assert "12" in [t.text for t in root.iter(f"{ns}text")]  # the peak is labelled
    bars = _svg(charts.bar_chart([("0–10 %", 0), ("10–20 %", 5)], title="t", desc="d", y_label="n"))
    rects = [r for r in bars.iter(f"{ns}rect")]
    assert len(rects) == 2 and float(rects[0].get("height")) == 0 and float(rects[1].get("height")) > 0
    funnel = str(charts.hbar_chart([("Saw it", 200), ("Clicked", 50)], title="f", desc="d", total=200))
    assert "50 (25 %)" in funnel and "200 (100 %)" in funnel
    empty = _svg(charts.line_chart([], title="t", desc="d", y_label="n"))
    assert empty.get("role") == "img"
    ids = re.findall(r'id="(chart\d+)-t"', str(line) + funnel)
    assert len(ids) == len(set(ids))  # unique ids per chart on a page


def test_chart_axes_use_round_steps_and_limits_are_enforced() -> None:
    assert charts.axis(0) == (4.0, 4)
    assert charts.axis(7) == (8.0, 4)
    assert charts.axis(23) == (25.0, 5)
    assert charts.axis(100) == (100.0, 4)
    assert charts.axis(0.3, integer=False) == (pytest.approx(0.3), 3)
    assert charts.axis(255) == (300.0, 3)
    with pytest.raises(ValueError):
        charts.bar_chart([("x", 1)] * (charts.MAX_BARS + 1), title="t", desc="d", y_label="n")
    with pytest.raises(ValueError):
        charts.line_chart([("x", 1)] * (charts.MAX_POINTS + 1), title="t", desc="d", y_label="n")
