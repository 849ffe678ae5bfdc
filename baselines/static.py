"""Static (HeteroFL; SPEC §6): every parameter keeps rows (output channels) 0 .. ceil(r C) - 1,
the same prefix in every round; single-level joint training, aggregation over holders."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rabo_bench.algorithms import register, single_level
from rabo_bench.federated.context import ClientMasks
from rabo_bench.federated.policies import MaskPolicy, prefix_rows, rows_mask


@dataclass(frozen=True)
class StaticPrefix(MaskPolicy):
    name: ClassVar[str] = "staticprefix_rows"

    def assign(self, x, y, capacities, round, rng) -> list[ClientMasks]:
        return [
            ClientMasks(rows_mask(x, r, prefix_rows), rows_mask(y, r, prefix_rows))
            for r in capacities
        ]


register(
    single_level(
        "static",
        "Static (HeteroFL): fixed channel prefix per width, single-level joint SGD",
        StaticPrefix(),
    )
)
