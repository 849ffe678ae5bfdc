"""Hypothesis strategies for synthetic bilevel problems with closed forms (float64)."""

from __future__ import annotations

import torch
from hypothesis import strategies as st

from rabo_bench.hypergrad import LocalObjective
from rabo_bench.problems.logistic import LogisticHyperProblem
from rabo_bench.problems.quadratic import QuadraticBilevel

seeds = st.integers(min_value=0, max_value=2**31 - 1)


@st.composite
def quadratic_problems(draw, max_dim: int = 6, max_condition: float = 10.0, noise: bool = False):
    mu_g = draw(st.floats(0.2, 1.0))
    return QuadraticBilevel(
        dim_x=draw(st.integers(1, max_dim)),
        dim_y=draw(st.integers(1, max_dim)),
        num_clients=draw(st.integers(1, 4)),
        mu_g=mu_g,
        L_g=mu_g * draw(st.floats(1.0, max_condition)),
        heterogeneity=draw(st.floats(0.0, 1.0)),
        noise=draw(st.floats(0.1, 0.9)) if noise else 0.0,
        nu=draw(st.floats(0.0, 1.0)),
        seed=draw(seeds),
    )


@st.composite
def logistic_problems(draw, max_dim: int = 4):
    return LogisticHyperProblem(
        dim=draw(st.integers(1, max_dim)),
        num_clients=draw(st.integers(1, 3)),
        train_samples=draw(st.integers(10, 40)),
        val_samples=draw(st.integers(10, 40)),
        heterogeneity=draw(st.floats(0.0, 1.0)),
        log_lambda_init=draw(st.floats(-2.0, 0.5)),
        seed=draw(seeds),
    )


def global_view(problem, seed: int):
    """(objective over all clients, flat x, flat y*(x), flat closed-form grad F(x))."""
    x, y = problem.init_params(torch.Generator().manual_seed(seed))
    obj = LocalObjective(problem, None, x, y)
    y_star = obj.pack_y(problem.inner_solution(x))
    return obj, obj.pack_x(x), y_star, obj.pack_x(problem.hypergradient(x))
