"""Runs: a run is (problem setting, algorithm config, seed) (DESIGN.md §3).

``expand`` turns a validated suite into run specs; ``execute_run`` drives the round engine and
returns the run's result rows; ``execute_suite`` executes every run that is not yet on disk
(resume = skip what is done) and rebuilds the results table.

Identity and randomness:
  * ``run_id`` = the first 12 hex digits of sha256 of the canonical JSON of the resolved config
    (suite, problem with every parameter, algorithm.to_dict(), capacities, seed, rounds,
    eval_every): any change to the config is a new run.
  * the random streams of a run (initial point, batches, masks, ...) are keyed by
    ``stream_key`` = (suite, problem, capacities, seed) only. So every algorithm of one seed
    starts from the same (x0, y0) and sees common random numbers, and a run with fewer rounds
    or another ``eval_every`` follows the same trajectory. The problem's data are drawn from its
    own ``problem.seed``; the run seed changes the initialisation and the sampling streams.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rabo_bench.algorithms import Algorithm
from rabo_bench.engine.problems import make_problem, resolved_params
from rabo_bench.engine.results import (
    ORACLES,
    Row,
    check_writable,
    read_rows,
    run_file,
    write_csv_atomic,
    write_results_table,
)
from rabo_bench.engine.suite import Suite
from rabo_bench.federated.engine import FederatedRun, RoundReport
from rabo_bench.problems import BilevelProblem


def _digest(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class RunSpec:
    suite: str
    problem: str
    problem_params: dict[str, Any]  # resolved: every setting, defaults included
    algorithm: Algorithm
    capacities: tuple[float, ...]
    seed: int
    rounds: int
    eval_every: int
    setting: str = ""  # the suite's [settings] variant, if it has them

    def config(self) -> dict[str, Any]:
        """The resolved configuration; its hash is the run id."""
        named = {"setting": self.setting} if self.setting else {}
        return {
            **named,
            "suite": self.suite,
            "problem": {"name": self.problem, **self.problem_params},
            "algorithm": self.algorithm.to_dict(),
            "capacities": list(self.capacities),
            "seed": self.seed,
            "rounds": self.rounds,
            "eval_every": self.eval_every,
        }

    @property
    def run_id(self) -> str:
        return _digest(self.config())

    @property
    def stream_key(self) -> str:
        setting = {"problem": {"name": self.problem, **self.problem_params}}
        setting["capacities"] = list(self.capacities)
        return f"{self.suite}/{_digest(setting)}/seed={self.seed}"


def expand(suite: Suite) -> list[RunSpec]:
    """The suite's runs: setting by setting, seed-major within a setting (all algorithms of
    seed 0 first)."""
    specs = []
    for variant in suite.variants():
        params = resolved_params(variant.problem, variant.problem_params)
        specs.extend(
            RunSpec(
                variant.name,
                variant.problem,
                params,
                variant.algorithm(name),
                variant.capacities,
                seed,
                variant.rounds,
                variant.eval_every,
                variant.setting,
            )
            for seed in variant.seeds
            for name in variant.algorithms
        )
    return specs


class _Accumulator:
    """Cumulative counters since round 0 and the coverage seen so far."""

    def __init__(self, itemsize: int) -> None:
        self.itemsize = itemsize
        self.totals = dict.fromkeys((*ORACLES, "params_up", "params_down"), 0)
        self.cov_min: dict[str, int | None] = {"x": None, "y": None}
        self.cov_hist: dict[str, list[int] | None] = {"x": None, "y": None}
        self.wall = 0.0

    def add(self, report: RoundReport, seconds: float) -> None:
        self.wall += seconds
        for key, value in report.oracles.as_dict().items():
            self.totals[key] += value
        self.totals["params_up"] += sum(report.ledger.params_up)
        self.totals["params_down"] += sum(report.ledger.params_down)
        for axis, stats in (("x", report.coverage_x), ("y", report.coverage_y)):
            old = self.cov_min[axis]
            self.cov_min[axis] = stats.minimum if old is None else min(old, stats.minimum)
            self.cov_hist[axis] = stats.histogram

    def costs(self) -> Row:
        t = self.totals
        return {
            **{k: t[k] for k in ORACLES},
            "oracle_calls": sum(t[k] for k in ORACLES),
            "params_up": t["params_up"],
            "params_down": t["params_down"],
            "bytes_up": t["params_up"] * self.itemsize,
            "bytes_down": t["params_down"] * self.itemsize,
            "coverage_x_min": self.cov_min["x"],
            "coverage_y_min": self.cov_min["y"],
            "coverage_x_hist": _json_or_none(self.cov_hist["x"]),
            "coverage_y_hist": _json_or_none(self.cov_hist["y"]),
            "wall_time_s": self.wall,
        }


def _json_or_none(value: list[int] | None) -> str | None:
    return None if value is None else json.dumps(value)


def execute_run(
    spec: RunSpec, problem: BilevelProblem, on_round: Callable[[], None] | None = None
) -> list[Row]:
    """Run ``spec`` for its rounds; one row at round 0 (the initial point), every
    ``eval_every`` rounds and at the last round. Wall time excludes evaluation."""
    run = FederatedRun(problem, spec.algorithm, spec.capacities, spec.stream_key)
    acc = _Accumulator(problem.dtype.itemsize)
    identity = {
        "suite": spec.suite,
        "setting": spec.setting,
        "run_id": spec.run_id,
        "algorithm": spec.algorithm.name,
        "seed": spec.seed,
    }

    def row(q: int) -> Row:
        evaluate = problem.evaluate_final if q == spec.rounds else problem.evaluate
        metrics = evaluate(*run.params)
        return {**identity, "round": q, **metrics, **acc.costs()}

    rows = [row(0)]
    for q in range(1, spec.rounds + 1):
        start = time.perf_counter()
        report = run.step()
        acc.add(report, time.perf_counter() - start)
        if q % spec.eval_every == 0 or q == spec.rounds:
            rows.append(row(q))
        if on_round is not None:
            on_round()
    return rows


class RunSink:
    """Where finished runs are mirrored (MLflow); ``log_run`` must never raise."""

    def log_run(self, spec: RunSpec, rows: list[dict[str, str]], csv_path: Path) -> None: ...


def execute_suite(
    suite: Suite,
    out: Path,
    sink: RunSink | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> list[RunSpec]:
    """Execute the suite's runs that are not on disk yet (see :func:`execute_specs`)."""
    return execute_specs(expand(suite), ProblemCache(), out, sink, progress, echo)


