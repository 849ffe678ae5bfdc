"""AggITD (Xiao and Ji, ICML 2023, arXiv 2302.04969; no official code could be read here).
Specification, sources and what we interpreted: ``docs/algorithms/aggitd.md``. One round k,
full participation of M clients, full models, from the global (x, y^0) = (x^k, y^k):

Inner (FedAvg on y, ``LocalSGDRounds``), N communication rounds t = 0..N-1:
    y_{i,t,0} = y^t,  y_{i,t,m+1} = y_{i,t,m} - beta grad_y g_i(x, y_{i,t,m}; zeta_{i,t,m}),
    m < tau;   y^{t+1} = mean_i y_{i,t,tau};   y^{k+1} = y^N (the next round's warm start).
Hypergradient (aggregated ITD, ``AggregatedITD``): reverse mode through that federated
trajectory, y^0 held, each backward round aggregated by the server like its forward round:
    a^N = mean_i grad_y f_i(x, y^N; xi_i),   h = mean_i grad_x f_i(x, y^N; xi_i),
    for t = N-1..0, client i: (u_i, w_i) = the vector-Jacobian products of a^{t+1} with its
        local map (x, y^t) -> y_{i,t,tau} on round t's batches:
        w_i = -beta sum_m d^2_xy g_i(x, y_{i,t,m}) r_{m+1},  r_tau = a^{t+1},
        r_m = (I - beta d^2_yy g_i(x, y_{i,t,m})) r_{m+1}  (u_i = r_0);
    server: h += mean_i w_i,  a^t = mean_i u_i  (not needed at t = 0).
    x^{k+1} = x - alpha h.
h is exactly the gradient in x of f(x, y^N(x)) averaged over the clients, y^N the federated
inner iterate (with y^0 held): iterative differentiation, with the global Jacobian of each
communication round formed as the mean of the clients' local ones. The clients keep their
local iterates for the backward pass; the harness replays them from the same start and the
same batches, each step's gradient uncounted (it was counted as the inner phase's grad_g) [OURS].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from rabo_bench.algorithms import Algorithm, register
from rabo_bench.federated.context import RoundContext
from rabo_bench.federated.inner import InnerSolver
from rabo_bench.federated.outer import OuterStep
from rabo_bench.federated.policies import FullModel
from rabo_bench.params import Params
from rabo_bench.problems.ranges import COUNT, POSITIVE, setting


def _global_inner(ctx: RoundContext, who: str) -> None:
    if ctx.problem.per_task_inner:
        raise ValueError(
            f"{who} (AggITD) needs one global inner problem; this problem has one per task"
        )


def _full_models(masks, who: str) -> None:
    sides = (side for m in masks for side in (m.x, m.y))
    if any(s.numel() != sum(t.numel() for t in s.dense().values()) for s in sides):
        raise ValueError(f"{who} (AggITD) needs full-model masks")


@dataclass(frozen=True)
class LocalSGDRounds(InnerSolver):
    """AggITD's inner phase: ``calls`` (N) FedAvg rounds on y, each of ``steps`` (tau) local
    SGD steps at ``lr`` (beta) from the broadcast y^t, then the mean (module docstring).
    Round t's batches come from the clients' streams of purpose ``purpose(t)``, so that the
    outer step can go back through the same local runs; the global iterates y^0..y^{N-1} are
    left in ``ctx.handoff[name]``. Messages per client and round: down y^t (+ x at the first),
    up (y^t - y_{i,t,tau}) / beta. Cost: N tau grad_g."""

    name: ClassVar[str] = "local_sgd_rounds"
    steps: int = setting(5, COUNT)
    lr: float = setting(0.01, POSITIVE)
    calls: int = setting(2, COUNT)

    @staticmethod
    def purpose(t: int) -> str:
        """The random streams of communication round t (the same in both passes)."""
        return f"inner-{t}"

    def batches(self, view) -> list:
        """The client's ``steps`` lower batches of a round, from its stream for that round."""
        return [view.sample_g() for _ in range(self.steps)]

    def run(self, ctx, x, y, masks):
        _global_inner(ctx, self.name)
        starts = []
        for t in range(self.calls):

            def local(view, y=y, first=t == 0):
                x_sub, y_sub = view.pack_x(x), view.pack_y(y)
                view.send_down(len(y_sub) + (len(x_sub) if first else 0))
                moved = view.oracles.inner_steps(x_sub, y_sub, self.lr, self.batches(view))
                view.send_up(len(y_sub))
                return {"y": (y_sub - moved) / self.lr}

            starts.append(y)
            y = ctx.map_clients(local, masks, self.purpose(t), x, y)["y"].step(y, self.lr)
        ctx.handoff[self.name] = starts
        return x, y


