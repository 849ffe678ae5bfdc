"""Methods side by side at equal budgets (issue 19): where each one stands once it has made a
given number of oracle calls, or communicated a given number of bytes, from saved results.

Per run, the value at budget B is its metric at the last evaluated round whose cumulative cost
(``oracle_calls``, or ``bytes_up + bytes_down``; all clients, since round 0) is at most B: the
run after spending at most B. Budgets per setting and cost: B_max, the smallest of the
algorithms' final costs (means over seeds), so that every algorithm is observed up to it, and
B_max / 4, B_max / 16, B_max / 64. Over seeds: for a metric shown on a log axis
(``grad_norm_sq``, ``inner_error``) the geometric mean and the Student-t 95% interval of the
mean of the logs, mapped back (an interval of the geometric mean); otherwise the mean with its
t interval. Diverged runs are left out, as in the other tables.

Writes ``budgets.md`` (one table per setting and cost) and ``budget_curves.png`` (the metric
against both costs, log-log, one line per algorithm: the seeds' geometric mean at each round,
drawn at the seeds' mean cost), with its PDF.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from rabo_bench.algorithms import display_name
from rabo_bench.report.runs import draw_method, save_panels, setting_panels
from rabo_bench.report.seeds import AXIS_LABELS, LOG_SCALE, ci95, diverged, seed_bands
from rabo_bench.report.titles import setup_title

COSTS = {"oracle_calls": "oracle calls", "bytes": "bytes communicated (up + down)"}
FRACTIONS = (1 / 64, 1 / 16, 1 / 4, 1.0)


def _with_bytes(results: pd.DataFrame) -> pd.DataFrame:
    ok = results[~diverged(results)]
    return ok.assign(bytes=ok["bytes_up"] + ok["bytes_down"])


def budgets(rows: pd.DataFrame, cost: str) -> list[float]:
    """The budgets of one setting's rows for ``cost``: FRACTIONS of the smallest final cost
    over the algorithms (each the mean over its seeds)."""
    last = rows.loc[rows.groupby("run_id")["round"].idxmax()]
    smallest = float(last.groupby("algorithm")[cost].mean().min())
    return [f * smallest for f in FRACTIONS]


def at_budget(rows: pd.DataFrame, metric: str, cost: str, budget: float) -> pd.Series:
    """Per run: ``metric`` at its last evaluated round whose ``cost`` is at most ``budget``."""
    within = rows[(rows[cost] <= budget) & rows[metric].notna()]
    last = within.loc[within.groupby("run_id")["round"].idxmax()]
    return last.set_index("run_id")[metric].astype(float)


def summarise(values: pd.Series, log: bool) -> tuple[float, float, float, int]:
    """(centre, low, high, seeds) of one algorithm's values over its seeds (module docstring);
    low = high = NaN with one seed."""
    n = len(values)
    data = np.log(values) if log else values
    centre, half = float(data.mean()), float(ci95(data.std(ddof=1), n)) if n > 1 else np.nan
    low, high = centre - half, centre + half
    if log:
        return float(np.exp(centre)), float(np.exp(low)), float(np.exp(high)), n
    return centre, low, high, n


def _cell(centre: float, low: float, high: float, n: int) -> str:
    if n < 2:
        return f"{centre:.4g} (1 seed)"
    return f"{centre:.4g} [{low:.3g}, {high:.3g}]"


def budget_markdown(results: pd.DataFrame, metric: str) -> str:
    """The tables of ``budgets.md``: per setting and cost, one row per algorithm, one column
    per budget."""
    rows_all = _with_bytes(results)
    log = metric in LOG_SCALE and bool((rows_all[metric].dropna() > 0).all())
    lines = []
    for setting, rows in rows_all.groupby("setting", sort=False, dropna=False):
        for cost, label in COSTS.items():
            grid = budgets(rows, cost)
            title = label + (f", setting {setting}" if isinstance(setting, str) and setting else "")
            lines += [f"## At equal {title}", ""]
            head = " | ".join(f"{b:.3g}" for b in grid)
            lines += [f"| algorithm \\ budget | {head} |", "| --- |" + " ---: |" * len(grid)]
            for algorithm, runs in rows.groupby("algorithm", sort=False):
                cells = []
                for budget in grid:
                    values = at_budget(runs, metric, cost, budget)
                    cells.append(_cell(*summarise(values, log)))
                lines.append(f"| {display_name(algorithm)} | " + " | ".join(cells) + " |")
            lines.append("")
    return "\n".join(lines)


def plot_budget_curves(results: pd.DataFrame, metric: str, path: Path, title: str) -> list[Path]:
    """``metric`` against each cost (log-log), one panel per cost; writes ``path`` and a PDF."""
    rows = _with_bytes(results).dropna(subset=[metric])
    panels_of = list(COSTS)
    fig, panels = setting_panels(panels_of)
    for ax, cost in zip(panels, panels_of, strict=True):
        keys = [rows["algorithm"], rows["round"]]
        bands = seed_bands(rows[metric].astype(float), keys, log=True)
        bands["x"] = rows.groupby(keys, sort=False)[cost].mean()
        for algorithm, curve in bands.groupby(level=0, sort=False):
            curve = curve[curve["x"] > 0]
            draw_method(ax, curve["x"], curve["centre"], curve["low"], curve["high"], algorithm)
        ax.set_xscale("log")
        ax.set_yscale("log")
    labels = [f"against {COSTS[c]}" for c in panels_of]
    written = save_panels(fig, panels, labels, AXIS_LABELS[metric], path, title, xlabel="cost")
    return written


def write_budget_report(folder: Path, results: pd.DataFrame) -> list[Path]:
    """``budgets.md`` and ``budget_curves.png`` (+ PDF) of ||grad F||^2 in ``folder``; returns
    the files written."""
    metric = "grad_norm_sq"
    text = (
        "# Methods at equal budgets\n\n"
        "||grad F(x^q)||^2 of each method once it has spent a budget of oracle calls or "
        "communicated bytes (all clients, since round 0): per run the value at its last "
        "evaluated round within the budget; over seeds the geometric mean and the 95% "
        "interval of the geometric mean (Student t on the logs). Budgets: 1/64, 1/16, 1/4 "
        "and 1 of the smallest final cost over the methods, so that every method is observed "
        "up to each (`rabo_bench/report/budgets.py`).\n\n"
        f"{budget_markdown(results, metric)}"
    )
    written = [folder / "budgets.md"]
    written[0].write_text(text)
    title = setup_title(folder, results)
    return written + plot_budget_curves(results, metric, folder / "budget_curves.png", title)
