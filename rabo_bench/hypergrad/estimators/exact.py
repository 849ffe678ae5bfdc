"""The dense solve: SPEC eq. (9) with matrices, for small problems (the estimators' oracle)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from rabo_bench.hypergrad.base import register_estimator
from rabo_bench.hypergrad.implicit import LinearSolve
from rabo_bench.problems.ranges import COUNT, setting


@dataclass(frozen=True)
class DenseMixed:
    """d_x grad_y g formed as a d_y x d_x matrix: d^2_xy g · v = cross^T v."""

    cross: torch.Tensor

    def mixed(self, v: torch.Tensor) -> torch.Tensor:
        return self.cross.T @ v


@register_estimator
@dataclass(frozen=True)
class Exact(LinearSolve):
    """p = solve(d^2_yy g, grad_y f), both Jacobians formed on one lower batch.

    Forms the d_y x d_y Hessian and the d_y x d_x mixed block (``torch.func.jacfwd``), so it is
    for small problems only: it refuses d_y or d_x above ``max_dim``.
    Cost: 1 grad_f + d_y hvp + d_y jvp (what forming the two matrices by products would take).
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
        hess, cross = model.matrices()
        return torch.linalg.solve(hess, rhs), DenseMixed(cross)
