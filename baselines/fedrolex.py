"""FedRolex (SPEC §6): a rolling window of ceil(r C) rows whose start advances by one row per
round and wraps, {(q + c) mod C : c < ceil(r C)}; all clients share the start in a round.
Single-level joint training, aggregation over holders."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from rabo_bench.algorithms import register, single_level
from rabo_bench.federated.context import ClientMasks
from rabo_bench.federated.policies import MaskPolicy, rows_mask


@dataclass(frozen=True)
class RollingWindow(MaskPolicy):
    name: ClassVar[str] = "rolling_window"

    def assign(self, x, y, capacities, round, rng) -> list[ClientMasks]:
        def window(t: torch.Tensor, keep: int) -> torch.Tensor:
            return (round + torch.arange(keep)) % t.shape[0]

        return [ClientMasks(rows_mask(x, r, window), rows_mask(y, r, window)) for r in capacities]


register(
    single_level(
        "fedrolex",
        "FedRolex: rolling channel window advancing one channel per round, joint SGD",
        RollingWindow(),
    )
)
