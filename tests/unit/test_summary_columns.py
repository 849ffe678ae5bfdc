"""The summary table shows only the columns that say something for the results at hand."""

from __future__ import annotations

from rabo_bench.report.summary import HEADERS, to_markdown, to_text


def _row(setting: str, accuracy: str, grad: str) -> list[str]:
    cells = dict.fromkeys(HEADERS, "1")
    cells.update({"setting": setting, "algorithm": "rabo", "final accuracy": accuracy})
    cells.update({"final ||grad F||^2": grad})
    return [cells[h] for h in HEADERS]


def test_columns_that_are_empty_or_na_for_every_row_are_left_out():
    synthetic = [_row("", "n/a", "0.5"), _row("", "n/a", "n/a")]
    head = to_text(synthetic).splitlines()[0].split("  ")
    assert head[0] == "algorithm" and "setting" not in to_text(synthetic)
    assert "final accuracy" not in head and "final ||grad F||^2" in to_text(synthetic)
    network = [_row("5w1s", "61.2", "n/a")]
    markdown = to_markdown(network).splitlines()
    assert markdown[0].startswith("| setting | algorithm |")
    assert "final \\|\\|grad" not in markdown[0]
    assert markdown[1].count("---") == len(markdown[0].split(" | "))
    assert markdown[2].startswith("| 5w1s | rabo |")
