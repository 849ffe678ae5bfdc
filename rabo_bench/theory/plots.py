"""Figures of the rate measurement (SPEC §4, "What a numerical check should show").

Figures are built with the object-oriented API (``matplotlib.figure.Figure``, rendered by Agg),
never through pyplot, so importing this module changes no global backend state. Each figure is
saved as ``<stem>.png`` (300 dpi) and ``<stem>.pdf``; every function returns the paths written.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import NullFormatter, ScalarFormatter

from rabo_bench.algorithms import display_name
from rabo_bench.algorithms.style import file_metadata, method_style
from rabo_bench.theory.fit import (
    DESIGN_CARD,
    FACTOR_COLUMNS,
    PREDICTED,
    RESPONSE,
    distinct_runs,
)
from rabo_bench.theory.pareto import pareto_flags

FACTOR_LABELS = {
    "Q": "global rounds $Q$ (count)",
    "coverage": "minimum coverage $C_x^*$ (clients)",
    "T": "local inner steps $T$ (count)",
}
FACTOR_SYMBOLS = {"Q": "$Q$", "coverage": "$C_x^*$", "T": "$T$"}
RESPONSE_LABEL = r"$\frac{1}{Q}\sum_{q<Q}\|\nabla F(x^q)\|^2$ (squared gradient norm)"
SEEDS = "geometric mean over seeds"
SPREAD = "shaded / whiskers: min-max over seeds"
MARKERS = "osD^vP*Xh<>"  # of the estimators in the Pareto figures
# rel_error this small is round-off; it is drawn at this floor so the log axis can show it
ERROR_FLOOR = 1e-16


def _style(names: Sequence[str]) -> dict[str, tuple[str, str]]:
    """A fixed (colour, marker) per estimator name, in order of first appearance."""
    unique = list(dict.fromkeys(names))
    return {n: (f"C{k % 10}", MARKERS[k % len(MARKERS)]) for k, n in enumerate(unique)}


def _save(fig: Figure, out_dir: Path, stem: str) -> list[Path]:
    """``<stem>.png`` and ``<stem>.pdf``, cut to what is drawn, legends beside a panel included."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.pdf"]
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    for path in paths:
        fig.savefig(
            path,
            dpi=300,
            bbox_inches="tight",
            bbox_extra_artists=legends,
            metadata=file_metadata(path.suffix),
        )
    return paths


