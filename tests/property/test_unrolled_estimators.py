"""itd, coordinate_fd (RAFBO, SPEC eq. 10) and gaussian_zo (PZOBO) against their references."""

from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch.func import vmap

from rabo_bench.hypergrad import Oracles, make_estimator
from tests.strategies import global_view, logistic_problems, quadratic_problems, seeds

U = torch.finfo(torch.float64).eps


def _estimate(name: str, obj, x, y, seed: int = 0, **params):
    oracles = Oracles(obj)
    h = make_estimator(name, **params)(oracles, x, y, torch.Generator().manual_seed(seed))
    return h, oracles.counter


def _start(problem, seed: int, obj):
    _, y0 = problem.init_params(torch.Generator().manual_seed(seed + 1))
    return obj.pack_y(y0)


@given(quadratic_problems(), seeds, st.sampled_from([1, 5, 20, 80]))
def test_itd_error_within_contraction_bound(problem, seed, steps):
    """Quadratic g, lr = 1/L_g, q = 1 - mu_g/L_g: y_K - y* = (I - lr H)^K (y_0 - y*) and
    J_K - J* = -(I - lr H)^K H^{-1} B, so (grad_x f does not depend on y here)
    ||h_K - grad F|| <= q^K ||H^{-1} B|| (||P|| ||y_0 - y*|| + ||grad_y f(y*)||)."""
    obj, x, y_star, reference = global_view(problem, seed)
    y0 = _start(problem, seed, obj)
    h, counter = _estimate("itd", obj, x, y0, steps=steps, lr=1 / problem.L_g)
    q = 1 - problem.mu_g / problem.L_g
    H, B, P = problem.H.mean(0), problem.B.mean(0), problem.P.mean(0)
    _, grad_y = torch.func.grad(obj.f, argnums=(0, 1))(x, y_star, obj.sample_f(None))
    norm = torch.linalg.matrix_norm
    bound = (
        q**steps
        * norm(torch.linalg.solve(H, B), ord=2)
        * (norm(P, ord=2) * (y0 - y_star).norm() + grad_y.norm())
    )
    assert (h - reference).norm() <= bound + 1e-10 * (1 + reference.norm())
    assert (counter.grad_g, counter.hvp, counter.jvp) == (steps, steps, steps)


@settings(max_examples=10)
@given(logistic_problems(), seeds)
def test_itd_converges_on_logistic(problem, seed):
    obj, x, _, reference = global_view(problem, seed)
    y0 = _start(problem, seed, obj)
    errors = [
        float((_estimate("itd", obj, x, y0, steps=k, lr=0.4)[0] - reference).norm())
        for k in (20, 80, 320)
    ]
    scale = 1e-10 * (1 + float(reference.norm()))
    assert errors[2] <= errors[1] + scale <= errors[0] + 2 * scale
    assert errors[2] <= 1e-6 * (1 + float(reference.norm()))


@given(quadratic_problems(), seeds, st.integers(1, 10))
def test_coordinate_fd_is_exact_for_affine_inner_maps(problem, seed, steps):
    """With a quadratic g, y_T(x) is affine in x: forward differences have no truncation error,
    only round-off ~ u * T * ||y|| / mu per coordinate."""
    obj, x, _, _ = global_view(problem, seed)
    y0 = _start(problem, seed, obj)
    lr, mu = 1 / problem.L_g, 1e-3
    itd, _ = _estimate("itd", obj, x, y0, steps=steps, lr=lr)
    fd, counter = _estimate("coordinate_fd", obj, x, y0, steps=steps, lr=lr, mu=mu)
    scale = (1 + y0.norm() + x.norm()) * (1 + itd.norm())
    assert (fd - itd).norm() <= 1e3 * U * steps * scale * len(x) / mu
    assert counter.grad_g == steps * (len(x) + 1) and counter.hvp == counter.jvp == 0


