"""The vectorised client simulator: clients with equally large sub-models run at once under vmap.

Clients are grouped by (|x_sub|, |y_sub|, FIARSE thresholds). Inside a group every client's flat
sub-model vector has the same length, so the solver's client function, the estimator and the
oracles run unchanged on stacked tensors under ``torch.func.vmap``; only three things differ
from the sequential simulator:

* the objective (:class:`StackedObjective`) packs and unpacks sub-models by gathering and
  scattering flat indices (the same coordinates, in the same order, as the sequential
  ``extract``/``embed``), and its client index is a tensor (problems pick their client's data
  with :func:`rabo_bench.problems.base.client_row`);
* the oracles are :class:`FunctionalOracles` (torch.func, no autograd.grad);
* batches are drawn in Python from each client's own generator, in the same order as the
  sequential simulator draws them, then stacked, so both simulators see identical samples.

Oracle counts and messages do not depend on the data, so the one traced count of a group is
booked to each of its clients. Valid when the problem says ``vectorisable`` and the
algorithm's parts do (no data-dependent control flow, no direct random draws in estimators).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.func import vmap
from torch.utils._pytree import tree_flatten, tree_unflatten

from rabo_bench.federated.aggregation import MaskedSum
from rabo_bench.federated.clients import ClientSimulator, ClientView, held, side, unpack
from rabo_bench.hypergrad import LocalObjective, OracleCounter
from rabo_bench.hypergrad.oracles import FunctionalOracles
from rabo_bench.params import Layout, Params
from rabo_bench.problems.base import BilevelProblem, client_row
from rabo_bench.submodel.element import surrogate_weights


@dataclass(frozen=True)
class GroupStreams:
    """The generators of one group's clients inside ``vmap``: a draw is made from each client's
    own generator (as the sequential simulator would), stacked, and ``position`` (batched) picks
    this client's row."""

    clients: tuple[int, ...]
    generators: tuple[torch.Generator, ...]
    position: torch.Tensor

    def draw(self, sample):
        return self.draw_tree(lambda i, g: sample(g))[0]

    def draw_tree(self, sample) -> tuple:
        """``sample(client, generator)`` for each client (any pytree with tensor or None
        leaves); this client's draw, as a 1-tuple."""
        draws = [sample(i, g) for i, g in zip(self.clients, self.generators, strict=True)]
        flat = [tree_flatten(d)[0] for d in draws]  # once per draw: a group may be 1000s

        def row(*leaves):
            return None if leaves[0] is None else client_row(torch.stack(leaves), self.position)

        columns = [row(*leaves) for leaves in zip(*flat, strict=True)]
        return (tree_unflatten(columns, tree_flatten(draws[0])[1]),)


def _index_params(params: Params) -> Params:
    """Each entry's flat position in ``Layout.of(params)``: packing these with a client's mask
    gives the flat indices of its sub-model coordinates in the sequential simulator's order."""
    out, start = {}, 0
    for name, t in params.items():
        out[name] = torch.arange(start, start + t.numel(), device=t.device).reshape(t.shape)
        start += t.numel()
    return out


def rows_flat(params: Params, rows: int) -> torch.Tensor:
    """A stack of ``rows`` runs' parameters (leading axis) as one vector, run by run: run s's
    ``Layout`` flat vector is entries s n, ..., s n + n - 1 (n its size). One run: rows = 1."""
    return torch.cat([t.reshape(rows, -1) for t in params.values()], 1).reshape(-1)


def one_run(params: Params, seeds: int | None) -> Params:
    """The parameters of one run: themselves, or row 0 of a seed batch's stack."""
    return params if seeds is None else {name: t[0] for name, t in params.items()}


