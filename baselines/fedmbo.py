"""FedMBO (Huang, Zhang, Ji, ICML 2023; SPEC §5): the full-model federated bilevel reference.

Inner loop: minibatch SGD on the global y (no local drift). Outer: the parallel hypergradient
estimator, whose Neumann factors come from clients sampled one per factor, so the product
estimates the *global* inverse Hessian [d^2_yy G]^{-1}, not a local one:

    v = mean_i grad_y f_i,   p = eta * sum_{n<N} prod_{k<=n} (I - eta d^2_yy g_{i_k}) v,
    h_i = grad_x f_i - d^2_xy g_i · p,   x <- x - lr * mean_i h_i       (full participation).

[OURS, SPEC §9 item 13] full participation, the same N and eta as RABO. The Neumann factor
messages (p down to and H p up from the sampled client) are counted as communication.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from rabo_bench.algorithms import Algorithm, register
from rabo_bench.federated.aggregation import masked_step
from rabo_bench.federated.inner import MinibatchSGD
from rabo_bench.federated.outer import OuterStep
from rabo_bench.federated.policies import FullModel
from rabo_bench.hypergrad import LocalObjective, Oracles


@dataclass(frozen=True)
class ClientSampledNeumann(OuterStep):
    name: ClassVar[str] = "client_sampled_neumann"
    terms: int = 5
    eta: float = 0.01
    lr: float = 0.01

    def run(self, ctx, x, y, masks):
        objs = [LocalObjective(ctx.problem, i, x, y, masks[i].x, masks[i].y) for i in ctx.clients]
        if any(o.x_layout.numel != sum(t.numel() for t in x.values()) for o in objs) or any(
            o.y_layout.numel != sum(t.numel() for t in y.values()) for o in objs
        ):
            raise ValueError("client_sampled_neumann (FedMBO) needs full-model masks")
        oracles = [Oracles(o, ctx.ledger.counters[i]) for i, o in enumerate(objs)]
        rngs = [ctx.rng(i, "outer") for i in ctx.clients]
        x_flat, y_flat = objs[0].pack_x(x), objs[0].pack_y(y)
        grads = []
        for i, (o, orc) in enumerate(zip(objs, oracles, strict=True)):
            ctx.ledger.send_down(i, len(y_flat))
            grads.append(orc.grad_f(x_flat, y_flat, o.sample_f(rngs[i])))
            ctx.ledger.send_up(i, len(y_flat))
        v = torch.stack([g[1] for g in grads]).mean(0)
        sampler = ctx.rng(None, "neumann-clients")
        term, total = v, v
        for _ in range(self.terms - 1):
            i = int(torch.randint(len(objs), (1,), generator=sampler))
            ctx.ledger.send_down(i, len(y_flat))
            term = term - self.eta * oracles[i].hvp(x_flat, y_flat, term, objs[i].sample_g(rngs[i]))
            ctx.ledger.send_up(i, len(y_flat))
            total = total + term
        p = self.eta * total
        hypergrads = []
        for i, (o, orc) in enumerate(zip(objs, oracles, strict=True)):
            ctx.ledger.send_down(i, len(y_flat))
            mixed = orc.mixed(x_flat, y_flat, p, o.sample_g(rngs[i]))
            hypergrads.append(o.unpack_x(grads[i][0] - mixed))
            ctx.ledger.send_up(i, len(x_flat))
        return masked_step(x, hypergrads, [m.x.dense() for m in masks], self.lr)


FEDMBO = register(
    Algorithm(
        name="fedmbo",
        description="FedMBO: full model, minibatch-SGD inner loop, client-sampled Neumann (PHE)",
        policy=FullModel(),
        inner=MinibatchSGD(steps=10, lr=0.01),
        outer=ClientSampledNeumann(terms=5, eta=0.01, lr=0.01),
    )
)
