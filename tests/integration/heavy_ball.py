"""A stateful algorithm written as one file (issue 18): RABO with heavy-ball momentum on the
server's update of x. Nothing else in the package changes to make it run, checkpoint and resume.

Per coordinate j held by some client this round (|C_j^q| >= 1), with h^q the masked mean of
the clients' hypergradient estimates (SPEC eq. 8):
    m_j^{q+1} = beta * m_j^q + h_j^q,        x_j^{q+1} = x_j^q - alpha * m_j^{q+1};
where no client holds j, both m_j and x_j keep their values. beta = 0 is RABO exactly.
The buffer m is the round state this part owns (``ctx.state[name]``), saved with the run.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import torch

from rabo_bench.algorithms import Algorithm, get
from rabo_bench.federated.outer import LocalHypergradient


@dataclass(frozen=True)
class HeavyBallHypergradient(LocalHypergradient):
    name: ClassVar[str] = "heavy_ball_hypergradient"
    momentum: float = 0.9

    def server_step(self, ctx, x, hypergradients):
        mean, covered = hypergradients.mean()
        previous = ctx.carried(self.name, lambda: {k: torch.zeros_like(v) for k, v in mean.items()})
        buffer = {
            k: torch.where(covered[k], self.momentum * previous[k] + mean[k], previous[k])
            for k in mean
        }
        ctx.state[self.name] = buffer
        return {k: torch.where(covered[k], x[k] - self.lr * buffer[k], x[k]) for k in x}


def rabo_heavy_ball(momentum: float = 0.9) -> Algorithm:
    """RABO's recipe with the heavy-ball server step (register it to run it by name)."""
    rabo = get("rabo")
    outer = HeavyBallHypergradient(rabo.outer.estimator, rabo.outer.lr, momentum)
    return replace(
        rabo,
        name="rabo-heavy-ball",
        description="RABO with heavy-ball momentum on the server's x update",
        outer=outer,
        label=None,
    )
