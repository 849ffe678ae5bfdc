"""Evaluate what was trained: the clients' own sub-models, and the coordinates nobody trained.

The global model that a sub-model method aggregates is not what any client trains: a client of
capacity r runs only its sub-model, and coordinates that no client holds keep their initial
values. Two measures say how much that matters:

* ``submodel_accuracy``: the accuracy of each client's sub-model (x ⊙ m_x, y ⊙ m_y) of the last
  round, evaluated exactly like the global model (the physically narrow model where the masks
  are structured and the problem supports it, SPEC eq. 4), averaged over the clients. Clients
  that share a mask share one evaluation. Problems without an accuracy metric give nothing.
* ``untrained_fraction``: the fraction of the coordinates of (x, y) that no client has held in
  any round since round 0, i.e. that are still at their initial values in the global model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from rabo_bench.params import Params
from rabo_bench.problems.base import BilevelProblem
from rabo_bench.submodel import StructuredMask


def _submodel(problem: BilevelProblem, params: Params, mask: Any) -> Params:
    """The narrow tensors of a structured mask where the problem runs them, else params ⊙ m."""
    if problem.physical_submodels and isinstance(mask, StructuredMask):
        return mask.extract(params)
    return mask.embed(mask.extract(params), params)


def submodel_accuracy(problem: BilevelProblem, x: Params, y: Params, masks: Sequence) -> dict:
    """``{"submodel_accuracy": mean over clients}`` for the clients' ``masks`` (a
    :class:`~rabo_bench.federated.context.ClientMasks` each), or {} where the problem reports
    no accuracy. Uses ``problem.evaluate`` (the intermediate-point evaluation set)."""
    if not problem.reports_accuracy:
        return {}
    scores: dict[int, float] = {}
    total = 0.0
    for m in masks:
        key = id(m)  # policies share one ClientMasks object between clients of one sub-model
        if key not in scores:
            metrics = problem.evaluate(_submodel(problem, x, m.x), _submodel(problem, y, m.y))
            scores[key] = float(metrics["accuracy"])
        total += scores[key]
    return {"submodel_accuracy": total / len(masks)}


class TrainedCoordinates:
    """The union over rounds of the coordinates some client held (see the module docstring),
    kept on the CPU whatever the parameters' device."""

    def __init__(self, x: Params, y: Params) -> None:
        self.held = {
            side: {
                name: torch.zeros(t.shape, dtype=torch.bool, device="cpu")
                for name, t in params.items()
            }
            for side, params in (("x", x), ("y", y))
        }

    def add(self, masks: Sequence) -> None:
        """Mark every coordinate held by one of this round's client ``masks``."""
        seen = set()
        for m in masks:
            for side, mask in (("x", m.x), ("y", m.y)):
                if id(mask) in seen:
                    continue
                seen.add(id(mask))
                for name, dense in mask.dense("cpu").items():
                    self.held[side][name] |= dense

    def untrained_fraction(self) -> float:
        tensors = [t for side in self.held.values() for t in side.values()]
        total = sum(t.numel() for t in tensors)
        return 1.0 - sum(int(t.sum()) for t in tensors) / total

    def state(self) -> dict[str, dict[str, torch.Tensor]]:
        return self.held

    def restore(self, state: dict[str, dict[str, torch.Tensor]]) -> None:
        self.held = state
