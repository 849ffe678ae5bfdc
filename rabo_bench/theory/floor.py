"""The Q sweep fitted with an error floor: where the O(1/sqrt(C_x* Q)) rate holds and where a
floor takes over (issue 16 item 5).

SPEC Theorem 1 bounds (1/Q) sum_q E||grad F(x^q)||^2 by a term that decays in Q plus terms that
do not: the mask noise of sub-models whose coordinates are held by few clients, and the
heterogeneity zeta of the clients' problems. Against the Q sweep's runs two models compete,
both with multiplicative (log-normal) errors like the power law of ``fit.fit_power_law``:

    power law:   log y = log(c Q^a)               + e      (2 parameters)
    with floor:  log y = log(c Q^a + b),  b >= 0  + e      (3 parameters)

fitted by least squares in logs (``scipy.optimize.least_squares`` in (log c, a, log b), so
c and b stay positive). The data prefer the model with the lower Akaike information criterion
AIC = n log(RSS / n) + 2 k (Gaussian errors in logs); the floor is preferred when it lowers AIC
by more than 2, else the simpler power law. The exponents' intervals: t with n - k degrees of
freedom on the Gauss-Newton covariance s^2 (J^T J)^{-1}. The floor's: profile likelihood,
every b whose best (c, a) fit has RSS(b) <= RSS_min (1 + F_{1, n-3}(level) / (n - 3)),
searched over b = 0 and a log grid up to max y; it starts at 0 when the data cannot tell the
floor from none (b at the boundary, where a covariance says nothing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, stats

from rabo_bench.theory.fit import RESPONSE, distinct_runs, fit_power_law

AIC_MARGIN = 2.0  # a lower AIC by more than this is evidence for the richer model


@dataclass(frozen=True)
class FloorFit:
    """One algorithm's Q sweep: y = c Q^a + b against y = c Q^a."""

    n: int
    exponent: float  # a of the model with a floor
    exponent_ci: tuple[float, float]
    floor: float  # b
    floor_ci: tuple[float, float]
    power_exponent: float  # a of the pure power law
    power_exponent_ci: tuple[float, float]
    aic_power: float
    aic_floor: float

    @property
    def preferred(self) -> str:
        """The floor model when it lowers AIC by more than ``AIC_MARGIN``, else the power law
        (nested models: the richer one is never more than 2 worse, so the simpler one wins
        every tie)."""
        return "with floor" if self.aic_floor < self.aic_power - AIC_MARGIN else "power law"


def _aic(residuals: np.ndarray, parameters: int) -> float:
    n = len(residuals)
    return n * math.log(float(residuals @ residuals) / n) + 2 * parameters


def fit_with_floor(q: np.ndarray, y: np.ndarray, level: float = 0.95) -> FloorFit:
    """Both models on responses ``y`` (positive) at rounds ``q``; ValueError with fewer than 4
    runs or fewer than 3 distinct Q (the floor model has 3 parameters and needs residuals)."""
    q, y = np.asarray(q, dtype=float), np.asarray(y, dtype=float)
    if len(y) < 4 or len(np.unique(q)) < 3:
        raise ValueError("a floor fit needs at least 4 runs at 3 or more values of Q")
    log_q, log_y = np.log(q), np.log(y)
    power = fit_power_law(pd.DataFrame({"Q": q, "y": y}), "y", ["Q"], level)
    a0, log_c0 = power.exponents["Q"], power.intercept

    def residuals(theta: np.ndarray) -> np.ndarray:
        log_c, a, log_b = theta
        return log_y - np.logaddexp(log_c + a * log_q, log_b)

    start = np.array([log_c0, a0, math.log(float(y.min()) / 10)])
    solution = optimize.least_squares(residuals, start, method="lm", x_scale="jac")
    r, jac = solution.fun, solution.jac
    dof = len(y) - 3
    s2 = float(r @ r) / dof
    cov = s2 * np.linalg.pinv(jac.T @ jac)
    t = float(stats.t.ppf(0.5 + level / 2, dof))
    se_a = math.sqrt(max(cov[1, 1], 0.0))
    _, a, log_b = solution.x
    power_resid = log_y - (power.intercept + a0 * log_q)
    floor_ci = _profile_floor(log_q, log_y, (log_c0, a0), float(r @ r), dof, level)
    return FloorFit(
        n=len(y),
        exponent=float(a),
        exponent_ci=(float(a - t * se_a), float(a + t * se_a)),
        floor=math.exp(log_b),
        floor_ci=floor_ci,
        power_exponent=a0,
        power_exponent_ci=power.ci["Q"],
        aic_power=_aic(power_resid, 2),
        aic_floor=_aic(r, 3),
    )


def _profile_floor(
    log_q: np.ndarray,
    log_y: np.ndarray,
    start: tuple[float, float],
    rss_min: float,
    dof: int,
    level: float,
) -> tuple[float, float]:
    """The floor's profile-likelihood interval (module docstring), on b = 0 and a 200-point
    log grid from 1e-6 min y to max y."""
    threshold = rss_min * (1 + float(stats.f.ppf(level, 1, dof)) / dof)
    y = np.exp(log_y)
    grid = np.concatenate([[0.0], np.geomspace(y.min() * 1e-6, y.max(), 200)])
    inside = []
    for b in grid:

        def residuals(theta: np.ndarray, b: float = b) -> np.ndarray:
            return log_y - np.log(np.exp(theta[0] + theta[1] * log_q) + b)

        fit = optimize.least_squares(residuals, np.array(start), method="lm")
        if float(fit.fun @ fit.fun) <= threshold:
            inside.append(b)
    if not inside:  # the optimum lies between grid points: the interval is that narrow
        return math.nan, math.nan
    return float(min(inside)), float(max(inside))


def floor_table(rates: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Per algorithm with a Q sweep: both models' exponents, the floor and the preferred model
    (runs counted once, as in the per-sweep power-law fits)."""
    rows = []
    for algorithm, runs in rates.groupby("algorithm", sort=False):
        sweep = distinct_runs(runs[runs["sweep"] == "Q"])
        if sweep.empty:
            continue
        fit = fit_with_floor(sweep["Q"].to_numpy(), sweep[RESPONSE].to_numpy(), level)
        rows.append(
            {
                "algorithm": algorithm,
                "n": fit.n,
                "a (power law)": _interval(fit.power_exponent, fit.power_exponent_ci),
                "a (with floor)": _interval(fit.exponent, fit.exponent_ci),
                "floor b": f"{fit.floor:.3g} [{fit.floor_ci[0]:.2g}, {fit.floor_ci[1]:.2g}]",
                "AIC power law": f"{fit.aic_power:.1f}",
                "AIC with floor": f"{fit.aic_floor:.1f}",
                "preferred": fit.preferred,
            }
        )
    return pd.DataFrame(rows)


def _interval(value: float, ci: tuple[float, float]) -> str:
    return f"{value:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}]"
