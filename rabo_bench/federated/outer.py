"""Outer steps: how clients estimate the hypergradient and the server updates x (SPEC eq. 7-8)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from rabo_bench.federated.aggregation import masked_step
from rabo_bench.federated.context import ClientMasks, RoundContext
from rabo_bench.hypergrad import HypergradientEstimator, LocalObjective, Oracles
from rabo_bench.params import Params


class OuterStep(ABC):
    name: ClassVar[str]

    @abstractmethod
    def run(self, ctx: RoundContext, x: Params, y: Params, masks: list[ClientMasks]) -> Params:
        """The new global x, given the broadcast inner iterate y = y^{q+1}."""


def client_hypergradient(
    ctx: RoundContext,
    estimator: HypergradientEstimator,
    x: Params,
    y: Params,
    client: int,
    masks: ClientMasks,
) -> Params:
    """Client ``client``'s estimate on its sub-model at (x ⊙ m_x, y ⊙ m_y), embedded full-size
    (zero off the mask). Messages: down y_sub (the broadcast y^{q+1}), up h_i (|x_sub|)."""
    obj = LocalObjective(ctx.problem, client, x, y, masks.x, masks.y)
    x_sub, y_sub = obj.pack_x(x), obj.pack_y(y)
    ctx.ledger.send_down(client, len(y_sub))
    h = estimator(Oracles(obj, ctx.ledger.counters[client]), x_sub, y_sub, ctx.rng(client, "outer"))
    ctx.ledger.send_up(client, len(x_sub))
    return obj.unpack_x(h)


@dataclass(frozen=True)
class LocalHypergradient(OuterStep):
    """Each client estimates grad F on its own sub-model with ``estimator`` (RABO: local Neumann,
    eq. 7; RAFBO: coordinate finite differences, eq. 10); the server applies
    x_j <- x_j - lr * mean_{i in C_j} h_{i,j} (eq. 8), leaving uncovered coordinates unchanged."""

    name: ClassVar[str] = "local_hypergradient"
    estimator: HypergradientEstimator
    lr: float = 0.01

    def run(self, ctx, x, y, masks) -> Params:
        hypergrads = [
            client_hypergradient(ctx, self.estimator, x, y, i, masks[i]) for i in ctx.clients
        ]
        return masked_step(x, hypergrads, [m.x.dense() for m in masks], self.lr)


@dataclass(frozen=True)
class NoOuterStep(OuterStep):
    """Single-level methods: x was already trained in the inner phase."""

    name: ClassVar[str] = "none"

    def run(self, ctx, x, y, masks) -> Params:
        return x
