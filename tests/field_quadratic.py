"""The small deterministic quadratic on which the field's methods (docs/algorithms/) are checked
against hand-written references: 3 clients, d_x = 3, d_y = 4, heterogeneous, float64."""

from __future__ import annotations

from rabo_bench.problems import QuadraticBilevel


def quadratic(**changes) -> QuadraticBilevel:
    settings = dict(dim_x=3, dim_y=4, num_clients=3, noise=0.0, heterogeneity=0.5, nu=0.5, seed=1)
    return QuadraticBilevel(**{**settings, **changes})