@given(logistic_problems(), seeds, st.integers(1, 5))
def test_coordinate_fd_error_is_linear_in_mu(problem, seed, steps):
    """Forward difference: FD(mu) - ITD = mu * c + O(mu^2), so halving mu halves the error,
    until round-off (~ u / mu) takes over; mu = 1e-3 and 5e-4 sit in the linear regime."""
    obj, x, _, _ = global_view(problem, seed)
    y0 = _start(problem, seed, obj)
    itd, _ = _estimate("itd", obj, x, y0, steps=steps, lr=0.5)
    err = [
        float((_estimate("coordinate_fd", obj, x, y0, steps=steps, lr=0.5, mu=mu)[0] - itd).norm())
        for mu in (1e-3, 5e-4)
    ]
    assume(err[1] > 1e6 * U * (1 + float(y0.norm())) / 5e-4)  # truncation dominates round-off
    assert 1.8 <= err[0] / err[1] <= 2.2


@settings(max_examples=5)
@given(quadratic_problems(max_dim=5), seeds)
def test_sampled_coordinate_fd_is_unbiased(problem, seed):
    """A uniform coordinate sample S, rescaled by |X|/|S|, has the full-set estimate as mean."""
    d = problem.config.dim_x
    assume(d >= 2)
    obj, x, y_star, _ = global_view(problem, seed)
    params = {"steps": 3, "lr": 1 / problem.L_g, "mu": 1e-3}
    full, _ = _estimate("coordinate_fd", obj, x, y_star, **params)
    draws = torch.stack(
        [
            _estimate("coordinate_fd", obj, x, y_star, s, coordinates=d // 2, **params)[0]
            for s in range(200)
        ]
    )
    stderr = draws.std(0) / math.sqrt(len(draws))
    assert torch.all((draws.mean(0) - full).abs() <= 5 * stderr + 1e-12)


@settings(max_examples=5)
@given(quadratic_problems(max_dim=4), seeds)
def test_gaussian_zo_is_unbiased_for_affine_inner_maps(problem, seed):
    """Gaussian smoothing leaves a linear psi(x') = <y_T(x'), v> unchanged, so the mean of the
    PZOBO estimate is the ITD hypergradient with the same steps."""
    obj, x, y_star, _ = global_view(problem, seed)
    params = {"steps": 3, "lr": 1 / problem.L_g}
    itd, _ = _estimate("itd", obj, x, y_star, **params)
    draws = torch.stack(
        [_estimate("gaussian_zo", obj, x, y_star, s, mu=0.1, **params)[0] for s in range(200)]
    )
    stderr = draws.std(0) / math.sqrt(len(draws))
    assert torch.all((draws.mean(0) - itd).abs() <= 5 * stderr + 1e-10)


@settings(max_examples=5)
@given(logistic_problems(max_dim=2), seeds)
def test_gaussian_zo_is_unbiased_for_the_smoothed_objective(problem, seed):
    """E_u[<delta_u, v> u] = grad psi_mu(x), psi_mu(x) = E_u psi(x + mu u) (Stein's identity),
    computed independently by Gauss-Hermite quadrature (20 nodes per dimension)."""
    obj, x, _, _ = global_view(problem, seed)
    y0 = _start(problem, seed, obj)
    steps, lr, mu = 3, 0.5, 0.5
    oracles = Oracles(obj)
    none = obj.sample_g(None)
    y_end = oracles.inner_steps_uncounted(x, y0, lr, [none] * steps)
    _, v = torch.func.grad(obj.f, argnums=(0, 1))(x, y_end, obj.sample_f(None))
    nodes, weights = np.polynomial.hermite_e.hermegauss(20)
    grid = torch.cartesian_prod(*[torch.tensor(nodes)] * len(x)).reshape(-1, len(x))
    w = torch.tensor(np.prod(np.stack(np.meshgrid(*[weights] * len(x), indexing="ij")), axis=0))
    w = w.reshape(-1) / (2 * math.pi) ** (len(x) / 2)
    y_grid = vmap(lambda u: oracles.inner_steps_uncounted(x + mu * u, y0, lr, [none] * steps))(grid)
    smoothed_grad = (w * (y_grid @ v)) @ grid / mu
    reference = torch.func.grad(obj.f)(x, y_end, obj.sample_f(None)) + smoothed_grad
    draws = torch.stack(
        [_estimate("gaussian_zo", obj, x, y0, s, steps=steps, lr=lr, mu=mu)[0] for s in range(400)]
    )
    stderr = draws.std(0) / math.sqrt(len(draws))
    assert torch.all((draws.mean(0) - reference).abs() <= 5 * stderr + 1e-10)
