"""The ``flops`` cost column: the round loop counts a round's FLOPs with FlopCounterMode on
problems with physical sub-models (changing no number), the runner makes the column cumulative,
and problems without physical sub-models (the synthetic ones) leave it empty after round 0.

The network checks need the real data (skipped without RABO_BENCH_DATA, a failure under CI)."""

from __future__ import annotations

import contextlib
import itertools

import pytest
import torch

import rabo_bench.federated.rounds as engine
from rabo_bench.engine.run import _Accumulator, execute_run, expand
from rabo_bench.engine.suite import load_suite
from rabo_bench.federated.rounds import FederatedRun
from rabo_bench.problems.registry import make_problem


def _omniglot(rounds: int = 2):
    """Static (HeteroFL) on the Omniglot smoke setting 5w1s: a network with physical
    sub-models, and the quickest of its rounds."""
    suite = load_suite("omniglot", "smoke", seeds=1, rounds=rounds, algorithm_names=["static"])
    spec = next(s for s in expand(suite) if s.setting == "5w1s")
    return spec, make_problem(spec.problem, spec.problem_params)


class _NoCounter(contextlib.nullcontext):
    """Stands in for FlopCounterMode: the same round without the dispatch mode."""

    def __init__(self, display: bool = True) -> None:
        super().__init__(self)

    def get_total_flops(self) -> int:
        return 0


def test_a_network_round_counts_positive_flops_and_changes_no_number(root, monkeypatch):
    spec, problem = _omniglot()
    assert problem.physical_submodels
    counted = FederatedRun(problem, spec.algorithm, spec.capacities, spec.stream_key)
    report = counted.step()
    assert isinstance(report.flops, int) and report.flops > 0
    monkeypatch.setattr(engine, "FlopCounterMode", _NoCounter)
    plain = FederatedRun(problem, spec.algorithm, spec.capacities, spec.stream_key)
    assert plain.step().flops == 0
    for ours, theirs in zip(counted.params, plain.params, strict=True):
        for name, tensor in ours.items():
            assert torch.equal(tensor, theirs[name]), name


def test_the_flops_column_is_cumulative(root):
    spec, problem = _omniglot(rounds=2)
    rows = execute_run(spec, problem)
    flops = [row["flops"] for row in rows]
    assert [row["round"] for row in rows] == [0, 1, 2]
    assert flops[0] == 0 and 0 < flops[1] <= flops[2]
    assert all(a <= b for a, b in itertools.pairwise(flops))


def test_problems_without_physical_submodels_leave_flops_empty():
    suite = load_suite("synthetic", "smoke", seeds=1, rounds=2, algorithm_names=["rabo"])
    spec = expand(suite)[0]
    problem = make_problem(spec.problem, spec.problem_params)
    assert not problem.physical_submodels
    rows = execute_run(spec, problem)
    assert rows[0]["flops"] == 0 and all(row["flops"] is None for row in rows[1:])


@pytest.mark.parametrize("saved_flops", [None, 123])
def test_checkpointed_flops_resume(saved_flops):
    """A checkpoint from before the column (no ``flops`` key) counts on from 0."""
    acc = _Accumulator(4)
    state = acc.state()
    state["totals"] = {k: v for k, v in state["totals"].items() if k != "flops"}
    if saved_flops is not None:
        state["totals"]["flops"] = saved_flops
    fresh = _Accumulator(4)
    fresh.restore(state)
    assert fresh.costs()["flops"] == (saved_flops or 0)
    assert fresh.state()["totals"]["flops"] == (saved_flops or 0)
