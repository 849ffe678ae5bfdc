"""A client's few-shot episodes in one pass (rabo_bench/federated/episodes.py) against the
per-episode path, float64 on a tiny Conv-4 with sub-models: the same RABO rounds to rounding
and the same counted oracle calls.

Both paths compute mean_e [grad_x f_e - d^2_xy g_e · p_e] with the same features, heads and
Neumann series; they differ in batching the heads' losses (bmm over the episodes against one
matmul each) and in summing the episodes' backbone gradients inside one backward pass, i.e. in
float64 round-off, ~1e-16 relative per operation over a few hundred operations (measured: 8e-16
absolute after two rounds): rtol 1e-10.
"""

from __future__ import annotations

import pytest
import torch

from rabo_bench.algorithms import get
from rabo_bench.federated.rounds import FederatedRun
from rabo_bench.problems.fewshot import FewShotConfig
from tests.property.test_episode_hypergradient import Float64FewShot

RABO = {
    "inner": {"steps": 3, "lr": 0.3},
    "outer": {"lr": 0.5, "estimator": {"type": "neumann", "terms": 4, "eta": 0.2}},
}


@pytest.fixture(scope="module")
def problem(root) -> Float64FewShot:
    config = FewShotConfig(ways=3, shots=2, num_clients=2, width=4, tasks_per_batch=3)
    return Float64FewShot(config)


def _rounds(problem, one_pass: bool, algorithm, rounds: int = 2):
    problem.one_pass = one_pass
    try:
        run = FederatedRun(problem, algorithm, [1.0, 0.5], "one-pass")
        reports = [run.step() for _ in range(rounds)]
    finally:
        problem.one_pass = None
    counts = [[c.as_dict() for c in report.ledger.counters] for report in reports]
    return run.params, counts


def test_one_pass_gives_the_per_episode_rounds_and_costs(problem):
    rabo = get("rabo", RABO)
    (x, y), counts = _rounds(problem, True, rabo)
    (x_ref, y_ref), counts_ref = _rounds(problem, False, rabo)
    for mine, theirs in ((x, x_ref), (y, y_ref)):
        for name in theirs:
            torch.testing.assert_close(mine[name], theirs[name], rtol=1e-10, atol=1e-12)
    assert counts == counts_ref
    moved = sum(float((x[n] - problem.init_params(torch.Generator())[0][n]).abs().sum()) for n in x)
    assert moved > 0  # the rounds did move x


def test_other_estimators_keep_the_per_episode_path(problem, monkeypatch):
    """CG stops on a residual per episode: a batched solve would be another method."""
    from rabo_bench.federated import episodes

    def fail(*args, **kwargs):
        raise AssertionError("took the one-pass path")

    monkeypatch.setattr(episodes, "estimate", fail)
    cg = get("rabo", {**RABO, "outer": {"lr": 0.5, "estimator": {"type": "cg", "iterations": 3}}})
    _rounds(problem, True, cg, rounds=1)


def test_only_cuda_takes_it_by_default(problem):
    assert problem.compute.device.type == "cpu" and not problem.episodes_in_one_pass
