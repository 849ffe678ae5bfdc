"""Budget-matched learning curves (DESIGN.md §4), from saved results: test accuracy against
the global round, the counted FLOPs (``flops``) and the communicated bytes (``bytes_up +
bytes_down``), one figure per x-axis, one panel per setting, one colour per algorithm.

Per (setting, algorithm, round): the mean accuracy over the seeds with its Student-t 95% band
(:func:`rabo_bench.report.seeds.ci95`; no band with one seed), drawn at x = the mean over the
seeds of the x column at that round. Rows whose x is empty are left out: ``flops`` is empty in
results written before it was counted and for problems whose rounds are not counted (a figure
with nothing to draw is not written). On the log axes (FLOPs, bytes) x = 0, i.e. round 0 before
any work, cannot be drawn and is left out too.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import pandas as pd

from rabo_bench.algorithms import display_name
from rabo_bench.report.runs import PAPER_METHODS, algorithm_colours, save_panels, setting_panels
from rabo_bench.report.seeds import ci95

# x column -> (axis label, file stem, log scale)
X_AXES = {
    "round": ("global round q", "curves", False),
    "flops": ("FLOPs since round 0 (counted, FlopCounterMode)", "curves_flops", True),
    "bytes": ("bytes communicated since round 0 (up + down)", "curves_bytes", True),
}
BAND_LABEL = "shaded: 95% CI over seeds"


def _columns(results: pd.DataFrame) -> pd.DataFrame:
    """``results`` with the ``bytes`` column (and an empty ``flops`` in older results)."""
    extra = {"bytes": results["bytes_up"] + results["bytes_down"]}
    if "flops" not in results:
        extra["flops"] = float("nan")
    return results.assign(**extra)


def mean_curves(rows: pd.DataFrame, x: str, y: str = "accuracy", scale: float = 100.0):
    """Per (algorithm, round) over the rows where ``x`` and ``y`` are both given: ``x`` = mean
    of the x column over the seeds, ``mean`` and ``ci95`` of ``scale * y``, ``seeds``."""
    rows = rows.dropna(subset=[x, y])
    groups = rows.groupby(["algorithm", "round"], sort=False)
    values = groups[y]
    curves = pd.DataFrame(
        {
            "x": groups[x].mean(),
            "mean": scale * values.mean(),
            "ci95": scale * ci95(values.std(), values.count()),
            "seeds": values.count(),
        }
    )
    return curves.reset_index().sort_values("round", kind="stable")


def draw_curves(ax, curves: pd.DataFrame, colours: dict) -> bool:
    """One line per algorithm (its colour from ``colours``) with its band where it has several
    seeds; True when some band was drawn."""
    banded = False
    for algorithm, curve in curves.groupby("algorithm", sort=False):
        colour = colours.get(algorithm, "black")  # an algorithm no longer registered
        style = "-" if algorithm in PAPER_METHODS else "--"
        ax.plot(curve["x"], curve["mean"], style, color=colour, label=display_name(algorithm))
        if curve["ci95"].notna().any():
            band = curve["ci95"].fillna(0.0)
            low, high = curve["mean"] - band, curve["mean"] + band
            ax.fill_between(curve["x"], low, high, color=colour, alpha=0.15, lw=0)
            banded = True
    return banded


def plot_budget_curves(results: pd.DataFrame, x: str, path: Path, title: str = "") -> bool:
    """Accuracy against ``x`` (a key of X_AXES), one panel per setting (titled by the setting,
    or ``title`` where it has none), written to ``path`` and a PDF beside it. False, and
    nothing written, when no row has that x."""
    label, _, log = X_AXES[x]
    results = _columns(results)
    if results[x].isna().all():
        return False
    settings = list(dict.fromkeys(results["setting"]))
    fig, panels = setting_panels(settings)
    colours = algorithm_colours()
    banded = False
    for ax, setting in zip(panels, settings, strict=True):
        curves = mean_curves(results[results["setting"] == setting], x)
        if log:
            ax.set_xscale("log")
            curves = curves[curves["x"] > 0]
        banded |= draw_curves(ax, curves, colours)
    if banded:  # an empty patch names the bands in the legend
        panels[0].fill_between([], [], color="0.5", alpha=0.3, lw=0, label=BAND_LABEL)
    titles = [setting or title for setting in settings]
    save_panels(fig, panels, titles, "test accuracy (%)", path, xlabel=label, pdf=True)
    return True


def write_budget_curves(folder: Path, results: pd.DataFrame, title: str = "") -> list[Path]:
    """``curves.png`` (rounds), ``curves_flops.png``, ``curves_bytes.png`` in ``folder``, each
    with its PDF (see :func:`plot_budget_curves`); returns the files written."""
    written = []
    for x, (_, stem, _) in X_AXES.items():
        path = folder / f"{stem}.png"
        if plot_budget_curves(results, x, path, title):
            written += [path, path.with_suffix(".pdf")]
    return written
