"""Implicit (AID) hypergradient estimators: exact dense solve, Neumann series, conjugate gradient.

All three evaluate SPEC eq. (9) at the given (x, y):

    h = grad_x f(x, y) - d^2_xy g(x, y) · p,     p ≈ [d^2_yy g(x, y)]^{-1} grad_y f(x, y),

and differ in how they approximate p.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch.func import jacfwd

from rabo_bench.hypergrad.base import HypergradientEstimator, register_estimator
from rabo_bench.hypergrad.oracles import Oracles


@register_estimator
@dataclass(frozen=True)
class Exact(HypergradientEstimator):
    """SPEC eq. (9) with dense matrices: p = solve(d^2_yy g, grad_y f).

    Forms the d_y x d_y Hessian and the d_y x d_x mixed block (``torch.func.jacfwd``), so it is
    for small problems only: it refuses d_y or d_x above ``max_dim``.
    Cost: 1 grad_f + d_y hvp + d_y jvp (what forming the two matrices by products would take).
    """

    name: ClassVar[str] = "exact"
    implicit: ClassVar[bool] = True
    max_dim: int = 2000

    def __call__(self, oracles: Oracles, x, y, rng: torch.Generator) -> torch.Tensor:
        if max(x.numel(), y.numel()) > self.max_dim:
            raise ValueError(
                f"the exact estimator forms dense matrices; d_x={x.numel()}, d_y={y.numel()} "
                f"exceed max_dim={self.max_dim}: use 'neumann' or 'cg' instead"
            )
        obj = oracles.objective
        f_batch, g_batch = obj.sample_f(rng), obj.sample_g(rng)
        grad_x, grad_y = oracles.grad_f(x, y, f_batch)
        hess = jacfwd(lambda yy: oracles.grad_y_g_uncounted(x, yy, g_batch))(y)
        cross = jacfwd(lambda xx: oracles.grad_y_g_uncounted(xx, y, g_batch))(x)  # d_y x d_x
        oracles.counter.hvp += y.numel()
        oracles.counter.jvp += y.numel()
        return grad_x - cross.T @ torch.linalg.solve(hess, grad_y)


@register_estimator
@dataclass(frozen=True)
class Neumann(HypergradientEstimator):
    """Stochastic AID with a truncated Neumann series for the inverse Hessian (SPEC eq. 7).

    Deterministic depth (``randomized=False``), each factor on a fresh lower batch zeta_n:
        p = eta * sum_{n=0}^{N-1} prod_{k=1}^{n} (I - eta H_k) grad_y f.
    Randomised depth (``randomized=True``, the theory's version), N' ~ Uniform{0, ..., N-1}:
        p = N * eta * prod_{k=1}^{N'} (I - eta H_k) grad_y f,
    whose expectation over N' is the deterministic p. Then h = grad_x f - d^2_xy g(zeta_0) · p.

    Truncation (SPEC Lemma 1): for eta <= 1/L_g, ||p - H^{-1} grad_y f|| <= (1 - eta mu_g)^N
    / mu_g * ||grad_y f|| on a deterministic problem.
    Cost: 1 grad_f + (N - 1) hvp (N' hvp when randomised) + 1 jvp.
    """

    name: ClassVar[str] = "neumann"
    implicit: ClassVar[bool] = True
    terms: int = 5
    eta: float = 0.01
    randomized: bool = False

    def __post_init__(self) -> None:
        if self.terms < 1 or self.eta <= 0:
            raise ValueError(f"neumann needs terms >= 1 and eta > 0, got {self.terms}, {self.eta}")

    @property
    def vectorisable(self) -> bool:
        return not self.randomized  # a random depth is a draw outside the batches

    def __call__(self, oracles: Oracles, x, y, rng: torch.Generator) -> torch.Tensor:
        obj = oracles.objective
        grad_x, grad_y = oracles.grad_f(x, y, obj.sample_f(rng))
        if self.randomized:
            depth = int(torch.randint(self.terms, (1,), generator=rng))
            term = grad_y
            for _ in range(depth):
                term = term - self.eta * oracles.hvp(x, y, term, obj.sample_g(rng))
            p = self.terms * self.eta * term
        else:
            term, total = grad_y, grad_y
            for _ in range(self.terms - 1):
                term = term - self.eta * oracles.hvp(x, y, term, obj.sample_g(rng))
                total = total + term
            p = self.eta * total
        return grad_x - oracles.mixed(x, y, p, obj.sample_g(rng))


@register_estimator
@dataclass(frozen=True)
class ConjugateGradient(HypergradientEstimator):
    """AID with conjugate gradient: p solves d^2_yy g(zeta) p = grad_y f on one lower batch zeta.

    Stops after ``iterations`` steps or when ||residual|| <= tol * ||grad_y f||; the mixed
    product uses the same batch zeta, so p and d^2_xy g come from one local quadratic model.
    Cost: 1 grad_f + (number of CG iterations) hvp + 1 jvp.
    """

    name: ClassVar[str] = "cg"
    implicit: ClassVar[bool] = True
    iterations: int = 20
    tol: float = 1e-12

    @property
    def vectorisable(self) -> bool:
        return False  # stops on the residual: data-dependent control flow

    def __call__(self, oracles: Oracles, x, y, rng: torch.Generator) -> torch.Tensor:
        obj = oracles.objective
        grad_x, grad_y = oracles.grad_f(x, y, obj.sample_f(rng))
        batch = obj.sample_g(rng)
        p = torch.zeros_like(grad_y)
        residual, direction = grad_y.clone(), grad_y.clone()
        rr, stop = residual @ residual, (self.tol * grad_y.norm()) ** 2
        for _ in range(self.iterations):
            if rr <= stop:
                break
            h_dir = oracles.hvp(x, y, direction, batch)
            step = rr / (direction @ h_dir)
            p = p + step * direction
            residual = residual - step * h_dir
            rr_new = residual @ residual
            direction = residual + (rr_new / rr) * direction
            rr = rr_new
        return grad_x - oracles.mixed(x, y, p, batch)
