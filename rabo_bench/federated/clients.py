"""How the clients of one round are simulated (DESIGN.md §5).

A solver writes what ONE client does as a function of a :class:`ClientView` that returns the
client's upload as flat sub-model vectors, ``{"x": ..., "y": ...}`` (further x- or y-shaped
vectors under ``"x.<name>"`` / ``"y.<name>"``, :func:`side`). A client simulator runs that
function for the clients and returns the server's :class:`MaskedSum` per key, from which the
solver takes its step (SPEC eq. 6 and eq. 8):

* :class:`SequentialClients`: one client after another with eager autograd oracles (default);
* ``VectorisedClients`` (:mod:`.vectorised`): clients whose sub-models have the same size run
  at once under ``torch.func.vmap``;
* ``Sharded`` (:mod:`.distributed`): either simulator on this rank's share of the clients, the sums
  all-reduced across ``torch.distributed`` ranks.

All of them give the same rows; the vectorised and sharded ones differ from the sequential one
only by the order of floating-point sums (tests: to 1e-10 in float64).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from rabo_bench.federated.aggregation import MaskedSum
from rabo_bench.hypergrad import LocalObjective, OracleCounter, Oracles
from rabo_bench.params import Params

if TYPE_CHECKING:
    from rabo_bench.federated.context import CostLedger, RoundContext
    from rabo_bench.submodel import ClientMasks


@dataclass
class ClientView:
    """What one client's code sees: its objective, counted oracles and random stream, and a
    tally of the parameters it receives and sends (booked to the ledger by the simulator)."""

    objective: LocalObjective
    oracles: Oracles
    rng: Any  # a torch.Generator; under vmap, the streams of the client's group
    down: int = 0
    up: int = 0

    def pack_x(self, x: Params) -> torch.Tensor:
        return self.objective.pack_x(x)

    def pack_y(self, y: Params) -> torch.Tensor:
        return self.objective.pack_y(y)

    def sample_f(self):
        return self.objective.sample_f(self.rng)

    def sample_g(self):
        return self.objective.sample_g(self.rng)

    def sample_task(self):
        return self.objective.sample_task(self.rng)

    def send_down(self, count: int) -> None:
        self.down += count

    def send_up(self, count: int) -> None:
        self.up += count

    def book(self, ledger: CostLedger, clients: Sequence[int]) -> None:
        """Charge this view's oracle calls and messages to each of ``clients``."""
        for i in clients:
            ledger.counters[i] += self.oracles.counter
            ledger.send_down(i, self.down)
            ledger.send_up(i, self.up)


ClientFn = Callable[[ClientView], dict[str, torch.Tensor]]


@dataclass
class Streams:
    """The per-client random streams of one purpose in one round, each made on first use and
    then kept, so a client that draws in several phases continues its own stream."""

    ctx: RoundContext
    purpose: str
    made: dict[int, torch.Generator] = field(default_factory=dict)

    def __getitem__(self, client: int) -> torch.Generator:
        if client not in self.made:
            self.made[client] = self.ctx.rng(client, self.purpose)
        return self.made[client]


def side(key: str) -> str:
    """The side ("x" or "y") of an upload ``key``: "x", "y", or "x.<name>" / "y.<name>" for a
    further vector shaped like x or y (FedBiOAcc's averaged estimators, SimFBO's v)."""
    head = key.split(".", 1)[0]
    if head not in ("x", "y"):
        raise ValueError(f"upload key {key!r} must be 'x', 'y', 'x.<name>' or 'y.<name>'")
    return head


def unpack(objective: LocalObjective, key: str, sub: torch.Tensor) -> Params:
    """A client's flat upload for ``key`` (its :func:`side` x or y) as a full-shaped dict, zero
    off its mask."""
    return objective.unpack_x(sub) if side(key) == "x" else objective.unpack_y(sub)


@dataclass(frozen=True)
class Phase:
    """One pass over the clients: the round, its masks and streams, and the global (x, y) at
    which the clients' objectives are built."""

    ctx: RoundContext
    masks: Sequence[ClientMasks]
    streams: Streams
    x: Params
    y: Params

    def view(self, client: int) -> ClientView:
        """Client ``client``'s view with eager oracles and a fresh counter."""
        m = self.masks[client]
        obj = LocalObjective(self.ctx.problem, client, self.x, self.y, m.x, m.y)
        return ClientView(obj, Oracles(obj, OracleCounter()), self.streams[client])


def held(masks: ClientMasks, key: str, device: torch.device) -> dict[str, torch.Tensor]:
    """The dense mask of a client's upload ``key`` (its :func:`side`), on the upload's
    ``device``."""
    return (masks.x if side(key) == "x" else masks.y).dense(device)


class ClientSimulator(ABC):
    """Runs a client function for the clients of a round (see the module docstring)."""

    name: str

    def clients(self, ctx: RoundContext) -> Sequence[int]:
        """The clients this process simulates."""
        return range(ctx.num_clients)

    @abstractmethod
    def run(self, phase: Phase, fn: ClientFn, clients: Sequence[int]) -> dict[str, MaskedSum]:
        """``fn`` for each of ``clients``; the server's masked sums per upload key."""

    def map(self, phase: Phase, fn: ClientFn) -> dict[str, MaskedSum]:
        """``fn`` for every client of the round (this process's share of them)."""
        return self.run(phase, fn, self.clients(phase.ctx))

    def one(self, phase: Phase, client: int, fn: ClientFn) -> dict[str, Params]:
        """``fn`` for a single client (e.g. FedMBO's sampled Neumann factor), eagerly: its
        upload per key as a full-shaped dict, zero off its mask."""
        view = phase.view(client)
        result = {key: unpack(view.objective, key, sub) for key, sub in fn(view).items()}
        view.book(phase.ctx.ledger, (client,))
        return result

    def finish_round(self, ctx: RoundContext) -> None:
        """Called once the round is over (a sharded simulator gathers the ledger here)."""
        return None


class SequentialClients(ClientSimulator):
    """One client after another, eager autograd oracles: simple and exact (the reference)."""

    name = "sequential"

    def run(self, phase, fn, clients) -> dict[str, MaskedSum]:
        sums: dict[str, MaskedSum] = {}
        for i in clients:
            view = phase.view(i)
            for key, sub in fn(view).items():
                update = unpack(view.objective, key, sub)
                sums.setdefault(key, MaskedSum()).add(update, held(phase.masks[i], key, sub.device))
            view.book(phase.ctx.ledger, (i,))
        return sums
