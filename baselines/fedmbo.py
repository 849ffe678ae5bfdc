"""FedMBO (Huang, Zhang, Ji, ICML 2023; SPEC §5): the full-model federated bilevel reference.

Inner loop: minibatch SGD on the global y (no local drift). Outer: the parallel hypergradient
estimator (PHE), SPEC eq. (9) evaluated by the server on the system of all clients, whose
Neumann factors come from clients sampled one per factor (the ``sampled_neumann`` solve), so
the product estimates the *global* inverse Hessian [d^2_yy G]^{-1}, not a local one:

    v = mean_i grad_y f_i,   p = eta * sum_{n<N} prod_{k<=n} (I - eta d^2_yy g_{i_k}) v,
    h_i = grad_x f_i - d^2_xy g_i · p,   x <- x - lr * mean_i h_i       (full participation).

[OURS, SPEC §9 item 13] full participation, the same N and eta as RABO. The Neumann factor
messages (p down to and H p up from the sampled client) are counted as communication.
On per-task problems (few-shot episodes) there is no global inner problem, and each client's
Neumann series uses its own tasks' Hessians [OURS] (see ``ParallelHypergradient.run``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from rabo_bench.algorithms import Algorithm, register
from rabo_bench.federated.clients import Streams
from rabo_bench.federated.context import ClientMasks, RoundContext
from rabo_bench.federated.inner import MinibatchSGD
from rabo_bench.federated.outer import LocalHypergradient, OuterStep
from rabo_bench.federated.policies import FullModel
from rabo_bench.hypergrad import HypergradientEstimator, make_estimator
from rabo_bench.hypergrad.estimators.neumann import Neumann
from rabo_bench.hypergrad.estimators.sampled_neumann import SampledNeumann
from rabo_bench.hypergrad.implicit import LowerSystem, implicit_hypergradient
from rabo_bench.params import Layout, Params
from rabo_bench.problems.ranges import POSITIVE, setting


@dataclass(frozen=True)
class ServerSystem(LowerSystem):
    """The global lower problem at the broadcast (x, y), reached through the clients (full
    models), each on its own stream: grad f is the mean over all clients; ``linearise(i)``
    gives products with client i's Hessian alone, ``linearise()`` the mean of every client's
    products (FedNest's global factors, ``baselines/fednest.py``). Only what the Neumann
    solves ask for exists."""

    ctx: RoundContext
    x: Params
    y: Params
    masks: list[ClientMasks]
    streams: Streams

    @property
    def clients(self) -> int:
        return self.ctx.problem.num_clients

    def sample_client(self, rng):
        """Client i_k ~ Uniform{0, ..., M-1} for a factor: the context's draw (in a seed batch,
        one client per seed, each from its seed's stream)."""
        return self.ctx.sample_client(rng, self.clients)

    def upper_gradients(self) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.x, self.y

        def upper(view):
            y_sub = view.pack_y(y)
            view.send_down(len(y_sub))
            grad_x, grad_y = view.oracles.grad_f(view.pack_x(x), y_sub, view.sample_f())
            view.send_up(len(y_sub))
            return {"x": grad_x, "y": grad_y}

        grads = self.ctx.map_clients(upper, self.masks, self.streams, x, y)
        mean_x, mean_y = grads["x"].mean()[0], grads["y"].mean()[0]
        return Layout.of(x).flatten(mean_x), Layout.of(y).flatten(mean_y)

    def linearise(self, client: int | None = None):
        return EveryClient(self) if client is None else OneClient(self, client)


def hvp_factor(system: ServerSystem, v: torch.Tensor):
    """A client's part of one Neumann factor: v down, d^2_yy g_i · v up, on its next lower
    batch (its upload ``{"y": product}``)."""
    layout = Layout.of(system.y)

    def factor(view):
        y_sub = view.pack_y(system.y)
        view.send_down(len(y_sub))
        p = view.pack_y(layout.unflatten(v))  # v on the client's sub-model
        product = view.oracles.hvp(view.pack_x(system.x), y_sub, p, view.sample_g())
        view.send_up(len(y_sub))
        return {"y": product}

    return factor


@dataclass(frozen=True)
class OneClient:
    """A Neumann factor from client ``client``: p down, H_i p up, on its next lower batch
    (``client`` is one per seed in a seed batch)."""

    system: ServerSystem
    client: int | tuple[int, ...]

    def hvp(self, v: torch.Tensor) -> torch.Tensor:
        s = self.system
        upload = s.ctx.one_client(self.client, hvp_factor(s, v), s.masks, s.streams, s.x, s.y)
        return Layout.of(s.y).flatten(upload["y"])


@dataclass(frozen=True)
class EveryClient:
    """Products with the mean of every client's lower problem, each client on its next lower
    batch: the vector down, its product up."""

    system: ServerSystem

    def hvp(self, v: torch.Tensor) -> torch.Tensor:
        """mean_i d^2_yy g_i · v (one factor of FedNest's global Neumann series)."""
        s = self.system
        products = s.ctx.map_clients(hvp_factor(s, v), s.masks, s.streams, s.x, s.y)
        return Layout.of(s.y).flatten(products["y"].mean()[0])

    def mixed(self, v: torch.Tensor) -> torch.Tensor:
        """mean_i d^2_xy g_i · v."""
        s = self.system

        def lower(view):
            x_sub, y_sub = view.pack_x(s.x), view.pack_y(s.y)
            view.send_down(len(y_sub))
            p = view.pack_y(Layout.of(s.y).unflatten(v))  # p on the client's sub-model
            mixed = view.oracles.mixed(x_sub, y_sub, p, view.sample_g())
            view.send_up(len(x_sub))
            return {"x": mixed}

        products = s.ctx.map_clients(lower, s.masks, s.streams, s.x, s.y)
        return Layout.of(s.x).flatten(products["x"].mean()[0])


@dataclass(frozen=True)
class ParallelHypergradient(OuterStep):
    """h = mean_i grad_x f_i - mean_i d^2_xy g_i · p with p from ``estimator`` (a
    ``sampled_neumann`` solve) on the :class:`ServerSystem`; x <- x - lr * h."""

    name: ClassVar[str] = "parallel_hypergradient"
    method: ClassVar[str] = "FedMBO"  # who errors name
    solves: ClassVar[tuple[type[Neumann], ...]] = (SampledNeumann,)  # the estimators it takes
    estimator: HypergradientEstimator
    lr: float = setting(0.01, POSITIVE)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.estimator, self.solves):
            raise ValueError(
                f"{self.name} ({self.method}) takes the "
                f"{' or '.join(solve.name for solve in self.solves)} estimator, "
                f"got {self.estimator.name!r}"
            )

    @property
    def vectorisable(self) -> bool:
        return self.estimator.vectorisable

    def global_hypergradient(
        self, ctx: RoundContext, x: Params, y: Params, masks: list[ClientMasks]
    ) -> tuple[ServerSystem, Params]:
        """(the server's system of all clients on their "outer" streams, h on it): eq. (9)
        with the global grad f, the solve's factors and the mean mixed product."""
        if any(m.numel() != sum(t.numel() for t in m.dense().values()) for m in _sides(masks)):
            raise ValueError(f"{self.name} ({self.method}) needs full-model masks")
        system = ServerSystem(ctx, x, y, masks, ctx.streams("outer"))
        h = implicit_hypergradient(system, self.estimator, ctx.rng(None, "neumann-clients"))
        return system, Layout.of(x).unflatten(h)

    def run(self, ctx, x, y, masks, inner):
        if ctx.problem.per_task_inner:
            # [OURS] every task has its own inner problem, so there is no global inverse
            # Hessian for clients sampled per factor to estimate: each client's Neumann series
            # uses its own task's Hessians (FedMBO keeps its minibatch inner loop, full model)
            return LocalHypergradient(self.estimator, self.lr).run(ctx, x, y, masks, inner)
        h = self.global_hypergradient(ctx, x, y, masks)[1]
        return {name: t - self.lr * h[name] for name, t in x.items()}


def _sides(masks: list[ClientMasks]):
    return (side for m in masks for side in (m.x, m.y))


FEDMBO = register(
    Algorithm(
        name="fedmbo",
        description="FedMBO: full model, minibatch-SGD inner loop, client-sampled Neumann (PHE)",
        policy=FullModel(),
        inner=MinibatchSGD(steps=10, lr=0.01),
        outer=ParallelHypergradient(
            estimator=make_estimator("sampled_neumann", terms=5, eta=0.01), lr=0.01
        ),
    )
)
