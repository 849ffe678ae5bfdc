"""The round loop against hand-computed rounds (issue 3 acceptance points)."""

from __future__ import annotations

import itertools

import torch

from rabo_bench.algorithms import get
from rabo_bench.federated.context import RoundContext, derive_generator
from rabo_bench.federated.inner import LocalSGD, MinibatchSGD
from rabo_bench.federated.policies import FullModel
from rabo_bench.federated.rounds import FederatedRun
from rabo_bench.hypergrad import LocalObjective, Oracles, make_estimator
from rabo_bench.problems import QuadraticBilevel

CAPACITIES = [1, 1, 0.5, 0.5, 0.25, 0.25, 0.125, 0.125, 0.0625, 0.0625]


def _problem(**overrides):
    params = dict(dim_x=8, dim_y=8, num_clients=10, noise=0.3, heterogeneity=0.5, nu=0.5, seed=3)
    return QuadraticBilevel(**{**params, **overrides})


def test_one_local_step_at_full_capacity_is_one_minibatch_sgd_step():
    problem = _problem()
    x, y = problem.init_params(torch.Generator().manual_seed(0))
    masks = FullModel().assign(x, y, [1.0] * 10, 0, torch.Generator())
    ctx_local, ctx_mb = (RoundContext(problem, 4, [1.0] * 10, "key") for _ in range(2))
    _, y_local = LocalSGD(steps=1, lr=0.3).run(ctx_local, x, y, masks)
    _, y_minibatch = MinibatchSGD(steps=1, lr=0.3).run(ctx_mb, x, y, masks)
    # (y0 - (y0 - lr g)) / lr recovers g up to rounding of y0 - lr g: |error| <= u |y0| / lr
    torch.testing.assert_close(y_local["y"], y_minibatch["y"], rtol=0, atol=1e-14)
    assert ctx_local.ledger.counters[0].grad_g == ctx_mb.ledger.counters[0].grad_g == 1


def test_uncovered_coordinates_never_move():
    problem = _problem()
    nested = {"policy": {"type": "importance"}}  # the ablation: nested top-r channels
    rabo = get("rabo", {"inner": {"steps": 2, "lr": 0.2}, "outer": {"lr": 0.1}, **nested})
    run = FederatedRun(problem, rabo, [0.5] * 10, "uncovered")
    x0, y0 = run.params
    report = run.step()
    x1, y1 = run.params
    # every client has capacity 1/2 and the same ranking: the other half is held by nobody
    held_x, held_y = report.masks[0].x.dense()["x"], report.masks[0].y.dense()["y"]
    assert report.coverage_x.minimum == 0 and report.coverage_y.minimum == 0
    assert torch.equal(x1["x"][~held_x], x0["x"][~held_x])
    assert torch.equal(y1["y"][~held_y], y0["y"][~held_y])
    assert not torch.equal(x1["x"][held_x], x0["x"][held_x])


def test_rabo_segments_cover_every_coordinate_at_equal_capacity():
    """RABO's default masks (importance segments): ten clients at capacity 1/2 split each
    layer's importance order in two, five clients per half, in every round (C* = 5)."""
    problem = _problem()
    run = FederatedRun(problem, get("rabo"), [0.5] * 10, "segments")
    for _ in range(3):
        report = run.step()
        assert report.coverage_x.minimum == 5 and report.coverage_y.minimum == 5
        assert all(m.x.numel() == m.y.numel() == 4 for m in report.masks)  # half of d = 8


def test_rabo_round_is_local_neumann_then_masked_average():
    """x^{q+1} from the engine equals x^q - alpha * (per-coordinate mean over holders of the
    neumann estimator run by hand on each client's sub-model at (x^q, y^{q+1})), eq. (7)-(8)."""
    problem = _problem()
    estimator = {"terms": 4, "eta": 0.4}
    rabo = get(
        "rabo", {"inner": {"steps": 3, "lr": 0.2}, "outer": {"lr": 0.1, "estimator": estimator}}
    )
    run = FederatedRun(problem, rabo, CAPACITIES, "by-hand")
    x0, _ = run.params
    report = run.step()
    x1, y1 = run.params
    total, count = torch.zeros_like(x0["x"]), torch.zeros_like(x0["x"])
    for i, masks in enumerate(report.masks):
        obj = LocalObjective(problem, i, x0, y1, masks.x, masks.y)
        h = make_estimator("neumann", **estimator)(
            Oracles(obj), obj.pack_x(x0), obj.pack_y(y1), derive_generator("by-hand", 0, i, "outer")
        )
        held = masks.x.dense()["x"]
        total[held] += h
        count[held] += 1
    expected = torch.where(count > 0, x0["x"] - 0.1 * total / count.clamp(min=1), x0["x"])
    torch.testing.assert_close(x1["x"], expected, rtol=1e-12, atol=1e-14)


def test_full_capacity_exact_hypergradients_reach_a_stationary_point():
    """Identical clients (heterogeneity 0: local inverse Hessians equal the global one),
    deterministic losses, one local step (GD on G), exact hypergradients."""
    problem = _problem(heterogeneity=0.0, noise=0.0, dim_x=5, dim_y=5, num_clients=3)
    algo = get(
        "rabo",
        {"inner": {"steps": 1, "lr": 0.5}, "outer": {"lr": 0.3, "estimator": {"type": "exact"}}},
    )
    run = FederatedRun(problem, algo, [1.0] * 3, "converge")
    for _ in range(150):  # linear convergence: ||grad F||^2 ~ 1e-9 after 150 rounds (measured)
        run.step()
    assert problem.evaluate(*run.params)["grad_norm_sq"] < 1e-6


def test_coverage_equals_brute_force_count():
    problem = _problem(dim_x=7, dim_y=5)
    run = FederatedRun(
        problem, get("rabo"), [0.3, 0.5, 0.2, 0.9, 0.1, 0.4, 0.6, 0.7, 0.8, 0.15], "c"
    )
    report = run.step()
    for name, stats in (("x", report.coverage_x), ("y", report.coverage_y)):
        dense = [getattr(m, name).dense()[name] for m in report.masks]
        counts = [sum(bool(d[j]) for d in dense) for j in range(len(dense[0]))]
        assert stats.minimum == min(counts)
        assert stats.histogram == [counts.count(k) for k in range(len(dense) + 1)]


def test_same_key_same_iterates_different_key_different():
    problem = _problem()
    algo = get("rafbo", {"inner": {"steps": 2, "lr": 0.2}, "outer": {"estimator": {"steps": 2}}})
    runs = [FederatedRun(problem, algo, CAPACITIES, key) for key in ("a", "a", "b")]
    for run, _ in itertools.product(runs, range(3)):
        run.step()
    (xa, ya), (xa2, ya2), (xb, _) = (r.params for r in runs)
    assert torch.equal(xa["x"], xa2["x"]) and torch.equal(ya["y"], ya2["y"])
    assert not torch.equal(xa["x"], xb["x"])
