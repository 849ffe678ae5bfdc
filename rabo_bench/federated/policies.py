"""Mask policies: which rows (channels) each client trains in a round (SPEC eq. 3, DESIGN §1).

On the synthetic problems every parameter's rows (dim-0 indices) are its channels; a 1-D
parameter's rows are its coordinates. A client of capacity (width ratio) r keeps
ceil(r * C) of the C rows of every masked parameter, at least one.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch

from rabo_bench.federated.context import ClientMasks
from rabo_bench.params import Params
from rabo_bench.submodel import StructuredMask


def kept_rows(capacity: float, rows: int) -> int:
    """ceil(r * C) rows, at least 1 (with a guard against 0.1 * 10 = 1.0000000000000002)."""
    if not 0 < capacity <= 1:
        raise ValueError(f"capacity must be in (0, 1], got {capacity}")
    return max(1, math.ceil(capacity * rows - 1e-9))


class MaskPolicy(ABC):
    """Decides every client's sub-model at the start of a round, from the global model."""

    name: ClassVar[str]

    @abstractmethod
    def assign(
        self, x: Params, y: Params, capacities: Sequence[float], round: int, rng: torch.Generator
    ) -> list[ClientMasks]:
        """One :class:`ClientMasks` per client."""


@dataclass(frozen=True)
class FullModel(MaskPolicy):
    """Every client trains everything (FedMBO, FedAvg); capacities are ignored."""

    name: ClassVar[str] = "full"

    def assign(self, x, y, capacities, round, rng) -> list[ClientMasks]:
        masks = ClientMasks(StructuredMask.full(x), StructuredMask.full(y))
        return [masks] * len(capacities)


RowChooser = Callable[[torch.Tensor, int], torch.Tensor]


def rows_mask(params: Params, capacity: float, choose: RowChooser) -> StructuredMask:
    """Keep, in every parameter, the rows ``choose(tensor, keep)`` returns (keep = ceil(r C))."""
    rows = {}
    for name, t in params.items():
        chosen = choose(t.detach(), kept_rows(capacity, t.shape[0]))
        rows[name] = torch.sort(chosen).values
    return StructuredMask.rows(params, rows)


def prefix_rows(t: torch.Tensor, keep: int) -> torch.Tensor:
    """Rows 0 .. keep - 1 (HeteroFL's static sub-models)."""
    return torch.arange(keep)


def largest_rows(order: int) -> RowChooser:
    """The rows of largest l_p norm; a stable sort breaks ties towards the lower index."""

    def choose(t: torch.Tensor, keep: int) -> torch.Tensor:
        scores = t.reshape(t.shape[0], -1).norm(p=order, dim=1)
        return torch.sort(scores, descending=True, stable=True).indices[:keep]

    return choose


@dataclass(frozen=True)
class ChannelImportance(MaskPolicy):
    """RABO's rule [OURS, SPEC §2 Step 1]: keep the ceil(r_i C) rows of largest l_p norm in the
    current global model, recomputed every round, for x and y alike ("both follow the same
    capacity"). ``mask_x=False`` keeps x whole (hyperparameter tuning, where only y is pruned).
    Sub-models are nested: a smaller capacity keeps a prefix of a larger one's ranking."""

    name: ClassVar[str] = "importance"
    norm: int = 2
    mask_x: bool = True
    mask_y: bool = True

    def assign(self, x, y, capacities, round, rng) -> list[ClientMasks]:
        out = []
        for r in capacities:
            choose = largest_rows(self.norm)
            mx = rows_mask(x, r, choose) if self.mask_x else StructuredMask.full(x)
            my = rows_mask(y, r, choose) if self.mask_y else StructuredMask.full(y)
            out.append(ClientMasks(mx, my))
        return out


@dataclass(frozen=True)
class FixedSegments(MaskPolicy):
    """The C_x* experiment (SPEC §7.1 Fig. 4 right, [OURS] §9 item 15): x's rows are split into
    two contiguous halves; the last ``coverage`` clients train the second half and the others
    the first, every round, so C_x* = min(coverage, M - coverage). y is held whole by every
    client (C_y* = M), which isolates the effect of C_x*. Capacities are not used (each client
    holds half of x, i.e. capacity 1/2)."""

    name: ClassVar[str] = "fixed_segments"
    coverage: int = 1

    def assign(self, x, y, capacities, round, rng) -> list[ClientMasks]:
        clients = len(capacities)
        if not 1 <= self.coverage <= clients // 2:
            raise ValueError(
                f"fixed_segments coverage must be in [1, {clients // 2}] for {clients} clients, "
                f"got {self.coverage}"
            )
        halves = []
        for second in (False, True):
            rows = {}
            for name, t in x.items():
                cut = (t.shape[0] + 1) // 2
                rows[name] = torch.arange(cut, t.shape[0]) if second else torch.arange(cut)
            halves.append(ClientMasks(StructuredMask.rows(x, rows), StructuredMask.full(y)))
        return [halves[i >= clients - self.coverage] for i in range(clients)]
