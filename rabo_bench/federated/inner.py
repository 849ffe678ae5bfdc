"""Inner solvers: how clients move y on their sub-models, and how the server combines it.

An inner solver returns the whole state (x, y): the bilevel ones leave x alone, while the
single-level sub-model baselines train x and y jointly here and have no outer step.

On a problem with per-task inner problems (``per_task_inner``, e.g. few-shot episodes) a client
solves one inner problem per task of its meta-batch, each from the shared y (:meth:`solve`), and
uploads the mean of their local updates; outer steps adapt y to each task with the same
:meth:`solve` before estimating its hypergradient.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch

from rabo_bench.federated import episodes
from rabo_bench.federated.context import RoundContext
from rabo_bench.hypergrad import Oracles
from rabo_bench.params import Params
from rabo_bench.problems.ranges import COUNT, POSITIVE, Checked, setting
from rabo_bench.problems.single_level import TASK_LOSS, SingleLevelLoss
from rabo_bench.submodel import ClientMasks


class InnerSolver(Checked, ABC):
    name: ClassVar[str]
    # True when the client code may run under vmap (see rabo_bench.federated.vectorised)
    vectorisable: ClassVar[bool] = True
    steps: int
    lr: float

    def supports(self, problem) -> bool:
        """Whether this solver runs on ``problem`` (an instance or its class)."""
        return True

    @property
    def reads_losses(self) -> bool:
        """Whether the algorithm reads the problem's g and f (a bilevel inner phase does)."""
        return True

    def solve(self, oracles: Oracles, x_sub, y_sub, rng) -> torch.Tensor:
        """How a client moves y on its sub-model for the inner problem behind ``oracles``:
        ``steps`` SGD steps on g from ``y_sub`` at step ``lr`` (SPEC eq. 5), batches from
        ``rng`` (a task's own data on a per-task problem)."""
        batches = [oracles.objective.sample_g(rng) for _ in range(self.steps)]
        return oracles.inner_steps(x_sub, y_sub, self.lr, batches)

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
    steps: int = setting(10, COUNT)
    lr: float = setting(0.01, POSITIVE)

    def run(self, ctx, x, y, masks) -> tuple[Params, Params]:
        def client(view):
            x_sub, y_start = view.pack_x(x), view.pack_y(y)
            view.send_down(len(x_sub) + len(y_start))
            tasks = view.objective.tasks(view.rng)
            if episodes.in_one_pass(ctx.problem, self):
                moved = episodes.inner_moves(
                    view.oracles, view.objective, x_sub, y_start, tasks, self
                )
            else:
                moved = sum(
                    y_start - self.solve(view.oracles.on(task), x_sub, y_start, view.rng)
                    for task in tasks
                )
            view.send_up(len(y_start))
            return {"y": moved / (len(tasks) * self.lr)}

        return x, ctx.map_clients(client, masks, "inner", x, y)["y"].step(y, self.lr)


@dataclass(frozen=True)
class MinibatchSGD(InnerSolver):
    """FedMBO's inner loop (SPEC §5): ``steps`` global SGD steps; in each, every client sends
    grad_y g_i at the current global y (on its sub-model) and the server takes the step with
    the parameter-wise mean (eq. 6 with one step). No local drift.
    Messages per client and step: down y_sub, up grad (|y_sub|); plus x_sub once."""

    name: ClassVar[str] = "minibatch_sgd"
    steps: int = setting(10, COUNT)
    lr: float = setting(0.01, POSITIVE)

    def run(self, ctx, x, y, masks) -> tuple[Params, Params]:
        streams = ctx.streams("inner")
        for step in range(self.steps):
            client = lower_gradient(x, y, first=step == 0)
            y = ctx.map_clients(client, masks, streams, x, y)["y"].step(y, self.lr)
        return x, y


def lower_gradient(x: Params, y: Params, first: bool):
    """The client code of one gradient exchange at the global (x, y): y down (and x at the
    ``first`` exchange of the round), grad_y g_i on the client's next lower batch up."""

    def client(view):
        x_sub, y_sub = view.pack_x(x), view.pack_y(y)
        view.send_down(len(y_sub) + (len(x_sub) if first else 0))
        grad = view.oracles.grad_g(x_sub, y_sub, view.sample_g())
        view.send_up(len(y_sub))
        return {"y": grad}

    return client


@dataclass(frozen=True)
class JointLocalSGD(InnerSolver):
    """Single-level sub-model training (Static, FedRolex, FIARSE, OAP, FedAvg; SPEC §6): each
    client takes ``steps`` SGD steps on the task loss over its sub-model of (x, y) jointly, and
    the server averages the local models of x and of y over the clients holding each
    coordinate (eq. 6/8 with the same rule; HeteroFL aggregation). With full masks this is
    FedAvg. Messages per client: down x_sub + y_sub, up the two updates."""

    name: ClassVar[str] = "joint_local_sgd"
    steps: int = setting(10, COUNT)
    lr: float = setting(0.01, POSITIVE)
    loss: SingleLevelLoss = TASK_LOSS

    def supports(self, problem) -> bool:
        return self.loss.supports(problem)

    @property
    def reads_losses(self) -> bool:
        return self.loss.reads_losses

    def run(self, ctx, x, y, masks) -> tuple[Params, Params]:
        if not self.supports(ctx.problem):
            raise ValueError(
                f"problem {type(ctx.problem).__name__} has no single-level loss "
                f"{self.loss.name!r} (it needs episodes: the Omniglot problem)"
            )

        def client(view):
            x0, y0 = view.pack_x(x), view.pack_y(y)
            view.send_down(len(x0) + len(y0))
            xs, ys = x0, y0
            for _ in range(self.steps):
                gx, gy = view.oracles.grad_task(xs, ys, view.sample_task(), self.loss)
                xs, ys = xs - self.lr * gx, ys - self.lr * gy
            view.send_up(len(x0) + len(y0))
            return {"x": (x0 - xs) / self.lr, "y": (y0 - ys) / self.lr}

        sums = ctx.map_clients(client, masks, "inner", x, y)
        return sums["x"].step(x, self.lr), sums["y"].step(y, self.lr)
