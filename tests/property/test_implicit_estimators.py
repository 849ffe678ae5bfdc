"""exact, neumann and cg against the closed-form hypergradient (SPEC eq. 9, Lemma 1)."""

from __future__ import annotations

import math

import torch
from hypothesis import given
from hypothesis import strategies as st

from rabo_bench.hypergrad import Oracles, make_estimator
from tests.strategies import global_view, logistic_problems, quadratic_problems, seeds


def _estimate(name: str, obj, x, y, seed: int = 0, **params):
    oracles = Oracles(obj)
    h = make_estimator(name, **params)(oracles, x, y, torch.Generator().manual_seed(seed))
    return h, oracles.counter


@given(quadratic_problems(), seeds)
def test_exact_equals_closed_form_quadratic(problem, seed):
    obj, x, y_star, reference = global_view(problem, seed)
    h, counter = _estimate("exact", obj, x, y_star)
    torch.testing.assert_close(h, reference, rtol=1e-8, atol=1e-10)
    assert counter.grad_f == 1 and counter.hvp == len(y_star)


@given(logistic_problems(), seeds)
def test_exact_equals_closed_form_logistic(problem, seed):
    obj, x, y_star, reference = global_view(problem, seed)
    h, _ = _estimate("exact", obj, x, y_star)
    torch.testing.assert_close(h, reference, rtol=1e-8, atol=1e-12)


def test_exact_refuses_large_problems():
    from rabo_bench.problems.quadratic import QuadraticBilevel

    obj, x, y, _ = global_view(QuadraticBilevel(dim_x=3, dim_y=30, num_clients=1), 0)
    try:
        _estimate("exact", obj, x, y, max_dim=10)
    except ValueError as err:
        assert "max_dim=10" in str(err) and "neumann" in str(err)
    else:
        raise AssertionError("exact accepted a problem above max_dim")


@given(quadratic_problems(), seeds, st.integers(1, 30))
def test_neumann_error_within_truncation_bound(problem, seed, terms):
    """Lemma 1: with eta = 1/L_g, ||p_N - H^{-1} v|| <= (1 - mu_g/L_g)^N / mu_g ||v||, so the
    hypergradient error is at most ||d^2_xy g||_2 times that (d^2_xy g = -B^T here)."""
    obj, x, y_star, reference = global_view(problem, seed)
    h, counter = _estimate("neumann", obj, x, y_star, terms=terms, eta=1 / problem.L_g)
    _, grad_y = torch.func.grad(obj.f, argnums=(0, 1))(x, y_star, obj.sample_f(None))
    cross_norm = torch.linalg.matrix_norm(problem.B.mean(0), ord=2)
    bound = cross_norm * (1 - problem.mu_g / problem.L_g) ** terms / problem.mu_g * grad_y.norm()
    assert (h - reference).norm() <= bound + 1e-12 * (1 + reference.norm())
    assert (counter.grad_f, counter.hvp, counter.jvp) == (1, terms - 1, 1)


@given(quadratic_problems(max_condition=5.0), seeds)
def test_neumann_reaches_exact_for_large_depth(problem, seed):
    obj, x, y_star, reference = global_view(problem, seed)
    kappa = problem.L_g / problem.mu_g
    # depth at which the Lemma-1 bound (with ||B||, ||v|| <= 1e3 here) falls below 1e-7
    terms = math.ceil(math.log(1e-10 * problem.mu_g) / math.log(1 - 1 / kappa)) if kappa > 1 else 1
    h, _ = _estimate("neumann", obj, x, y_star, terms=terms, eta=1 / problem.L_g)
    assert (h - reference).norm() <= 1e-6 * (1 + reference.norm())


@given(quadratic_problems(max_dim=4), seeds, st.integers(2, 6))
def test_randomised_neumann_averages_to_the_truncated_series(problem, seed, terms):
    """E_{N'}[N eta prod_{n<=N'} (I - eta H)] = eta sum_{n<N} (I - eta H)^n. On a deterministic
    problem a draw depends only on its depth N' (= its hvp count), so averaging one draw per
    depth gives the expectation exactly."""
    obj, x, y_star, _ = global_view(problem, seed)
    eta = 1 / problem.L_g
    deterministic, _ = _estimate("neumann", obj, x, y_star, terms=terms, eta=eta)
    by_depth = {}
    for s in range(50 * terms):
        h, counter = _estimate("neumann", obj, x, y_star, s, terms=terms, eta=eta, randomized=True)
        by_depth.setdefault(counter.hvp, h)
        if len(by_depth) == terms:
            break
    assert sorted(by_depth) == list(range(terms))
    mean = torch.stack(list(by_depth.values())).mean(0)
    torch.testing.assert_close(mean, deterministic, rtol=1e-10, atol=1e-12)


def test_randomised_neumann_depth_is_uniform():
    """N' ~ Uniform{0..N-1}: a chi-square test on 600 draws (99.9% quantile, 4 dof: 18.47)."""
    from rabo_bench.problems.quadratic import QuadraticBilevel

    obj, x, y, _ = global_view(QuadraticBilevel(dim_x=1, dim_y=1, num_clients=1), 0)
    terms, draws = 5, 600
    depths = [
        _estimate("neumann", obj, x, y, s, terms=terms, randomized=True)[1].hvp
        for s in range(draws)
    ]
    counts = torch.bincount(torch.tensor(depths), minlength=terms).double()
    expected = draws / terms
    assert float(((counts - expected) ** 2 / expected).sum()) < 18.47


@given(quadratic_problems(max_condition=20.0), seeds)
def test_cg_reaches_exact(problem, seed):
    obj, x, y_star, reference = global_view(problem, seed)
    h, counter = _estimate("cg", obj, x, y_star, iterations=4 * len(y_star), tol=1e-13)
    torch.testing.assert_close(h, reference, rtol=1e-8, atol=1e-10)
    assert counter.hvp <= 4 * len(y_star)


@given(logistic_problems(), seeds)
def test_cg_reaches_exact_logistic(problem, seed):
    obj, x, y_star, reference = global_view(problem, seed)
    h, _ = _estimate("cg", obj, x, y_star, iterations=4 * len(y_star), tol=1e-13)
    torch.testing.assert_close(h, reference, rtol=1e-8, atol=1e-12)
