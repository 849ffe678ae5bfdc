"""What one global iteration knows: the problem, the round, its random streams and its cost ledger.

Randomness is explicit (DESIGN.md section 4): every stream is a ``torch.Generator`` seeded from a
hash of (run key, round, client, purpose), so runs are reproducible and parts are independent of
the order in which they draw.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from rabo_bench.hypergrad import OracleCounter
from rabo_bench.problems.base import BilevelProblem
from rabo_bench.submodel import StructuredMask


def derive_generator(*keys: object) -> torch.Generator:
    """A generator seeded by a stable hash of ``keys`` (same keys, same stream, any machine)."""
    digest = hashlib.blake2b(repr(keys).encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") & (2**63 - 1))


@dataclass(frozen=True)
class ClientMasks:
    """Client i's sub-model in one round: m_{x,i}^q and m_{y,i}^q (SPEC eq. 3)."""

    x: StructuredMask
    y: StructuredMask


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
    """Everything a part may use in global iteration ``round``."""

    problem: BilevelProblem
    round: int
    capacities: Sequence[float]
    run_key: str
    ledger: CostLedger = field(init=False)

    def __post_init__(self) -> None:
        self.ledger = CostLedger.empty(self.problem.num_clients)

    @property
    def clients(self) -> range:
        return range(self.problem.num_clients)

    def rng(self, client: int | None, purpose: str) -> torch.Generator:
        return derive_generator(self.run_key, self.round, client, purpose)
