"""The vectorised client simulator reproduces the sequential one (issue 8: to 1e-10 in float64).

Both engines run the same client code on the same batches; they differ only in the order of
floating-point sums (stacked vs one-by-one aggregation) and in eager vs torch.func
differentiation, i.e. by a few ulps per round. Three rounds of contractive updates keep that
far below the 1e-10 the issue asks for; oracle counts and messages must agree exactly.
"""

from __future__ import annotations

import pytest
import torch

from rabo_bench.algorithms import get
from rabo_bench.engine.suite import load_suite
from rabo_bench.federated.rounds import AUTO_MIN_CLIENTS, FederatedRun, why_not_vectorised
from rabo_bench.problems import LogisticHyperProblem, QuadraticBilevel

SUITE = load_suite("synthetic")
CAPACITIES = [1, 1, 0.5, 0.5, 0.25, 0.25, 0.125, 0.125, 0.0625, 0.0625]
TOL = 1e-10


def problems():
    yield QuadraticBilevel(
        dim_x=8, dim_y=8, num_clients=10, noise=0.3, heterogeneity=0.5, nu=0.5, seed=1
    )
    yield LogisticHyperProblem(dim=8, num_clients=10, batch_size=6, seed=2)


def trajectory(problem, algorithm, clients: str, rounds: int = 3):
    run = FederatedRun(problem, algorithm, CAPACITIES, "engines", clients=clients)
    reports = [run.step() for _ in range(rounds)]
    return run, reports


def assert_same_run(problem, algorithm):
    seq, seq_reports = trajectory(problem, algorithm, "sequential")
    vec, vec_reports = trajectory(problem, algorithm, "vectorised")
    assert vec.simulator.name == "vectorised" and seq.simulator.name == "sequential"
    for a, b in zip(seq.params, vec.params, strict=True):
        for name in a:
            torch.testing.assert_close(b[name], a[name], rtol=0, atol=TOL)
    for r, s in zip(seq_reports, vec_reports, strict=True):
        assert [c.as_dict() for c in r.ledger.counters] == [c.as_dict() for c in s.ledger.counters]
        assert r.ledger.params_down == s.ledger.params_down
        assert r.ledger.params_up == s.ledger.params_up


@pytest.mark.parametrize("problem", list(problems()), ids=["quadratic", "logistic"])
@pytest.mark.parametrize("name", SUITE.algorithms)
def test_vectorised_equals_sequential_for_every_synthetic_algorithm(problem, name):
    assert_same_run(problem, SUITE.algorithm(name))


@pytest.mark.parametrize(
    "estimator",
    [
        {"type": "exact"},
        {"type": "itd", "steps": 3, "lr": 0.3},
        {"type": "neumann", "terms": 4},
        {"type": "sampled_neumann", "terms": 4},
        {"type": "coordinate_fd", "steps": 2, "coordinates": 3},
        {"type": "gaussian_zo", "steps": 2, "directions": 3},
    ],
    ids=lambda e: e["type"],
)
def test_vectorised_equals_sequential_for_other_estimators(estimator):
    problem = next(problems())
    rabo = get("rabo", {"inner": {"steps": 2, "lr": 0.2}, "outer": {"estimator": estimator}})
    assert_same_run(problem, rabo)


def test_auto_vectorises_where_valid_from_enough_clients_and_says_why_not_elsewhere():
    small = next(problems())
    assert FederatedRun(small, get("rabo"), CAPACITIES, "k").simulator.name == "sequential"
    many = CAPACITIES * (AUTO_MIN_CLIENTS // len(CAPACITIES) + 1)
    large = QuadraticBilevel(dim_x=3, dim_y=3, num_clients=len(many))
    assert FederatedRun(large, get("rabo"), many, "k").simulator.name == "vectorised"
    cg = get("rabo", {"outer": {"estimator": {"type": "cg"}}})
    assert FederatedRun(large, cg, many, "k").simulator.name == "sequential"
    assert "cg" in why_not_vectorised(large, cg)
    with pytest.raises(ValueError, match="cannot run this"):
        FederatedRun(small, cg, CAPACITIES, "k", clients="vectorised")
    with pytest.raises(ValueError, match="unknown client simulator"):
        FederatedRun(small, get("rabo"), CAPACITIES, "k", clients="threads")
