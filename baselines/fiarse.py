"""FIARSE (SPEC §6): unstructured, importance = |theta|, one global top-k over every parameter of
(x, y) together (model-wise, not layer-wise), recomputed from the global model every round.

k = floor(s * numel) with s the parameter fraction of the width-r structured sub-model of the
same model [OURS, SPEC §9 item 2: "FIARSE gets the matching parameter fraction"], so FIARSE
trains as many parameters as Static/FedRolex/OAP at the same capacity (about r^2 on CNNs, r on
1-D synthetic parameters). The threshold tau is the k-th largest |theta|; exactly k entries are
kept (ties by index). Clients train single-level through theta * mask with FIARSE's surrogate
mask derivative (:mod:`rabo_bench.submodel.element`); the mask is fixed within a round.
Aggregation: the mean update over the clients holding each coordinate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from rabo_bench.algorithms import register, single_level
from rabo_bench.federated.policies import (
    MaskPolicy,
    layer_masks,
    per_capacity,
    prefix_channels,
)
from rabo_bench.params import Params
from rabo_bench.submodel import ClientMasks, ElementMask
from rabo_bench.submodel.channels import ChannelLayers


def matching_fraction(
    x: Params, y: Params, capacity: float, layers: ChannelLayers | None = None
) -> float:
    """Parameter fraction of the width-``capacity`` structured sub-model of (x, y)."""
    layers = layers or ChannelLayers.rows_of(x, y)
    masks = layer_masks(layers, x, y, capacity, prefix_channels)
    kept = masks.x.numel() + masks.y.numel()
    return kept / sum(t.numel() for t in (*x.values(), *y.values()))


def global_top_k(x: Params, y: Params, fraction: float) -> tuple[ElementMask, ElementMask]:
    """Keep exactly k = max(1, floor(fraction * numel)) entries of largest |theta|."""
    names = [("x", n) for n in x] + [("y", n) for n in y]
    tensors = [(x if side == "x" else y)[n].detach() for side, n in names]
    magnitudes = torch.cat([t.reshape(-1).abs() for t in tensors])
    k = max(1, int(fraction * magnitudes.numel() + 1e-9))
    order = torch.sort(magnitudes, descending=True, stable=True).indices
    flat_keep = torch.zeros(magnitudes.numel(), dtype=torch.bool, device=magnitudes.device)
    flat_keep[order[:k]] = True
    threshold = float(magnitudes[order[k - 1]]) if k < magnitudes.numel() else None
    keeps, start = {"x": {}, "y": {}}, 0
    for (side, name), t in zip(names, tensors, strict=True):
        keeps[side][name] = flat_keep[start : start + t.numel()].reshape(t.shape)
        start += t.numel()
    if threshold == 0.0:  # a zero magnitude at the cut: nothing to differentiate through
        threshold = None
    return ElementMask(keeps["x"], threshold), ElementMask(keeps["y"], threshold)


@dataclass(frozen=True)
class GlobalTopK(MaskPolicy):
    name: ClassVar[str] = "global_top_k"

    def assign(self, x, y, capacities, round, rng, layers=None) -> list[ClientMasks]:
        return per_capacity(
            capacities,
            lambda r: ClientMasks(*global_top_k(x, y, matching_fraction(x, y, r, layers))),
        )


register(
    single_level(
        "fiarse",
        "FIARSE: global top-k |theta| sub-models, surrogate mask gradient, joint SGD",
        GlobalTopK(),
    )
)
