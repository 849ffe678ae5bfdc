"""Power-law fits of the measured stationarity against the factors of the rate (SPEC §4).

SPEC Corollary 1: (1/Q) sum_{q<Q} E||grad F(x^q)||^2 = O(1/sqrt(C_x* Q)), the local steps T
only in constants. A power law y = c * prod_k z_k^{a_k} is a straight line in logs, so the
exponents a_k are estimated by ordinary least squares of log y on [1, log z_1, ...], with
t-distribution confidence intervals and a residual check (is log y linear with normal errors?).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

# Exponents of avg ||grad F||^2 in (Q, C_x*, T): SPEC Corollary 1, O(1/sqrt(C_x* Q)) ...
PREDICTED = {"Q": -0.5, "coverage": -0.5, "T": 0.0}
# ... and the design card's alternative O(1/sqrt(M_x Q T)), in which T enters the rate too.
DESIGN_CARD = {"Q": -0.5, "coverage": -0.5, "T": -0.5}


@dataclass(frozen=True)
class FitResult:
    """log(response) = intercept + sum_k exponents[k] * log(factor_k) + residual.

    ``factors`` are the regressors actually fitted; ``constant`` maps each requested factor
    that took a single value in the data (left out of the design) to that value. ``n_dropped``
    rows had a non-positive or non-finite response. With n <= p (no residual degrees of
    freedom) standard errors, intervals and residual statistics are NaN.
    """

    response: str
    factors: tuple[str, ...]
    constant: dict[str, float]
    intercept: float
    exponents: dict[str, float]
    std_errors: dict[str, float]
    ci: dict[str, tuple[float, float]]
    level: float
    n: int
    dof: int
    n_dropped: int
    r2: float
    resid_sd: float
    max_abs_std_resid: float
    shapiro_p: float


def _usable_rows(data: pd.DataFrame, response: str) -> tuple[pd.DataFrame, int]:
    """The rows with a positive, finite response, and how many were dropped."""
    y = pd.to_numeric(data[response], errors="coerce").to_numpy(dtype=float)
    keep = np.isfinite(y) & (y > 0)
    return data.loc[keep], int((~keep).sum())


def _residual_checks(resid: np.ndarray, leverage: np.ndarray, s: float) -> tuple[float, float]:
    """(max |internally studentised residual|, Shapiro-Wilk p of the residuals); NaN if undefined.

    Points of leverage 1 (alone at their factor level) have no studentised residual.
    """
    if not s > 0:
        return math.nan, math.nan
    room = 1 - leverage
    ok = room > 1e-10
    studentised = np.abs(resid[ok]) / (s * np.sqrt(room[ok]))
    max_abs = float(studentised.max()) if ok.any() else math.nan
    shapiro = float(stats.shapiro(resid).pvalue) if len(resid) >= 3 else math.nan
    return max_abs, shapiro


def fit_power_law(
    data: pd.DataFrame, response: str, factors: Sequence[str], level: float = 0.95
) -> FitResult:
    """OLS of log(response) on [1, log(factor) for each factor that varies] (SPEC §4).

    Rows with a non-positive or non-finite response are dropped and counted; factors with one
    value in the remaining rows are left out (``FitResult.constant``). Intervals: estimate
    +- t_{(1+level)/2, n-p} * standard error. Raises ValueError on missing columns, no usable
    row, non-positive factor values or collinear factors.
    """
    missing = [c for c in (response, *factors) if c not in data.columns]
    if missing:
        raise ValueError(f"missing column(s) {missing}")
    rows, n_dropped = _usable_rows(data, response)
    if rows.empty:
        raise ValueError(f"no row with a positive finite {response!r}")
    levels = {f: pd.to_numeric(rows[f], errors="raise").to_numpy(dtype=float) for f in factors}
    for name, values in levels.items():
        if not (np.isfinite(values) & (values > 0)).all():
            raise ValueError(f"factor {name!r} needs positive finite values for a log fit")
    varying = tuple(f for f in factors if len(np.unique(levels[f])) > 1)
    constant = {f: float(levels[f][0]) for f in factors if f not in varying}

    y = np.log(rows[response].to_numpy(dtype=float))
    design = np.column_stack([np.ones(len(y)), *(np.log(levels[f]) for f in varying)])
    n, p = design.shape
    if np.linalg.matrix_rank(design) < p:
        raise ValueError(f"factors {list(varying)} are collinear in the data")
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ coef
    dof = n - p
    s = math.sqrt(float(resid @ resid) / dof) if dof > 0 else math.nan
    xtx_inv = np.linalg.inv(design.T @ design)
    se = s * np.sqrt(np.diag(xtx_inv))
    half = stats.t.ppf((1 + level) / 2, dof) * se if dof > 0 else np.full(p, math.nan)
    total = float(((y - y.mean()) ** 2).sum())
    # OLS with an intercept has R^2 >= 0; the clip removes round-off of intercept-only fits
    r2 = max(0.0, 1 - float(resid @ resid) / total) if total > 0 else math.nan
    leverage = np.einsum("ij,jk,ik->i", design, xtx_inv, design)
    max_abs, shapiro = _residual_checks(resid, leverage, s)
    return FitResult(
        response=response,
        factors=varying,
        constant=constant,
        intercept=float(coef[0]),
        exponents={f: float(coef[k + 1]) for k, f in enumerate(varying)},
        std_errors={f: float(se[k + 1]) for k, f in enumerate(varying)},
        ci={
            f: (float(coef[k + 1] - half[k + 1]), float(coef[k + 1] + half[k + 1]))
            for k, f in enumerate(varying)
        },
        level=level,
        n=n,
        dof=dof,
        n_dropped=n_dropped,
        r2=r2,
        resid_sd=s,
        max_abs_std_resid=max_abs,
        shapiro_p=shapiro,
    )


# The rate suite's rates.csv (one row per run); the measured C_x* is the coverage regressor.
RATE_COLUMNS = (
    "algorithm", "seed", "sweep", "Q", "coverage", "T", "cx_star", "alpha", "beta",
    "avg_grad_norm_sq", "final_grad_norm_sq",
)  # fmt: skip
RESPONSE = "avg_grad_norm_sq"
FACTOR_COLUMNS = {"Q": "Q", "coverage": "cx_star", "T": "T"}
TABLE_COLUMNS = [
    "algorithm", "factor", "exponent", "se", "ci_low", "ci_high", "predicted", "design_card",
    "theory in CI", "design card in CI", "n", "r2", "resid_sd", "max_std_resid", "shapiro_p",
    "note",
]  # fmt: skip


def distinct_runs(rates: pd.DataFrame) -> pd.DataFrame:
    """Each run once: rows equal in every rates.csv column but ``sweep`` and ``coverage``.

    The base point is one run listed in every sweep, and FedMBO, which ignores the target
    coverage, may be listed at each target with identical results; counting such rows more than
    once would fake replicates and shrink the intervals. Rows of one sweep keep their order.
    """
    same_run = [c for c in RATE_COLUMNS if c not in ("sweep", "coverage") and c in rates]
    return rates.drop_duplicates(same_run)


def _table_rows(algorithm: str, fit: FitResult, factors: Sequence[str]) -> list[dict]:
    """One row per factor name (keys of FACTOR_COLUMNS) of one algorithm's fit."""
    shared = {"n": fit.n, "r2": fit.r2, "resid_sd": fit.resid_sd}
    shared |= {"max_std_resid": fit.max_abs_std_resid, "shapiro_p": fit.shapiro_p}
    dropped = f"{fit.n_dropped} row(s) with non-positive response dropped" if fit.n_dropped else ""
    rows = []
    for factor in factors:
        column = FACTOR_COLUMNS[factor]
        row = {"algorithm": algorithm, "factor": factor, **shared}
        row |= {"predicted": PREDICTED[factor], "design_card": DESIGN_CARD[factor]}
        if column in fit.exponents:
            low, high = fit.ci[column]
            row |= {"exponent": fit.exponents[column], "se": fit.std_errors[column]}
            row |= {"ci_low": low, "ci_high": high, "note": dropped}
            if np.isfinite(low) and np.isfinite(high):  # no CI when n <= p: leave it empty
                row["theory in CI"] = bool(low <= PREDICTED[factor] <= high)
                row["design card in CI"] = bool(low <= DESIGN_CARD[factor] <= high)
        else:
            note = f"not varied ({column} = {fit.constant[column]:g})"
            row["note"] = "; ".join(filter(None, [note, dropped]))
        rows.append(row)
    return rows


