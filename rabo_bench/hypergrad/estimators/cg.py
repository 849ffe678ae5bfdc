"""The conjugate-gradient solve of d^2_yy g p = grad_y f on one lower batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from rabo_bench.hypergrad.base import register_estimator
from rabo_bench.hypergrad.implicit import LinearSolve
from rabo_bench.problems.ranges import COUNT, Range, setting


@register_estimator
@dataclass(frozen=True)
class ConjugateGradient(LinearSolve):
    """p solves d^2_yy g(zeta) p = grad_y f by conjugate gradient on one lower batch zeta.

    Stops after ``iterations`` steps or when ||residual|| <= tol * ||grad_y f||; the mixed
    product uses the same batch zeta, so p and d^2_xy g come from one local quadratic model.
    Cost: 1 grad_f + (number of CG iterations) hvp + 1 jvp.
    """

    name: ClassVar[str] = "cg"
    iterations: int = setting(20, COUNT)
    tol: float = setting(1e-12, Range(0, 1, high_open=True))  # relative to ||grad_y f||

    @property
    def vectorisable(self) -> bool:
        return False  # stops on the residual: data-dependent control flow

    def solve(self, system, rhs, rng):
        model = system.linearise()
        p = torch.zeros_like(rhs)
        residual, direction = rhs.clone(), rhs.clone()
        rr, stop = residual @ residual, (self.tol * rhs.norm()) ** 2
        for _ in range(self.iterations):
            if rr <= stop:
                break
            h_dir = model.hvp(direction)
            step = rr / (direction @ h_dir)
            p = p + step * direction
            residual = residual - step * h_dir
            rr_new = residual @ residual
            direction = residual + (rr_new / rr) * direction
            rr = rr_new
        return p, model