def _over_seeds(runs: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per level of ``column``: the geometric mean (``centre``), the smallest (``low``) and the
    largest (``high``) response over the seeds. The fit is least squares in logs, so the
    geometric mean is what it fits: with as many seeds at every level, the fitted line is the
    least-squares line through these centres."""
    groups = runs.groupby(column)[RESPONSE]
    centre = np.exp(np.log(runs[RESPONSE]).groupby(runs[column]).mean())
    return pd.DataFrame({"centre": centre, "low": groups.min(), "high": groups.max()})


def _centre(runs: pd.DataFrame, column: str) -> tuple[float, float]:
    """The geometric centre of the runs, through which a least-squares line in logs passes."""
    logs = np.log(runs[[column, RESPONSE]].to_numpy(dtype=float)).mean(axis=0)
    return float(np.exp(logs[0])), float(np.exp(logs[1]))


def _legend_beside(ax, handles: list, labels: list[str]) -> None:
    """The legend right of the panel, outside the layout: the panel keeps its size and the saved
    page (``bbox_inches="tight"``) widens to the legend."""
    legend = ax.legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    legend.set_in_layout(False)


def _log_ticks(ax, levels: np.ndarray) -> None:
    ax.set_xticks(levels)
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())


def _fit_row(fit_rows: pd.DataFrame, algorithm: str, factor: str) -> pd.Series | None:
    rows = fit_rows[(fit_rows["algorithm"] == algorithm) & (fit_rows["factor"] == factor)]
    if rows.empty or not np.isfinite(rows["exponent"].iloc[0]):
        return None
    return rows.iloc[0]


def _sweep_runs(rates: pd.DataFrame, factor: str) -> pd.DataFrame:
    """The runs of one sweep; for the coverage sweep also, for each algorithm with a single C_x*
    over all its runs and none in that sweep (a full-model method: FedMBO, C_x* = M), its runs
    at the sweep's Q and T (the base point, taken from the other sweeps)."""
    sweep = rates[rates["sweep"] == factor]
    if factor == "coverage":
        single = rates.groupby("algorithm", sort=False)["cx_star"].nunique() == 1
        absent = set(single.index[single]) - set(sweep["algorithm"])
        held = sweep[["Q", "T"]].drop_duplicates()
        extra = rates[rates["algorithm"].isin(absent)].merge(held, on=["Q", "T"])
        sweep = pd.concat([sweep, extra.assign(sweep=factor)], ignore_index=True)
    return distinct_runs(sweep)


def plot_factor(
    rates: pd.DataFrame, factor: str, fit_rows: pd.DataFrame, out_dir: Path
) -> list[Path]:
    """avg ||grad F||^2 against one factor on its own sweep, log-log, each algorithm in its colour.

    The runs are those the fit uses (positive responses of the sweep). Markers: the geometric
    mean over the seeds at each level; shaded: the smallest to the largest seed (whiskers where
    an algorithm has one level, e.g. FedMBO at C_x* = 10 on the coverage plot). Every line goes
    through the geometric centre of the algorithm's runs, where the least-squares line in logs
    passes. Solid: the fitted power law from ``fit_rows`` (``per_sweep_table`` rows); hatched:
    the lines with the ends of its slope's CI (slope uncertainty only, not the intercept's).
    Dashed: the theory's slope (SPEC Corollary 1: -1/2, 0 for T); dotted: the design card's
    slope where it differs (T: -1/2).
    """
    column = FACTOR_COLUMNS[factor]
    sweep = _sweep_runs(rates, factor)
    sweep = sweep[np.isfinite(sweep[RESPONSE]) & (sweep[RESPONSE] > 0)]
    fig = Figure(figsize=(5.5, 4.0))
    ax = fig.add_subplot()
    fitted = False
    for algorithm, runs in sweep.groupby("algorithm", sort=False):
        colour, marker, _ = method_style(algorithm)
        name = display_name(algorithm)
        levels = _over_seeds(runs, column)
        x, centre = levels.index.to_numpy(dtype=float), levels["centre"].to_numpy()
        if len(x) == 1:
            whiskers = [centre - levels["low"], levels["high"] - centre]
            label = f"{name}: {SEEDS}"
            ax.errorbar(x, centre, whiskers, fmt=marker, color=colour, capsize=3, label=label)
            continue
        ax.fill_between(x, levels["low"], levels["high"], color=colour, alpha=0.15, lw=0)
        ax.plot(x, centre, marker, color=colour, label=f"{name}: {SEEDS}")
        xs = np.geomspace(x.min(), x.max(), 50)
        centre_x, centre_y = _centre(runs, column)
        ax.plot(xs, centre_y * (xs / centre_x) ** PREDICTED[factor], "--", color=colour, lw=1)
        if DESIGN_CARD[factor] != PREDICTED[factor]:
            design = centre_y * (xs / centre_x) ** DESIGN_CARD[factor]
            ax.plot(xs, design, ":", color=colour, lw=1)
        fit = _fit_row(fit_rows, algorithm, factor)
        if fit is None:
            continue
        fitted = True
        ends = [centre_y * (xs / centre_x) ** fit[k] for k in ("ci_low", "ci_high")]
        ax.fill_between(xs, np.minimum(*ends), np.maximum(*ends), facecolor="none",
                        edgecolor=colour, hatch="////", lw=0, alpha=0.6)  # fmt: skip
        ci = f"[{fit['ci_low']:+.2f}, {fit['ci_high']:+.2f}]"
        label = f"{name} fit: slope {fit['exponent']:+.2f} {ci}"
        ax.plot(xs, centre_y * (xs / centre_x) ** fit["exponent"], "-", color=colour, label=label)
    handles, labels = ax.get_legend_handles_labels()
    handles.append(Patch(color="grey", alpha=0.3, lw=0))
    labels.append(SPREAD)
    if fitted:
        handles.append(Patch(facecolor="none", edgecolor="grey", hatch="////", lw=0))
        labels.append("hatched: slopes at the ends of the fit's 95% CI")
    handles.append(Line2D([], [], color="grey", ls="--", lw=1))
    labels.append(f"theory slope {Fraction(PREDICTED[factor])}")
    if DESIGN_CARD[factor] != PREDICTED[factor]:
        handles.append(Line2D([], [], color="grey", ls=":", lw=1))
        labels.append(f"design card slope {Fraction(DESIGN_CARD[factor])}")
    ax.set(xscale="log", yscale="log", xlabel=FACTOR_LABELS[factor], ylabel=RESPONSE_LABEL)
    _log_ticks(ax, np.sort(sweep[column].unique().astype(float)))
    ax.set_title(f"Rate in {FACTOR_SYMBOLS[factor]} (others at the base point)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    _legend_beside(ax, handles, labels)
    fig.tight_layout()
    return _save(fig, out_dir, f"rate_{factor}")


def plot_coverage_bars(rates: pd.DataFrame, out_dir: Path) -> list[Path]:
    """avg ||grad F||^2 per C_x* on the coverage sweep, like the paper's Fig. 4 (right).

    Bars: the geometric mean over the seeds for each algorithm whose C_x* varies (RABO, RAFBO),
    as the markers of the rate plot; whiskers: the smallest to the largest seed. An algorithm
    with a single C_x* (FedMBO, C_x* = 10, at the base point) is a dashed horizontal reference
    with the same band shaded. Linear y axis: bar heights compare.
    """
    sweep = _sweep_runs(rates, "coverage")
    sweep = sweep[np.isfinite(sweep[RESPONSE]) & (sweep[RESPONSE] > 0)]
    spread = sweep.groupby("algorithm", sort=False)["cx_star"].nunique()
    bars, references = list(spread.index[spread > 1]), list(spread.index[spread == 1])
    levels = np.sort(sweep.loc[sweep["algorithm"].isin(bars), "cx_star"].unique())
    fig = Figure(figsize=(5.5, 4.0))
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(bars))
    for k, algorithm in enumerate(bars):
        seeds = _over_seeds(sweep[sweep["algorithm"] == algorithm], "cx_star").reindex(levels)
        centre = seeds["centre"].to_numpy()
        whiskers = [centre - seeds["low"].to_numpy(), seeds["high"].to_numpy() - centre]
        offset = (k - (len(bars) - 1) / 2) * width
        ax.bar(np.arange(len(levels)) + offset, centre, width, yerr=whiskers, capsize=3,
               color=method_style(algorithm).colour, alpha=0.85,
               label=f"{display_name(algorithm)}: {SEEDS}, whiskers min-max")  # fmt: skip
    for algorithm in references:
        runs = sweep[sweep["algorithm"] == algorithm]
        seeds = _over_seeds(runs, "cx_star").iloc[0]
        colour = method_style(algorithm).colour
        name = f"{display_name(algorithm)} ($C_x^*$ = {runs['cx_star'].iloc[0]:g})"
        label = f"{name}: {SEEDS}, shaded min-max"
        ax.axhline(seeds["centre"], color=colour, ls="--", lw=1.2, label=label)
        ax.axhspan(seeds["low"], seeds["high"], color=colour, alpha=0.12, lw=0)
    ax.set_xticks(np.arange(len(levels)), [f"{v:g}" for v in levels])
    ax.set(xlabel=FACTOR_LABELS["coverage"], ylabel=RESPONSE_LABEL)
    ax.set_ylim(bottom=0)
    ax.set_title("Stationarity against minimum coverage (cf. paper Fig. 4 right)", fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    _legend_beside(ax, *ax.get_legend_handles_labels())
    fig.tight_layout()
    return _save(fig, out_dir, "coverage_bars")


def _pareto_figure(table: pd.DataFrame, cost: str, xlabel: str) -> Figure:
    """One log-log panel per dim: rel_error against ``cost``, the front of (cost, error)."""
    dims = list(dict.fromkeys(table["dim"]))
    sampled = table["setting"].str.contains("coordinates=", regex=False)
    group = table["estimator"].where(~sampled, table["estimator"] + " (sampled coords)")
    style = _style(group)
    fig = Figure(figsize=(4.0 * len(dims), 3.8))
    axes = fig.subplots(1, len(dims), sharey=True, squeeze=False)[0]
    for ax, dim in zip(axes, dims, strict=True):
        rows = table[table["dim"] == dim]
        error = rows["rel_error"].clip(lower=ERROR_FLOOR)
        for estimator, (colour, marker) in style.items():
            mine = group[rows.index] == estimator
            ax.scatter(rows.loc[mine, cost], error[mine], color=colour, marker=marker, s=28,
                       label=estimator, alpha=0.85, edgecolors="none")  # fmt: skip
        front = pareto_flags(rows[cost], rows["rel_error"])
        order = np.argsort(rows[cost].to_numpy()[front])
        ax.step(rows[cost].to_numpy()[front][order], error.to_numpy()[front][order],
                where="post", color="black", lw=1, label="Pareto front")  # fmt: skip
        ax.set(xscale="log", yscale="log", xlabel=xlabel, title=f"$d_x = d_y = {dim}$")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel(r"relative error $\|h - \nabla F(x)\| / \|\nabla F(x)\|$")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.tight_layout()
    return fig


def plot_pareto(table: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Hypergradient error against cost for every estimator setting (``estimator_pareto`` rows).

    ``pareto_oracle``: against oracle calls per hypergradient (grad_f + grad_g + hvp + jvp);
    ``pareto_wall``: against wall time. Each panel's front is recomputed on its own cost axis.
    Errors below 1e-16 (round-off) are drawn at 1e-16.
    """
    oracle = _pareto_figure(table, "total", "oracle calls per hypergradient (count)")
    wall = _pareto_figure(table, "wall_ms", "wall time per hypergradient (ms)")
    return _save(oracle, out_dir, "pareto_oracle") + _save(wall, out_dir, "pareto_wall")
