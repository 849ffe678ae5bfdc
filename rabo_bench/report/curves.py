"""Budget-matched learning curves (DESIGN.md §4), from saved results: test accuracy against
the global round, the counted FLOPs (``flops``) and the communicated bytes (``bytes_up +
bytes_down``), one figure per x-axis, one panel per setting, each algorithm in its own colour
(:mod:`rabo_bench.algorithms.style`), titled by the dataset and network of the runs. A
``<setting>-long`` variant (RABO run for more rounds) is drawn dotted in ``<setting>``'s panel.

Per (setting, algorithm, round): the mean accuracy over the seeds with its Student-t 95% band,
clipped to 0-100% (:func:`rabo_bench.report.seeds.seed_bands`), drawn at x = the mean over the
seeds of the x column at that round. Where an algorithm has one seed, its band is that run's
95% CI over the test set (``accuracy_ci95``: test episodes or binomial), named apart in the
legend. Rows whose x is empty are left out: ``flops`` is empty in results written before it was
counted and for problems whose rounds are not counted (a figure with nothing to draw is not
written). On the log axes (FLOPs, bytes) x = 0, i.e. round 0 before any work, cannot be drawn
and is left out too.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pandas as pd

from rabo_bench.report.claims import LONG
from rabo_bench.report.runs import draw_method, save_panels, setting_panels
from rabo_bench.report.seeds import seed_bands
from rabo_bench.report.titles import setup_title

# x column -> (axis label, file stem, log scale)
X_AXES = {
    "round": ("global round $q$", "curves", False),
    "flops": ("FLOPs since round 0 (counted, FlopCounterMode)", "curves_flops", True),
    "bytes": ("bytes communicated since round 0 (up + down)", "curves_bytes", True),
}
BAND_LABELS = {
    "seeds": "line: mean; shaded: 95% CI over seeds (Student t)",
    "test": "shaded: 95% CI over the test set (one seed)",
}


def _columns(results: pd.DataFrame) -> pd.DataFrame:
    """``results`` with the ``bytes`` column (and an empty ``flops`` in older results)."""
    extra = {"bytes": results["bytes_up"] + results["bytes_down"]}
    if "flops" not in results:
        extra["flops"] = float("nan")
    return results.assign(**extra)


def mean_curves(rows: pd.DataFrame, x: str, y: str = "accuracy", scale: float = 100.0):
    """Per (algorithm, round) over the rows where ``x`` and ``y`` are both given: ``x`` = mean
    of the x column over the seeds, ``mean`` of ``scale * y``, its band from ``low`` to
    ``high`` in [0, scale], ``band`` (which band: "seeds", "test" for one seed with the
    ``<y>_ci95`` column, None) and the number of ``seeds``."""
    rows = rows.dropna(subset=[x, y])
    keys = [rows["algorithm"], rows["round"]]
    curves = seed_bands(scale * rows[y], keys, log=False, bounds=(0.0, scale))
    curves = curves.rename(columns={"centre": "mean"})
    groups = rows.groupby(keys, sort=False)
    curves["x"] = groups[x].mean()
    curves["band"] = np.where(curves["low"].notna(), "seeds", None)
    if f"{y}_ci95" in rows:
        half = scale * groups[f"{y}_ci95"].first()
        one = (curves["seeds"] == 1) & half.notna()
        curves.loc[one, "low"] = (curves["mean"] - half).clip(lower=0.0)
        curves.loc[one, "high"] = (curves["mean"] + half).clip(upper=scale)
        curves.loc[one, "band"] = "test"
    return curves.reset_index().sort_values("round", kind="stable")


def draw_curves(ax, curves: pd.DataFrame, variant: str = "") -> set[str]:
    """One line per algorithm in its style with its band (dotted for a ``variant``); the kinds
    of band drawn."""
    kinds = set()
    for algorithm, curve in curves.groupby("algorithm", sort=False):
        draw_method(ax, curve["x"], curve["mean"], curve["low"], curve["high"], algorithm, variant)
        kinds |= set(curve["band"].dropna())
    return kinds


def panels_of(settings: list[str]) -> dict[str, list[str]]:
    """Panel -> the settings drawn in it: a ``<setting>-long`` variant (methods run for more
    rounds, :data:`rabo_bench.report.claims.LONG`) joins ``<setting>``'s panel where that
    setting is present, so that its curves lie over the others on the same axes. A
    ``<setting>-matched`` variant keeps a panel of its own: it runs RABO beside its baselines."""
    panels: dict[str, list[str]] = {}
    for setting in settings:
        base = str(setting).removesuffix(LONG)
        panels.setdefault(base if base in settings else setting, []).append(setting)
    return panels


def plot_budget_curves(results: pd.DataFrame, x: str, path: Path, title: str) -> list[Path]:
    """Accuracy against ``x`` (a key of X_AXES), one panel per setting, the figure titled
    ``title``, written to ``path`` and a PDF beside it; returns both, or nothing (and writes
    nothing) when no row has that x."""
    label, _, log = X_AXES[x]
    results = _columns(results)
    if results[x].isna().all():
        return []
    panels_settings = panels_of(list(dict.fromkeys(results["setting"])))
    settings = list(panels_settings)
    fig, panels = setting_panels(settings)
    kinds = set()
    for ax, panel in zip(panels, settings, strict=True):
        if log:
            ax.set_xscale("log")
        for setting in panels_settings[panel]:
            curves = mean_curves(results[results["setting"] == setting], x)
            if log:
                curves = curves[curves["x"] > 0]
            variant = f"{int(results.loc[results['setting'] == setting, 'round'].max())} rounds"
            kinds |= draw_curves(ax, curves, variant if setting != panel else "")
    for kind in sorted(kinds):  # an empty patch names each kind of band in the legend
        panels[0].fill_between([], [], color="0.5", alpha=0.3, lw=0, label=BAND_LABELS[kind])
    return save_panels(fig, panels, settings, "test accuracy (%)", path, title, xlabel=label)


def write_budget_curves(folder: Path, results: pd.DataFrame) -> list[Path]:
    """``curves.png`` (rounds), ``curves_flops.png``, ``curves_bytes.png`` in ``folder``, each
    with its PDF (see :func:`plot_budget_curves`); returns the files written."""
    title = setup_title(folder, results)
    written = []
    for x, (_, stem, _) in X_AXES.items():
        written += plot_budget_curves(results, x, folder / f"{stem}.png", title)
    return written
