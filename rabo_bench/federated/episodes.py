"""A client's meta-batch of few-shot episodes in one pass (issue 15 item 3), where the problem's
losses are a head on backbone features (``head_on_features``) and every episode is its own
inner problem (``per_task_inner``).

The per-episode path (``inner.py``, ``outer.py``) solves the episodes one after another: per
episode a backbone forward for its inner steps, one for grad f, one for the graph of grad_y g
and two backbone backward passes. Here the E episodes' support sets go through the backbone in
one forward and their query sets in another, each episode normalised with its own statistics
(``forward(..., groups=E)``); the heads of all episodes are adapted, and their Neumann series
run, as one batch (the problem's ``episode_head_losses`` on detached features, summed over the
episodes, whose heads are independent: one backward gives every episode's own derivative); and
the backbone gets one backward pass for all of it, with the feature cotangents of f and of the
mixed product:

    h = mean_e [ grad_x f_e - d^2_xy g_e · p_e ]
      = J_query^T (1/E) d f_e / d phi_q  -  J_support^T (1/E) d <grad_y g_e, p_e> / d phi_s,

which is the per-episode estimate's mean in exact arithmetic (the features are the same
numbers, the head's derivatives are summed in another order): equal to rounding (float64:
``tests/unit/test_episodes_in_one_pass.py``). The counted oracle calls are booked per episode
as the per-episode path books them (E grad_f, E (N - 1) hvp, E jvp and E T grad_g), so costs do
not depend on the path.

It serves the deterministic Neumann estimate (RABO's) with the base inner solver (T SGD steps
from the client's y); other estimators and solvers keep the per-episode path. The problem says
when to take it (``FewShotProblem.episodes_in_one_pass``): on CUDA, where one large batch beats
many small ones. The CPU keeps the per-episode path, which the committed CPU results were made
with, so that they stay bit-identical. Measured on the CPU (Omniglot cpu preset 5w5s, RABO
round, 1 thread, machine shared): 0.45-0.54 s against 0.49-0.52 s with one episode per client,
5.9-7.0 s against 8.2-10.2 s with 16.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rabo_bench.hypergrad import Oracles
from rabo_bench.hypergrad.estimators.neumann import Neumann
from rabo_bench.hypergrad.objective import LocalObjective


def in_one_pass(problem, inner, estimator=None) -> bool:
    """Whether a client's episodes take this path: a problem that asks for it, the base inner
    solver's steps, and (for an outer step) the deterministic Neumann estimate."""
    from rabo_bench.federated.inner import InnerSolver  # inner imports this module

    if not (problem.per_task_inner and getattr(problem, "episodes_in_one_pass", False)):
        return False
    if not problem.physical_submodels:  # the heads' losses read the narrow head itself
        return False
    if type(inner).solve is not InnerSolver.solve:
        return False
    return estimator is None or (type(estimator) is Neumann and not estimator.randomized)


def _leaf(t: torch.Tensor) -> torch.Tensor:
    return t.detach().requires_grad_(True)


@dataclass(frozen=True)
class Episodes:
    """One client's episodes: their features, and their heads' losses as functions of the
    stacked flat heads [E, d_y] (each episode's loss reads its own row alone)."""

    objective: LocalObjective

    def features(self, x_sub: torch.Tensor, batches: list) -> tuple[torch.Tensor, torch.Tensor]:
        """(phi [E, n, d], labels [E, n]) of the episodes' ``batches``, one grouped forward."""
        x = self.objective._model_x(x_sub)
        return self.objective.problem.episode_features(x, batches)

    def loss(self, heads: torch.Tensor, features, upper: bool = False) -> torch.Tensor:
        """The sum over the episodes of g (f: ``upper``) at their ``heads``."""
        y = self.objective.y_layout.unflatten_rows(heads)
        return self.objective.problem.episode_head_losses(y, features, upper).sum()

    def adapt(self, oracles: Oracles, y: torch.Tensor, support, steps: int, lr: float):
        """Every episode's head after ``steps`` SGD steps on its g from ``y`` ([E, d_y])."""
        heads = y.detach().expand(support[0].shape[0], -1)
        with torch.enable_grad():
            for _ in range(steps):
                heads = _leaf(heads)
                (step,) = torch.autograd.grad(self.loss(heads, support), heads)
                heads = heads.detach() - lr * step
        oracles.counter.grad_g += steps * support[0].shape[0]
        return heads


def inner_moves(oracles: Oracles, objective, x_sub, y_sub, tasks, inner) -> torch.Tensor:
    """sum_e (y_sub - y_e) over the episodes ``tasks``, y_e after ``inner``'s steps on
    episode e (the inner phase's upload before its scaling)."""
    episodes = Episodes(objective)
    with torch.no_grad():
        support = episodes.features(x_sub.detach(), [task.lower for task in tasks])
    heads = episodes.adapt(oracles, y_sub, support, inner.steps, inner.lr)
    return (y_sub - heads).sum(0)


def estimate(oracles: Oracles, objective, x_sub, y_sub, tasks, inner, estimator: Neumann):
    """The mean over the episodes ``tasks`` of the Neumann estimate at each episode's head
    adapted from ``y_sub`` by ``inner`` (``LocalHypergradient``'s per-task estimate)."""
    episodes, count = Episodes(objective), len(tasks)
    with torch.enable_grad():
        x_leaf = _leaf(x_sub)
        phi_s, labels_s = episodes.features(x_leaf, [task.lower for task in tasks])
        phi_q, labels_q = episodes.features(x_leaf, [task.upper for task in tasks])
    support, query = _leaf(phi_s), _leaf(phi_q)
    heads = episodes.adapt(oracles, y_sub, (support.detach(), labels_s), inner.steps, inner.lr)
    with torch.enable_grad():
        heads = _leaf(heads)
        f = episodes.loss(heads, (query, labels_q), upper=True)
        grad_y_f, cotangent_q = torch.autograd.grad(f, (heads, query))
        grad_y_g = torch.autograd.grad(
            episodes.loss(heads, (support, labels_s)), heads, create_graph=True
        )[0]
        term = total = grad_y_f
        for _ in range(estimator.terms - 1):
            hvp = torch.autograd.grad(grad_y_g, heads, term, retain_graph=True)[0]
            term = term - estimator.eta * hvp
            total = total + term
        p = estimator.eta * total
        (cotangent_s,) = torch.autograd.grad(grad_y_g, support, p)
        (h,) = torch.autograd.grad(
            (phi_q, phi_s), x_leaf, (cotangent_q / count, -cotangent_s / count)
        )
    counter = oracles.counter
    counter.grad_f += count
    counter.hvp += count * (estimator.terms - 1)
    counter.jvp += count
    return h
