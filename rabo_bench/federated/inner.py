"""Inner solvers: how clients move y on their sub-models, and how the server combines it.

An inner solver returns the whole state (x, y): the bilevel ones leave x alone, while the
single-level sub-model baselines train x and y jointly here and have no outer step.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from rabo_bench.federated.aggregation import masked_step
from rabo_bench.federated.context import ClientMasks, RoundContext
from rabo_bench.hypergrad import LocalObjective, Oracles
from rabo_bench.params import Params


class InnerSolver(ABC):
    name: ClassVar[str]

    @abstractmethod
    def run(
        self, ctx: RoundContext, x: Params, y: Params, masks: list[ClientMasks]
    ) -> tuple[Params, Params]:
        """The global (x, y) after this round's inner phase."""


@dataclass(frozen=True)
class LocalSGD(InnerSolver):
    """RABO's inner phase (SPEC eq. 5-6): each client takes ``steps`` SGD steps on g_i over its
    sub-model from y ⊙ m_{y,i}, uploads Delta_i = (y^0 - y^T) / lr (the sum of its local
    gradients), and the server applies y_j <- y_j - lr * mean_{i in C_j} Delta_{i,j} (eq. 6),
    i.e. averages the local models over the clients holding each coordinate.
    Messages per client: down x_sub + y_sub, up Delta_i (|y_sub|)."""

    name: ClassVar[str] = "local_sgd"
    steps: int = 10
    lr: float = 0.01

    def run(self, ctx, x, y, masks) -> tuple[Params, Params]:
        deltas = []
        for i in ctx.clients:
            obj = LocalObjective(ctx.problem, i, x, y, masks[i].x, masks[i].y)
            x_sub, y_start = obj.pack_x(x), obj.pack_y(y)
            ctx.ledger.send_down(i, len(x_sub) + len(y_start))
            rng = ctx.rng(i, "inner")
            batches = [obj.sample_g(rng) for _ in range(self.steps)]
            oracles = Oracles(obj, ctx.ledger.counters[i])
            y_end = oracles.inner_steps(x_sub, y_start, self.lr, batches)
            deltas.append(obj.unpack_y((y_start - y_end) / self.lr))
            ctx.ledger.send_up(i, len(y_start))
        return x, masked_step(y, deltas, [m.y.dense() for m in masks], self.lr)


@dataclass(frozen=True)
class MinibatchSGD(InnerSolver):
    """FedMBO's inner loop (SPEC §5): ``steps`` global SGD steps; in each, every client sends
    grad_y g_i at the current global y (on its sub-model) and the server takes the step with
    the parameter-wise mean (eq. 6 with one step). No local drift.
    Messages per client and step: down y_sub, up grad (|y_sub|); plus x_sub once."""

    name: ClassVar[str] = "minibatch_sgd"
    steps: int = 10
    lr: float = 0.01

    def run(self, ctx, x, y, masks) -> tuple[Params, Params]:
        objectives = [
            LocalObjective(ctx.problem, i, x, y, masks[i].x, masks[i].y) for i in ctx.clients
        ]
        rngs = [ctx.rng(i, "inner") for i in ctx.clients]
        dense = [m.y.dense() for m in masks]
        for i, obj in zip(ctx.clients, objectives, strict=True):
            ctx.ledger.send_down(i, obj.x_layout.numel)
        for _ in range(self.steps):
            grads = []
            for i, obj in zip(ctx.clients, objectives, strict=True):
                y_sub = obj.pack_y(y)
                ctx.ledger.send_down(i, len(y_sub))
                oracles = Oracles(obj, ctx.ledger.counters[i])
                grads.append(
                    obj.unpack_y(oracles.grad_g(obj.pack_x(x), y_sub, obj.sample_g(rngs[i])))
                )
                ctx.ledger.send_up(i, len(y_sub))
            y = masked_step(y, grads, dense, self.lr)
        return x, y


@dataclass(frozen=True)
class JointLocalSGD(InnerSolver):
    """Single-level sub-model training (Static, FedRolex, FIARSE, OAP, FedAvg; SPEC §6): each
    client takes ``steps`` SGD steps on the task loss over its sub-model of (x, y) jointly, and
    the server averages the local models of x and of y over the clients holding each
    coordinate (eq. 6/8 with the same rule; HeteroFL aggregation). With full masks this is
    FedAvg. Messages per client: down x_sub + y_sub, up the two updates."""

    name: ClassVar[str] = "joint_local_sgd"
    steps: int = 10
    lr: float = 0.01
    loss: str = "task"  # the problem's single-level loss family (protonet, maml, ...)

    def run(self, ctx, x, y, masks) -> tuple[Params, Params]:
        dx, dy = [], []
        for i in ctx.clients:
            obj = LocalObjective(ctx.problem, i, x, y, masks[i].x, masks[i].y)
            x0, y0 = obj.pack_x(x), obj.pack_y(y)
            ctx.ledger.send_down(i, len(x0) + len(y0))
            oracles, rng = Oracles(obj, ctx.ledger.counters[i]), ctx.rng(i, "inner")
            xs, ys = x0, y0
            for _ in range(self.steps):
                gx, gy = oracles.grad_task(xs, ys, obj.sample_task(rng), self.loss)
                xs, ys = xs - self.lr * gx, ys - self.lr * gy
            dx.append(obj.unpack_x((x0 - xs) / self.lr))
            dy.append(obj.unpack_y((y0 - ys) / self.lr))
            ctx.ledger.send_up(i, len(x0) + len(y0))
        return (
            masked_step(x, dx, [m.x.dense() for m in masks], self.lr),
            masked_step(y, dy, [m.y.dense() for m in masks], self.lr),
        )
