"""Seed batches: runs that differ only in their seeds, simulated at once (issue 16 item 2).

A rate sweep is thousands of runs of one tiny problem; each round of one run is a few dozen
products on vectors of ten entries, so a run's time is Python and dispatch overhead, not
arithmetic. A :class:`SeedBatch` advances S such runs (one algorithm, one problem, the same
capacities; other run keys) together: their x and y are stacked along a leading seed axis
({name: (S, *shape)}) and every round is ONE round of the vectorised client simulator
(:mod:`.vectorised`) in which each (run s, client i) pair is a simulated client.

Each run sees exactly what it sees alone:
  * its masks: the policy called on run s's own iterate with run s's mask stream;
  * its random streams: simulated client (s, i) draws from the generator of (run key s,
    round, i, purpose), in the same order as alone (:class:`SeedBatchContext`); a server's
    draw (FedMBO's sampled Neumann clients) is one per run from the run's own stream;
  * its server: every masked sum has a row per run, row s summing run s's clients only
    (``MaskedSum.add_rows``), so every server step (eq. 6, eq. 8, FedMBO's series) acts on each
    row as the run's server alone would;
  * its costs: each simulated client's oracle calls and messages are booked to it, and run s's
    report holds its own clients' ledger and coverage.
So a batched run's rows equal its rows alone up to the order of floating-point sums (tests:
1e-10 in float64), wall time aside. The batch is an execution choice, not part of a run's
identity (like the client simulator). It is valid where the vectorised simulator is
(``why_not_vectorised``) on problems without physical sub-models (whose FLOPs are counted
per run). What parts carry between rounds (``RoundContext.state``) is stacked per run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.utils._pytree import tree_map, tree_map_only

from rabo_bench.federated.context import CostLedger, RoundContext, derive_generator
from rabo_bench.federated.rounds import FederatedRun, RoundReport, advance, why_not_vectorised
from rabo_bench.federated.vectorised import VectorisedClients
from rabo_bench.params import Params


@dataclass
class SeedBatchContext(RoundContext):
    """The round context of a seed batch: simulated client k is client k mod M of run
    k // M (M the problem's clients), with that run's streams."""

    run_keys: tuple[str, ...] = ()

    @property
    def seeds(self) -> int:
        return len(self.run_keys)

    @property
    def num_clients(self) -> int:
        return self.seeds * self.problem.num_clients

    def locate(self, client: int) -> tuple[int, int]:
        return divmod(client, self.problem.num_clients)

    def rng(self, client: int | None, purpose: str):
        """Simulated client ``client``'s stream; the server's (``None``): one per run."""
        if client is None:
            return tuple(derive_generator(k, self.round, None, purpose) for k in self.run_keys)
        row, own = self.locate(client)
        return derive_generator(self.run_keys[row], self.round, own, purpose)

    def sample_client(self, rng, clients: int) -> tuple[int, ...]:
        """One simulated client per run: run s's draw from its own server stream ``rng[s]``."""
        size, draw = self.problem.num_clients, super().sample_client
        return tuple(s * size + draw(g, clients) for s, g in enumerate(rng))


def why_not_batched(problem, algorithm) -> str | None:
    """Why runs of ``algorithm`` on ``problem`` cannot run as a seed batch (None: they can): a
    batch is a round of the vectorised simulator, and counts no run's FLOPs."""
    if problem.physical_submodels:
        return "its problem has physical sub-models (their FLOPs are counted per run)"
    return why_not_vectorised(problem, algorithm)


def _stacked(params: Sequence[Params]) -> Params:
    return {name: torch.stack([p[name] for p in params]) for name in params[0]}


def _row(params: Params, s: int) -> Params:
    return {name: t[s] for name, t in params.items()}


class SeedBatch:
    """``runs`` (:class:`FederatedRun` of one problem, algorithm and capacities, all at the same
    round) advanced together; each keeps its own x, y, round and carried state, updated after
    every :meth:`step` (views of the batch's stacked tensors)."""

    def __init__(self, runs: Sequence[FederatedRun]) -> None:
        first = runs[0]
        same = all(
            (r.problem, r.algorithm, r.capacities, r.round)
            == (first.problem, first.algorithm, first.capacities, first.round)
            for r in runs
        )
        if not same:
            raise ValueError("a seed batch takes runs of one problem, algorithm, capacities, round")
        reason = why_not_batched(first.problem, first.algorithm)
        if reason is not None:
            raise ValueError(f"{first.algorithm.name} cannot run as a seed batch: {reason}")
        self.runs = list(runs)
        self.simulator = VectorisedClients()
        self.x, self.y = _stacked([r.x for r in runs]), _stacked([r.y for r in runs])
        is_tensor = torch.is_tensor
        self.state = tree_map(
            lambda *leaves: torch.stack(leaves) if is_tensor(leaves[0]) else leaves[0],
            *[r.state for r in runs],
        )

    def step(self) -> list[RoundReport]:
        """One round of every run; their reports, in the order of ``runs``."""
        first = self.runs[0]
        masks = [run.assign_masks() for run in self.runs]
        keys = tuple(run.run_key for run in self.runs)
        ctx = SeedBatchContext(
            first.problem, first.round, first.capacities, "", self.simulator, self.state, keys
        )
        flat = [m for own in masks for m in own]
        self.x, self.y = advance(first.algorithm, ctx, self.x, self.y, flat)
        self.state, size, ledger = ctx.state, first.problem.num_clients, ctx.ledger
        reports = []
        for s, run in enumerate(self.runs):
            part = slice(s * size, (s + 1) * size)
            own = CostLedger(
                ledger.counters[part], ledger.params_down[part], ledger.params_up[part]
            )
            reports.append(RoundReport.of(run.round, own, masks[s]))
            run.x, run.y, run.round = _row(self.x, s), _row(self.y, s), run.round + 1
            run.state = tree_map_only(torch.Tensor, lambda t, s=s: t[s], self.state)
        return reports
