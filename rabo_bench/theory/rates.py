"""The rate-measurement suite (issue 5): one-factor sweeps of Q, C_x* and T around a base point.

A suite with a ``[rates]`` table is a grid of ordinary runs. Each cell sets
  * Q (``rounds``): global iterations; the response is (1/Q) sum_{q<Q} ||grad F(x^q)||^2;
  * C_x* (``coverage``): sub-model methods get :class:`FixedSegments` masks with that coverage
    (10 clients at capacity 1/2, the paper's Fig. 4 design); full-model methods have C_x* = M;
  * T (``steps``): local inner steps; estimators that unroll inner steps (RAFBO's
    coordinate_fd) use the same T and beta (SPEC: T_fd = T);
and the step sizes the theory prescribes (SPEC Corollary 1): alpha = alpha0 * sqrt(C / Q) with
C the method's C_x*, and beta = min(beta_max, beta_ratio * alpha), a fixed two-timescale ratio;
with ``terms_per_log_q`` the Neumann depth grows as N = ceil(terms_per_log_q * ln Q) (the
Corollary's N = O(log Q), so the Neumann bias b^2 does not put a floor under the rate).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from rabo_bench.algorithms import Algorithm
from rabo_bench.engine.results import read_rows, run_file
from rabo_bench.engine.run import RunSpec, expand
from rabo_bench.engine.runner import RunSink, execute_specs
from rabo_bench.engine.suite import Suite
from rabo_bench.engine.suite_file import show_path
from rabo_bench.federated.policies import FixedSegments, FullModel
from rabo_bench.problems.registry import make_problem
from rabo_bench.theory.pareto import estimator_pareto

SWEEPS = ("rounds", "coverage", "steps")


@dataclass(frozen=True)
class RateGrid:
    """The validated ``[rates]`` table of a suite."""

    base: dict[str, int]
    sweeps: dict[str, tuple[int, ...]]
    alpha0: float
    beta_ratio: float
    beta_max: float
    pareto_dims: tuple[int, ...] = ()
    terms_per_log_q: float | None = None

    @classmethod
    def parse(cls, suite: Suite) -> RateGrid:
        where = f"{show_path(suite.path)}: rates"
        raw = dict(suite.rates)

        def fail(message: str) -> None:
            raise ValueError(f"{where}.{message}")

        allowed = {"coverage", "steps", "sweep", "alpha0", "beta_ratio", "beta_max", "pareto_dims"}
        allowed.add("terms_per_log_q")
        for key in set(raw) - allowed:
            fail(f"{key} is not a key; allowed keys are {sorted(allowed)}")
        base = {"rounds": suite.rounds}
        for key in ("coverage", "steps"):
            value = raw.get(key)
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                fail(f"{key} = {value!r} must be a positive integer (the base point)")
            base[key] = value
        sweep = raw.get("sweep", {})
        if not isinstance(sweep, dict) or set(sweep) - set(SWEEPS):
            fail(f"sweep must be a table with keys among {list(SWEEPS)}")
        sweeps = {}
        for key, values in sweep.items():
            ok = (
                isinstance(values, list)
                and values
                and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values)
            )
            if not ok:
                fail(f"sweep.{key} = {values!r} must be a non-empty list of positive integers")
            sweeps[key] = tuple(values)
        numbers = {}
        optional = ("terms_per_log_q",) if "terms_per_log_q" in raw else ()
        for key in ("alpha0", "beta_ratio", "beta_max", *optional):
            value = raw.get(key)
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0):
                fail(f"{key} = {value!r} must be a positive number")
            numbers[key] = float(value)
        half = len(suite.capacities) // 2  # two segments: C_x* <= M / 2
        for c in (base["coverage"], *sweeps.get("coverage", ())):
            if c > half:
                fail(f"coverage {c} exceeds {half} (two segments over the clients)")
        return cls(base, sweeps, **numbers, pareto_dims=tuple(raw.get("pareto_dims", ())))

    def cells(self) -> list[tuple[str, dict[str, int]]]:
        """(sweep, cell) pairs: each sweep varies one factor, the others stay at the base."""
        return [
            (factor, {**self.base, factor: value})
            for factor, values in self.sweeps.items()
            for value in values
        ]

    def neumann_terms(self, rounds: int) -> int | None:
        if self.terms_per_log_q is None:
            return None
        return max(1, math.ceil(self.terms_per_log_q * math.log(rounds)))

    def step_sizes(self, coverage: int, rounds: int) -> tuple[float, float]:
        alpha = self.alpha0 * math.sqrt(coverage / rounds)
        return alpha, min(self.beta_max, self.beta_ratio * alpha)


def _configure(algorithm: Algorithm, cell: dict[str, int], grid: RateGrid, clients: int):
    """The algorithm at this grid cell, its effective C_x* and step sizes."""
    full = isinstance(algorithm.policy, FullModel)
    coverage = clients if full else cell["coverage"]
    alpha, beta = grid.step_sizes(coverage, cell["rounds"])
    outer: dict[str, Any] = {"lr": alpha}
    estimator = getattr(algorithm.outer, "estimator", None)
    if estimator is not None:
        depth = grid.neumann_terms(cell["rounds"])
        settings = estimator.theory_settings(cell["steps"], beta, depth)
        if settings:
            outer["estimator"] = settings
    configured = algorithm.with_overrides(
        {"inner": {"steps": cell["steps"], "lr": beta}, "outer": outer}
    )
    if not full:
        configured = dataclasses.replace(configured, policy=FixedSegments(coverage=coverage))
    return configured, coverage, alpha, beta


def rate_runs(suite: Suite, grid: RateGrid) -> list[tuple[str, dict[str, Any], RunSpec]]:
    """(sweep, cell description, run spec) for every seed, algorithm and grid cell, in that
    order: the suite's runs (``engine.run.expand``) at each cell's Q, evaluated every round,
    each algorithm configured for the cell; full-model methods skip the coverage sweep (their
    C_x* is M)."""
    clients = len(suite.capacities)
    runs = []
    for position, (sweep, cell) in enumerate(grid.cells()):
        for spec in expand(dataclasses.replace(suite, rounds=cell["rounds"], eval_every=1)):
            if sweep == "coverage" and isinstance(spec.algorithm.policy, FullModel):
                continue
            algo, coverage, alpha, beta = _configure(spec.algorithm, cell, grid, clients)
            info = {**cell, "coverage": coverage, "alpha": alpha, "beta": beta}
            order = (spec.seed, suite.algorithms.index(spec.algorithm.name), position)
            runs.append((order, (sweep, info, dataclasses.replace(spec, algorithm=algo))))
    return [run for _, run in sorted(runs, key=lambda r: r[0])]


def _response(path: Path, rounds: int) -> dict[str, float]:
    rows = read_rows(path)
    norms = [float(r["grad_norm_sq"]) for r in rows]
    return {
        "avg_grad_norm_sq": sum(norms[:rounds]) / rounds,  # rounds 0..Q-1: the theory's average
        "final_grad_norm_sq": norms[rounds],
        "cx_star": int(rows[-1]["coverage_x_min"]),
    }


def execute_rates(
    suite: Suite,
    out: Path,
    sink: RunSink | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    seed_batch: int | None = None,
) -> pd.DataFrame:
    """Run the grid (resuming what is on disk) and write ``<out>/rates.csv``; with
    ``pareto_dims``, also the estimator accuracy-cost table ``<out>/pareto.csv`` (once). The
    seeds of each grid point and algorithm execute as one seed batch (``seed_batch`` runs at
    most; default all of them; 1: one by one), which gives the same rows, much faster."""
    grid = RateGrid.parse(suite)
    pareto_path = out / "pareto.csv"
    if grid.pareto_dims and not pareto_path.exists():
        echo(f"estimator accuracy against cost at d = {list(grid.pareto_dims)}")
        estimator_pareto(grid.pareto_dims, seed=0).to_csv(pareto_path, index=False)
    runs = rate_runs(suite, grid)
    problem = make_problem(suite.problem, suite.problem_params)
    batch = len(suite.seeds) if seed_batch is None else seed_batch
    specs = [spec for _, _, spec in runs]
    execute_specs(specs, problem, out, sink, progress, echo, seed_batch=batch)
    table = pd.DataFrame(
        [
            {
                "algorithm": spec.algorithm.name,
                "seed": spec.seed,
                "sweep": {"rounds": "Q", "coverage": "coverage", "steps": "T"}[sweep],
                "Q": info["rounds"],
                "coverage": info["coverage"],
                "T": info["steps"],
                "alpha": info["alpha"],
                "beta": info["beta"],
                "run_id": spec.run_id,
                **_response(run_file(out, spec.run_id), spec.rounds),
            }
            for sweep, info, spec in runs
        ]
    )
    table.to_csv(out / "rates.csv", index=False)
    return table
