"""The rate report of a results folder: exponent tables, their files and the plots (SPEC §4).

``write_rate_report(rates, out_dir)`` is what ``rabo-bench fit-rate RESULTS_DIR`` runs after
``read_rates(RESULTS_DIR / "rates.csv")``; the rate suite can call it directly after a run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from rabo_bench.theory.fit import (
    FACTOR_COLUMNS,
    RATE_COLUMNS,
    exponent_table,
    per_sweep_table,
    to_markdown,
    to_text,
)
from rabo_bench.theory.floor import AIC_MARGIN, floor_table
from rabo_bench.theory.plots import plot_coverage_bars, plot_factor, plot_pareto

NUMERIC = ("seed", "Q", "coverage", "T", "cx_star", "alpha", "beta")
NUMERIC += ("avg_grad_norm_sq", "final_grad_norm_sq")
PARETO_COLUMNS = ("dim", "estimator", "setting", "rel_error", "total", "wall_ms")

HEADER = """\
# Rate exponents (SPEC §4)

Response: avg_grad_norm_sq = (1/Q) sum_{{q<Q}} ||grad F(x^q)||^2, one value per run. Model:
log y = log c + sum_k a_k log z_k, ordinary least squares, {level:.0%} t-intervals with n - p
degrees of freedom. The coverage regressor is the measured C_x* (column cx_star).
Theory (SPEC Corollary 1, O(1/sqrt(C_x* Q))): a_Q = a_coverage = -1/2, a_T = 0.
Design card (O(1/sqrt(M_x Q T))): a_T = -1/2 as well.
"""

RESIDUALS = """\
## Residual check

r2: share of the variance of log y explained. resid_sd: residual standard deviation in log
units (the run-to-run scatter). max_std_resid: the largest |internally studentised residual|;
above about 3 a run is an outlier. shapiro_p: Shapiro-Wilk test of normal residuals; below 0.05
the power law misfits (curvature, e.g. an error floor at large Q) or the scatter is not
log-normal, and the interval is not to be trusted. Blank: undefined (no factor varied, or
n <= p). The intervals treat runs as independent; seeds share the problem instance.
"""


FLOOR = """\
## The Q sweep with an error floor

Does the decay in Q run into a floor (SPEC Theorem 1's mask-noise and heterogeneity terms)?
Power law log y = log(c Q^a) against log y = log(c Q^a + b), b >= 0, both least squares in logs
(rabo_bench/theory/floor.py): exponents with {level:.0%} t-intervals, the floor b with its
profile-likelihood interval (from 0: the data cannot tell it from no floor), AIC of each;
"preferred": the floor when it lowers AIC by more than {margin:g}, else the power law.
"""


def _floor_section(rates: pd.DataFrame, level: float) -> list[str]:
    try:
        table = floor_table(rates, level)
    except ValueError as err:  # e.g. a smoke run's two values of Q
        return [FLOOR.format(level=level, margin=AIC_MARGIN), f"Not fitted: {err}.\n"]
    if table.empty:
        return []
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in table.itertuples(index=False)]
    return [FLOOR.format(level=level, margin=AIC_MARGIN), "\n".join(lines) + "\n"]


def read_rates(path: Path) -> pd.DataFrame:
    """``rates.csv`` checked: ValueError with a one-line message naming the file and the fault."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file (run the rate suite first)")
    try:
        rates = pd.read_csv(path)
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a readable CSV ({err})") from None
    missing = [c for c in RATE_COLUMNS if c not in rates.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
    if rates.empty:
        raise ValueError(f"{path}: no rows")
    for column in NUMERIC:
        values = pd.to_numeric(rates[column], errors="coerce")
        if (values.isna() & rates[column].notna()).any():
            raise ValueError(f"{path}: column {column} has non-numeric values")
        rates[column] = values
    for column in FACTOR_COLUMNS.values():
        values = rates[column].to_numpy(dtype=float)
        if not (np.isfinite(values) & (values > 0)).all():
            raise ValueError(f"{path}: column {column} needs positive values (log fit)")
    unknown = sorted(set(rates["sweep"].astype(str)) - set(FACTOR_COLUMNS))
    if unknown:
        raise ValueError(f"{path}: unknown sweep value(s) {unknown}; expected Q, coverage, T")
    rates["algorithm"] = rates["algorithm"].astype(str)
    return rates


def _read_pareto(path: Path) -> pd.DataFrame:
    table = pd.read_csv(path)
    missing = [c for c in PARETO_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
    return table


def write_rate_report(rates: pd.DataFrame, out_dir: Path, level: float = 0.95) -> Path:
    """Fit, tabulate and plot the rates of one results folder; the path of ``exponents.md``.

    Writes ``exponents.md`` (headline per-sweep table, then the joint fit), ``exponents.csv``
    (both, told apart by the ``fit`` column), ``exponents.txt`` (the same as plain text) and,
    in ``plots/``, ``rate_Q``, ``rate_coverage``, ``rate_T`` and ``coverage_bars`` (PNG + PDF);
    with ``out_dir/pareto.csv`` present also ``pareto_oracle`` and ``pareto_wall``.
    """
    out_dir = Path(out_dir)
    plots = out_dir / "plots"
    per_sweep, joint = per_sweep_table(rates, level), exponent_table(rates, level)
    both = pd.concat(
        [per_sweep.assign(fit="per-sweep"), joint.assign(fit="joint")], ignore_index=True
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    both[["fit", *per_sweep.columns]].to_csv(out_dir / "exponents.csv", index=False)
    written = []
    for factor in FACTOR_COLUMNS:
        if (rates["sweep"] == factor).any():
            written += plot_factor(rates, factor, per_sweep, plots)
    if (rates["sweep"] == "coverage").any():
        written += plot_coverage_bars(rates, plots)
    if (out_dir / "pareto.csv").is_file():
        written += plot_pareto(_read_pareto(out_dir / "pareto.csv"), plots)
    figures = "\n".join(f"* `{p.relative_to(out_dir)}`" for p in written if p.suffix == ".png")
    markdown = [
        HEADER.format(level=level),
        "## Headline: per-sweep fits (each factor on its own one-factor sweep)\n",
        to_markdown(per_sweep),
        "## Joint fit (all runs of an algorithm, base point once)\n",
        to_markdown(joint),
        RESIDUALS,
        *_floor_section(rates, level),
        "## Figures (PNG + PDF, in plots/)\n",
        figures,
    ]
    path = out_dir / "exponents.md"
    path.write_text("\n".join(markdown) + "\n")
    text = [f"Per-sweep fits (headline), {level:.0%} CI:", to_text(per_sweep)]
    text += ["Joint fit:", to_text(joint)]
    (out_dir / "exponents.txt").write_text("\n".join(text))
    return path
