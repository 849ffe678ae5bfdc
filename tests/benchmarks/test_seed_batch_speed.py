"""One point of the rate sweep (issue 16 item 3): the rates suite's base point (quadratic,
d_x = d_y = 10, ten clients at capacity 1/2, Q = 128, C_x* = 5, T = 2; suites/rates.toml),
RABO, over 50 seeds: 50 runs one by one (``execute_run``, the sequential simulator, as the
sweep ran before) against one seed batch of the 50 (``execute_batch``).

Both time whole runs as the sweep executes them, evaluation every round included, shortened to
``ROUNDS`` rounds (a round costs the same at every Q: fixed shapes and step counts; the full
Q = 128 would take half an hour one by one), at the process's torch threads (a seed batch
computes with one, ``engine/batches.py``). The one-time imports of torch.func's machinery
(torch._dynamo, forward AD: seconds) are done before timing. The report prints the speed-up
(target >= 10x: a sweep of 50 seeds within an hour on 2 cores).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from rabo_bench.engine.batches import execute_batch
from rabo_bench.engine.run import execute_run
from rabo_bench.engine.suite import load_suite
from rabo_bench.problems.registry import make_problem
from rabo_bench.theory.rates import RateGrid, rate_runs

SEEDS, ROUNDS, ALGORITHM = 50, 4, "rabo"


@pytest.fixture(scope="module")
def point():
    """(problem, the 50 seeds' run specs at the base point, shortened to ROUNDS rounds)."""
    suite = load_suite("rates", "cpu", seeds=SEEDS)
    grid = RateGrid.parse(suite)
    specs = [
        dataclasses.replace(spec, rounds=ROUNDS)
        for sweep, cell, spec in rate_runs(suite, grid)
        if sweep == "rounds" and cell["rounds"] == suite.rounds and spec.algorithm.name == ALGORITHM
    ]
    assert len(specs) == SEEDS
    return make_problem(suite.problem, suite.problem_params), specs


@pytest.fixture(scope="module")
def imported() -> None:
    one = torch.ones(1)  # torch.func's one-time imports (torch._dynamo, forward AD), untimed
    torch.func.grad(torch.sum)(one)
    torch.func.jvp(torch.sin, (one,), (one,))


@pytest.mark.parametrize("mode", ["sequential", "batched"])
def test_seed_batch(benchmark, point, imported, mode):
    problem, specs = point

    def sweep_point():
        if mode == "batched":
            return execute_batch(specs, problem)
        return [execute_run(spec, problem, clients="sequential") for spec in specs]

    benchmark.group = f"rate-sweep point, {SEEDS} seeds"
    benchmark.extra_info.update(
        seeds=SEEDS, rounds=ROUNDS, algorithm=ALGORITHM, mode=mode, threads=torch.get_num_threads()
    )
    rows = benchmark.pedantic(sweep_point, rounds=1, warmup_rounds=0)
    assert len(rows) == SEEDS and all(r[-1]["status"] == "ok" for r in rows)
