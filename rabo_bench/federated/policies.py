"""Mask policies: which channels each client trains in a round (SPEC eq. 3, DESIGN §1).

A policy chooses channels per :class:`ChannelLayer` of the problem's channel structure
(``BilevelProblem.channel_layers``); the structure carries the choice to every coupled tensor
dimension. On the synthetic problems every parameter's rows (dim-0 indices) are its own
channels and a 1-D parameter's channels are its coordinates. A client of capacity (width
ratio) r keeps ceil(r * C) of the C channels of every masked layer, at least one.
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
from rabo_bench.submodel.channels import ChannelLayer, ChannelLayers


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
        self,
        x: Params,
        y: Params,
        capacities: Sequence[float],
        round: int,
        rng: torch.Generator,
        layers: ChannelLayers | None = None,
    ) -> list[ClientMasks]:
        """One :class:`ClientMasks` per client; ``layers`` defaults to
        ``ChannelLayers.rows_of(x, y)``."""


@dataclass(frozen=True)
class FullModel(MaskPolicy):
    """Every client trains everything (FedMBO, FedAvg); capacities are ignored."""

    name: ClassVar[str] = "full"

    def assign(self, x, y, capacities, round, rng, layers=None) -> list[ClientMasks]:
        masks = ClientMasks(StructuredMask.full(x), StructuredMask.full(y))
        return [masks] * len(capacities)


ChannelChooser = Callable[[ChannelLayer, Params, Params, int], torch.Tensor]


def per_capacity(
    capacities: Sequence[float], make: Callable[[float], ClientMasks]
) -> list[ClientMasks]:
    """``make(r)`` for each client, computed once per distinct capacity and shared by the
    clients that have it (for rules where the sub-model depends on the capacity alone; with
    10,000 clients and 5 capacities this is 5 mask computations, not 10,000)."""
    made: dict[float, ClientMasks] = {}
    return [made[r] if r in made else made.setdefault(r, make(r)) for r in capacities]


def layer_masks(
    layers: ChannelLayers,
    x: Params,
    y: Params,
    capacity: float,
    choose: ChannelChooser,
    sides: frozenset[str] = frozenset({"x", "y"}),
) -> ClientMasks:
    """Keep ``choose(layer, x, y, keep)`` channels (keep = ceil(r C)) of every channel layer
    that has a member on one of ``sides``; the layer's other members follow (a pruned conv
    channel takes the head's column with it). Other layers are held whole."""
    kept = []
    for layer in layers.layers:
        if layer.sides & sides:
            chosen = choose(layer, x, y, kept_rows(capacity, layer.size))
            kept.append(torch.sort(chosen).values)
        else:
            kept.append(None)
    return ClientMasks(*layers.masks(x, y, kept))


def prefix_channels(layer: ChannelLayer, x: Params, y: Params, keep: int) -> torch.Tensor:
    """Channels 0 .. keep - 1 (HeteroFL's static sub-models)."""
    return torch.arange(keep)


def largest_channels(order: int) -> ChannelChooser:
    """The channels of largest l_p importance; a stable sort breaks ties towards the lower index."""

    def choose(layer: ChannelLayer, x: Params, y: Params, keep: int) -> torch.Tensor:
        scores = layer.importance(x, y, order)
        return torch.sort(scores, descending=True, stable=True).indices[:keep]

    return choose


@dataclass(frozen=True)
class ChannelImportance(MaskPolicy):
    """RABO's rule [OURS, SPEC §2 Step 1]: keep the ceil(r_i C) channels of largest l_p norm in
    the current global model, layer by layer, recomputed every round, for x and y alike ("both
    follow the same capacity"). ``mask_x=False`` keeps layers that only x holds whole
    (hyperparameter tuning, where only y is pruned). Sub-models are nested: a smaller capacity
    keeps a prefix of a larger one's ranking."""

    name: ClassVar[str] = "importance"
    norm: int = 2
    mask_x: bool = True
    mask_y: bool = True

    def assign(self, x, y, capacities, round, rng, layers=None) -> list[ClientMasks]:
        layers = layers or ChannelLayers.rows_of(x, y)
        sides = frozenset(s for s, on in (("x", self.mask_x), ("y", self.mask_y)) if on)
        choose = largest_channels(self.norm)
        return per_capacity(capacities, lambda r: layer_masks(layers, x, y, r, choose, sides))


@dataclass(frozen=True)
class FixedSegments(MaskPolicy):
    """The C_x* experiment (SPEC §7.1 Fig. 4 right, [OURS] §9 item 15): the channels of every
    layer that x holds are split into two contiguous halves; the last ``coverage`` clients
    train the second half and the others the first, every round, so C_x* = min(coverage,
    M - coverage). Layers only y holds stay whole (C_y* = M on the synthetic problems, which
    isolates the effect of C_x*); a y dimension coupled to a split x layer (a head's columns)
    follows it. Capacities are not used (each client holds half of x, i.e. capacity 1/2)."""

    name: ClassVar[str] = "fixed_segments"
    coverage: int = 1

    def assign(self, x, y, capacities, round, rng, layers=None) -> list[ClientMasks]:
        layers = layers or ChannelLayers.rows_of(x, y)
        clients = len(capacities)
        if not 1 <= self.coverage <= clients // 2:
            raise ValueError(
                f"fixed_segments coverage must be in [1, {clients // 2}] for {clients} clients, "
                f"got {self.coverage}"
            )
        halves = []
        for second in (False, True):
            kept = []
            for layer in layers.layers:
                cut = (layer.size + 1) // 2
                half = torch.arange(cut, layer.size) if second else torch.arange(cut)
                kept.append(half if "x" in layer.sides else None)
            halves.append(ClientMasks(*layers.masks(x, y, kept)))
        return [halves[i >= clients - self.coverage] for i in range(clients)]
