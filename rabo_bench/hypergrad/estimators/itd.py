"""Iterative differentiation (ITD): reverse mode through K unrolled inner SGD steps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch.func import grad

from rabo_bench.hypergrad.base import HypergradientEstimator, register_estimator
from rabo_bench.hypergrad.oracles import Oracles
from rabo_bench.problems.ranges import COUNT, POSITIVE, setting


@register_estimator
@dataclass(frozen=True)
class ITD(HypergradientEstimator):
    """h = d/dx f(x, y_K(x)), y_{k+1} = y_k - lr * grad_y g(x, y_k; zeta_k), y_0 = y (held fixed).

    Equals grad_x f + (d y_K / d x)^T grad_y f at y_K, the quantity that the finite-difference
    estimators approximate; as K grows it converges to grad F (SPEC eq. 9) for lr < 2 / L_g.
    Cost: 1 grad_f + K grad_g (forward) + K hvp + K jvp (the reverse pass through each step).
    """

    name: ClassVar[str] = "itd"
    steps: int = setting(10, COUNT)
    lr: float = setting(0.1, POSITIVE)

    def theory_settings(self, steps, lr, depth):
        return {"steps": steps, "lr": lr}  # it unrolls T inner steps at beta

    def __call__(self, oracles: Oracles, x, y, rng: torch.Generator) -> torch.Tensor:
        obj = oracles.objective
        batches = [obj.sample_g(rng) for _ in range(self.steps)]
        f_batch = obj.sample_f(rng)

        def upper_after_unroll(xx: torch.Tensor) -> torch.Tensor:
            return obj.f(xx, oracles.inner_steps_uncounted(xx, y, self.lr, batches), f_batch)

        counter = oracles.counter
        counter.grad_f += 1
        counter.grad_g += self.steps
        counter.hvp += self.steps
        counter.jvp += self.steps
        return grad(upper_after_unroll)(x)
