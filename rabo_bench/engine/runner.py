"""Suites of runs: ``execute_suite`` executes every run of a suite that is not on disk yet
(resume = skip what is done), on an ``Engine`` (``sweep``: in process, worker processes or Ray)
that returns each run's rows; only this process writes them, then rebuilds the results table.

Resume works at two levels: a finished run's file is never recomputed, and a run killed midway
continues from its last checkpoint (``checkpoint``), giving the rows of an uninterrupted run.
A run that diverged (status "diverged", see ``run.execute_run``) is written like any other, so
it is not re-run, and the suite goes on. Run identity and randomness: see ``engine/run.py``.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Callable
from contextlib import closing
from functools import partial
from pathlib import Path
from typing import Any

from rabo_bench.engine import interrupt
from rabo_bench.engine.batches import execute_batch, seed_batches
from rabo_bench.engine.checkpoint import (
    DEFAULT_CHECKPOINTS,
    Checkpoint,
    CheckpointPolicy,
    checkpoint_file,
    remove_checkpoint,
    saved_round,
)
from rabo_bench.engine.devices import run_device
from rabo_bench.engine.results import (
    Row,
    check_writable,
    read_rows,
    run_file,
    write_csv_atomic,
    write_results_table,
    write_text_atomic,
)
from rabo_bench.engine.run import RunSpec, digest, execute_run, expand
from rabo_bench.engine.suite import Suite
from rabo_bench.engine.sweep import IN_PROCESS, Engine
from rabo_bench.federated.seeds import why_not_batched
from rabo_bench.models.compute import Compute, tf32_switched
from rabo_bench.problems import BilevelProblem
from rabo_bench.problems.registry import make_problem


class RunSink:
    """Where finished runs are mirrored (MLflow); ``log_run`` must never raise."""

    def log_run(self, spec: RunSpec, rows: list[dict[str, str]], csv_path: Path) -> None: ...


def execute_suite(
    suite: Suite,
    out: Path,
    sink: RunSink | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    channels_last: bool = False,
    **options: Any,
) -> list[RunSpec]:
    """Execute the suite's runs that are not on disk yet (:func:`execute_specs`, whose keyword
    ``options`` engine, clients, checkpoints and writer this passes on), on the suite's
    ``device`` (``channels_last``: the CNNs' convolutions NHWC there, CUDA only)."""
    problems = ProblemCache(suite.device, channels_last)
    return execute_specs(expand(suite), problems, out, sink, progress, echo, **options)


class ProblemCache:
    """Builds each distinct problem setting once, and only when a run needs it (loading a
    data set takes seconds; a resumed suite with nothing left to do loads nothing), placed
    on the run's device (``device``: a name of :mod:`.devices`, resolved in the process that
    runs it) in the run's precision.

    Sent to a worker process, a cache arrives as that process's own (empty) cache: built
    problems never travel between processes, and a worker builds each setting once."""

    def __init__(self, device: str = "cpu", channels_last: bool = False) -> None:
        self.device, self.channels_last = device, channels_last
        self._built: dict[tuple[str, str], BilevelProblem] = {}

    def __call__(self, spec: RunSpec) -> BilevelProblem:
        key = (digest({"name": spec.problem, **spec.problem_params}), spec.precision)
        if key not in self._built:
            problem = make_problem(spec.problem, spec.problem_params)
            device = run_device(self.device, type(problem), spec.precision)
            # channels-last on CUDA only (on the CPU, torch 2.14.1's backward of a strided 1x1
            # channels-last convolution corrupts the heap: docs/scaling.md, "GPUs")
            cuda = device.type == "cuda"
            problem.place(Compute(device, spec.precision, self.channels_last and cuda))
            self._built[key] = problem
        return self._built[key]

    def __reduce__(self):
        return _process_cache, (self.device, self.channels_last)


_PROCESS_CACHES: dict[tuple[str, bool], ProblemCache] = {}


def _process_cache(device: str, channels_last: bool) -> ProblemCache:
    key = (device, channels_last)
    if key not in _PROCESS_CACHES:
        _PROCESS_CACHES[key] = ProblemCache(device, channels_last)
    return _PROCESS_CACHES[key]


def _label(spec: RunSpec) -> str:
    return f"{spec.setting} {spec.algorithm.name} seed={spec.seed}".lstrip()


def compute_runs(
    specs: tuple[RunSpec, ...],
    *,
    problem: BilevelProblem | Callable[[RunSpec], BilevelProblem],
    out: Path | None,
    policy: CheckpointPolicy,
    clients: str,
    progress: bool,
    writer: bool = True,
) -> list[list[Row]]:
    """The rows of each of ``specs``, one run or a seed batch (:mod:`.batches`), wherever they
    execute (this process, a worker process, a Ray worker): the one function of every engine.
    Runs that cannot be batched (:func:`rabo_bench.federated.seeds.why_not_batched`) run one
    by one. Checkpoints are kept under ``out`` (None: no checkpoints; ``writer`` False: read,
    never written). A ValueError (e.g. an algorithm the problem does not support) names the
    run."""
    from tqdm import tqdm

    instance = problem if isinstance(problem, BilevelProblem) else problem(specs[0])
    options = {"out": out, "policy": policy, "clients": clients, "progress": progress}
    if len(specs) > 1 and why_not_batched(instance, specs[0].algorithm) is not None:
        singles = [compute_runs((s,), problem=instance, **options, writer=writer) for s in specs]
        return [rows for (rows,) in singles]
    first = specs[0]
    label = _label(first) + (f" and {len(specs) - 1} more seeds" if len(specs) > 1 else "")
    if interrupt.requested():  # asked to stop before this run began
        raise interrupt.Interrupted(interrupt.signum())
    checkpoints = [
        None if out is None else Checkpoint(checkpoint_file(out, s.run_id), policy, writer)
        for s in specs
    ]
    bar = tqdm(total=first.rounds, desc=label, file=sys.stderr, disable=not progress, unit="round")
    try:
        with bar, tf32_switched(first.precision):
            on_round = partial(_advance_bar, bar)
            if len(specs) > 1:
                return execute_batch(specs, instance, on_round, checkpoints=checkpoints)
            run = execute_run(first, instance, on_round, checkpoint=checkpoints[0], clients=clients)
            return [run]
    except ValueError as err:
        raise ValueError(f"run {label} ({first.run_id}): {err}") from err


def _advance_bar(bar, q: int) -> None:
    bar.update(q - bar.n)


def _record(
    out: Path, spec: RunSpec, rows: list[Row], progress: str, sink: RunSink | None, echo
) -> None:
    """Write a finished run (its config, then its rows atomically), delete its checkpoint,
    say so, and mirror it to ``sink``."""
    path = run_file(out, spec.run_id)
    write_text_atomic(
        path.with_suffix(".json"), json.dumps(spec.config(), indent=2, sort_keys=True) + "\n"
    )
    write_csv_atomic(path, rows)
    remove_checkpoint(out, spec.run_id)
    last = rows[-1]
    why = f": {last['reason']}" if last["status"] != "ok" else ""
    echo(f"{last['status']} {_label(spec)} (run {spec.run_id}) {progress}{why}")
    uncovered = [a for a in ("x", "y") if last.get(f"coverage_{a}_min") == 0]
    if uncovered:
        echo(
            f"warning: {_label(spec)}: some coordinate of {' and '.join(uncovered)} was held by "
            "no client in some round (C* = 0; the theory assumes C_x*, C_y* >= 1)"
        )
    if sink is not None:
        sink.log_run(spec, read_rows(path), path)


def _slot(config: dict[str, Any]) -> tuple:
    """What a run is for in a results table: (suite, setting, algorithm, seed)."""
    return (config["suite"], config.get("setting", ""), config["algorithm"]["name"], config["seed"])


def check_same_configs(out: Path, specs: list[RunSpec]) -> None:
    """Raise ValueError when ``out`` holds a finished run for the same (suite, setting,
    algorithm, seed) as one of ``specs`` under another configuration (other rounds, step
    sizes, code that changed the run id): its rows and the new ones would be mixed in one
    table. Runs are never deleted here; the message says how to keep both. A slot that
    ``specs`` fill several times (a rate grid's points) is the grid's, and not checked."""
    slots = [(_slot(spec.config()), spec.run_id) for spec in {s.run_id: s for s in specs}.values()]
    counts = Counter(slot for slot, _ in slots)
    mine = {slot: run_id for slot, run_id in slots if counts[slot] == 1}
    for path in sorted((out / "runs").glob("*.json")):
        try:
            slot = _slot(json.loads(path.read_text()))
        except (ValueError, KeyError, TypeError):
            continue  # not a run config of ours; the results table ignores it too
        if slot in mine and mine[slot] != path.stem:
            suite, setting, algorithm, seed = slot
            raise ValueError(
                f"{out} already holds run {path.stem} of {suite} {setting} {algorithm} "
                f"seed={seed} with another configuration than this command's run "
                f"{mine[slot]} (compare runs/{path.stem}.json); write to another --out, or "
                f"move runs/{path.stem}.* away to replace it"
            )


def execute_specs(
    specs: list[RunSpec],
    problem: BilevelProblem | Callable[[RunSpec], BilevelProblem],
    out: Path,
    sink: RunSink | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    *,
    engine: Engine = IN_PROCESS,
    clients: str = "auto",
    checkpoints: CheckpointPolicy = DEFAULT_CHECKPOINTS,
    writer: bool = True,
    seed_batch: int = 1,
) -> list[RunSpec]:
    """Execute the runs not on disk yet on ``engine``, write each as it finishes (its config,
    then its rows atomically, then delete its checkpoint), mirror it to ``sink`` and rebuild
    ``<out>/results.csv`` from ``specs`` (a run listed twice is executed once). Only this
    process writes results and MLflow, whatever the engine. ``problem`` is the problem of every
    run, or a function giving each run's problem (it must be picklable for a parallel engine).
    ``writer`` False: a follower rank of a torchrun run, which computes its share of every
    run's clients (the same runs, from the same checkpoints) and writes nothing. With
    ``progress`` and two runs or more, a bar over all their rounds shows the time left (a run's
    rounds count when it finishes). A folder that holds another configuration's run of the
    same (suite, setting, algorithm, seed) is an error (:func:`check_same_configs`).
    ``seed_batch`` > 1: runs that differ only in their seeds execute up to that many at once as
    one vmapped seed batch (:mod:`.batches`; the same rows and files, faster).
    """
    from tqdm import tqdm

    if writer:
        check_writable(out)
        check_same_configs(out, specs)
    todo = []
    for spec in {spec.run_id: spec for spec in specs}.values():
        path = run_file(out, spec.run_id)
        if path.exists():
            echo(f"skipped {_label(spec)} (run {spec.run_id}): already in {path.parent}")
            if sink is not None:
                sink.log_run(spec, read_rows(path), path)
        else:
            todo.append(spec)
            if engine.shares_files and checkpoint_file(out, spec.run_id).exists():
                echo(f"resuming {_label(spec)} (run {spec.run_id}) from its checkpoint")
    show = progress and writer and len(todo) > 1  # the bar alone reads the checkpoints' rounds
    rounds = {s.run_id: s.rounds - (saved_round(out, s.run_id) if show else 0) for s in todo}
    overall = tqdm(
        total=sum(rounds.values()),
        desc=f"all {len(todo)} runs",
        unit="round",
        file=sys.stderr,
        disable=not show,
        position=1 if engine.in_process else 0,
    )
    start = (lambda s: saved_round(out, s.run_id)) if engine.shares_files else (lambda s: 0)
    batches = seed_batches(todo, seed_batch, start) if seed_batch > 1 else [(s,) for s in todo]
    work = partial(
        compute_runs,
        problem=problem,
        out=out if engine.shares_files else None,
        policy=checkpoints,
        clients=clients,
        progress=progress and engine.in_process and writer,
        writer=writer,
    )
    try:
        with overall, closing(engine.map(work, batches)) as finished:
            done = 0
            for batch, results in finished:
                for spec, rows in zip(batch, results, strict=True):
                    done += 1
                    overall.update(rounds[spec.run_id])
                    if writer:
                        _record(out, spec, rows, f"[{done}/{len(todo)}]", sink, echo)
    finally:  # after a failed run or an interrupt too: the table then holds the finished runs
        if writer:
            write_results_table(out, list(dict.fromkeys(spec.run_id for spec in specs)))
    return specs
