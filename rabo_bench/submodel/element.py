"""Unstructured (element-wise) masks, for FIARSE's global top-k sub-models (SPEC §6).

The sub-model is the vector of held values of each parameter (no dense smaller tensor exists).
With a ``threshold`` tau, :meth:`ElementMask.embed` applies FIARSE's masked forward
theta * 1[|theta| >= tau] with its surrogate mask derivative 2 tau / (|theta| + tau)^2 on kept
entries: the embedded weight is  w = theta * (1 + s - stopgrad(s)),  s = -2 tau / (|theta| + tau),
whose value is theta and whose derivative is  1 + 2 tau |theta| / (|theta| + tau)^2,  so the
update is importance-aware and coordinates can cross the threshold between rounds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from rabo_bench.params import Params


def surrogate_weights(values: torch.Tensor, threshold: float) -> torch.Tensor:
    """theta with the surrogate mask derivative (value unchanged)."""
    s = -2 * threshold / (values.abs() + threshold)
    return values * (1 + s - s.detach())


@dataclass(frozen=True, eq=False)
class ElementMask:
    """Held coordinates as one boolean tensor per parameter; ``threshold`` enables FIARSE's
    surrogate gradient (None: a plain mask, nothing differentiated through it)."""

    keep: Mapping[str, torch.Tensor]
    threshold: float | None = None

    def __post_init__(self) -> None:
        for name, t in self.keep.items():
            if t.dtype != torch.bool:
                raise ValueError(f"element mask {name!r} must be a bool tensor, got {t.dtype}")
        if self.threshold is not None and not self.threshold > 0:
            raise ValueError(f"threshold must be positive or None, got {self.threshold}")

    def dense(self, device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
        return {name: t.to(device) if device is not None else t for name, t in self.keep.items()}

    def numel(self) -> int:
        return sum(int(t.sum()) for t in self.keep.values())

    def extract(self, params: Params) -> Params:
        return {name: params[name][keep] for name, keep in self.keep.items()}

    def scatter(self, params: Params, sub: Params) -> Params:
        return {
            name: params[name].index_put((keep,), sub[name]) for name, keep in self.keep.items()
        }

    def embed(self, sub: Params, like: Params) -> Params:
        if self.threshold is not None:
            sub = {name: surrogate_weights(v, self.threshold) for name, v in sub.items()}
        return self.scatter({name: torch.zeros_like(t) for name, t in like.items()}, sub)
