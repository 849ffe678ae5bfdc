"""The bilevel problem interface (DESIGN.md section 2): problems own the maths.

A federated bilevel problem (SPEC eq. 1) over M clients:

    min_x F(x) = (1/M) sum_i f_i(x, y*(x)),   y*(x) = argmin_y G(x, y) = (1/M) sum_i g_i(x, y).

x and y are named parameter dicts. Each client's losses are evaluated on a *batch* that the
client draws from an explicit ``torch.Generator``; ``batch=None`` means the client's whole data,
i.e. the expectation f_i, g_i themselves. Algorithms never know which problem they run.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from typing import Any

import torch

from rabo_bench.models.compute import FULL_PRECISION, Compute
from rabo_bench.params import Params
from rabo_bench.submodel.channels import ChannelLayers

Batch = Any  # problem-specific (index tensor, episode, ...); None = the client's full data


def client_row(
    table: torch.Tensor, client: int | torch.Tensor, rows: torch.Tensor | None = None
) -> torch.Tensor:
    """``table[client]``, or ``table[client][rows]`` (a minibatch of the client's samples), for
    an int client or a 0-dim index tensor. The vectorised simulator runs a problem's losses under
    ``vmap`` with a batched client index, where plain indexing would need the index's value;
    problems that set ``vectorisable`` pick their data with this. With ``rows`` only those rows
    are gathered (not the client's whole table first)."""
    if isinstance(client, int):
        return table[client] if rows is None else table[client][rows]
    if rows is None:
        return torch.index_select(table, 0, client.reshape(1)).squeeze(0)
    return torch.index_select(table.flatten(0, 1), 0, client * table.shape[1] + rows)


def _detached(params: Params) -> Params:
    return {name: t.detach() for name, t in params.items()}


class ClosedFormUnavailable(NotImplementedError):
    """Raised by problems that have no closed form for y*(x) or grad F(x)."""


class BilevelProblem(ABC):
    """A federated bilevel problem: per-client upper/lower losses on sampled batches."""

    num_clients: int
    dtype: torch.dtype = torch.float64
    # True when the losses accept the physically smaller tensors of a structured sub-model
    # (width inferred from the shapes) and give the same value as at the zero-embedded full
    # model x ⊙ m: then clients compute on the narrow model (SPEC eq. 4) and really save work.
    physical_submodels: bool = False
    # True when the losses accept a client index tensor (data picked with ``client_row``, all
    # clients' batches of one shape), so the vectorised simulator may run clients under vmap.
    vectorisable: bool = False
    # True when ``evaluate`` reports "accuracy": then the runner also evaluates the clients'
    # own sub-models (rabo_bench.metrics.trained)
    reports_accuracy: bool = False
    # True when the lower problem is solved per task (a few-shot episode): each task has its
    # own inner solution y_t*(x) = argmin_y g(x, y; task's lower data), warm-started from the
    # shared y, and f is evaluated on the same task's upper data (see ``sample_tasks``)
    per_task_inner: bool = False
    # True when the lower loss is a head on features of x that do not depend on y,
    #     g_i(x, y; batch) = lower_head_loss(i, y, lower_features(i, x, batch)),
    # so inner steps at a fixed x compute each batch's features once and step the head alone
    # (LocalObjective.lower_in_y); the problem then defines both methods
    head_on_features: bool = False
    # True when ``place`` can move the data to any device (then parameters, batches and
    # evaluation follow it); False: the problem computes on the CPU only
    movable: bool = False
    precisions: tuple[str, ...] = (FULL_PRECISION,)  # what ``place`` accepts (models.compute)
    compute: Compute = Compute()  # where and how it computes (set by ``place``)

    @classmethod
    def unsupported(cls, precision: str, device: torch.device | None = None) -> str | None:
        """Why the problem cannot compute in ``precision`` (on ``device``, if given), or None."""
        if precision not in cls.precisions:
            return (
                f"precision {precision}: problem {cls.__name__} computes in "
                f"{str(cls.dtype).removeprefix('torch.')} and supports {', '.join(cls.precisions)}"
                " only"
            )
        if device is None:
            return None
        if device.type != "cpu" and not cls.movable:
            return f"device {device}: problem {cls.__name__} runs on the CPU only"
        if precision == "tf32" and device.type != "cuda":
            return f"precision tf32 is a CUDA tensor-core mode; this run's device is {device}"
        return None

    def place(self, compute: Compute) -> None:
        """Compute as ``compute`` says from now on: a movable problem moves its data to the
        device once (and overrides this to do so); parameters from :meth:`init_params`,
        batches and evaluation are then on it, the networks' forward pass in its precision.
        Raises ValueError (one line) for what the problem does not support."""
        why = self.unsupported(compute.precision, compute.device)
        if why is not None:
            raise ValueError(why)
        self.compute = compute

    def channel_layers(self, x: Params, y: Params) -> ChannelLayers:
        """Which tensor dimensions share a channel (see :mod:`rabo_bench.submodel.channels`);
        by default every parameter's rows are its own channels."""
        return ChannelLayers.rows_of(x, y)

    @abstractmethod
    def init_params(self, rng: torch.Generator) -> tuple[Params, Params]:
        """Initial (x, y), drawn from ``rng``."""

    @abstractmethod
    def upper_loss(self, client: int, x: Params, y: Params, batch: Batch) -> torch.Tensor:
        """f_i(x, y; xi): client ``client``'s upper-level loss on ``batch`` (a scalar)."""

    @abstractmethod
    def lower_loss(self, client: int, x: Params, y: Params, batch: Batch) -> torch.Tensor:
        """g_i(x, y; zeta): client ``client``'s lower-level loss on ``batch`` (a scalar)."""

    def lower_features(self, client: int, x: Params, batch: Batch) -> Any:
        """Problems with ``head_on_features``: all that g_i reads of x on ``batch`` (e.g. the
        backbone's features of the batch's images, with its labels)."""
        raise NotImplementedError(f"{type(self).__name__} has no feature split of g")

    def lower_head_loss(self, client: int, y: Params, features: Any) -> torch.Tensor:
        """Problems with ``head_on_features``: g_i(x, y; batch) from ``features`` =
        ``lower_features(client, x, batch)``."""
        raise NotImplementedError(f"{type(self).__name__} has no feature split of g")

    def episode_head_losses(self, y: Params, features: Any, upper: bool) -> torch.Tensor:
        """Problems that take a client's episodes in one pass (``episodes_in_one_pass``,
        ``rabo_bench.federated.episodes``): the E episodes' g (or f, ``upper``) [E], from their
        heads ``y`` (every tensor with a leading E) and features ``episode_features``."""
        raise NotImplementedError(f"{type(self).__name__} has no batched episode losses")

    def sample_upper_batch(self, client: int, rng: torch.Generator) -> Batch:
        """A minibatch for f_i; deterministic problems return None (the full data)."""
        return None

    def sample_lower_batch(self, client: int, rng: torch.Generator) -> Batch:
        """A minibatch for g_i; deterministic problems return None (the full data)."""
        return None

    def sample_task_batch(self, client: int, rng: torch.Generator) -> Batch:
        """A minibatch for :meth:`task_loss`: by default an (upper, lower) pair."""
        return self.sample_upper_batch(client, rng), self.sample_lower_batch(client, rng)

    def sample_tasks(self, client: int, rng: torch.Generator) -> list[tuple[Batch, Batch]]:
        """Problems with ``per_task_inner``: a meta-batch of tasks of client ``client``, each a
        (lower batch, upper batch) pair drawn from one task (e.g. an episode's support and
        query sets). A client's hypergradient is the mean over these tasks of the hypergradient
        of f(x, y_t*(x); upper) with y_t* solved on the lower batch."""
        raise NotImplementedError(f"{type(self).__name__} has no per-task inner problems")

    def task_loss(self, client: int, x: Params, y: Params, batch: Batch) -> torch.Tensor:
        """The single-level loss that sub-model baselines train (x, y) on jointly (SPEC §6, §9
        item 11). Default [OURS]: each block descends its own level's loss, x on f with y held,
        y on g with x held, so a single-level method ignores the implicit term dy*/dx. On
        hyperparameter problems whose f does not depend on x this leaves x untouched ("no loss
        tuning", SPEC §7.2). Model-based problems override it (e.g. support+query CE)."""
        upper_batch, lower_batch = batch
        return self.upper_loss(client, x, _detached(y), upper_batch) + self.lower_loss(
            client, _detached(x), y, lower_batch
        )

    def evaluate_final(self, x: Params, y: Params) -> dict[str, float]:
        """Metrics at the last round; problems may evaluate more thoroughly here."""
        return self.evaluate(x, y)

    def evaluate(self, x: Params, y: Params) -> dict[str, float]:
        """Metrics of the current global iterate; closed-form problems add exact quantities."""
        upper = sum(self.upper_loss(i, x, y, None) for i in range(self.num_clients))
        return {"upper_loss": float(upper) / self.num_clients}

    # Closed forms, where they exist (synthetic problems). They never use autograd, so they
    # are an independent reference for every estimator.
    def inner_solution(self, x: Params) -> Params:
        """y*(x), the minimiser of G(x, .)."""
        raise ClosedFormUnavailable(f"{type(self).__name__} has no closed-form y*(x)")

    def outer_objective(self, x: Params) -> float:
        """F(x) = (1/M) sum_i f_i(x, y*(x))."""
        y_star = self.inner_solution(x)
        total = sum(self.upper_loss(i, x, y_star, None) for i in range(self.num_clients))
        return float(total) / self.num_clients

    def hypergradient(self, x: Params) -> Params:
        """grad F(x) (SPEC eq. 9)."""
        raise ClosedFormUnavailable(f"{type(self).__name__} has no closed-form grad F(x)")


def with_curve_accuracy(final: dict, curve: dict) -> dict:
    """``final`` (metrics on the whole test set) with ``curve``'s accuracy (the curve's test
    subset, where every intermediate point is measured) at the same iterate in its details as
    ``curve_accuracy``: a curve's change up to its last round then compares like with like
    (``report.claims.plateau_table``)."""
    details = json.loads(final.get("details") or "{}")
    return {**final, "details": json.dumps({**details, "curve_accuracy": curve["accuracy"]})}
