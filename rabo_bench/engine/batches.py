"""Seed batches in the engine (issue 16 item 2): the runs of a sweep that differ only in their
seeds execute as one :class:`rabo_bench.federated.seeds.SeedBatch`.

Batching is an execution choice, like the client simulator: it is not part of a run's identity,
and each run's rows, result file and config file are those of the run executed alone (to the
order of floating-point sums; tests: 1e-10 in float64), except ``wall_time_s``, where each run
of a batch is charged an equal share (1/S) of the batch's round time. Checkpoints: a batch
saves every one of its runs at the same round (when any of them is due, or at a stop), each in
its own file as a run alone would, so a killed batch resumes from there; runs resumed at
different rounds form different batches.

A batch computes with one torch thread. Its reductions over (seeds x clients x samples) are
large enough for intra-op threads, and on a shared machine a thread waits for its descheduled
partner: measured on 2 cores under load (``make bench``, 50 seeds of the rate sweep's base
point), a batch took 7x longer with 2 threads than with 1, while 50 runs one by one (too small
to use threads) took 50-65 s either way, within the machine's noise.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch

from rabo_bench.engine import interrupt
from rabo_bench.engine.checkpoint import Checkpoint
from rabo_bench.engine.results import Row
from rabo_bench.engine.run import RunRecorder, RunSpec, digest
from rabo_bench.federated.rounds import FederatedRun
from rabo_bench.federated.seeds import SeedBatch
from rabo_bench.problems import BilevelProblem


def seed_batches(
    specs: Sequence[RunSpec], size: int, start: Callable[[RunSpec], int] = lambda spec: 0
) -> list[tuple[RunSpec, ...]]:
    """``specs`` in batches of at most ``size`` runs whose configurations differ only in the
    seed and that start at the same round (``start``: the round a run resumes from), in the
    order of their first runs."""
    groups: dict[tuple[str, int], list[RunSpec]] = {}
    for spec in specs:
        config = {k: v for k, v in spec.config().items() if k != "seed"}
        groups.setdefault((digest(config), start(spec)), []).append(spec)
    return [
        tuple(group[i : i + size]) for group in groups.values() for i in range(0, len(group), size)
    ]


def execute_batch(
    specs: Sequence[RunSpec],
    problem: BilevelProblem,
    on_round: Callable[[int], None] | None = None,
    *,
    checkpoints: Sequence[Checkpoint | None] | None = None,
) -> list[list[Row]]:
    """The rows of each of ``specs`` (runs that differ only in their seeds), executed as one seed
    batch (module docstring); ``checkpoints``: each run's, or None. A stop asked for by a signal
    saves every run's checkpoint after the current round and raises ``interrupt.Interrupted``.
    ``on_round(q)`` after round q."""
    with _one_thread():
        return _execute(specs, problem, on_round, checkpoints or [None] * len(specs))


@contextmanager
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _execute(specs, problem, on_round, checkpoints) -> list[list[Row]]:
    records = [
        RunRecorder(spec, problem, FederatedRun(*_run_args(spec, problem)), checkpoint)
        for spec, checkpoint in zip(specs, checkpoints, strict=True)
    ]
    active = [record for record in records if record.going]
    if active:
        batch = SeedBatch([record.run for record in active])
        while any(record.going for record in active):
            live = [record.going for record in active]
            start = time.perf_counter()
            reports = batch.step()
            seconds = (time.perf_counter() - start) / len(active)
            for record, report, going in zip(active, reports, live, strict=True):
                if going:  # a diverged run is carried along, no longer recorded
                    record.add(report, seconds)
            if on_round is not None:
                on_round(batch.runs[0].round)
            stop = any(record.going for record in active) and interrupt.requested()
            if stop or any(record.due() for record in active):
                for record in active:
                    record.save()
            if stop:
                raise interrupt.Interrupted(interrupt.signum())
    return [record.result() for record in records]


def _run_args(spec: RunSpec, problem: BilevelProblem) -> tuple:
    # the run's own simulator is never used: the batch simulates its clients
    return problem, spec.algorithm, spec.capacities, spec.stream_key, "sequential"
