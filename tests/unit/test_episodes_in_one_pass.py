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


def test_the_prototypical_loss_in_one_pass_is_the_per_episode_mean(problem):
    """The single-level baselines' and Dist-ProtoNet's loss over a meta-batch of 3 episodes:
    value and backbone gradient equal to round-off."""
    x, _ = problem.init_params(torch.Generator().manual_seed(0))
    episodes = problem.sample_task_batch(0, torch.Generator().manual_seed(1))
    assert len(episodes) == 3

    def loss_and_grad(one_pass: bool):
        problem.one_pass = one_pass
        try:
            leaves = {n: t.clone().requires_grad_(True) for n, t in x.items()}
            loss = problem.prototypical_loss(leaves, episodes)
            return loss, torch.autograd.grad(loss, list(leaves.values()))
        finally:
            problem.one_pass = None

    (loss, grads), (loss_ref, grads_ref) = loss_and_grad(True), loss_and_grad(False)
    torch.testing.assert_close(loss, loss_ref, rtol=1e-12, atol=0)
    for mine, theirs in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-10, atol=1e-13)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_one_pass_on_cuda_gives_the_per_episode_rounds(problem):
    """Where it is the default: float64 on the GPU, the same tolerance as on the CPU."""
    from rabo_bench.models.compute import Compute

    problem.place(Compute(torch.device("cuda")))
    try:
        assert problem.episodes_in_one_pass
        rabo = get("rabo", RABO)
        (x, _), counts = _rounds(problem, True, rabo)
        (x_ref, _), counts_ref = _rounds(problem, False, rabo)
    finally:
        problem.place(Compute())
    for name in x_ref:
        torch.testing.assert_close(x[name], x_ref[name], rtol=1e-10, atol=1e-12)
    assert counts == counts_ref
