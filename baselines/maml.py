"""Dist-MAML (SPEC §6, Table II reference row): FedAvg of first-order MAML on backbone and head,
full model [OURS: first order, 5 adaptation steps at step 0.1]. Needs a problem with episodes
(the Omniglot suite: ``episode_batch``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from rabo_bench.algorithms import register, single_level
from rabo_bench.federated.policies import FullModel
from rabo_bench.problems.ranges import POSITIVE, Range, setting
from rabo_bench.problems.single_level import SingleLevelLoss


@dataclass(frozen=True)
class FirstOrderMAML(SingleLevelLoss):
    """Per episode: ``steps`` SGD steps at ``lr`` on the support loss g from (x, y), then the
    query loss f at the adapted point, attached to (x, y) straight-through so that its gradient
    w.r.t. (x, y) is the query gradient there (first order); the mean over the episodes."""

    name: ClassVar[str] = "maml"
    reads_losses: ClassVar[bool] = True
    steps: int = setting(5, Range(0, integer=True))  # 0: no adaptation, the query loss itself
    lr: float = setting(0.1, POSITIVE)

    def supports(self, problem) -> bool:
        return hasattr(problem, "episode_batch")

    def __call__(self, problem, client, x, y, batch):
        return sum(self._episode(problem, x, y, e) for e in batch) / len(batch)

    def _episode(self, problem, x, y, episode) -> torch.Tensor:
        support = problem.episode_batch(episode, "support")
        query = problem.episode_batch(episode, "query")
        names = [("x", n) for n in x] + [("y", n) for n in y]
        params = [t.detach().requires_grad_(True) for t in (*x.values(), *y.values())]
        for _ in range(self.steps):
            ax, ay = _split(names, params)
            grads = torch.autograd.grad(problem.lower_loss(0, ax, ay, support), params)
            params = [
                (p - self.lr * g).detach().requires_grad_(True)
                for p, g in zip(params, grads, strict=True)
            ]
        originals = (*x.values(), *y.values())
        adapted = [o + (p.detach() - o.detach()) for o, p in zip(originals, params, strict=True)]
        ax, ay = _split(names, adapted)
        return problem.upper_loss(0, ax, ay, query)


def _split(names: list[tuple[str, str]], tensors: list) -> tuple[dict, dict]:
    """``tensors`` (in the order of ``names``, (side, name) pairs) back into the dicts x, y."""
    x = {n: t for (side, n), t in zip(names, tensors, strict=True) if side == "x"}
    y = {n: t for (side, n), t in zip(names, tensors, strict=True) if side == "y"}
    return x, y


register(
    single_level(
        "maml",
        "Dist-MAML: full model, FedAvg of first-order MAML (support adaptation, query loss)",
        FullModel(),
        label="dist-maml",
        loss=FirstOrderMAML(),
    )
)
