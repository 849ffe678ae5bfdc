"""Cost accounting (SPEC §8): FLOPs of a width-r sub-model, and its share of parameters and of
communication relative to the full model.

FLOP convention (both the measured and the analytic count): only the matrix-multiply and
convolution kernels that ``torch.utils.flop_counter.FlopCounterMode`` counts (``aten``
convolution and its backward, mm, addmm, bmm, baddbmm, attention), at 2 FLOPs per
multiply-add. Bias additions, activations (ReLU), pooling, normalisation, reductions and the
loss are not counted. A convolution or linear layer whose output has N elements costs
2 N (C_in / groups) k^d forward, i.e. 2 N times the size of one output unit's weight slice
(a linear layer: 2 N in_features); its backward costs the same
again for the weight gradient, plus the same again for the input gradient when the layer's
input requires a gradient (so the first layer, fed with data, pays 2x and the others 3x).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode

from rabo_bench.params import Params
from rabo_bench.submodel import ElementMask, StructuredMask

ModelBuilder = Callable[[float], nn.Module]
_COUNTED_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def measured_forward_flops(model: nn.Module, params: Params, inputs) -> int:
    """FLOPs that ``FlopCounterMode`` counts in one forward of ``functional_call(model, params,
    inputs)`` (``inputs``: a tensor or a tuple of positional arguments)."""
    with FlopCounterMode(display=False) as counter:
        functional_call(model, params, inputs)
    return counter.get_total_flops()


def measured_flops(model: nn.Module, params: Params, inputs) -> int:
    """Forward plus backward FLOPs (SPEC §8's secondary metric): a forward, the sum of the
    outputs as the loss, and its gradient with respect to every floating-point parameter
    (each is treated as a leaf that requires a gradient; ``inputs`` are used as given)."""
    leaves = {name: t.detach().requires_grad_(t.is_floating_point()) for name, t in params.items()}
    wrt = [t for t in leaves.values() if t.requires_grad]
    with FlopCounterMode(display=False) as counter:
        loss = functional_call(model, leaves, inputs).sum()
        torch.autograd.grad(loss, wrt)
    return counter.get_total_flops()


def analytic_flops(
    model_builder: ModelBuilder,
    width: float,
    input_shape: Sequence[int],
    include_backward: bool = True,
) -> int:
    """The convention above, summed over the ``nn.Conv{1,2,3}d`` and ``nn.Linear`` modules of
    ``model_builder(width)`` for one batch of ``input_shape`` (batch dimension included).

    Layer output shapes come from a forward on the ``meta`` device (no arithmetic is done);
    the FLOPs come from the formula, so this is independent of ``FlopCounterMode``.
    """
    total = 0

    def count(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        nonlocal total
        forward = 2 * output.numel() * math.prod(module.weight.shape[1:])
        total += forward
        if include_backward:
            total += forward * (2 if args[0].requires_grad else 1)

    with torch.device("meta"):
        model = model_builder(width)
    hooks = [
        m.register_forward_hook(count) for m in model.modules() if isinstance(m, _COUNTED_LAYERS)
    ]
    try:
        model(torch.empty(tuple(input_shape), device="meta"))
    finally:
        for hook in hooks:
            hook.remove()
    return total


def _parameter_count(model_builder: ModelBuilder, width: float) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in model_builder(width).parameters())


def parameter_fraction(model_builder: ModelBuilder, widths: Sequence[float]) -> list[float]:
    """P(r) / P(1) for each width r, P(r) the parameter count of ``model_builder(r)`` (SPEC §8)."""
    full = _parameter_count(model_builder, 1.0)
    return [_parameter_count(model_builder, r) / full for r in widths]


def mean_parameter_fraction(model_builder: ModelBuilder, widths: Sequence[float]) -> float:
    """mean_i P(r_i) / P(1): the communication and RABO computation share of SPEC §8 (0.2665
    for ResNet12 at widths {1, 1/2, 1/4, 1/8, 1/16})."""
    return statistics.fmean(parameter_fraction(model_builder, widths))


def communication_fraction(
    full_params: Params, masks: Sequence[StructuredMask | ElementMask]
) -> float:
    """Mean over clients of (coordinates the client's mask holds) / (all coordinates): the
    ratio of a round's communication to full-model training's (SPEC §8; up- and down-link alike).
    """
    if not masks:
        raise ValueError("communication_fraction needs at least one client mask")
    shapes = {name: t.shape for name, t in full_params.items()}
    total = sum(t.numel() for t in full_params.values())
    for client, mask in enumerate(masks):
        mask_shapes = {name: t.shape for name, t in mask.dense(device="meta").items()}
        if mask_shapes != shapes:
            raise ValueError(f"client {client}'s mask does not cover the parameters' shapes")
    return statistics.fmean(mask.numel() / total for mask in masks)