class StackedObjective(LocalObjective):
    """One client of a group inside ``vmap``: ``client`` is a batched index tensor, the
    sub-model is given by batched flat indices into its run's parameter vectors (``indices``,
    where the losses place it) and into the vector of all runs' (``gather``, where packing
    reads it: run s's entry j is s n + j, :func:`rows_flat`; one run: the same indices)."""

    def __init__(
        self,
        problem: BilevelProblem,
        client: torch.Tensor,
        x_like: Params,
        y_like: Params,
        indices: tuple[torch.Tensor, torch.Tensor],
        thresholds: tuple[float | None, float | None],
        gather: tuple[torch.Tensor, torch.Tensor],
        rows: int,
    ) -> None:
        self.problem, self.client = problem, client
        self._x_like, self._y_like = x_like, y_like
        self._full = (Layout.of(x_like), Layout.of(y_like))
        self._indices, self._thresholds = indices, thresholds
        self._gather, self._rows = gather, rows
        self.x_layout = Layout((("x", torch.Size([len(indices[0])])),))
        self.y_layout = Layout((("y", torch.Size([len(indices[1])])),))
        self._direct_x = self._direct_y = False

    def pack_x(self, x: Params) -> torch.Tensor:
        return rows_flat(x, self._rows)[self._gather[0]]

    def pack_y(self, y: Params) -> torch.Tensor:
        return rows_flat(y, self._rows)[self._gather[1]]

    def _place(self, side: int, sub: torch.Tensor) -> Params:
        threshold = self._thresholds[side]
        if threshold is not None:  # FIARSE's masked forward, as ElementMask.embed applies it
            sub = surrogate_weights(sub, threshold)
        layout = self._full[side]
        flat = torch.zeros(layout.numel, dtype=sub.dtype, device=sub.device)
        flat = flat.scatter(0, self._indices[side], sub)
        return layout.unflatten(flat)

    def unpack_x(self, x_sub: torch.Tensor) -> Params:
        return self._place(0, x_sub)

    def unpack_y(self, y_sub: torch.Tensor) -> Params:
        return self._place(1, y_sub)

    def sample_task(self, rng: GroupStreams) -> tuple:
        return rng.draw_tree(self.problem.sample_task_batch)

    def sample_f(self, rng: GroupStreams) -> tuple:
        return rng.draw_tree(self.problem.sample_upper_batch)

    def sample_g(self, rng: GroupStreams) -> tuple:
        return rng.draw_tree(self.problem.sample_lower_batch)


@dataclass(frozen=True)
class Group:
    """Simulated clients whose sub-models have equal sizes (and thresholds): one vmap call.
    One run: ``clients`` are the problem's clients and ``rows`` zero; in a seed batch client k
    is the problem's client ``members[k]`` of run ``rows[k]``."""

    clients: tuple[int, ...]  # the simulated clients (their streams and ledger entries)
    members: tuple[int, ...]  # the problem's clients (their data)
    rows: torch.Tensor  # (G,) the row of each one's run in the stacked state
    indices: tuple[torch.Tensor, torch.Tensor]  # (G, |x_sub|), (G, |y_sub|) flat positions
    gather: tuple[torch.Tensor, torch.Tensor]  # the same in the vector of all runs
    thresholds: tuple[float | None, float | None]
    masks: dict[str, dict[str, torch.Tensor]]  # "x"/"y" -> name -> (G, *shape) bool


