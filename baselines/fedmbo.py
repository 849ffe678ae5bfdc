"""FedMBO (Huang, Zhang, Ji, ICML 2023; SPEC §5): the full-model federated bilevel reference.

Inner loop: minibatch SGD on the global y (no local drift). Outer: the parallel hypergradient
estimator, whose Neumann factors come from clients sampled one per factor, so the product
estimates the *global* inverse Hessian [d^2_yy G]^{-1}, not a local one:

    v = mean_i grad_y f_i,   p = eta * sum_{n<N} prod_{k<=n} (I - eta d^2_yy g_{i_k}) v,
    h_i = grad_x f_i - d^2_xy g_i · p,   x <- x - lr * mean_i h_i       (full participation).

[OURS, SPEC §9 item 13] full participation, the same N and eta as RABO. The Neumann factor
messages (p down to and H p up from the sampled client) are counted as communication.
On per-task problems (few-shot episodes) there is no global inner problem, and each client's
Neumann series uses its own tasks' Hessians [OURS] (see ``ClientSampledNeumann.run``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from rabo_bench.algorithms import Algorithm, register
from rabo_bench.federated.inner import MinibatchSGD
from rabo_bench.federated.outer import LocalHypergradient, OuterStep
from rabo_bench.federated.policies import FullModel
from rabo_bench.hypergrad import make_estimator
from rabo_bench.params import Layout


@dataclass(frozen=True)
class ClientSampledNeumann(OuterStep):
    """h = mean_i grad_x f_i - mean_i d^2_xy g_i · p (the mean of the h_i above, split in its
    two sums so that each is one pass over the clients)."""

    name: ClassVar[str] = "client_sampled_neumann"
    terms: int = 5
    eta: float = 0.01
    lr: float = 0.01

    def run(self, ctx, x, y, masks, inner):
        if ctx.problem.per_task_inner:
            # [OURS] every task has its own inner problem, so there is no global inverse
            # Hessian for clients sampled per factor to estimate: each client's Neumann series
            # uses its own task's Hessians (FedMBO keeps its minibatch inner loop, full model)
            neumann = make_estimator("neumann", terms=self.terms, eta=self.eta)
            return LocalHypergradient(neumann, self.lr).run(ctx, x, y, masks, inner)
        full = (Layout.of(x).numel, Layout.of(y).numel)
        if any((m.x.numel(), m.y.numel()) != full for m in masks):
            raise ValueError("client_sampled_neumann (FedMBO) needs full-model masks")
        streams = ctx.streams("outer")

        def upper(view):
            y_sub = view.pack_y(y)
            view.send_down(len(y_sub))
            grad_x, grad_y = view.oracles.grad_f(view.pack_x(x), y_sub, view.sample_f())
            view.send_up(len(y_sub))
            return {"x": grad_x, "y": grad_y}

        grads = ctx.map_clients(upper, masks, streams, x, y)
        layout = Layout.of(y)
        v = layout.flatten(grads["y"].mean()[0])
        sampler = ctx.rng(None, "neumann-clients")
        term, total = v, v
        for _ in range(self.terms - 1):

            def factor(view, term=term):
                y_sub = view.pack_y(y)
                view.send_down(len(y_sub))
                product = view.oracles.hvp(view.pack_x(x), y_sub, term, view.sample_g())
                view.send_up(len(y_sub))
                return product

            i = int(torch.randint(len(masks), (1,), generator=sampler))
            term = term - self.eta * ctx.one_client(i, factor, masks, streams, x, y)
            total = total + term
        p = self.eta * total

        def lower(view):
            x_sub, y_sub = view.pack_x(x), view.pack_y(y)
            view.send_down(len(y_sub))
            mixed = view.oracles.mixed(x_sub, y_sub, p, view.sample_g())
            view.send_up(len(x_sub))
            return {"x": mixed}

        mixed = ctx.map_clients(lower, masks, streams, x, y)["x"].mean()[0]
        grad_x = grads["x"].mean()[0]
        return {name: t - self.lr * (grad_x[name] - mixed[name]) for name, t in x.items()}


FEDMBO = register(
    Algorithm(
        name="fedmbo",
        description="FedMBO: full model, minibatch-SGD inner loop, client-sampled Neumann (PHE)",
        policy=FullModel(),
        inner=MinibatchSGD(steps=10, lr=0.01),
        outer=ClientSampledNeumann(terms=5, eta=0.01, lr=0.01),
    )
)
