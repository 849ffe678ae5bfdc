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

from rabo_bench.params import Params
from rabo_bench.problems.ranges import COUNT, Checked, setting
from rabo_bench.submodel import ClientMasks, StructuredMask
from rabo_bench.submodel.channels import ChannelLayer, ChannelLayers, kept_rows


class MaskPolicy(Checked, ABC):
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
    """Channels 0 .. keep - 1 (HeteroFL's static sub-models), on the CPU: rules that read no
    parameter values make their indices there (also for shape-only ``meta`` parameters);
    masks move indices to the parameters' device where they are used."""
    return torch.arange(keep, device="cpu")


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
    norm: int = setting(2, COUNT)  # p of the l_p norm
    mask_x: bool = True
    mask_y: bool = True

    @property
    def sides(self) -> frozenset[str]:
        """The sides whose channels are pruned."""
        return frozenset(s for s, on in (("x", self.mask_x), ("y", self.mask_y)) if on)

    def assign(self, x, y, capacities, round, rng, layers=None) -> list[ClientMasks]:
        layers, sides = layers or ChannelLayers.rows_of(x, y), self.sides
        choose = largest_channels(self.norm)
        return per_capacity(capacities, lambda r: layer_masks(layers, x, y, r, choose, sides))


def coupled_layers(layers: ChannelLayers) -> list[set[int]]:
    """Per channel layer, the indices of the other layers that index one of its parameters (a
    conv weight's output and input channels, a shortcut's two ends)."""
    owners: dict[tuple[str, str], list[int]] = {}
    for index, layer in enumerate(layers.layers):
        for side, name, _ in layer.members:
            owners.setdefault((side, name), []).append(index)
    neighbours: list[set[int]] = [set() for _ in layers.layers]
    for indices in owners.values():
        for a in indices:
            neighbours[a].update(b for b in indices if b != a)
    return neighbours


def layer_colours(layers: ChannelLayers) -> list[int]:
    """A colour per channel layer such that two coupled layers (:func:`coupled_layers`)
    differ: greedy colouring of the coupling graph in layer order."""
    neighbours = coupled_layers(layers)
    colours: list[int] = []
    for index in range(len(layers.layers)):
        taken = {colours[b] for b in neighbours[index] if b < index}
        colours.append(min(set(range(len(taken) + 1)) - taken))
    return colours


def segment_of(rank: int, round: int, colour: int, segments: int) -> int:
    """The segment that the ``rank``-th client of a capacity trains in a layer of ``colour``:
    (rank + round + sum_t d_t(rank // n) * c_t) mod n with n = ``segments`` and d_t, c_t the
    base-n digits of rank // n and of the colour. Clients of one capacity take the n segments
    in turn (rank + round), and the digit term shifts coupled layers (different colours)
    against each other across groups of n clients, so that every pair of segments of two
    coupled layers (every block of a conv weight) has a client once there are enough clients
    (for n = 2 and at most 4 colours: 8)."""
    if segments == 1:
        return 0
    group, shift = rank // segments, 0
    while colour and group:
        shift += (group % segments) * (colour % segments)
        group, colour = group // segments, colour // segments
    return (rank + round + shift) % segments


@dataclass(frozen=True)
class ImportanceSegments(ChannelImportance):
    """RABO's and RAFBO's default rule [OURS, SPEC §2 Step 1 (revision) and §9 item 9]: order
    the channels of every layer by l_p importance in the current global model, split that order
    into n = ceil(C / k) contiguous segments of k = ceil(r C) channels, and let the clients of
    equal capacity take different segments (:func:`segment_of`: the k-th client of capacity r,
    counted in client order, trains segment (k + q) mod n in round q, shifted between coupled
    layers so that every block of a weight that joins two layers has a client). The last
    segment wraps around to the most important channels, so every client holds exactly k
    channels per layer (the cost of capacity r). With enough clients of one capacity (CIFAR-LT:
    ten at r = 1/2) every coordinate is held in every round (C* >= 1). ``mask_x=False`` keeps
    x whole (only y is pruned on hyperparameter problems). Nested top-r
    (:class:`ChannelImportance`) is the ablation: with several clients of one capacity below 1
    it leaves channels that nobody holds."""

    name: ClassVar[str] = "importance_segments"

    def assign(self, x, y, capacities, round, rng, layers=None) -> list[ClientMasks]:
        layers, sides = layers or ChannelLayers.rows_of(x, y), self.sides
        names = [layer.name for layer in layers.layers]
        colours = dict(zip(names, layer_colours(layers), strict=True))
        orders = {
            layer.name: torch.sort(
                layer.importance(x, y, self.norm), descending=True, stable=True
            ).indices
            for layer in layers.layers
            if layer.sides & sides
        }

        def segment_masks(capacity: float, rank: int) -> ClientMasks:
            def choose(layer: ChannelLayer, x: Params, y: Params, keep: int) -> torch.Tensor:
                segments = math.ceil(layer.size / keep)
                segment = segment_of(rank, round, colours[layer.name], segments)
                order = orders[layer.name]
                shifted = segment * keep + torch.arange(keep, device=order.device)
                return order[shifted % layer.size]

            return layer_masks(layers, x, y, capacity, choose, sides)

        made: dict[tuple[float, tuple[int, ...]], ClientMasks] = {}
        ranks: dict[float, int] = {}
        masks = []
        for r in capacities:
            rank = ranks[r] = ranks.get(r, -1) + 1
            key = (r, self._segments(layers, sides, colours, r, rank, round))
            if key not in made:
                made[key] = segment_masks(r, rank)
            masks.append(made[key])
        return masks

    @staticmethod
    def _segments(layers, sides, colours, capacity, rank, round) -> tuple[int, ...]:
        """The client's segment in every masked layer: clients with equal tuples share a mask
        (computed once; 10,000 clients of 5 capacities need a handful of masks)."""
        return tuple(
            segment_of(
                rank,
                round,
                colours[layer.name],
                math.ceil(layer.size / kept_rows(capacity, layer.size)),
            )
            for layer in layers.layers
            if layer.sides & sides
        )


