"""Device placement without a GPU (issue 15; the stand-ins are explained in tests/placement.py):
a placed network problem holds its data on the device and makes its parameters there; a round
of every algorithm, its evaluation and the sub-model evaluation create no tensor without saying
where; and every part of a round follows a problem placed on another device."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from rabo_bench.engine.run import expand
from rabo_bench.engine.suite import load_suite
from rabo_bench.federated.policies import FullModel
from rabo_bench.federated.rounds import FederatedRun
from rabo_bench.metrics.trained import TrainedCoordinates, submodel_accuracy
from rabo_bench.models.compute import Compute
from rabo_bench.problems.registry import make_problem
from tests.placement import UnplacedOnMeta, tensors_of

META = torch.device("meta")
# the index sets that sampling reads: CPU-side, like the generators that draw from them
HOST_SIDE = {"omniglot": (".shards",), "cifar-lt": (".splits", ".test_order", ".curve_subset")}


def smoke_runs(suite_name: str, algorithms: tuple[str, ...] | None = None):
    """(problem, spec) for each algorithm of the suite's smoke preset (its first setting)."""
    suite = load_suite(suite_name, "smoke").variants()[0]
    specs = [s for s in expand(suite) if s.seed == 0]
    problem = make_problem(specs[0].problem, specs[0].problem_params)
    return problem, [s for s in specs if algorithms is None or s.algorithm.name in algorithms]


@pytest.mark.parametrize("suite", ["omniglot", "cifar-lt"])
def test_a_placed_problem_holds_its_data_and_makes_its_parameters_on_the_device(root, suite):
    problem, _ = smoke_runs(suite)
    problem.place(Compute(META))
    held = tensors_of(problem)
    assert held, "the problem holds no tensors?"
    for path, tensor in held.items():
        host = path.startswith(HOST_SIDE[suite])
        assert tensor.device == (torch.device("cpu") if host else META), path
    x, y = problem.init_params(torch.Generator().manual_seed(0))
    assert {t.device for t in (*x.values(), *y.values())} == {META}


@pytest.mark.parametrize(
    ("suite", "algorithms"),
    [("omniglot", None), ("cifar-lt", ("rabo", "fedavg"))],  # CIFAR-LT: its bilevel and task losses
)
def test_a_round_and_its_evaluations_create_no_tensor_without_a_device(root, suite, algorithms):
    problem, specs = smoke_runs(suite, algorithms)
    for spec in specs:
        run = FederatedRun(problem, spec.algorithm, spec.capacities, spec.stream_key)
        trained = TrainedCoordinates(run.x, run.y)
        with UnplacedOnMeta():
            report = run.step()
            trained.add(report.masks)
            metrics = problem.evaluate(*run.params)
            metrics.update(submodel_accuracy(problem, *run.params, report.masks))
        assert 0 <= metrics["accuracy"] <= 1 and 0 <= metrics["submodel_accuracy"] <= 1


@pytest.mark.parametrize(
    ("suite", "algorithms"),
    [
        ("omniglot", ("maml", "fedmbo", "rabo", "rafbo")),  # the others' episodic prototypical
        ("cifar-lt", ("rafbo", "fedavg")),  # loss picks rows by value, which meta tensors lack
    ],
)
def test_every_part_of_a_round_follows_a_problem_on_another_device(root, suite, algorithms):
    """With full masks (mask policies read values; the test above covers them), the inner and
    outer parts of each algorithm run on a problem placed on ``meta``, with the same costs."""
    problem, specs = smoke_runs(suite, algorithms)
    runs = [(replace(s.algorithm, policy=FullModel()), s.capacities, s.stream_key) for s in specs]
    on_cpu = [FederatedRun(problem, *run).step() for run in runs]
    problem.place(Compute(META))  # for good: meta tensors hold no values to move back
    for run, cpu in zip(runs, on_cpu, strict=True):
        moved = FederatedRun(problem, *run)
        report = moved.step()
        assert {t.device for t in (*moved.x.values(), *moved.y.values())} == {META}
        assert report.oracles == cpu.oracles and report.flops == cpu.flops
        assert report.ledger.params_up == cpu.ledger.params_up
