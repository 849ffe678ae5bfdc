"""One client's view of a bilevel problem: f_i and g_i on its (masked) sub-model, flattened.

Estimators work on flat vectors: x_sub and y_sub hold exactly the coordinates the client's masks
keep (SPEC eq. 4, structured pruning). The losses are evaluated at the embedded full model
x ⊙ m_x, y ⊙ m_y (SPEC eq. 2): coordinates outside the mask are zero, so every derivative an
estimator takes is automatically restricted to the sub-model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch

from rabo_bench.params import Layout, Params
from rabo_bench.problems.base import Batch, BilevelProblem
from rabo_bench.problems.single_level import TASK_LOSS
from rabo_bench.submodel import StructuredMask, embed, extract


def _is_full(mask) -> bool:
    """Whether ``mask`` is a structured mask that holds every coordinate."""
    return isinstance(mask, StructuredMask) and all(
        idx is None for index in mask.index.values() for idx in index
    )


def _mean(losses) -> torch.Tensor:
    """The mean of the clients' losses; one client's loss itself (the same value, without the
    sum's and division's autograd nodes, which every product through its graph would visit)."""
    losses = list(losses)
    return losses[0] if len(losses) == 1 else sum(losses) / len(losses)


class LocalObjective:
    """Client ``client``'s losses as functions of flat sub-model vectors.

    ``client=None`` gives the global objective (F's and G's integrands averaged over all
    clients, one batch per client): the reference that closed forms describe.
    """

    def __init__(
        self,
        problem: BilevelProblem,
        client: int | None,
        x_like: Params,
        y_like: Params,
        x_mask: StructuredMask | None = None,
        y_mask: StructuredMask | None = None,
    ) -> None:
        self.problem, self.client = problem, client
        self._x_like, self._y_like = x_like, y_like
        self.x_mask = x_mask or StructuredMask.full(x_like)
        self.y_mask = y_mask or StructuredMask.full(y_like)
        self.x_layout = Layout.of(extract(x_like, self.x_mask))
        self.y_layout = Layout.of(extract(y_like, self.y_mask))
        physical = problem.physical_submodels and all(
            isinstance(m, StructuredMask) for m in (self.x_mask, self.y_mask)
        )
        # x ⊙ m_x is x itself under a full mask: no embedding (nor its autograd nodes) then
        self._direct_x = physical or _is_full(self.x_mask)
        self._direct_y = physical or _is_full(self.y_mask)

    # -- between full parameter dicts and flat sub-model vectors -------------------------------
    def pack_x(self, x: Params) -> torch.Tensor:
        return self.x_layout.flatten(extract(x, self.x_mask))

    def pack_y(self, y: Params) -> torch.Tensor:
        return self.y_layout.flatten(extract(y, self.y_mask))

    def unpack_x(self, x_sub: torch.Tensor) -> Params:
        """The full-shaped x ⊙ m_x whose kept coordinates are ``x_sub``."""
        return embed(self.x_mask, self.x_layout.unflatten(x_sub), self._x_like)

    def unpack_y(self, y_sub: torch.Tensor) -> Params:
        return embed(self.y_mask, self.y_layout.unflatten(y_sub), self._y_like)

    # -- losses and batches -------------------------------------------------------------------
    def _clients(self) -> Sequence:
        if self.client is None:
            return range(self.problem.num_clients)
        return (self.client,)

    def _model(self, x_sub: torch.Tensor, y_sub: torch.Tensor) -> tuple[Params, Params]:
        """What the losses are evaluated at: the narrow sub-model itself where the problem
        supports it and the masks are structured (SPEC eq. 4), else x ⊙ m_x, y ⊙ m_y."""
        return self._model_x(x_sub), self._model_y(y_sub)

    def _model_x(self, x_sub: torch.Tensor) -> Params:
        return self.x_layout.unflatten(x_sub) if self._direct_x else self.unpack_x(x_sub)

    def _model_y(self, y_sub: torch.Tensor) -> Params:
        return self.y_layout.unflatten(y_sub) if self._direct_y else self.unpack_y(y_sub)

    def _mean_loss(self, loss, x_sub: torch.Tensor, y_sub: torch.Tensor, batch) -> torch.Tensor:
        x, y = self._model(x_sub, y_sub)
        return _mean(loss(i, x, y, b) for i, b in zip(self._clients(), batch, strict=True))

    def f(self, x_sub: torch.Tensor, y_sub: torch.Tensor, batch) -> torch.Tensor:
        """f_i(x ⊙ m_x, y ⊙ m_y; batch); ``batch`` holds one entry per client in view."""
        return self._mean_loss(self.problem.upper_loss, x_sub, y_sub, batch)

    def g(self, x_sub: torch.Tensor, y_sub: torch.Tensor, batch) -> torch.Tensor:
        return self._mean_loss(self.problem.lower_loss, x_sub, y_sub, batch)

    def lower_in_y(self, x_sub: torch.Tensor, batches: Sequence) -> list[Callable]:
        """y_sub -> g(x_sub, y_sub; batch) for each of ``batches``, x held at ``x_sub``: the
        losses of inner steps. Where g is a head on features of x (the problem's
        ``head_on_features``), the features of each distinct batch (the same batch object) are
        computed here once and the functions evaluate the head alone; the values are the same
        (the same ops on the same features), and derivatives in x still flow through the
        features when ``x_sub`` is traced."""
        if not self.problem.head_on_features:
            return [partial(self.g, x_sub, batch=batch) for batch in batches]
        x, clients = self._model_x(x_sub), self._clients()
        features: dict[tuple[int, ...], tuple] = {}
        for batch in batches:  # the list holds the batches, so their ids are unique keys
            key = tuple(map(id, batch))
            if key not in features:
                pairs = zip(clients, batch, strict=True)
                features[key] = tuple(self.problem.lower_features(i, x, b) for i, b in pairs)
        return [partial(self._head_loss, features[tuple(map(id, b))]) for b in batches]

    def _head_loss(self, features: tuple, y_sub: torch.Tensor) -> torch.Tensor:
        """g from the batch's features (one entry per client in view), as ``g`` averages."""
        y, pairs = self._model_y(y_sub), zip(self._clients(), features, strict=True)
        return _mean(self.problem.lower_head_loss(i, y, f) for i, f in pairs)

    def task(self, x_sub: torch.Tensor, y_sub: torch.Tensor, batch, loss=TASK_LOSS):
        """A single-level loss (:mod:`rabo_bench.problems.single_level`; by default the
        problem's ``task_loss``)."""

        def at(i, x, y, b):
            return loss(self.problem, i, x, y, b)

        return self._mean_loss(at, x_sub, y_sub, batch)

    def tasks(self, rng: torch.Generator) -> list[LocalObjective]:
        """The objectives whose inner problems a client solves: itself (one global inner
        problem, eq. 1), or, for a problem with ``per_task_inner``, one objective per task of
        the client's meta-batch, pinned to that task's data (``rng`` draws the tasks)."""
        if not self.problem.per_task_inner:
            return [self]
        if self.client is None:
            raise ValueError("per-task inner problems belong to one client, not the average")
        return [
            PinnedTask(self, lower, upper)
            for lower, upper in self.problem.sample_tasks(self.client, rng)
        ]

    def sample_task(self, rng: torch.Generator) -> tuple[Batch, ...]:
        return tuple(self.problem.sample_task_batch(i, rng) for i in self._clients())

    def sample_f(self, rng: torch.Generator) -> tuple[Batch, ...]:
        return tuple(self.problem.sample_upper_batch(i, rng) for i in self._clients())

    def sample_g(self, rng: torch.Generator) -> tuple[Batch, ...]:
        return tuple(self.problem.sample_lower_batch(i, rng) for i in self._clients())


class PinnedTask(LocalObjective):
    """One task of a client's meta-batch: the client's objective whose lower batches are always
    the task's lower data and whose upper batches are its upper data (the inner problem
    y_t*(x) = argmin_y g(x, y; lower), and f on the same task's upper data)."""

    def __init__(self, parent: LocalObjective, lower: Batch, upper: Batch) -> None:
        vars(self).update(vars(parent))
        self._lower, self._upper = lower, upper

    @property
    def lower(self) -> Batch:
        """The task's lower data (a few-shot episode's support set)."""
        return self._lower

    @property
    def upper(self) -> Batch:
        """The task's upper data (a few-shot episode's query set)."""
        return self._upper

    def tasks(self, rng: torch.Generator) -> list[LocalObjective]:
        return [self]

    def sample_f(self, rng: torch.Generator) -> tuple[Batch, ...]:
        return (self._upper,)

    def sample_g(self, rng: torch.Generator) -> tuple[Batch, ...]:
        return (self._lower,)