@dataclass(frozen=True)
class FixedSegments(MaskPolicy):
    """The C_x* experiment on the synthetic problems (SPEC §9 item 15 [OURS]; the rates suite):
    the channels of every layer that x holds are split into two contiguous halves; the last
    ``coverage`` clients train the second half and the others the first, every round, so
    C_x* = min(coverage, M - coverage). Layers only y holds stay whole (C_y* = M, which
    isolates the effect of C_x*); a y dimension coupled to a split x layer (a head's columns)
    follows it. Capacities are not used (each client holds half of x, i.e. capacity 1/2).
    Layers that share a parameter (a network's consecutive convolutions) are refused: both
    ends split would leave a weight's off-diagonal blocks to no client (C_x* = 0 per
    coordinate); :class:`CoverageHalves` is the rule for networks."""

    name: ClassVar[str] = "fixed_segments"
    coverage: int = setting(1, COUNT)  # and at most half the clients (checked per run)

    def split(self, layers: ChannelLayers) -> list[bool]:
        """Which channel layers are cut in halves: every layer that x holds."""
        split = ["x" in layer.sides for layer in layers.layers]
        for index, others in enumerate(coupled_layers(layers)):
            if split[index] and any(split[other] for other in others):
                raise ValueError(
                    f"fixed_segments would cut both ends of a weight of layer "
                    f"{layers.layers[index].name!r}, whose off-diagonal blocks no client would "
                    f"then hold; use policy.type = 'coverage_halves' on networks"
                )
        return split

    def assign(self, x, y, capacities, round, rng, layers=None) -> list[ClientMasks]:
        layers = layers or ChannelLayers.rows_of(x, y)
        clients = len(capacities)
        if not 1 <= self.coverage <= clients // 2:
            raise ValueError(
                f"{self.name} coverage must be in [1, {clients // 2}] for {clients} clients, "
                f"got {self.coverage}"
            )
        split = self.split(layers)
        halves = []
        for second in (False, True):
            kept = []
            for layer, cut_here in zip(layers.layers, split, strict=True):
                cut = (layer.size + 1) // 2
                start, stop = (cut, layer.size) if second else (0, cut)
                half = torch.arange(start, stop, device="cpu")  # as prefix_channels
                kept.append(half if cut_here else None)
            halves.append(ClientMasks(*layers.masks(x, y, kept)))
        return [halves[i >= clients - self.coverage] for i in range(clients)]


@dataclass(frozen=True)
class CoverageHalves(FixedSegments):
    """The C_x* experiment on networks (SPEC §7.1 Fig. 4 right, §9 item 15 [OURS]): as
    :class:`FixedSegments`, but only the x layers of one colour of the coupling graph
    (:func:`layer_colours`: every other layer of a chain, never both ends of a weight) are cut
    in halves, and the others are held whole. Each weight is then cut on at most one dimension,
    so every coordinate of x lies in exactly one half or is held by all: per coordinate, as
    Def. 3 counts, C_x* = min(coverage, M - coverage), from 1 to M / 2. Each client holds
    about half of x and does about half of the full model's convolution work, as at capacity
    1/2. A y dimension coupled to a cut layer follows it; y is otherwise whole."""

    name: ClassVar[str] = "coverage_halves"

    def split(self, layers: ChannelLayers) -> list[bool]:
        """Which channel layers are cut in halves: those of colour 0 that x holds."""
        colours = layer_colours(layers)
        return [c == 0 and "x" in a.sides for a, c in zip(layers.layers, colours, strict=True)]