def groups_of(ctx, masks, x: Params, y: Params, clients: Sequence[int], packed) -> list[Group]:
    """The clients grouped by sub-model sizes; the flat indices are packed once per distinct
    mask (equal masks: of clients of equal capacity, or of the runs of a seed batch), kept in
    ``packed`` for the round."""
    x, y = one_run(x, ctx.seeds), one_run(y, ctx.seeds)
    sizes = (Layout.of(x).numel, Layout.of(y).numel)
    device = next(iter(x.values())).device
    members: dict[tuple, list[int]] = {}
    for k in clients:
        mask = masks[k]
        if mask not in packed:
            obj = LocalObjective(ctx.problem, ctx.locate(k)[1], x, y, mask.x, mask.y)
            packed[mask] = (obj.pack_x(_index_params(x)), obj.pack_y(_index_params(y)))
        thresholds = tuple(getattr(m, "threshold", None) for m in (mask.x, mask.y))
        members.setdefault((*map(len, packed[mask]), thresholds), []).append(k)
    groups = []
    for (_, _, thresholds), ids in members.items():
        stacked = {
            side: {
                name: torch.stack([held(masks[k], side, device)[name] for k in ids])
                for name in x_or_y
            }
            for side, x_or_y in (("x", x), ("y", y))
        }
        located = [ctx.locate(k) for k in ids]
        rows = torch.tensor([row for row, _ in located], device=device)
        indices = tuple(torch.stack([packed[masks[k]][side] for k in ids]) for side in (0, 1))
        gather = tuple(i + sizes[side] * rows[:, None] for side, i in enumerate(indices))
        ours = tuple(client for _, client in located)
        groups.append(Group(tuple(ids), ours, rows, indices, gather, thresholds, stacked))
    return groups


class VectorisedClients(ClientSimulator):
    """Clients stacked by sub-model size and run under ``torch.func.vmap`` (module docstring).
    The flat indices are packed once per round (masks are fixed within a round), the groups
    once per set of clients. In a seed batch (``ctx.seeds``) a simulated client is a (run,
    client) pair, the sums have a row per run, and :meth:`one` takes a client per run."""

    name = "vectorised"

    def __init__(self) -> None:
        self._cached: tuple[object, dict, dict[tuple, list[Group]]] | None = None

    def _groups(self, phase, clients) -> list[Group]:
        if self._cached is None or self._cached[0] is not phase.masks:
            self._cached = (phase.masks, {}, {})
        _, packed, groups = self._cached
        key = tuple(clients)
        if key not in groups:
            groups[key] = groups_of(phase.ctx, phase.masks, phase.x, phase.y, key, packed)
        return groups[key]

    def run(self, phase, fn, clients) -> dict[str, MaskedSum]:
        ctx, x, y = phase.ctx, phase.x, phase.y
        like_x, like_y = one_run(x, ctx.seeds), one_run(y, ctx.seeds)
        rows = ctx.seeds or 1
        device = next(iter(x.values())).device  # the data's: client indices pick rows of it
        sums: dict[str, MaskedSum] = {}
        for group in self._groups(phase, clients):
            generators = tuple(phase.streams[k] for k in group.clients)
            views: list[ClientView] = []

            def client(
                index, position, x_index, y_index, x_gather, y_gather, group=group,
                gens=generators, views=views,
            ):  # fmt: skip
                obj = StackedObjective(
                    ctx.problem, index, like_x, like_y, (x_index, y_index), group.thresholds,
                    (x_gather, y_gather), rows,
                )  # fmt: skip
                rngs = GroupStreams(group.members, gens, position)
                view = ClientView(obj, FunctionalOracles(obj, OracleCounter()), rngs)
                views.append(view)
                return {key: unpack(obj, key, sub) for key, sub in fn(view).items()}

            size = len(group.clients)
            # the only random calls are the explicit per-client draws above, made on unbatched
            # tensors; "same" merely allows them (vmap refuses random calls by default)
            uploads = vmap(client, randomness="same")(
                torch.tensor(group.members, device=device),
                torch.arange(size, device=device),
                *group.indices,
                *group.gather,
            )
            views[0].book(ctx.ledger, group.clients)
            for key, update in uploads.items():
                total = sums.setdefault(key, MaskedSum())
                masks = group.masks[side(key)]
                if ctx.seeds is None:
                    total.add_stacked(update, masks)
                else:
                    total.add_rows(update, masks, group.rows, ctx.seeds)
        return sums

    def one(self, phase, client, fn) -> dict[str, Params]:
        """One client eagerly; in a seed batch ``client`` is one simulated client per run,
        run at once, and the result has a row per run."""
        if phase.ctx.seeds is None:
            return super().one(phase, client, fn)
        return {key: total.total for key, total in self.run(phase, fn, client).items()}
