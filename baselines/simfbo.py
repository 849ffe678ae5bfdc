"""SimFBO (Yang, Xiao, Ji, NeurIPS 2023, arXiv 2305.19442; no official code found).
Specification, sources and what we interpreted: ``docs/algorithms/simfbo.md``. One round t,
full participation of M clients with equal weights p_i = 1/M, full models, one exchange:

    client i, from (x_0, y_0, v_0) = (x, y, v), for k = 0..tau-1, each term on a fresh batch:
        d_y = grad_y g_i(x_k, y_k)
        d_v = d^2_yy g_i(x_k, y_k) v_k - grad_y f_i(x_k, y_k)         (residual of H v = grad_y f)
        d_x = grad_x f_i(x_k, y_k) - d^2_xy g_i(x_k, y_k) v_k        (hypergradient estimate)
        y_{k+1} = y_k - eta_y d_y,  v_{k+1} = v_k - eta_v d_v,  x_{k+1} = x_k - eta_x d_x
    uploads h_{.,i} = (1/tau) sum_k d_{.,k}          (local aggregation, unit weights, normalised)
    server: y <- y - gamma_y mean_i h_{y,i},   v <- P_r(v - gamma_v mean_i h_{v,i}),
            x <- x - gamma_x mean_i h_{x,i}          (P_r: projection onto the ball of radius r)

v is the server's state from round to round (``RoundContext.state``, checkpointed), zero at
the start. The inner phase (:class:`SimultaneousLocalSteps`) runs the clients and the server's
steps on y and v, and hands the clients' x directions to the outer phase
(:class:`ServerStepOnX`, the server's step on x), so ``outer.lr`` is gamma_x as it is every
bilevel method's step on x. With gamma = tau eta the server's step is the mean of the clients'
local iterates (FedAvg).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from rabo_bench.algorithms import Algorithm, register
from rabo_bench.federated.inner import InnerSolver
from rabo_bench.federated.outer import OuterStep
from rabo_bench.federated.policies import FullModel
from rabo_bench.params import Params
from rabo_bench.problems.ranges import COUNT, POSITIVE, setting


def project(v: Params, radius: float, seeds: int | None = None) -> Params:
    """P_r(v) = v min(1, r / ||v||), the norm over all of v's entries (in a seed batch, whose
    tensors have a leading axis of ``seeds`` runs, one norm per run). v unchanged
    (bit-identical) inside the ball."""
    rows, lead = seeds or 1, () if seeds is None else (seeds,)
    norms = torch.sqrt(sum(t.reshape(rows, -1).square().sum(1) for t in v.values()))
    scale = (radius / norms).clamp(max=1.0)  # a zero v: inf, clamped to 1
    return {
        name: t * scale.reshape((*lead,) + (1,) * (t.dim() - len(lead))) for name, t in v.items()
    }


@dataclass(frozen=True)
class SimultaneousLocalSteps(InnerSolver):
    """SimFBO's round on the clients and the server's steps on y and v (module docstring):
    ``steps`` (tau) local steps updating y, v and x at once (``lr``, ``v_lr``, ``x_lr``: eta_y,
    eta_v, eta_x), each client's mean local directions up, then y and v step with
    ``server_lr`` (gamma_y) and ``v_server_lr`` (gamma_v), v projected onto the ball of
    ``radius`` (r) and carried to the next round. The x directions go to the outer phase.
    Messages per client: down x, y, v; up h_x, h_y, h_v. Cost per client: tau each of grad_g,
    grad_f, hvp and jvp (the two products through one linearisation on one lower batch)."""

    name: ClassVar[str] = "simultaneous_local_steps"
    steps: int = setting(10, COUNT)
    lr: float = setting(0.01, POSITIVE)
    v_lr: float = setting(0.01, POSITIVE)
    x_lr: float = setting(0.01, POSITIVE)
    server_lr: float = setting(0.1, POSITIVE)
    v_server_lr: float = setting(0.1, POSITIVE)
    radius: float = setting(100.0, POSITIVE)

    def run(self, ctx, x, y, masks):
        if ctx.problem.per_task_inner:
            raise ValueError(
                f"{self.name} (SimFBO) needs one global inner problem (its y and v are global); "
                "this problem has one per task"
            )
        v = ctx.carried(self.name, lambda: {name: torch.zeros_like(t) for name, t in y.items()})

        def client(view):
            x_k, y_k, v_k = view.pack_x(x), view.pack_y(y), view.pack_y(v)
            view.send_down(len(x_k) + 2 * len(y_k))
            h_x, h_y, h_v = 0, 0, 0
            for _ in range(self.steps):
                d_y = view.oracles.grad_g(x_k, y_k, view.sample_g())
                grad_x, grad_y = view.oracles.grad_f(x_k, y_k, view.sample_f())
                products = view.oracles.linearise(x_k, y_k, view.sample_g())
                d_v = products.hvp(v_k) - grad_y
                d_x = grad_x - products.mixed(v_k)
                h_x, h_y, h_v = h_x + d_x, h_y + d_y, h_v + d_v
                x_k, y_k, v_k = x_k - self.x_lr * d_x, y_k - self.lr * d_y, v_k - self.v_lr * d_v
            view.send_up(len(h_x) + len(h_y) + len(h_v))
            return {"x": h_x / self.steps, "y": h_y / self.steps, "y.v": h_v / self.steps}

        sums = ctx.map_clients(client, masks, "inner", x, y)
        ctx.state[self.name] = project(
            sums["y.v"].step(v, self.v_server_lr), self.radius, ctx.seeds
        )
        ctx.handoff[self.name] = sums["x"]
        return x, sums["y"].step(y, self.server_lr)


@dataclass(frozen=True)
class ServerStepOnX(OuterStep):
    """SimFBO's server step on x: x <- x - ``lr`` (gamma_x) mean_i h_{x,i}, the clients' mean
    local x directions that the inner phase (:class:`SimultaneousLocalSteps`) handed over.
    No messages and no oracle calls of its own."""

    name: ClassVar[str] = "server_step_on_x"
    lr: float = setting(0.1, POSITIVE)

    def run(self, ctx, x, y, masks, inner):
        directions = ctx.handoff.pop(inner.name, None)
        if directions is None:
            raise ValueError(
                f"{self.name} (SimFBO) steps along x directions that {inner.name} "
                f"did not hand over; pair it with {SimultaneousLocalSteps.name}"
            )
        return directions.step(x, self.lr)


# Defaults [OURS] (docs/algorithms/simfbo.md, "Defaults"): tau = 10 and eta = 0.01 as the
# harness's FedNest, server steps gamma = tau eta = 0.1 (the mean of the local iterates), r = 100.
SIMFBO = register(
    Algorithm(
        name="simfbo",
        description="SimFBO (Yang, Xiao, Ji, NeurIPS 2023; paper only, no public code found): "
        "one exchange a round, local steps on y, v and x at once, server steps, v projected",
        policy=FullModel(),
        inner=SimultaneousLocalSteps(),
        outer=ServerStepOnX(),
    )
)
