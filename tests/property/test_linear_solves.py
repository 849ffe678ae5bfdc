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
from dataclasses import dataclass

import torch
from hypothesis import given
from hypothesis import strategies as st

from rabo_bench.hypergrad import LocalObjective, Oracles, make_estimator
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


@given(quadratic_problems(noise=True), seeds, st.integers(1, 8), st.booleans())
def test_sampled_neumann_with_one_client_is_neumann(problem, seed, terms, randomized):
    """Bit for bit, with the same oracle counts and the same random stream afterwards: a
    single client is no choice, so nothing is drawn for it."""
    x_full, y_full = problem.init_params(torch.Generator().manual_seed(seed))
    obj = LocalObjective(problem, 0, x_full, y_full)
    x, y = obj.pack_x(x_full), obj.pack_y(y_full)
    params = {"terms": terms, "eta": 0.5 / problem.L_g, "randomized": randomized}
    results = []
    for name in ("neumann", "sampled_neumann"):
        oracles, rng = Oracles(obj), torch.Generator().manual_seed(seed)
        h = make_estimator(name, **params)(oracles, x, y, rng)
        results.append((h, oracles.counter, rng.get_state()))
    (h_a, count_a, state_a), (h_b, count_b, state_b) = results
    assert torch.equal(h_a, h_b) and count_a == count_b and torch.equal(state_a, state_b)


@dataclass(frozen=True)
class EachClient(LowerSystem):
    """Every client's own lower problem at the same (x, y), without messages: a server's view."""

    objectives: list[LocalObjective]
    x: torch.Tensor
    y: torch.Tensor

    @property
    def clients(self) -> int:
        return len(self.objectives)

    def upper_gradients(self):
        raise NotImplementedError("the solve is tested alone")

    def linearise(self, client=None):
        objective = self.objectives[client]  # noise-free: its full data, no batch drawn
        return Linearisation(Oracles(objective), self.x, self.y, objective.sample_g(None))


@given(quadratic_problems(), seeds, st.integers(1, 8))
def test_sampled_neumann_takes_each_factor_from_a_uniformly_drawn_client(problem, seed, terms):
    """p = eta sum_{n<N} prod_{k<=n} (I - eta H_{i_k}) b with i_k the k-th draw of
    Uniform{0..M-1} from the solve's generator (none for M = 1), H_i client i's closed-form
    Hessian. Round-off: every term is within n d eps ||b|| of its exact value (I - eta H_i is
    a contraction), so p within N^2 d eps eta ||b||."""
    x, y = problem.init_params(torch.Generator().manual_seed(seed))
    clients = problem.num_clients
    objectives = [LocalObjective(problem, i, x, y) for i in range(clients)]
    system = EachClient(objectives, objectives[0].pack_x(x), objectives[0].pack_y(y))
    rhs = torch.randn(
        len(system.y), generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )
    eta = 1 / problem.L_g
    p, _ = _solve("sampled_neumann", system, rhs, seed, terms=terms, eta=eta)

    draws = torch.Generator().manual_seed(seed)
    term, total = rhs, rhs
    for _ in range(terms - 1):
        i = int(torch.randint(clients, (1,), generator=draws)) if clients > 1 else 0
        term = term - eta * problem.H[i] @ term
        total = total + term
    expected = eta * total
    slack = ROUNDING * len(rhs) * terms**2 * EPS * eta * float(rhs.norm())
    assert (p - expected).norm() <= slack
