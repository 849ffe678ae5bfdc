"""Second-order-free estimators: finite differences of the inner solution map (SPEC section 3).

Both approximate J^T grad_y f, with J = d y_T / d x the Jacobian of T inner SGD steps, by
differencing the inner iterate after T steps from a common start y with common batches:

    delta_u = [ y_T(x + mu u) - y_T(x) ] / mu,
    h = grad_x f(x, y_T(x)) + scale * sum_u <delta_u, grad_y f(x, y_T(x))> u.

The perturbed inner runs are batched with ``torch.func.vmap`` (``chunk_size`` bounds memory).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch.func import vmap
from torch.nn.functional import one_hot

from rabo_bench.hypergrad.base import HypergradientEstimator, draw, register_estimator
from rabo_bench.hypergrad.oracles import Oracles
from rabo_bench.problems.ranges import COUNT, POSITIVE, Range, setting

OPTIONAL_COUNT = Range(1, integer=True, optional=True)  # unset: every coordinate at once


def _directional_estimate(
    oracles: Oracles,
    x: torch.Tensor,
    y: torch.Tensor,
    rng: torch.Generator,
    directions: torch.Tensor,
    scale: float,
    mu: float,
    steps: int,
    lr: float,
    chunk_size: int | None,
) -> torch.Tensor:
    """h = grad_x f + scale * directions^T (Delta grad_y f), Delta's rows the delta_u above."""
    directions = directions.to(x.device)  # drawn on the CPU, the random generators' device
    obj = oracles.objective
    batches = [obj.sample_g(rng) for _ in range(steps)]
    y_base = oracles.inner_steps_uncounted(x, y, lr, batches)

    def perturbed(u: torch.Tensor) -> torch.Tensor:
        return oracles.inner_steps_uncounted(x + mu * u, y, lr, batches)

    y_pert = vmap(perturbed, chunk_size=chunk_size)(directions)
    oracles.counter.grad_g += steps * (1 + directions.shape[0])
    grad_x, grad_y = oracles.grad_f(x, y_base, obj.sample_f(rng))
    projections = (y_pert - y_base) @ grad_y / mu
    return grad_x + scale * (directions.T @ projections)


@register_estimator
@dataclass(frozen=True)
class CoordinateFD(HypergradientEstimator):
    """RAFBO's estimator, SPEC eq. (10): deterministic coordinate perturbations u = e_j.

    The coordinate set S is every outer coordinate of the client's sub-model
    (``coordinates=None``, scale 1) or a uniform sample without replacement of ``coordinates``
    of them, rescaled by |X_i| / |S| so the estimate is unbiased for the full-set one (SPEC §9
    item 6). As mu -> 0 it tends to the ITD hypergradient with the same steps (forward
    difference: error O(mu)). With steps = 1 delta_j is the inner-gradient difference
    -(lr/mu) [grad_y g(x + mu e_j, y) - grad_y g(x, y)] the paper describes.
    Cost: 1 grad_f + (|S| + 1) * steps grad_g; no second-order products.
    """

    name: ClassVar[str] = "coordinate_fd"
    steps: int = setting(1, COUNT)
    lr: float = setting(0.1, POSITIVE)
    mu: float = setting(1e-2, POSITIVE)
    coordinates: int | None = setting(None, OPTIONAL_COUNT)
    chunk_size: int | None = setting(256, OPTIONAL_COUNT)

    def theory_settings(self, steps, lr, depth):
        return {"steps": steps, "lr": lr}  # it unrolls T inner steps at beta

    def __call__(self, oracles: Oracles, x, y, rng: torch.Generator) -> torch.Tensor:
        d = x.numel()
        if self.coordinates is None or self.coordinates >= d:
            chosen, scale = torch.arange(d, device=x.device), 1.0
        else:
            chosen = draw(rng, lambda g: torch.randperm(d, generator=g))[: self.coordinates]
            scale = d / self.coordinates
        directions = one_hot(chosen, d).to(x.dtype)  # rows e_j, without a d x d eye
        return _directional_estimate(
            oracles, x, y, rng, directions, scale, self.mu, self.steps, self.lr, self.chunk_size
        )


@register_estimator
@dataclass(frozen=True)
class GaussianZO(HypergradientEstimator):
    """PZOBO (SPEC §3, alternative C): Q_u random directions u ~ N(0, I), averaged.

    E_u[<delta_u, v> u] is the gradient of the Gaussian smoothing E_u[psi(x + mu u)] of
    psi(x') = <y_T(x'), v> (Stein's identity), so the estimate is unbiased for the smoothed
    objective; for an inner map affine in x it is unbiased for the ITD hypergradient.
    Cost: 1 grad_f + (Q_u + 1) * steps grad_g.
    """

    name: ClassVar[str] = "gaussian_zo"
    steps: int = setting(1, COUNT)
    lr: float = setting(0.1, POSITIVE)
    mu: float = setting(0.1, POSITIVE)
    directions: int = setting(1, COUNT)
    chunk_size: int | None = setting(256, OPTIONAL_COUNT)

    def theory_settings(self, steps, lr, depth):
        return {"steps": steps, "lr": lr}  # it unrolls T inner steps at beta

    def __call__(self, oracles: Oracles, x, y, rng: torch.Generator) -> torch.Tensor:
        u = draw(rng, lambda g: torch.randn(self.directions, x.numel(), generator=g, dtype=x.dtype))
        return _directional_estimate(
            oracles,
            x,
            y,
            rng,
            u,
            1.0 / self.directions,
            self.mu,
            self.steps,
            self.lr,
            self.chunk_size,
        )
