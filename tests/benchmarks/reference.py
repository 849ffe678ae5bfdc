"""Plain-torch Neumann and CG hypergradients of the deterministic quadratic (one client), the
reference that tests/benchmarks/test_oracle_speed.py times the estimators against.

What the harness should cost: grad f once, the graph of grad_y g built once, every product
(``terms - 1`` Hessian-vector products or CG's, then one mixed product) a backward through it.
Same formulas and the same order of operations as ``QuadraticBilevel``'s losses, the
``neumann`` and ``cg`` solves and SPEC eq. (9), so the results agree to round-off.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from rabo_bench.problems.quadratic import QuadraticBilevel

Solve = Callable[[Callable[[torch.Tensor], torch.Tensor], torch.Tensor], torch.Tensor]


def hypergradient(problem: QuadraticBilevel, x: torch.Tensor, y: torch.Tensor, solve: Solve):
    """grad_x f - d^2_xy g · p with p = solve(hvp, grad_y f), client 0, noise-free."""
    H, B, b, P, c, a = (
        t[0] for t in (problem.H, problem.B, problem.b, problem.P, problem.c, problem.a)
    )
    rho, nu = problem.config.rho, problem.config.nu
    x, y = x.detach().requires_grad_(True), y.detach().requires_grad_(True)
    r = y - c
    f = 0.5 * r @ P @ r + 0.5 * rho * torch.sum((x - a) ** 2) + nu * torch.sum(torch.cos(x))
    grad_x, grad_y = torch.autograd.grad(f, (x, y))
    g = 0.5 * y @ H @ y - y @ (B @ x + b)
    grad_g = torch.autograd.grad(g, y, create_graph=True)[0]

    def hvp(v: torch.Tensor) -> torch.Tensor:
        return torch.autograd.grad(grad_g, y, v, retain_graph=True)[0]

    p = solve(hvp, grad_y)
    return grad_x - torch.autograd.grad(grad_g, x, p)[0]


def neumann(terms: int, eta: float) -> Solve:
    """p = eta * sum_{n<terms} (I - eta H)^n rhs."""

    def solve(hvp, rhs):
        term = total = rhs
        for _ in range(terms - 1):
            term = term - eta * hvp(term)
            total = total + term
        return eta * total

    return solve


def conjugate_gradient(iterations: int, tol: float) -> Solve:
    """CG from 0, stopping after ``iterations`` or at ||residual|| <= tol ||rhs||."""

    def solve(hvp, rhs):
        p = torch.zeros_like(rhs)
        residual, direction = rhs.clone(), rhs.clone()
        rr, stop = residual @ residual, (tol * rhs.norm()) ** 2
        for _ in range(iterations):
            if rr <= stop:
                break
            h_dir = hvp(direction)
            step = rr / (direction @ h_dir)
            p = p + step * direction
            residual = residual - step * h_dir
            rr_new = residual @ residual
            direction = residual + (rr_new / rr) * direction
            rr = rr_new
        return p

    return solve