def _frame(rows: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame(rows).reindex(columns=TABLE_COLUMNS)
    for column in ("theory in CI", "design card in CI"):
        table[column] = table[column].astype("boolean")
    return table


def _fit(runs: pd.DataFrame, columns: list[str], level: float, where: str) -> FitResult:
    """``fit_power_law`` of the response; a ValueError says which fit failed."""
    try:
        return fit_power_law(runs, RESPONSE, columns, level)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None


def exponent_table(rates: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Joint fit per algorithm: log avg ||grad F||^2 on log Q, log C_x* (measured), log T.

    Uses every distinct run of the algorithm across the sweeps (``distinct_runs``).
    Secondary to ``per_sweep_table``: it assumes one power law over the whole grid.
    """
    rows = []
    for algorithm, runs in distinct_runs(rates).groupby("algorithm", sort=False):
        fit = _fit(runs, list(FACTOR_COLUMNS.values()), level, f"{algorithm}, joint fit")
        rows += _table_rows(str(algorithm), fit, list(FACTOR_COLUMNS))
    return _frame(rows)


def per_sweep_table(rates: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """The headline fit: each factor on its own one-factor sweep, the others held at the base.

    The design varies one factor at a time, so each exponent comes from the runs that vary it
    and nothing else; sweeps an algorithm has no run in are left out. Runs are counted once
    within each sweep (``distinct_runs``), so the base point is in every sweep.
    """
    rows = []
    for algorithm, runs in rates.groupby("algorithm", sort=False):
        for factor, column in FACTOR_COLUMNS.items():
            sweep = distinct_runs(runs[runs["sweep"] == factor])
            if not sweep.empty:
                fit = _fit(sweep, [column], level, f"{algorithm}, sweep {factor}")
                rows += _table_rows(str(algorithm), fit, [factor])
    return _frame(rows)


_FORMATS = {"exponent": "{:+.3f}", "se": "{:.3f}", "ci_low": "{:+.3f}", "ci_high": "{:+.3f}"}
_FORMATS |= {"predicted": "{:+.1f}", "design_card": "{:+.1f}", "r2": "{:.3f}"}
_FORMATS |= {"resid_sd": "{:.3g}", "max_std_resid": "{:.2f}", "shapiro_p": "{:.3g}"}


def _cell(value, column: str) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        return _FORMATS.get(column, "{:.4g}").format(value)
    return str(value)


def _grid(table: pd.DataFrame) -> tuple[list[list[str]], list[int], list[bool]]:
    """Header and formatted cells, column widths, and which columns are right-aligned."""
    cells = [list(table.columns)]
    cells += [
        [_cell(v, c) for v, c in zip(row, table.columns, strict=True)]
        for row in table.itertuples(False)
    ]
    widths = [max(len(r[k]) for r in cells) for k in range(len(table.columns))]
    types = pd.api.types
    right = [types.is_numeric_dtype(table[c]) and not types.is_bool_dtype(table[c]) for c in table]
    return cells, widths, right


def _pad(cells: Sequence[str], widths: Sequence[int], right: Sequence[bool]) -> list[str]:
    return [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right, strict=True)]


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub markdown table (numbers right-aligned); booleans as yes/no, NaN as blank."""
    cells, widths, right = _grid(table)
    rule = ["-" * (w - 1) + ":" if r else "-" * w for w, r in zip(widths, right, strict=True)]
    rows = [cells[0], rule, *cells[1:]]
    lines = ["| " + " | ".join(_pad(row, widths, right)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def to_text(table: pd.DataFrame) -> str:
    """The same table as aligned plain text with a dashed rule under the header."""
    cells, widths, right = _grid(table)
    lines = ["  ".join(_pad(row, widths, right)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"
