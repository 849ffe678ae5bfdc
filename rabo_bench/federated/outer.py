"""Outer steps: how clients estimate the hypergradient and the server updates x (SPEC eq. 7-8)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from rabo_bench.federated import episodes
from rabo_bench.federated.aggregation import MaskedSum
from rabo_bench.federated.context import RoundContext
from rabo_bench.federated.inner import InnerSolver
from rabo_bench.hypergrad import HypergradientEstimator
from rabo_bench.params import Params
from rabo_bench.problems.ranges import POSITIVE, Checked, setting
from rabo_bench.submodel import ClientMasks


class OuterStep(Checked, ABC):
    name: ClassVar[str]

    @property
    def vectorisable(self) -> bool:
        """True when the client code may run under vmap (rabo_bench.federated.vectorised)."""
        return True

    @abstractmethod
    def run(
        self,
        ctx: RoundContext,
        x: Params,
        y: Params,
        masks: list[ClientMasks],
        inner: InnerSolver,
    ) -> Params:
        """The new global x, given the broadcast inner iterate y = y^{q+1}; ``inner`` is the
        algorithm's inner solver (clients adapt y to each task with it on per-task problems)."""

    def round(
        self,
        ctx: RoundContext,
        x: Params,
        y: Params,
        masks: list[ClientMasks],
        inner: InnerSolver,
    ) -> tuple[Params, Params]:
        """The round's (x^{q+1}, y^{q+1}) from (x^q, y^q): ``inner``'s phase, then this step.
        A single-loop method, whose clients move x and y together in one loop of local steps
        (FedBiOAcc, ``baselines/fedbioacc.py``), overrides this alone."""
        x_mid, y_next = inner.run(ctx, x, y, masks)
        return self.run(ctx, x_mid, y_next, masks, inner), y_next


@dataclass(frozen=True)
class LocalHypergradient(OuterStep):
    """Each client estimates grad F on its own sub-model at (x ⊙ m_x, y ⊙ m_y) with
    ``estimator`` (RABO: local Neumann, eq. 7; RAFBO: coordinate finite differences, eq. 10);
    the server applies x_j <- x_j - lr * mean_{i in C_j} h_{i,j} (eq. 8), leaving uncovered
    coordinates unchanged. Messages per client: down y_sub (the broadcast y^{q+1}), up h_i.
    Per-task problems: h_i is the mean over the client's tasks of the estimate at the task's
    inner solution, adapted from y^{q+1} ⊙ m_y by ``inner.solve`` on the task's lower data."""

    name: ClassVar[str] = "local_hypergradient"
    estimator: HypergradientEstimator
    lr: float = setting(0.01, POSITIVE)

    @property
    def vectorisable(self) -> bool:
        return self.estimator.vectorisable

    def run(self, ctx, x, y, masks, inner) -> Params:
        adapt = ctx.problem.per_task_inner
        one_pass = episodes.in_one_pass(ctx.problem, inner, self.estimator)

        def client(view):
            x_sub, y_sub = view.pack_x(x), view.pack_y(y)
            view.send_down(len(y_sub))
            tasks = view.objective.tasks(view.rng)

            def estimate(x_at):
                if one_pass:  # a client's episodes in one pass (federated/episodes.py)
                    args = (view.objective, x_at, y_sub, tasks, inner, self.estimator)
                    return episodes.estimate(view.oracles, *args)
                total = 0
                for task in tasks:
                    oracles = view.oracles.on(task)
                    y_task = inner.solve(oracles, x_at, y_sub, view.rng) if adapt else y_sub
                    total = total + self.estimator(oracles, x_at, y_task, view.rng)
                return total / len(tasks)

            upload = self.client_update(estimate, x_sub)
            view.send_up(len(x_sub))
            return {"x": upload}

        return self.server_step(ctx, x, ctx.map_clients(client, masks, "outer", x, y)["x"])

    def client_update(self, estimate, x_sub):
        """What a client sends up, u_i, from which the server steps x_j <- x_j - lr mean_{i in
        C_j} u_{i,j}: its estimate h_i = ``estimate(x_sub)`` at the broadcast x (eq. 7). A
        variant with local steps on x (LFedNest, ``baselines/fednest.py``) overrides this
        alone; ``estimate(x_at)`` is h_i at another point of the client's sub-model."""
        return estimate(x_sub)

    def server_step(self, ctx: RoundContext, x: Params, hypergradients: MaskedSum) -> Params:
        """The server's update of x from the clients' masked sum of estimates: eq. (8). A
        variant (momentum, variance reduction) overrides this alone and keeps what it
        carries between rounds in ``ctx.state``."""
        return hypergradients.step(x, self.lr)


@dataclass(frozen=True)
class NoOuterStep(OuterStep):
    """Single-level methods: x was already trained in the inner phase."""

    name: ClassVar[str] = "none"

    def run(self, ctx, x, y, masks, inner) -> Params:
        return x
