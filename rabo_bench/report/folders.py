"""``rabo-bench report A B ...``: several results folders side by side, from their saved results
alone (nothing is written): per folder, the final-round seed table of :mod:`.seeds` (mean ± 95%
Student-t half-width over seeds), one row per (folder, suite, setting, method)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from rabo_bench.algorithms import display_name
from rabo_bench.report.runs import read_results
from rabo_bench.report.seeds import METRICS, seed_table


def _cell(row: dict, name: str) -> str:
    mean, ci, n = row.get(f"{name}_mean"), row.get(f"{name}_ci95"), row.get(f"{name}_count")
    if mean is None or pd.isna(mean) or not n:
        return "n/a"
    return f"{mean:.4g}" + (" (1 seed)" if n == 1 else f" ± {ci:.2g}")


def compare_folders(folders: list[Path]) -> str:
    """A markdown table of the final metrics of every folder (labelled by its path)."""
    tables = []
    for folder in folders:
        table = seed_table(read_results(folder))
        table.insert(0, "folder", str(folder))
        tables.append(table)
    table = pd.concat(tables, ignore_index=True)
    metrics = [m for m in METRICS if f"{METRICS[m][2]}_mean" in table]
    head = ["folder", "suite", "setting", "method", "seeds", "round"]
    head += [METRICS[m][0] for m in metrics]
    lines = ["| " + " | ".join(h.replace("|", "\\|") for h in head) + " |"]
    lines.append("|" + " --- |" * 4 + " ---: |" * (len(head) - 4))
    for row in table.to_dict("records"):
        cells = [row["folder"], row["suite"], row["setting"] or "-"]
        cells += [display_name(row["algorithm"]), row["seeds"], str(row["round"])]
        cells += [_cell(row, METRICS[m][2]) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
