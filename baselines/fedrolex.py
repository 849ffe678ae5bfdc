"""FedRolex (SPEC §6): per channel layer, a rolling window of ceil(r C) channels whose start
advances by one channel per round and wraps, {(q + c) mod C : c < ceil(r C)}; all clients
share the start in a round. Single-level joint training, aggregation over holders."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from rabo_bench.algorithms import register, single_level
from rabo_bench.federated.policies import MaskPolicy, layer_masks, per_capacity
from rabo_bench.submodel import ClientMasks
from rabo_bench.submodel.channels import ChannelLayers


@dataclass(frozen=True)
class RollingWindow(MaskPolicy):
    name: ClassVar[str] = "rolling_window"

    def assign(self, x, y, capacities, round, rng, layers=None) -> list[ClientMasks]:
        def window(layer, x, y, keep: int) -> torch.Tensor:
            return (round + torch.arange(keep, device="cpu")) % layer.size  # as prefix_channels

        layers = layers or ChannelLayers.rows_of(x, y)
        return per_capacity(capacities, lambda r: layer_masks(layers, x, y, r, window))


register(
    single_level(
        "fedrolex",
        "FedRolex: rolling channel window advancing one channel per round, joint SGD",
        RollingWindow(),
    )
)
