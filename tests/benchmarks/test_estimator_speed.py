"""Wall time and FLOP efficiency of each hypergradient estimator at d = 1e2, 1e3, 1e4.

Problem: the logistic hyperparameter problem (rabo_bench/problems/logistic.py) with d_x = d_y
= d and one client of 128 training and 128 validation samples. Its oracles cost O(n d), so
d = 1e4 is cheap; the quadratic problem would form d x d matrices per client and per sample
(32 x 800 MB at d = 1e4). Each estimator runs 20 inner/series steps; coordinate_fd samples
|S| = 32 coordinates (the Omniglot cpu preset's RAFBO), so its cost grows with d, not d^2.
``exact`` forms the dense d x d Hessian and refuses d > its max_dim (2000) by design: that point
is recorded as a skip, not timed.

The estimators run at the initial (x, y): their cost does not depend on y being y*(x).
"""

from __future__ import annotations

import pytest
import torch

from rabo_bench.hypergrad import LocalObjective, Oracles, make_estimator
from rabo_bench.problems import LogisticHyperProblem
from tests.benchmarks.flops import count_flops, record

DIMS = (100, 1000, 10000)
SAMPLES = 128
STEPS = 20


def settings(lr: float) -> dict[str, dict]:
    """Each estimator's hyperparameters; ``lr`` = 1 / L_g is the Neumann eta and inner lr."""
    return {
        "exact": {},
        "neumann": {"terms": STEPS, "eta": lr},
        "cg": {"iterations": STEPS},
        "itd": {"steps": STEPS, "lr": lr},
        "coordinate_fd": {"steps": STEPS, "lr": lr, "mu": 1e-4, "coordinates": 32},
        "gaussian_zo": {"steps": STEPS, "lr": lr, "directions": 20},
    }


@pytest.fixture(scope="module", params=DIMS, ids=lambda d: f"d={d}")
def view(request):
    """(client 0's objective, x, y, 1 / L_g) for d = the parameter."""
    problem = LogisticHyperProblem(
        dim=request.param, num_clients=1, train_samples=SAMPLES, val_samples=SAMPLES
    )
    x, y = problem.init_params(torch.Generator().manual_seed(0))
    obj = LocalObjective(problem, 0, x, y)
    features = problem.train[0][0]
    # L_g = ||A||^2 / (4 n) + max_k exp(x_k): softplus'' <= 1/4 (see the problem's docstring)
    smoothness = torch.linalg.matrix_norm(features, ord=2) ** 2 / (4 * SAMPLES)
    lr = float(1 / (smoothness + x["log_lambda"].exp().max()))
    return obj, obj.pack_x(x), obj.pack_y(y), lr


@pytest.mark.parametrize("name", sorted(settings(1.0)))
def test_estimator(benchmark, peak, view, name):
    obj, x, y, lr = view
    estimator = make_estimator(name, **settings(lr)[name])

    def estimate() -> torch.Tensor:
        return estimator(Oracles(obj), x, y, torch.Generator().manual_seed(0))

    if name == "exact" and x.numel() > estimator.max_dim:
        with pytest.raises(ValueError, match="max_dim"):
            estimate()
        pytest.skip(f"exact refuses d = {x.numel()} > max_dim = {estimator.max_dim} by design")
    flops = count_flops(estimate)
    benchmark.group = f"estimator d={x.numel()}"
    benchmark.extra_info.update(estimator=name, dim=x.numel())
    h = benchmark.pedantic(estimate, rounds=10, warmup_rounds=1)
    record(benchmark, flops, x.dtype, peak)
    assert h.shape == x.shape and torch.isfinite(h).all()
