"""Size and work of a problem's width-r structured sub-model relative to the full model (SPEC §8).

* parameter fraction P(r) / P(1): held coordinates of (x, y) under the prefix channel mask
  (any ceil(r C) channels per layer hold the same number of coordinates);
* FLOP fraction: FLOPs of one forward-backward of the lower-level loss g on a client batch
  at the physically narrow sub-model over the full model's, measured with
  ``torch.utils.flop_counter.FlopCounterMode`` (the convention of :mod:`.cost`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from rabo_bench.federated.policies import layer_masks, prefix_channels
from rabo_bench.problems.base import BilevelProblem


@dataclass(frozen=True)
class SubmodelCost:
    capacity: float
    parameters: int
    parameter_fraction: float
    flops: int
    flop_fraction: float


def _backward_flops(problem: BilevelProblem, x, y, batch) -> int:
    x = {k: v.detach().requires_grad_(True) for k, v in x.items()}
    y = {k: v.detach().requires_grad_(True) for k, v in y.items()}
    with FlopCounterMode(display=False) as counter:
        loss = problem.lower_loss(0, x, y, batch)
        torch.autograd.grad(loss, [*x.values(), *y.values()], allow_unused=True)
    return int(counter.get_total_flops())


def submodel_costs(problem: BilevelProblem, capacities: list[float]) -> list[SubmodelCost]:
    """Cost of the width-r sub-model for every r in ``capacities`` (r = 1: the full model).
    Needs ``problem.physical_submodels`` for the FLOP count (the narrow model must run)."""
    if not problem.physical_submodels:
        raise ValueError(f"{type(problem).__name__} has no physical sub-models to measure")
    x, y = problem.init_params(torch.Generator().manual_seed(0))
    layers = problem.channel_layers(x, y)
    batch = problem.sample_lower_batch(0, torch.Generator().manual_seed(0))
    total = sum(t.numel() for t in (*x.values(), *y.values()))
    full_flops = _backward_flops(problem, x, y, batch)
    out = []
    for r in capacities:
        masks = layer_masks(layers, x, y, r, prefix_channels)
        held = masks.x.numel() + masks.y.numel()
        flops = _backward_flops(problem, masks.x.extract(x), masks.y.extract(y), batch)
        out.append(SubmodelCost(r, held, held / total, flops, flops / full_flops))
    return out
