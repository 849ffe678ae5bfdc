"""Named parameter dicts and their flat-vector layout.

A model's parameters are ``dict[str, Tensor]`` (usable with ``torch.func.functional_call``).
Second-order maths (Neumann series, CG, coordinate perturbations) is simplest on one flat
vector, so :class:`Layout` converts between the two without copying more than once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

Params = dict[str, torch.Tensor]


def on_device(params: Params, device: torch.device) -> Params:
    """``params`` with every tensor on ``device`` (the same tensors where they are there)."""
    return {name: t.to(device) for name, t in params.items()}


@dataclass(frozen=True)
class Layout:
    """The names, shapes and order of a parameter dict, for flattening it into one vector."""

    shapes: tuple[tuple[str, torch.Size], ...]

    @classmethod
    def of(cls, params: Params) -> Layout:
        return cls(tuple((name, torch.Size(t.shape)) for name, t in params.items()))

    @property
    def numel(self) -> int:
        return sum(math.prod(shape) for _, shape in self.shapes)

    def flatten(self, params: Params) -> torch.Tensor:
        return torch.cat([params[name].reshape(-1) for name, _ in self.shapes])

    def unflatten(self, vector: torch.Tensor) -> Params:
        """Views into ``vector``; a layout of one tensor of the vector's shape gives the vector
        itself (no view nodes in autograd graphs built through it)."""
        if len(self.shapes) == 1 and self.shapes[0][1] == vector.shape:
            return {self.shapes[0][0]: vector}
        out, start = {}, 0
        for name, shape in self.shapes:
            n = math.prod(shape)
            out[name] = vector[start : start + n].reshape(shape)
            start += n
        return out

    def unflatten_rows(self, rows: torch.Tensor) -> Params:
        """:meth:`unflatten` of each row of ``rows`` [B, numel]: tensors [B, *shape]."""
        out, start = {}, 0
        for name, shape in self.shapes:
            n = math.prod(shape)
            out[name] = rows[:, start : start + n].reshape(rows.shape[0], *shape)
            start += n
        return out
