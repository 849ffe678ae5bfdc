"""The one round loop (DESIGN.md §1): mask policy -> inner solver -> outer step, every algorithm.

One global iteration q (SPEC §2, Algorithm 1):
    masks   = policy.assign(x^q, y^q, r)                      server, eq. (3)
    x', y^{q+1} = inner.run(x^q, y^q, masks)                  clients eq. (5), server eq. (6)
    x^{q+1} = outer.run(x', y^{q+1}, masks, inner)            clients eq. (7)/(10), server eq. (8)
(x' = x^q for bilevel methods; single-level baselines train x jointly in the inner phase; a
single-loop method's outer step runs both phases as one loop, ``OuterStep.round``.)
Parts that carry state between rounds (momentum, warm starts) keep it in the run's ``state``
(``RoundContext.state``), which is checkpointed with x and y.
Each part records its clients' oracle calls and messages. How the clients are simulated is the
run's client simulator (``clients``, :mod:`rabo_bench.federated.clients`): in sequence, vectorised
under vmap, either of them sharded over torch.distributed ranks; the results are the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.flop_counter import FlopCounterMode

from rabo_bench.federated.aggregation import coverage
from rabo_bench.federated.clients import ClientSimulator, SequentialClients
from rabo_bench.federated.context import CostLedger, RoundContext, derive_generator
from rabo_bench.federated.distributed import collective_device, sharded, world
from rabo_bench.federated.vectorised import VectorisedClients
from rabo_bench.hypergrad import OracleCounter
from rabo_bench.params import Params
from rabo_bench.problems.base import BilevelProblem
from rabo_bench.submodel import ClientMasks, StructuredMask


@dataclass(frozen=True)
class CoverageStats:
    """Def. 3 for one round: min_j |C_j^q| and the histogram of |C_j^q| over coordinates
    (entry k = number of coordinates held by exactly k clients)."""

    minimum: int
    histogram: list[int]

    @classmethod
    def of(cls, masks: Sequence) -> CoverageStats:
        """From the clients' masks."""
        counts = torch.cat([c.reshape(-1) for c in coverage([m.dense() for m in masks]).values()])
        hist = torch.bincount(counts, minlength=len(masks) + 1)
        return cls(int(counts.min()), [int(v) for v in hist])


@dataclass(frozen=True)
class RoundReport:
    round: int
    ledger: CostLedger
    masks: list[ClientMasks]
    coverage_x: CoverageStats
    coverage_y: CoverageStats
    # FLOPs of the round (policy, inner, outer) summed over the ranks; None: not counted
    # (problems without physical sub-models, see FederatedRun.step)
    flops: int | None = None

    @classmethod
    def of(
        cls, round: int, ledger: CostLedger, masks: list[ClientMasks], flops: int | None = None
    ) -> RoundReport:
        """The report of round ``round`` with the coverage of ``masks``."""
        x_stats = CoverageStats.of([m.x for m in masks])
        return cls(round, ledger, masks, x_stats, CoverageStats.of([m.y for m in masks]), flops)

    @property
    def oracles(self) -> OracleCounter:
        total = OracleCounter()
        for counter in self.ledger.counters:
            total += counter
        return total


CLIENT_SIMULATORS = ("auto", "sequential", "vectorised")
# "auto" vectorises from this many clients on: below it vmap's fixed cost per call outweighs
# the batching (measured, one round of the synthetic suite on 1 thread: 10 clients, RABO 0.35 s
# sequential vs 0.95 s vectorised; 30 clients 0.34 s vs 0.27 s; 100 clients 0.82 s vs 0.30 s).
AUTO_MIN_CLIENTS = 20


def why_not_vectorised(problem: BilevelProblem, algorithm) -> str | None:
    """Why the vectorised simulator cannot run ``algorithm`` on ``problem`` (None: it can)."""
    if not problem.vectorisable:
        return f"problem {type(problem).__name__} picks client data by int (not vectorisable)"
    for part in (algorithm.inner, algorithm.outer):
        if not part.vectorisable:
            detail = f" (estimator {part.estimator.name})" if hasattr(part, "estimator") else ""
            return f"{algorithm.name}'s {part.name}{detail} is not vectorisable"
    return None


def client_simulator(problem: BilevelProblem, algorithm, clients: str = "auto") -> ClientSimulator:
    """The client simulator for ``clients`` (one of CLIENT_SIMULATORS): "auto" is vectorised
    where that is valid and the run has at least AUTO_MIN_CLIENTS clients, else sequential. Under
    torch.distributed (torchrun, world size > 1) each rank runs its share of the clients and
    the server's sums are all-reduced."""
    if clients not in CLIENT_SIMULATORS:
        raise ValueError(f"unknown client simulator {clients!r}; choose one of {CLIENT_SIMULATORS}")
    reason = why_not_vectorised(problem, algorithm)
    if clients == "vectorised" and reason is not None:
        raise ValueError(f"the vectorised client simulator cannot run this: {reason}")
    vectorised = clients == "vectorised" or (
        clients == "auto" and reason is None and problem.num_clients >= AUTO_MIN_CLIENTS
    )
    return sharded(VectorisedClients() if vectorised else SequentialClients())


def _summed_over_ranks(count: int) -> int:
    """``count`` summed over the ranks of the process group (itself without one)."""
    if world()[1] == 1:
        return int(count)
    total = torch.tensor([int(count)], dtype=torch.long, device=collective_device())
    dist.all_reduce(total)
    return int(total.item())


