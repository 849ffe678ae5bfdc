"""Which tensor dimensions share a channel: the coupling a structured sub-model must respect.

Pruning an output channel of a conv layer also removes the matching input channel of every
layer that reads it (the next conv, a residual shortcut, the head's column) and the channel's
normalisation scale and shift (SPEC §2 Step 1: "the next layer's input channels follow; BN/bias
entries follow their channels"). A :class:`ChannelLayer` names one such set of C channels and
every (side, parameter, dimension) that indexes it; :class:`ChannelLayers` turns one kept
channel set per layer into the client's (m_x, m_y) pair of :class:`StructuredMask`.

A layer's *producers* are its members at dimension 0 (the filters, biases and norm
parameters that make the channel); channel importance is the l2 norm over them (SPEC §9 item
9). Dimensions no layer claims are held whole (network input channels, class rows).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from rabo_bench.params import Params
from rabo_bench.submodel.mask import StructuredMask

Member = tuple[str, str, int]  # (side "x" or "y", parameter name, dimension)


def kept_rows(capacity: float, rows: int) -> int:
    """ceil(r * C) rows, at least 1 (with a guard against 0.1 * 10 = 1.0000000000000002)."""
    if not 0 < capacity <= 1:
        raise ValueError(f"capacity must be in (0, 1], got {capacity}")
    return max(1, math.ceil(capacity * rows - 1e-9))


@dataclass(frozen=True)
class ChannelLayer:
    """C channels and every (side, parameter, dim) that indexes them."""

    name: str
    size: int
    members: tuple[Member, ...]

    @property
    def sides(self) -> set[str]:
        return {side for side, _, _ in self.members}

    def importance(self, x: Params, y: Params, order: int = 2) -> torch.Tensor:
        """Per channel, the l_p norm of everything that produces it (members at dim 0)."""
        total = None
        for side, name, dim in self.members:
            if dim != 0:
                continue
            t = (x if side == "x" else y)[name].detach()
            part = t.reshape(t.shape[0], -1).abs().pow(order).sum(dim=1)
            total = part if total is None else total + part
        if total is None:
            raise ValueError(f"channel layer {self.name!r} has no producing parameter (dim 0)")
        return total.pow(1.0 / order)


@dataclass(frozen=True)
class ChannelLayers:
    """The channel structure of a problem's (x, y)."""

    layers: tuple[ChannelLayer, ...]

    def __post_init__(self) -> None:
        seen: dict[tuple[str, str, int], str] = {}
        for layer in self.layers:
            for member in layer.members:
                if member in seen:
                    raise ValueError(
                        f"{member} belongs to channel layers {seen[member]!r} and {layer.name!r}"
                    )
                seen[member] = layer.name

    @classmethod
    def rows_of(cls, x: Params, y: Params) -> ChannelLayers:
        """Every parameter's rows (dim 0) are its own channels: the synthetic problems' structure,
        where a 1-D parameter's channels are its coordinates."""
        return cls(
            tuple(
                ChannelLayer(f"{side}.{name}", t.shape[0], ((side, name, 0),))
                for side, params in (("x", x), ("y", y))
                for name, t in params.items()
            )
        )

    def masks(
        self, x: Params, y: Params, kept: Sequence[torch.Tensor | None]
    ) -> tuple[StructuredMask, StructuredMask]:
        """(m_x, m_y) keeping channels ``kept[l]`` (sorted indices, None = all) of layer l."""
        if len(kept) != len(self.layers):
            raise ValueError(f"{len(kept)} kept-channel sets for {len(self.layers)} layers")
        index = {
            side: {name: [None] * t.dim() for name, t in params.items()}
            for side, params in (("x", x), ("y", y))
        }
        for layer, channels in zip(self.layers, kept, strict=True):
            if channels is None:
                continue
            for side, name, dim in layer.members:
                index[side][name][dim] = channels
        return (
            StructuredMask({n: tuple(i) for n, i in index["x"].items()}, x),
            StructuredMask({n: tuple(i) for n, i in index["y"].items()}, y),
        )
