"""The docs table of `tools/app_browser.py timings`: ranges and medians per run, bold where a target is missed."""

from __future__ import annotations

from tools.app_browser import TARGETS, timings_table


def _round(first: float, switch: float, explain: float = 0.6, rerun: float = 0.5) -> dict:
    return {
        "first render s": first,
        "switch user s": switch,
        "open explanation with IG s": explain,
        "same-content rerun s": rerun,
    }


def test_each_figure_gets_a_row_and_misses_are_bold():
    runs = [[_round(5.15, 0.70), _round(2.0, 0.86)], [_round(1.9, 0.85), _round(1.8, 0.90, rerun=9.0)]]
    lines = timings_table(runs).splitlines()
    assert lines[0] == "| figure (target) | run 1 | run 2 | all 4 rounds |" and len(lines) == 2 + len(TARGETS)
    first, switch, explain, rerun = lines[2:]
    assert "1.80-**5.15** s" in first and "2.00-**5.15** s" in first  # 5.15 s is over 5 s, in run 1 and overall
    assert "0.70-0.86 s, median 0.78" in switch and "0.85-0.90 s, median **0.88**" in switch  # median over 0.8 s
    assert "**" not in explain and "**" not in rerun  # within 2 s; the floor has no target
