"""One run: (problem setting, algorithm config, seed) (DESIGN.md §3), and the loop that drives
the round loop for it.

``expand`` turns a validated suite into run specs; ``execute_run`` runs one spec and returns
its result rows, resuming from a checkpoint when one is given and ending early with status
"diverged" when the iterate or a metric turns NaN/Inf, or a metric blows up (``BLOW_UP``: over
``diverge_factor`` times its round-0 value).

Identity and randomness:
  * ``run_id`` = the first 12 hex digits of sha256 of the canonical JSON of the resolved config
    (suite, problem with every parameter, algorithm.to_dict(), capacities, seed, rounds,
    eval_every; diverge_factor when it is not the default; the precision when it is not fp32):
    any change to the config is a new run. The device is not part of it (an execution choice,
    like the client simulator).
  * the random streams of a run (initial point, batches, masks, ...) are keyed by
    ``stream_key`` = (suite, problem, capacities, seed) only. So every algorithm of one seed
    starts from the same (x0, y0) and sees common random numbers, and a run with fewer rounds
    or another ``eval_every`` follows the same trajectory. The problem's data are drawn from its
    own ``problem.seed``; the run seed changes the initialisation and the sampling streams.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._pytree import tree_map_only

from rabo_bench.algorithms import Algorithm
from rabo_bench.engine import interrupt
from rabo_bench.engine.checkpoint import Checkpoint, RunState
from rabo_bench.engine.results import METRICS, ORACLES, Row, check_metrics
from rabo_bench.engine.suite import DIVERGE_FACTOR, Suite
from rabo_bench.federated.rounds import FederatedRun, RoundReport
from rabo_bench.metrics.trained import TrainedCoordinates, submodel_accuracy
from rabo_bench.models.compute import FULL_PRECISION
from rabo_bench.params import on_device
from rabo_bench.problems import BilevelProblem
from rabo_bench.problems.registry import identity_params, resolved_params


def digest(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class RunSpec:
    suite: str
    problem: str
    problem_params: dict[str, Any]  # resolved: every setting, defaults included
    algorithm: Algorithm
    capacities: tuple[float, ...]
    seed: int
    rounds: int
    eval_every: int
    setting: str = ""  # the suite's [settings] variant, if it has them
    diverge_factor: float = DIVERGE_FACTOR
    precision: str = FULL_PRECISION  # the networks' forward precision (models.compute)

    def config(self) -> dict[str, Any]:
        """The resolved configuration; its hash is the run id. The setting's name, the
        divergence factor and the precision enter it only when they differ from their defaults
        (so that runs made before those keys existed keep their ids)."""
        named = {"setting": self.setting} if self.setting else {}
        if self.diverge_factor != DIVERGE_FACTOR:
            named["diverge_factor"] = self.diverge_factor
        if self.precision != FULL_PRECISION:
            named["precision"] = self.precision
        return {
            **named,
            "suite": self.suite,
            "problem": {"name": self.problem, **self._problem_identity()},
            "algorithm": self.algorithm.to_dict(),
            "capacities": list(self.capacities),
            "seed": self.seed,
            "rounds": self.rounds,
            "eval_every": self.eval_every,
        }

    def _problem_identity(self) -> dict[str, Any]:
        reads = self.algorithm.reads_losses
        return identity_params(self.problem, self.problem_params, reads)

    @property
    def run_id(self) -> str:
        return digest(self.config())

    @property
    def stream_key(self) -> str:
        params = identity_params(self.problem, self.problem_params)
        setting = {"problem": {"name": self.problem, **params}}
        setting["capacities"] = list(self.capacities)
        return f"{self.suite}/{digest(setting)}/seed={self.seed}"


def expand(suite: Suite) -> list[RunSpec]:
    """The suite's runs: setting by setting, seed-major within a setting (all algorithms of
    seed 0 first)."""
    specs = []
    for variant in suite.variants():
        params = resolved_params(variant.problem, variant.problem_params)
        specs.extend(
            RunSpec(
                variant.name,
                variant.problem,
                params,
                variant.algorithm(name),
                variant.capacities,
                seed,
                variant.rounds,
                variant.eval_every,
                variant.setting,
                variant.diverge_factor,
                variant.precision,
            )
            for seed in variant.seeds
            for name in variant.algorithms
        )
    return specs


class _Accumulator:
    """Cumulative counters since round 0 and the coverage seen so far.

    ``flops`` (``RoundReport.flops``) is 0 at round 0 and then the sum over the rounds; it
    turns None (an empty cell) for good at the first round that was not counted (a problem
    without physical sub-models, see ``FederatedRun.step``)."""

    def __init__(self, itemsize: int) -> None:
        self.itemsize = itemsize
        self.totals: dict[str, int | None] = dict.fromkeys(
            (*ORACLES, "params_up", "params_down", "flops"), 0
        )
        self.cov_min: dict[str, int | None] = {"x": None, "y": None}
        self.cov_hist: dict[str, list[int] | None] = {"x": None, "y": None}
        self.wall = 0.0

    def add(self, report: RoundReport, seconds: float) -> None:
        self.wall += seconds
        for key, value in report.oracles.as_dict().items():
            self.totals[key] += value
        self.totals["params_up"] += sum(report.ledger.params_up)
        self.totals["params_down"] += sum(report.ledger.params_down)
        flops, counted = self.totals["flops"], report.flops
        self.totals["flops"] = None if flops is None or counted is None else flops + counted
        for axis, stats in (("x", report.coverage_x), ("y", report.coverage_y)):
            old = self.cov_min[axis]
            self.cov_min[axis] = stats.minimum if old is None else min(old, stats.minimum)
            self.cov_hist[axis] = stats.histogram

    def state(self) -> dict[str, Any]:
        """Everything but the item size, for a checkpoint (plain JSON values)."""
        return {k: v for k, v in vars(self).items() if k != "itemsize"}

    def restore(self, state: dict[str, Any]) -> None:
        vars(self).update(state)
        # a checkpoint from before the flops column: count the FLOPs from the resumed round on
        self.totals = {**self.totals, "flops": self.totals.get("flops", 0)}

    def costs(self) -> Row:
        t = self.totals
        return {
            **{k: t[k] for k in ORACLES},
            "oracle_calls": sum(t[k] for k in ORACLES),
            "params_up": t["params_up"],
            "params_down": t["params_down"],
            "bytes_up": t["params_up"] * self.itemsize,
            "bytes_down": t["params_down"] * self.itemsize,
            "flops": t["flops"],
            "coverage_x_min": self.cov_min["x"],
            "coverage_y_min": self.cov_min["y"],
            "coverage_x_hist": _json_or_none(self.cov_hist["x"]),
            "coverage_y_hist": _json_or_none(self.cov_hist["y"]),
            "wall_time_s": self.wall,
        }


def _json_or_none(value: list[int] | None) -> str | None:
    return None if value is None else json.dumps(value)


def _non_finite_params(run: FederatedRun) -> str | None:
    """Why the iterate is unusable (NaN/Inf entries), or None: the run has diverged."""
    bad = [
        f"{axis}[{name!r}]"
        for axis, params in zip("xy", run.params, strict=True)
        for name, tensor in params.items()
        if not bool(torch.isfinite(tensor).all())
    ]
    return f"{', '.join(bad)} not finite" if bad else None


# Metrics whose growth past ``diverge_factor`` times their round-0 value is a divergence.
BLOW_UP = ("upper_loss", "grad_norm_sq", "inner_error")


def _unusable_metrics(row: Row, start: Row, factor: float) -> str | None:
    """Why the metrics of ``row`` show a diverged run, or None: a NaN/Inf metric, or one of
    ``BLOW_UP`` over ``factor`` times its value in ``start`` (the round-0 row) in absolute value
    (a metric that is 0 or missing at round 0 is not compared)."""
    bad = [
        f"{k} = {row[k]}"
        for k in METRICS
        if isinstance(row.get(k), float) and not math.isfinite(row[k])
    ]
    bad += [
        f"{k} {row[k]:.1e} > {factor:g} x round-0 value {start[k]:.1e}"
        for k in BLOW_UP
        if isinstance(row.get(k), float)
        and isinstance(start.get(k), float)
        and math.isfinite(row[k])
        and abs(row[k]) > factor * abs(start[k]) > 0
    ]
    return ", ".join(bad) if bad else None


class RunRecorder:
    """The rows of one run as its :class:`FederatedRun` advances (by itself, or in a seed
    batch): one row at round 0 (the initial point), every ``eval_every`` rounds and at the last
    round; wall time excludes evaluation. With ``checkpoint`` it continues from the saved state
    if there is one, and :meth:`save` writes the state. A non-finite iterate or metric, or a
    metric blown up past ``spec.diverge_factor`` times its round-0 value, ends the run with a
    last row at that round (``going`` turns False): every row then has ``status`` "diverged"
    and the ``reason`` (``status`` "ok" otherwise)."""

    def __init__(
        self,
        spec: RunSpec,
        problem: BilevelProblem,
        run: FederatedRun,
        checkpoint: Checkpoint | None = None,
    ) -> None:
        self.spec, self.problem, self.run, self.checkpoint = spec, problem, run, checkpoint
        self.acc = _Accumulator(problem.dtype.itemsize)
        self.identity = {
            "suite": spec.suite,
            "setting": spec.setting,
            "run_id": spec.run_id,
            "algorithm": spec.algorithm.name,
            "seed": spec.seed,
        }
        self.trained = TrainedCoordinates(run.x, run.y)
        self.last_masks: list = []  # the clients' sub-models of the last round (none before 1)
        saved = None if checkpoint is None else checkpoint.load()
        if saved is None:
            self.rows = [self._row(0)]
            self.reason = _unusable_metrics(self.rows[0], self.rows[0], spec.diverge_factor)
        else:  # a checkpoint is read onto the CPU; the run continues on the problem's device
            device = problem.compute.device
            run.x, run.y = on_device(saved.x, device), on_device(saved.y, device)
            run.round, self.rows = saved.round, saved.rows
            self.acc.restore(saved.counters)
            if saved.trained is not None:  # checkpoints written before the column lack it
                self.trained.restore(saved.trained)
            run.state = tree_map_only(torch.Tensor, lambda t: t.to(device), saved.carried or {})
            self.reason = None  # a checkpoint is only saved while the run is finite

    def _row(self, q: int) -> Row:
        problem, run = self.problem, self.run
        evaluate = problem.evaluate_final if q == self.spec.rounds else problem.evaluate
        metrics = evaluate(*run.params)
        if self.last_masks:
            metrics.update(submodel_accuracy(problem, *run.params, self.last_masks))
            metrics["untrained_fraction"] = self.trained.untrained_fraction()
        check_metrics(metrics, f"problem {self.spec.problem!r}")
        return {**self.identity, "round": q, **metrics, **self.acc.costs()}

    @property
    def going(self) -> bool:
        """Whether the run has rounds left and has not diverged."""
        return self.reason is None and self.run.round < self.spec.rounds

    def add(self, report: RoundReport, seconds: float) -> None:
        """Book the round the run has just taken (``report``, ``seconds`` of wall time)."""
        self.acc.add(report, seconds)
        self.trained.add(report.masks)
        self.last_masks[:] = report.masks
        q, spec = self.run.round, self.spec
        self.reason = _non_finite_params(self.run)
        if self.reason is not None:  # no evaluation at a non-finite point: metrics stay empty
            self.rows.append({**self.identity, "round": q, **self.acc.costs()})
        elif q % spec.eval_every == 0 or q == spec.rounds:
            self.rows.append(self._row(q))
            self.reason = _unusable_metrics(self.rows[-1], self.rows[0], spec.diverge_factor)

    def due(self) -> bool:
        """Whether the checkpoint is due after this round."""
        return self.going and self.checkpoint is not None and self.checkpoint.due(self.run.round)

    def save(self) -> None:
        """Save the state to the checkpoint (if the run has one and is still going)."""
        if self.going and self.checkpoint is not None:
            run, acc = self.run, self.acc
            trained = self.trained.state()
            state = RunState(run.round, run.x, run.y, acc.state(), self.rows, trained, run.state)
            self.checkpoint.save(state)

    def result(self) -> list[Row]:
        """The rows, each with the run's status, the last one with how it was computed in its
        details (``results.EXECUTION``)."""
        if self.reason is None:
            status = {"status": "ok", "reason": None}
        else:
            status = {
                "status": "diverged",
                "reason": f"round {self.rows[-1]['round']}: {self.reason}",
            }
        rows = [{**r, **status} for r in self.rows]
        rows[-1]["details"] = _with_execution(rows[-1].get("details"))
        return rows


def _with_execution(details: str | None) -> str:
    """``details`` (JSON, or empty) with the ``results.EXECUTION`` facts of this process."""
    facts = {
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    return json.dumps({**json.loads(details or "{}"), **facts})


def execute_run(
    spec: RunSpec,
    problem: BilevelProblem,
    on_round: Callable[[int], None] | None = None,
    *,
    checkpoint: Checkpoint | None = None,
    clients: str = "auto",
) -> list[Row]:
    """Run ``spec`` for its rounds and return its rows (:class:`RunRecorder`), resuming from
    ``checkpoint`` when it holds a saved state and saving the state there when it is due. A
    stop asked for by a signal (:mod:`.interrupt`) saves the checkpoint after the current round
    and raises ``interrupt.Interrupted``. ``clients`` is how the engine simulates the clients
    (an execution choice: it is not part of the run's identity). ``on_round(q)`` after round q."""
    run = FederatedRun(problem, spec.algorithm, spec.capacities, spec.stream_key, clients=clients)
    record = RunRecorder(spec, problem, run, checkpoint)
    while record.going:
        start = time.perf_counter()
        report = run.step()
        record.add(report, time.perf_counter() - start)
        if on_round is not None:
            on_round(run.round)
        stop = record.going and interrupt.requested()
        if stop or record.due():
            record.save()
        if stop:
            raise interrupt.Interrupted(interrupt.signum())
    return record.result()
