"""Static (HeteroFL; SPEC §6): every channel layer keeps channels 0 .. ceil(r C) - 1, the same
prefix in every round; single-level joint training, aggregation over holders."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rabo_bench.algorithms import register, single_level
from rabo_bench.federated.policies import MaskPolicy, layer_masks, per_capacity, prefix_channels
from rabo_bench.submodel import ClientMasks
from rabo_bench.submodel.channels import ChannelLayers


@dataclass(frozen=True)
class StaticPrefix(MaskPolicy):
    name: ClassVar[str] = "static_prefix"

    def assign(self, x, y, capacities, round, rng, layers=None) -> list[ClientMasks]:
        layers = layers or ChannelLayers.rows_of(x, y)
        return per_capacity(capacities, lambda r: layer_masks(layers, x, y, r, prefix_channels))


register(
    single_level(
        "static",
        "Static (HeteroFL): fixed channel prefix per width, single-level joint SGD",
        StaticPrefix(),
    )
)