def _calls(ctx: RoundContext) -> tuple:
    """Every client's oracle calls in the round (what, besides shapes, decides its FLOPs)."""
    return tuple(tuple(c.as_dict().values()) for c in ctx.ledger.counters)


def _shapes(mask) -> tuple:
    """What a mask's sub-model computes on: its narrow shapes (structured), else "element"."""
    if isinstance(mask, StructuredMask):
        return tuple(sorted(mask.sub_shapes().items()))
    return ("element",)


def advance(
    algorithm, ctx: RoundContext, x: Params, y: Params, masks: list[ClientMasks]
) -> tuple[Params, Params]:
    """The clients' work of a round from (x, y): inner phase, outer phase, the server's steps."""
    x_next, y_next = algorithm.outer.round(ctx, x, y, masks, algorithm.inner)
    ctx.simulator.finish_round(ctx)
    return x_next, y_next


class FederatedRun:
    """The state (x^q, y^q, the parts' carried state) of one run and the round loop that
    advances it."""

    def __init__(
        self,
        problem: BilevelProblem,
        algorithm,
        capacities: Sequence[float],
        run_key: str,
        clients: str = "auto",
    ) -> None:
        if len(capacities) != problem.num_clients:
            raise ValueError(
                f"{len(capacities)} capacities given for {problem.num_clients} clients; "
                "give one capacity per client"
            )
        bad = [r for r in capacities if not 0 < r <= 1]
        if bad:
            raise ValueError(f"capacities must lie in (0, 1]; got {bad}")
        self.problem, self.algorithm = problem, algorithm
        self.capacities, self.run_key = tuple(capacities), run_key
        self.x, self.y = problem.init_params(derive_generator(run_key, "init"))
        self.layers = problem.channel_layers(self.x, self.y)
        self.simulator = client_simulator(problem, algorithm, clients)
        self.round = 0
        self.state: dict = {}  # what the parts carry between rounds (RoundContext.state)
        self._flop_counts: dict[tuple, dict[tuple, int]] = {}  # shapes -> calls -> FLOPs

    def step(self) -> RoundReport:
        """One global iteration q -> q + 1, with its FLOPs where the problem has physical
        sub-models (``RoundReport.flops``, the results' ``flops`` column).

        FLOPs are ``torch.utils.flop_counter.FlopCounterMode``'s count (matmul and convolution
        kernels, the convention of :mod:`rabo_bench.metrics.cost`) of the clients' work (the
        mask policy's norms are not counted); under torch.distributed each rank counts its own
        clients and the counts are summed. The counter dispatches every aten op through Python
        and made a network round 5-7x slower (measured, ``omniglot --preset smoke``, RABO,
        1 thread: 0.30 s -> 1.6-2.1 s), so a round is counted only when its sub-model shapes
        are new, or its oracle calls differ from those of the counted rounds with its shapes
        (a round is a pure function of (x, y, carried state, q, run key): it is then run
        again under the counter, changing no number); otherwise the earlier count is reused,
        since the kernels' FLOPs depend on the shapes alone. Wall time includes a counted
        round's overhead (usually round 0 only). Synthetic problems are not counted (FlopCounterMode
        does not count their matrix-vector products, and it took a round from 0.11 s to
        0.74 s)."""
        masks = self.assign_masks()
        ctx, flops = self._context(self.state), None
        shapes = tuple(_shapes(m.x) + _shapes(m.y) for m in masks)
        if self.problem.physical_submodels and shapes not in self._flop_counts:
            with FlopCounterMode(display=False) as counter:
                x_next, y_next = self._advance(ctx, masks)
            flops = _summed_over_ranks(counter.get_total_flops())
            self._flop_counts[shapes] = {_calls(ctx): flops}
        else:
            x_next, y_next = self._advance(ctx, masks)
            if self.problem.physical_submodels:
                flops = self._flops(ctx, masks, shapes, self.state)
        report = RoundReport.of(self.round, ctx.ledger, masks, flops)
        self.x, self.y, self.round, self.state = x_next, y_next, self.round + 1, ctx.state
        return report

    def assign_masks(self) -> list[ClientMasks]:
        """This round's masks: the policy at (x^q, y^q), its draws from the run's mask stream."""
        rng = derive_generator(self.run_key, self.round, None, "masks")
        return self.algorithm.policy.assign(
            self.x, self.y, self.capacities, self.round, rng, self.layers
        )

    def _context(self, state: dict) -> RoundContext:
        """A fresh round context starting from the carried ``state`` (which it copies)."""
        return RoundContext(
            self.problem, self.round, self.capacities, self.run_key, self.simulator, state
        )

    def _advance(self, ctx: RoundContext, masks: list[ClientMasks]) -> tuple[Params, Params]:
        return advance(self.algorithm, ctx, self.x, self.y, masks)

    def _flops(
        self, ctx: RoundContext, masks: list[ClientMasks], shapes: tuple, state: dict
    ) -> int:
        """A finished round's FLOPs: the count of an earlier round with the same shapes and
        oracle calls, else counted by running the round again under the counter, from the
        carried ``state`` the round started from (the rerun's results are discarded)."""
        counts = self._flop_counts[shapes]
        calls = _calls(ctx)
        if calls not in counts:
            with FlopCounterMode(display=False) as counter:
                self._advance(self._context(state), masks)
            counts[calls] = _summed_over_ranks(counter.get_total_flops())
        return counts[calls]

    @property
    def params(self) -> tuple[Params, Params]:
        return self.x, self.y