class ProblemCache:
    """Builds each distinct problem setting once, and only when a run needs it (loading a
    data set takes seconds; a resumed suite with nothing left to do loads nothing)."""

    def __init__(self) -> None:
        self._built: dict[str, BilevelProblem] = {}

    def __call__(self, spec: RunSpec) -> BilevelProblem:
        key = _digest({"name": spec.problem, **spec.problem_params})
        if key not in self._built:
            self._built[key] = make_problem(spec.problem, spec.problem_params)
        return self._built[key]


def execute_specs(
    specs: list[RunSpec],
    problem: BilevelProblem | Callable[[RunSpec], BilevelProblem],
    out: Path,
    sink: RunSink | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> list[RunSpec]:
    """Execute the runs not on disk yet, write each as it finishes, mirror it to ``sink`` and
    rebuild ``<out>/results.csv`` from ``specs`` (a run listed twice is executed once).
    ``problem`` is the problem of every run, or a function giving each run's problem."""
    from tqdm import tqdm

    check_writable(out)
    for spec in specs:
        path = run_file(out, spec.run_id)
        label = f"{spec.setting} {spec.algorithm.name} seed={spec.seed}".lstrip()
        if path.exists():
            echo(f"skipped {label} (run {spec.run_id}): already in {path.parent}")
        else:
            config_path = path.with_suffix(".json")
            config_path.write_text(json.dumps(spec.config(), indent=2, sort_keys=True) + "\n")
            with tqdm(
                total=spec.rounds, desc=label, file=sys.stderr, disable=not progress, unit="round"
            ) as bar:
                instance = problem if isinstance(problem, BilevelProblem) else problem(spec)
                rows = execute_run(spec, instance, lambda b=bar: b.update(1))
            write_csv_atomic(path, rows)
        if sink is not None:
            sink.log_run(spec, read_rows(path), path)
    write_results_table(out, list(dict.fromkeys(spec.run_id for spec in specs)))
    return specs
