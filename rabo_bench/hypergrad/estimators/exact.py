"""The dense solve: SPEC eq. (9) with the Hessian as a matrix, for small problems (the
estimators' oracle)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from rabo_bench.hypergrad.base import register_estimator
from rabo_bench.hypergrad.implicit import LinearSolve
from rabo_bench.problems.ranges import COUNT, setting


@register_estimator
@dataclass(frozen=True)
class Exact(LinearSolve):
    """p = solve(d^2_yy g, grad_y f), and d^2_xy g · p, both on one lower batch.

    Forms the d_y x d_y Hessian (``torch.func.jacfwd``), so it is for small problems only: it
    refuses d_y or d_x above ``max_dim``. The mixed term is one product, not a matrix.
    Cost: 1 grad_f + d_y hvp (what forming the Hessian by products would take) + 1 jvp.
    """

    name: ClassVar[str] = "exact"
    max_dim: int = setting(2000, COUNT)

    def solve(self, system, rhs, rng):
        model = system.linearise()
        d_x, d_y = model.x.numel(), model.y.numel()
        if max(d_x, d_y) > self.max_dim:
            raise ValueError(
                f"the exact estimator forms dense matrices; d_x={d_x}, d_y={d_y} "
                f"exceed max_dim={self.max_dim}: use 'neumann' or 'cg' instead"
            )
        return torch.linalg.solve(model.hessian(), rhs), model
