"""Each sub-model baseline's documented rule (issue 4) and their common FedAvg limit."""

from __future__ import annotations

import pytest
import torch

from rabo_bench.algorithms import get
from rabo_bench.baselines.fedrolex import RollingWindow
from rabo_bench.baselines.fiarse import global_top_k, matching_fraction
from rabo_bench.baselines.static import StaticPrefix
from rabo_bench.federated.context import derive_generator
from rabo_bench.federated.policies import ChannelImportance
from rabo_bench.federated.rounds import FederatedRun
from rabo_bench.hypergrad import LocalObjective, Oracles
from rabo_bench.problems import QuadraticBilevel
from rabo_bench.submodel.element import surrogate_weights


def _params(c: int = 10):
    g = torch.Generator().manual_seed(0)
    return {"x": torch.randn(c, generator=g, dtype=torch.float64)}, {
        "y": torch.randn(c, 3, generator=g, dtype=torch.float64)
    }


def _rows(mask, name):
    return mask.index[name][0].tolist()


def test_static_keeps_the_prefix_every_round():
    x, y = _params()
    for q in (0, 7):
        masks = StaticPrefix().assign(x, y, [1.0, 0.5, 0.25], q, torch.Generator())
        assert [_rows(m.x, "x") for m in masks] == [list(range(10)), list(range(5)), [0, 1, 2]]


@pytest.mark.parametrize(
    ("q", "rows"), [(0, [0, 1, 2, 3]), (1, [1, 2, 3, 4]), (9, [0, 1, 2, 9]), (10, [0, 1, 2, 3])]
)
def test_fedrolex_window_advances_one_row_per_round_and_wraps(q, rows):
    x, y = _params(10)
    masks = RollingWindow().assign(x, y, [0.4, 0.4], q, torch.Generator())
    assert _rows(masks[0].x, "x") == rows and _rows(masks[1].y, "y") == rows


def test_oap_keeps_the_top_channels_by_norm():
    x, y = _params()
    masks = get("oap").policy.assign(x, y, [0.3], 0, torch.Generator())
    norms = y["y"].norm(dim=1)
    assert set(_rows(masks[0].y, "y")) == set(torch.topk(norms, 3).indices.tolist())
    assert isinstance(get("oap").policy, ChannelImportance)


@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.77])
def test_fiarse_keeps_exactly_k_and_thresholds_at_the_kth_magnitude(fraction):
    x, y = _params()
    mx, my = global_top_k(x, y, fraction)
    magnitudes = torch.cat([x["x"].abs().reshape(-1), y["y"].abs().reshape(-1)])
    k = int(fraction * magnitudes.numel())
    assert mx.numel() + my.numel() == k
    assert (
        mx.threshold == my.threshold == float(torch.sort(magnitudes, descending=True).values[k - 1])
    )
    kept = torch.cat([x["x"][mx.keep["x"]].abs(), y["y"][my.keep["y"]].abs()])
    assert kept.min() >= mx.threshold


def test_fiarse_matches_the_structured_parameter_fraction():
    x, y = _params(16)
    assert matching_fraction(x, y, 0.25) == pytest.approx(0.25)
    assert matching_fraction(x, y, 1.0) == 1.0


def test_fiarse_surrogate_gradient_matches_its_formula():
    theta = torch.tensor([0.5, -1.2, 3.0, -0.3], dtype=torch.float64, requires_grad=True)
    tau = 0.3
    w = surrogate_weights(theta, tau)
    torch.testing.assert_close(w, theta.detach())
    (grad,) = torch.autograd.grad(w.sum(), theta)
    expected = 1 + 2 * tau * theta.detach().abs() / (theta.detach().abs() + tau) ** 2
    torch.testing.assert_close(grad, expected)


def _problem():
    return QuadraticBilevel(dim_x=6, dim_y=5, num_clients=4, noise=0.3, heterogeneity=0.5, seed=2)


def test_fedavg_is_the_plain_mean_of_client_models():
    problem = _problem()
    fedavg = get("fedavg", {"inner": {"steps": 3, "lr": 0.1}})
    run = FederatedRun(problem, fedavg, [1.0] * 4, "fedavg")
    x0, y0 = run.params
    run.step()
    x1, y1 = run.params
    local_x, local_y = [], []
    for i in range(4):
        obj = LocalObjective(problem, i, x0, y0)
        rng = derive_generator("fedavg", 0, i, "inner")
        oracles = Oracles(obj)
        xs, ys = obj.pack_x(x0), obj.pack_y(y0)
        for _ in range(3):
            gx, gy = oracles.grad_task(xs, ys, obj.sample_task(rng))
            xs, ys = xs - 0.1 * gx, ys - 0.1 * gy
        local_x.append(xs)
        local_y.append(ys)
    torch.testing.assert_close(x1["x"], torch.stack(local_x).mean(0), rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(y1["y"], torch.stack(local_y).mean(0), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("name", ["static", "fedrolex", "oap", "fiarse"])
def test_full_capacity_sub_model_baselines_are_exactly_fedavg(name):
    problem = _problem()
    overrides = {"inner": {"steps": 2, "lr": 0.1}}
    runs = [FederatedRun(problem, get(n, overrides), [1.0] * 4, "same") for n in (name, "fedavg")]
    for run in runs:
        run.step()
    (xa, ya), (xb, yb) = (run.params for run in runs)
    assert torch.equal(xa["x"], xb["x"]) and torch.equal(ya["y"], yb["y"])
