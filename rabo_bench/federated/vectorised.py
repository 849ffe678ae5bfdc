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
from torch.utils._pytree import tree_map

from rabo_bench.federated.aggregation import MaskedSum
from rabo_bench.federated.clients import ClientSimulator, ClientView, held, unpack
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

        def row(*leaves):
            return None if leaves[0] is None else client_row(torch.stack(leaves), self.position)

        return (tree_map(row, draws[0], *draws[1:]),)


def _index_params(params: Params) -> Params:
    """Each entry's flat position in ``Layout.of(params)``: packing these with a client's mask
    gives the flat indices of its sub-model coordinates in the sequential simulator's order."""
    out, start = {}, 0
    for name, t in params.items():
        out[name] = torch.arange(start, start + t.numel(), device=t.device).reshape(t.shape)
        start += t.numel()
    return out


class StackedObjective(LocalObjective):
    """One client of a group inside ``vmap``: ``client`` is a batched index tensor, the
    sub-model is given by batched flat indices into the full parameter vectors."""

    def __init__(
        self,
        problem: BilevelProblem,
        client: torch.Tensor,
        x_like: Params,
        y_like: Params,
        indices: tuple[torch.Tensor, torch.Tensor],
        thresholds: tuple[float | None, float | None],
    ) -> None:
        self.problem, self.client = problem, client
        self._x_like, self._y_like = x_like, y_like
        self._full = (Layout.of(x_like), Layout.of(y_like))
        self._indices, self._thresholds = indices, thresholds
        self.x_layout = Layout((("x", torch.Size([len(indices[0])])),))
        self.y_layout = Layout((("y", torch.Size([len(indices[1])])),))
        self._physical = False

    def pack_x(self, x: Params) -> torch.Tensor:
        return self._full[0].flatten(x)[self._indices[0]]

    def pack_y(self, y: Params) -> torch.Tensor:
        return self._full[1].flatten(y)[self._indices[1]]

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
    """Clients whose sub-models have equal sizes (and thresholds): one vmap call."""

    clients: tuple[int, ...]
    indices: tuple[torch.Tensor, torch.Tensor]  # (G, |x_sub|), (G, |y_sub|) flat positions
    thresholds: tuple[float | None, float | None]
    masks: dict[str, dict[str, torch.Tensor]]  # "x"/"y" -> name -> (G, *shape) bool


def groups_of(problem, masks, x: Params, y: Params, clients: Sequence[int]) -> list[Group]:
    """The clients grouped by sub-model sizes; the flat indices are packed once per distinct
    mask object (policies share one object among clients of equal capacity)."""
    index_x, index_y = _index_params(x), _index_params(y)
    device = next(iter(x.values())).device
    members: dict[tuple, list[int]] = {}
    packed: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    for i in clients:
        key = id(masks[i])
        if key not in packed:
            obj = LocalObjective(problem, i, x, y, masks[i].x, masks[i].y)
            packed[key] = (obj.pack_x(index_x), obj.pack_y(index_y))
        thresholds = tuple(getattr(m, "threshold", None) for m in (masks[i].x, masks[i].y))
        members.setdefault((*map(len, packed[key]), thresholds), []).append(i)
    groups = []
    for (_, _, thresholds), ids in members.items():
        stacked = {
            side: {
                name: torch.stack([held(masks[i], side, device)[name] for i in ids])
                for name in x_or_y
            }
            for side, x_or_y in (("x", x), ("y", y))
        }
        indices = tuple(torch.stack([packed[id(masks[i])][side] for i in ids]) for side in (0, 1))
        groups.append(Group(tuple(ids), indices, thresholds, stacked))
    return groups


class VectorisedClients(ClientSimulator):
    """Clients stacked by sub-model size and run under ``torch.func.vmap`` (module docstring).
    The grouping is computed once per round (masks are fixed within a round)."""

    name = "vectorised"

    def __init__(self) -> None:
        self._cached: tuple[object, list[Group]] | None = None

    def _groups(self, phase, clients) -> list[Group]:
        if self._cached is None or self._cached[0] is not phase.masks:
            groups = groups_of(phase.ctx.problem, phase.masks, phase.x, phase.y, clients)
            self._cached = (phase.masks, groups)
        return self._cached[1]

    def run(self, phase, fn, clients) -> dict[str, MaskedSum]:
        ctx, x, y = phase.ctx, phase.x, phase.y
        device = next(iter(x.values())).device  # the data's: client indices pick rows of it
        sums: dict[str, MaskedSum] = {}
        for group in self._groups(phase, clients):
            generators = tuple(phase.streams[i] for i in group.clients)
            views: list[ClientView] = []

            def client(
                index, position, x_index, y_index, group=group, gens=generators, views=views
            ):
                obj = StackedObjective(
                    ctx.problem, index, x, y, (x_index, y_index), group.thresholds
                )
                rngs = GroupStreams(group.clients, gens, position)
                view = ClientView(obj, FunctionalOracles(obj, OracleCounter()), rngs)
                views.append(view)
                return {key: unpack(obj, key, sub) for key, sub in fn(view).items()}

            size = len(group.clients)
            # the only random calls are the explicit per-client draws above, made on unbatched
            # tensors; "same" merely allows them (vmap refuses random calls by default)
            uploads = vmap(client, randomness="same")(
                torch.tensor(group.clients, device=device),
                torch.arange(size, device=device),
                *group.indices,
            )
            views[0].book(ctx.ledger, group.clients)
            for key, update in uploads.items():
                sums.setdefault(key, MaskedSum()).add_stacked(update, group.masks[key])
        return sums
