"""Wall time of each hypergradient estimator once, on a dim-50 quadratic problem.

Run ``pytest tests/benchmarks --benchmark-enable`` for timings; by default (pyproject's
``--benchmark-disable``) each benchmark runs once as a plain test. No wall-clock asserts.
"""

from __future__ import annotations

import pytest
import torch

from rabo_bench.hypergrad import LocalObjective, Oracles, make_estimator
from rabo_bench.problems import QuadraticBilevel

DIM = 50
STEP = 0.5  # 1 / L_g of the problem below

ESTIMATORS = {
    "exact": {},
    "neumann": {"terms": 20, "eta": STEP},
    "cg": {"iterations": 20},
    "itd": {"steps": 20, "lr": STEP},
    "coordinate_fd": {"steps": 20, "lr": STEP, "mu": 1e-4},
    "gaussian_zo": {"steps": 20, "lr": STEP, "directions": 20},
}


@pytest.fixture(scope="module")
def view():
    problem = QuadraticBilevel(dim_x=DIM, dim_y=DIM, num_clients=4, mu_g=0.5, L_g=2.0, nu=0.5)
    x, y = problem.init_params(torch.Generator().manual_seed(0))
    obj = LocalObjective(problem, None, x, y)
    return obj, obj.pack_x(x), obj.pack_y(y)


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_estimator_speed(benchmark, view, name):
    obj, x, y = view
    estimator = make_estimator(name, **ESTIMATORS[name])

    def estimate() -> torch.Tensor:
        return estimator(Oracles(obj), x, y, torch.Generator().manual_seed(0))

    h = benchmark(estimate)
    assert h.shape == x.shape and torch.isfinite(h).all()