def _added(a: Params, b: Params) -> Params:
    return {name: t + b[name] for name, t in a.items()}


@dataclass(frozen=True)
class AggregatedITD(OuterStep):
    """AggITD's hypergradient and outer step (module docstring): an upper exchange at y^N,
    then N backward rounds through ``LocalSGDRounds``' trajectory, last to first, each
    aggregated by the server, then x <- x - ``lr`` h. Messages per client: down y^N, up
    (grad_x f_i, grad_y f_i); per backward round t down a^{t+1}, up (w_i, u_i) (w_i alone at
    t = 0). Cost: 1 grad_f, N tau - 1 hvp, N tau jvp (the first step's Hessian product would
    only reach y^0, which is held)."""

    name: ClassVar[str] = "aggregated_itd"
    lr: float = setting(0.01, POSITIVE)

    def run(self, ctx, x, y, masks, inner):
        _global_inner(ctx, self.name)
        if not isinstance(inner, LocalSGDRounds) or inner.name not in ctx.handoff:
            raise ValueError(
                f"{self.name} (AggITD) goes back through the {LocalSGDRounds.name} inner "
                f"phase of the same round; this algorithm's inner phase is {inner.name}"
            )
        _full_models(masks, self.name)

        def upper(view):
            x_sub, y_sub = view.pack_x(x), view.pack_y(y)
            view.send_down(len(y_sub))
            grad_x, grad_y = view.oracles.grad_f(x_sub, y_sub, view.sample_f())
            view.send_up(len(x_sub) + len(y_sub))
            return {"x": grad_x, "y": grad_y}

        sums = ctx.map_clients(upper, masks, "outer", x, y)
        h, a = sums["x"].mean()[0], sums["y"].mean()[0]
        starts = ctx.handoff[inner.name]
        for t in reversed(range(inner.calls)):
            back = backward_round(inner, x, starts[t], a, keep_y=t > 0)
            sums = ctx.map_clients(back, masks, inner.purpose(t), x, starts[t])
            h = _added(h, sums["x"].mean()[0])
            if t > 0:
                a = sums["y"].mean()[0]
        return {name: t - self.lr * h[name] for name, t in x.items()}


def backward_round(inner: LocalSGDRounds, x: Params, start: Params, a: Params, keep_y: bool):
    """A client's part of one backward round: a^{t+1} down; the vector-Jacobian products of
    its local map (x, y^t) -> y_{i,t,tau} with it up, w_i as "x" and, when ``keep_y``, u_i as
    "y". The local run is gone through again from y^t on the round's batches (drawn again from
    the round's stream: the same batches), each step linearised once (``Oracles.linearise``,
    uncounted: it stands for the iterate the client kept); every product through a step's
    linearisation is a counted hvp or jvp."""

    def client(view):
        x_sub, y_sub, a_sub = view.pack_x(x), view.pack_y(start), view.pack_y(a)
        view.send_down(len(a_sub))
        steps, y_m = [], y_sub
        for batch in inner.batches(view):
            steps.append(view.oracles.linearise(x_sub, y_m, batch))
            y_m = y_m - inner.lr * steps[-1].grad_y
        w, u = torch.zeros_like(x_sub), a_sub
        for m in reversed(range(len(steps))):
            w = w - inner.lr * steps[m].mixed(u)
            if keep_y or m > 0:  # the first step's Hessian product would only reach y^0
                u = u - inner.lr * steps[m].hvp(u)
        view.send_up(len(x_sub) + (len(y_sub) if keep_y else 0))
        return {"x": w, "y": u} if keep_y else {"x": w}

    return client


# Defaults [OURS]: the paper's settings could not be read here. N tau = 10 inner steps per
# round, the harness's convention for every method (RABO's T, FedNest's tau), at the
# harness's step sizes (beta = alpha = 0.01, FedNest's and FedMBO's defaults).
AGGITD = register(
    Algorithm(
        name="aggitd",
        description="AggITD (Xiao and Ji, ICML 2023; no public code read): FedAvg rounds on y, "
        "ITD hypergradient back through them, each backward round aggregated",
        policy=FullModel(),
        inner=LocalSGDRounds(steps=5, lr=0.01, calls=2),
        outer=AggregatedITD(lr=0.01),
    )
)
