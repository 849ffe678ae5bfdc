"""Each linear solve of SPEC eq. (9) against the dense solve on strongly convex quadratics.

The lower Hessian H of the quadratic problem has its spectrum in [mu_g, L_g], so with
kappa = L_g / mu_g, p* = H^{-1} b and float64 round-off eps:

* Neumann, eta = 1/L_g, N terms: p_N = H^{-1} (I - (I - eta H)^N) b, so
  ||p_N - p*|| <= (1 - eta mu_g)^N ||p*|| (the eigenvalues of I - eta H lie in [0, 1 - eta mu_g]);
* CG after k steps from 0: ||p_k - p*||_H <= 2 ((sqrt(kappa) - 1) / (sqrt(kappa) + 1))^k ||p*||_H,
  i.e. sqrt(kappa) times that in the 2-norm;
* round-off: the dense solve is accurate to about d kappa eps ||p*||, and each of the N Neumann
  terms adds about d eps ||p*|| (eta ||b|| <= ||p*||), so every comparison allows
  ROUNDING * d (N + kappa) eps ||p*|| on top of the truncation bound.
"""

from __future__ import annotations

import math

import torch
from hypothesis import given
from hypothesis import strategies as st

from rabo_bench.hypergrad import Oracles, make_estimator
from rabo_bench.hypergrad.implicit import ClientSystem, Linearisation, LowerSystem
from tests.strategies import global_view, quadratic_problems, seeds

EPS = torch.finfo(torch.float64).eps
ROUNDING = 10.0


def _system(problem, seed: int) -> tuple[ClientSystem, torch.Tensor]:
    """The global lower problem at (x, y*(x)) and the right-hand side b = grad_y f there."""
    obj, x, y_star, _ = global_view(problem, seed)
    system = ClientSystem(Oracles(obj), x, y_star, torch.Generator().manual_seed(seed))
    return system, system.upper_gradients()[1]


def _solve(name: str, system: LowerSystem, rhs: torch.Tensor, seed: int = 0, **params):
    return make_estimator(name, **params).solve(system, rhs, torch.Generator().manual_seed(seed))


def _slack(problem, p_star: torch.Tensor, terms: int = 0) -> float:
    kappa = problem.L_g / problem.mu_g
    return ROUNDING * len(p_star) * (terms + kappa) * EPS * float(p_star.norm())


@given(quadratic_problems(), seeds)
def test_dense_solve_is_the_closed_form_inverse(problem, seed):
    system, rhs = _system(problem, seed)
    p, _ = _solve("exact", system, rhs)
    p_star = torch.linalg.solve(problem.H.mean(0), rhs)
    assert (p - p_star).norm() <= _slack(problem, p_star)


@given(quadratic_problems(), seeds, st.integers(1, 40))
def test_neumann_solve_within_its_truncation_bound(problem, seed, terms):
    system, rhs = _system(problem, seed)
    p_star, _ = _solve("exact", system, rhs)
    p, model = _solve("neumann", system, rhs, terms=terms, eta=1 / problem.L_g)
    bound = (1 - problem.mu_g / problem.L_g) ** terms * p_star.norm()
    assert (p - p_star).norm() <= bound + _slack(problem, p_star, terms)
    assert model is None  # the mixed product takes a fresh batch


@given(quadratic_problems(), seeds, st.integers(1, 6))
def test_cg_solve_within_its_convergence_bound(problem, seed, steps):
    system, rhs = _system(problem, seed)
    p_star, _ = _solve("exact", system, rhs)
    p, model = _solve("cg", system, rhs, iterations=min(steps, len(rhs)), tol=0.0)
    root = math.sqrt(problem.L_g / problem.mu_g)
    bound = root * 2 * ((root - 1) / (root + 1)) ** min(steps, len(rhs)) * p_star.norm()
    assert (p - p_star).norm() <= bound + _slack(problem, p_star, len(rhs))
    assert isinstance(model, Linearisation)  # the mixed product uses CG's own batch
