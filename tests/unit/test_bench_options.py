"""The benchmarks' shared command line and result helpers (benchmarks/harness.py), without
running a benchmark: options and their errors, the ramp figure, one metric's row written."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from benchmarks.harness import (
    CpuWindow,
    add_common_options,
    largest_held,
    ramp_figure,
    ramp_steps,
    write_metric,
)


def parser(**options: object) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench", exit_on_error=False)
    add_common_options(p, quick="short run", write="write the row", **options)  # type: ignore[arg-type]
    return p


def test_common_options_defaults() -> None:
    args = parser(steps="comma-separated N", attempts=True).parse_args([])
    assert (args.quick, args.write, args.steps, args.attempts, args.wait_quiet, args.nice) == (
        False, False, None, 2, 0.0, 0)


def test_common_options_parsed() -> None:
    args = parser(steps="N", attempts=True).parse_args(
        ["--quick", "--write", "--steps", "30,10,30", "--attempts", "3", "--wait-quiet", "12.5", "--nice", "-10"])
    assert (args.quick, args.write, args.steps, args.attempts, args.wait_quiet, args.nice) == (
        True, True, [10, 30], 3, 12.5, -10)


def test_options_switched_off_are_refused() -> None:
    p = parser(wait_quiet=False, nice=False)
    for extra in (["--steps", "10"], ["--attempts", "2"], ["--wait-quiet", "5"], ["--nice", "1"]):
        with pytest.raises(SystemExit):
            p.parse_args(extra)


@pytest.mark.parametrize("text", ["", "10,,30", "10,x", "0,10", "-5", "1.5"])
def test_bad_steps_are_a_usage_error(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        ramp_steps(text)


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_bad_attempts_are_a_usage_error(value: str) -> None:
    with pytest.raises(argparse.ArgumentError):
        parser(attempts=True).parse_args(["--attempts", value])


def test_largest_held_counts_the_last_attempt_and_stops_at_the_first_failure() -> None:
    assert largest_held([]) == 0
    assert largest_held([(10, False)]) == 0
    assert largest_held([(10, True), (30, False), (30, True), (50, True)]) == 50
    assert largest_held([(10, True), (30, False), (30, False), (50, True)]) == 10
    assert ramp_figure(50, 50) == "≥ 50"
    assert ramp_figure(30, 50) == "30"


def test_write_metric_replaces_its_row_and_note(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n| metric | ours | peer | ratio | target | date | command |\n"
                       "| --- | --- | --- | --- | --- | --- | --- |\n"
                       "| other_metric | 1 | 2 | 0.5 | x | 2026-01-01 | `c` |\n"
                       "| m | old | old | old | old | 2026-01-01 | `old` |\n\n## Notes\n\n- **m**: old note\n")
    write_metric("m", ours="3 s", peer="6 s", ratio="0.50×", target="≤ 5 s", module="benchmarks.bench_x",
                 argv=["--quick", "--write"], note="new note", path=results)
    text = results.read_text()
    assert "| other_metric | 1 | 2 | 0.5 | x | 2026-01-01 | `c` |" in text
    row = next(line for line in text.splitlines() if line.startswith("| m |"))
    assert row.split(" | ")[1:5] == ["3 s", "6 s", "0.50×", "≤ 5 s"]
    assert row.endswith("`.venv/bin/python -m benchmarks.bench_x --quick` |")
    assert "- **m**: new note" in text and "old note" not in text
    assert text.count("| m |") == 1


def test_cpu_window_in_cores() -> None:
    window = CpuWindow({"server": (1, False), "load": (2, True)})
    assert window.cores == {} and window.starved == {}  # not measured yet
    window.cpu, window.runq_wait, window.wall = {"server": 3.0, "load": 0.5}, {"server": 0.5, "load": 0.0}, 2.0
    assert window.cores == {"server": 1.5, "load": 0.25}
    assert window.starved == {"server": 0.25, "load": 0.0}
    window.wall = 0.0
    assert window.cores == {"server": 0.0, "load": 0.0}
