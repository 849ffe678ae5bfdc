"""Cost-accuracy trade-off of the hypergradient estimators: which settings are Pareto-optimal.

Each estimator setting is run once by ``compare_estimators`` on the global quadratic problem
(closed-form grad F, SPEC eq. 9) of dimension d = dim_x = dim_y; a setting is Pareto-optimal
within its d when no other setting has both at most its oracle calls and at most its relative
error (and is strictly better in one). The result feeds ``plots.plot_pareto``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from rabo_bench.hypergrad.compare import Setting, compare_estimators
from rabo_bench.problems import QuadraticBilevel


def pareto_problem(dim: int) -> QuadraticBilevel:
    """The synthetic problem of the comparison (the demo's, at dimension ``dim``)."""
    return QuadraticBilevel(
        dim_x=dim, dim_y=dim, num_clients=10, mu_g=0.5, L_g=2.0, nu=0.5, heterogeneity=0.5
    )


def pareto_settings(dim: int, step: float) -> list[Setting]:
    """The cost sweep of every estimator; ``step`` = 1/L_g is Neumann's eta and the inner lr.

    neumann N in {2, 5, 10, 20, 40}; cg iterations in {1, 2, 5, 10, 20}; itd K in
    {2, 5, 10, 20, 40}; coordinate_fd mu in {1e-2, 1e-4} x steps in {5, 20}, with the full
    coordinate set (the default: no ``coordinates`` in the label) and with d/4 sampled ones;
    gaussian_zo with 10 and 100 directions and 20 steps. 25 settings per dim.

    Dims {10, 40, 160}: 7 s with one torch thread, 23 s with two on 2 idle cores; with another
    process busy on the machine two threads oversubscribe and took 265 s, so run it with
    ``OMP_NUM_THREADS=1`` (or ``torch.set_num_threads(1)``); measured on 2 cores.
    """
    return [
        *(Setting("neumann", {"terms": n, "eta": step}) for n in (2, 5, 10, 20, 40)),
        *(Setting("cg", {"iterations": k}) for k in (1, 2, 5, 10, 20)),
        *(Setting("itd", {"steps": k, "lr": step}) for k in (2, 5, 10, 20, 40)),
        *(
            Setting("coordinate_fd", {"steps": k, "lr": step, "mu": mu, **subset})
            for subset in ({}, {"coordinates": max(1, dim // 4)})
            for mu in (1e-2, 1e-4)
            for k in (5, 20)
        ),
        *(Setting("gaussian_zo", {"steps": 20, "lr": step, "directions": q}) for q in (10, 100)),
    ]


def pareto_flags(cost: Sequence[float], error: Sequence[float]) -> np.ndarray:
    """True where no other point is at least as good in both and strictly better in one."""
    cost, error = np.asarray(cost, dtype=float), np.asarray(error, dtype=float)
    no_worse = (cost[None, :] <= cost[:, None]) & (error[None, :] <= error[:, None])
    better = (cost[None, :] < cost[:, None]) | (error[None, :] < error[:, None])
    return ~(no_worse & better).any(axis=1)


def estimator_pareto(
    dims: Sequence[int],
    seed: int = 0,
    settings: Callable[[int, float], Sequence[Setting]] = pareto_settings,
) -> pd.DataFrame:
    """``compare_estimators`` rows for every d in ``dims``, with ``dim`` and ``pareto`` columns.

    ``settings(dim, step)`` gives the settings at dimension ``dim``, ``step`` = 1/L_g; the
    ``pareto`` flag is computed within each dim on (total oracle calls, rel_error).
    """
    frames = []
    for dim in dims:
        problem = pareto_problem(dim)
        frame = compare_estimators(problem, settings(dim, 1 / problem.L_g), seed)
        frame.insert(0, "dim", dim)
        frame["pareto"] = pareto_flags(frame["total"], frame["rel_error"])
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)
