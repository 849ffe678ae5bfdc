"""The synthetic problems' closed forms against autograd and finite differences of F."""

from __future__ import annotations

import torch
from hypothesis import given
from torch.func import grad

from tests.strategies import global_view, logistic_problems, quadratic_problems, seeds

U = torch.finfo(torch.float64).eps


def _central_difference(problem, name: str, x: torch.Tensor, eps: float) -> torch.Tensor:
    def F(v: torch.Tensor) -> float:
        return problem.outer_objective({name: v})

    return torch.tensor(
        [(F(x + eps * e) - F(x - eps * e)) / (2 * eps) for e in torch.eye(len(x), dtype=x.dtype)],
        dtype=x.dtype,
    )


@given(quadratic_problems(noise=True), seeds)
def test_quadratic_inner_solution_is_stationary(problem, seed):
    obj, x, y_star, _ = global_view(problem, seed)
    g = grad(obj.g, argnums=1)(x, y_star, tuple(None for _ in range(problem.num_clients)))
    # ||grad_y G(x, y*)|| <= L_g * ||y* - y*_computed||, a backward-stable solve: O(kappa u ||y*||)
    bound = 64 * U * problem.L_g / problem.mu_g * (problem.L_g * y_star.norm() + 1)
    assert g.norm() <= bound


@given(quadratic_problems(), seeds)
def test_quadratic_hypergradient_matches_central_difference(problem, seed):
    _, x, _, hypergrad = global_view(problem, seed)
    eps = 1e-4
    fd = _central_difference(problem, "x", x, eps)
    # y*(x) is affine, so F''' comes from nu * sum cos(x_k) alone: |F'''| <= nu. Central
    # difference error <= eps^2 nu / 6, plus round-off in F of ~1e3 u (1 + |F|) over eps.
    f_scale = 1 + abs(problem.outer_objective({"x": x}))
    tol = eps**2 * problem.config.nu / 6 + 1e3 * U * f_scale / eps
    assert torch.all((fd - hypergrad).abs() <= tol)


@given(logistic_problems(), seeds)
def test_logistic_hypergradient_matches_central_difference(problem, seed):
    _, x, _, hypergrad = global_view(problem, seed)
    eps = 1e-3
    fd, fd_coarse = (_central_difference(problem, "log_lambda", x, e) for e in (eps, 2 * eps))
    # Central differences err by c eps^2 + O(eps^4): FD(2 eps) - FD(eps) = 3 c eps^2 estimates
    # the truncation error (Richardson), plus round-off ~1e3 u (1 + |F|) / eps.
    f_scale = 1 + abs(problem.outer_objective({"log_lambda": x}))
    tol = (fd_coarse - fd).abs() + 1e3 * U * f_scale / eps
    assert torch.all((fd - hypergrad).abs() <= tol)


@given(quadratic_problems(noise=True), seeds)
def test_quadratic_minibatches_are_unbiased(problem, seed):
    """The mean of single-sample losses' gradients is exactly the client's full gradient."""
    x, y = problem.init_params(torch.Generator().manual_seed(seed))
    n = problem.config.samples
    for loss in (problem.lower_loss, problem.upper_loss):
        full = grad(lambda yy, loss=loss: loss(0, x, {"y": yy}, None))(y["y"])
        per_sample = torch.stack(
            [
                grad(lambda yy, s=s, loss=loss: loss(0, x, {"y": yy}, torch.tensor([s])))(y["y"])
                for s in range(n)
            ]
        )
        torch.testing.assert_close(per_sample.mean(0), full, rtol=1e-10, atol=1e-12)
        assert per_sample.std(0).max() > 0  # the noise is really there


@given(logistic_problems(), seeds)
def test_logistic_inner_solution_is_stationary(problem, seed):
    obj, x, y_star, _ = global_view(problem, seed)
    batches = tuple(None for _ in range(problem.num_clients))
    g = grad(obj.g, argnums=1)(x, y_star, batches)
    assert g.norm() <= 1e-10
