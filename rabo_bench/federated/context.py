"""What one global iteration knows: the problem, the round, its random streams and its cost ledger.

Randomness is explicit (DESIGN.md section 4): every stream is a ``torch.Generator`` seeded from a
hash of (run key, round, client, purpose), so runs are reproducible and parts are independent of
the order in which they draw.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from rabo_bench.federated.aggregation import MaskedSum
from rabo_bench.federated.clients import (
    ClientFn,
    ClientSimulator,
    Phase,
    SequentialClients,
    Streams,
)
from rabo_bench.hypergrad import OracleCounter
from rabo_bench.hypergrad.implicit import uniform_client
from rabo_bench.params import Params
from rabo_bench.problems.base import BilevelProblem
from rabo_bench.submodel import ClientMasks


def derive_generator(*keys: object) -> torch.Generator:
    """A generator seeded by a stable hash of ``keys`` (same keys, same stream, any machine)."""
    digest = hashlib.blake2b(repr(keys).encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") & (2**63 - 1))


@dataclass
class CostLedger:
    """Per-client work in one round: oracle calls and parameters sent down and up."""

    counters: list[OracleCounter]
    params_down: list[int]
    params_up: list[int]

    @classmethod
    def empty(cls, num_clients: int) -> CostLedger:
        return cls(
            [OracleCounter() for _ in range(num_clients)], [0] * num_clients, [0] * num_clients
        )

    def send_down(self, client: int, count: int) -> None:
        self.params_down[client] += count

    def send_up(self, client: int, count: int) -> None:
        self.params_up[client] += count


@dataclass
class RoundContext:
    """Everything a part may use in global iteration ``round``, and the client simulator that
    simulates the clients (:mod:`rabo_bench.federated.clients`; sequential by default).

    ``state`` is what the parts carry from round to round (momentum, a warm-started linear
    solve, control variates, a sampler's position): a copy of the previous round's mapping,
    one entry per owner (a part's ``name``), saved with the run's checkpoints. A part reads its
    entry with :meth:`carried` and replaces it (``ctx.state[name] = new``), never mutating the
    old value in place: the round loop may run a round twice from the same state (FLOP
    counting) and keeps only the state the real round left. Values are tensors, numbers,
    strings, and lists or dicts of them (what ``torch.load(weights_only=True)`` reads back).
    Entries are server-side: client code that reads per-client entries by the client's index
    cannot run under vmap, so such a part reports ``vectorisable = False``.

    ``handoff`` is what a part hands a later phase of the same round, by the part's name
    (SimFBO's inner phase hands its outer step the clients' x directions; AggITD's the
    global iterates its backward rounds start from): neither carried
    to the next round nor saved."""

    problem: BilevelProblem
    round: int
    capacities: Sequence[float]
    run_key: str
    simulator: ClientSimulator | None = None
    state: dict[str, Any] = field(default_factory=dict)
    ledger: CostLedger = field(init=False)
    handoff: dict[str, Any] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.ledger = CostLedger.empty(self.num_clients)
        self.state = dict(self.state)  # the previous round's mapping stays as it was
        if self.simulator is None:
            self.simulator = SequentialClients()

    def carried(self, owner: str, initial: Callable[[], Any]) -> Any:
        """``owner``'s state from the previous round; ``initial()`` in the run's first round
        that asks for it."""
        if owner not in self.state:
            self.state[owner] = initial()
        return self.state[owner]

    # A seed batch (:mod:`rabo_bench.federated.seeds`) simulates several runs at once: its
    # context overrides the members below, through which the parts and simulators go.
    @property
    def seeds(self) -> int | None:
        """None: one run; in a seed batch its size S (the state stacked along dimension 0)."""
        return None

    @property
    def num_clients(self) -> int:
        """How many clients are simulated: the problem's (a seed batch: one per seed and client)."""
        return self.problem.num_clients

    def locate(self, client: int) -> tuple[int, int]:
        """(row of the stacked state, the problem's client) of simulated client ``client``."""
        return 0, client

    def rng(self, client: int | None, purpose: str) -> torch.Generator:
        return derive_generator(self.run_key, self.round, client, purpose)

    def sample_client(self, rng: torch.Generator, clients: int) -> int:
        """A server's uniform draw of one of ``clients`` clients from its stream ``rng``."""
        return uniform_client(rng, clients)

    def streams(self, purpose: str) -> Streams:
        """Every client's stream for ``purpose`` in this round (kept across phases)."""
        return Streams(self, purpose)

    def map_clients(
        self, fn: ClientFn, masks: list[ClientMasks], streams: Streams | str, x: Params, y: Params
    ) -> dict[str, MaskedSum]:
        """Run the client function ``fn`` for every client (objectives at x, y); the server's
        masked sums per upload key. ``streams`` may be a purpose name (fresh streams)."""
        if isinstance(streams, str):
            streams = self.streams(streams)
        return self.simulator.map(Phase(self, masks, streams, x, y), fn)

    def one_client(
        self, client: int, fn, masks: list[ClientMasks], streams: Streams, x: Params, y: Params
    ):
        """``fn`` for client ``client`` alone (its result, not a sum)."""
        return self.simulator.one(Phase(self, masks, streams, x, y), client, fn)
