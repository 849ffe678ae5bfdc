"""The results table (DESIGN.md §3): one row per run per evaluation point, as CSV.

Each finished run is written to ``<out>/runs/<run_id>.csv`` atomically (a temporary file, then
``os.replace``), so a file that exists is a complete run; ``<out>/results.csv`` is rebuilt from
every run file in the folder (the runs of the current invocation first), so a narrower re-run
into a folder adds to its table and never drops earlier runs. Files are created with the modes
the umask allows (0644 under umask 022), like any other file. Floats are written with ``repr``
precision, so a CSV round trip is exact. The columns are documented in docs/suites.md ("Results").
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

IDENTITY = ("suite", "setting", "run_id", "algorithm", "seed", "round")
METRICS = (
    "upper_loss",
    "grad_norm_sq",
    "inner_error",
    "accuracy",
    "accuracy_ci95",
    # the clients' own sub-models, evaluated like the global model and averaged over clients
    "submodel_accuracy",
    # fraction of the network's parameters that no client has trained since round 0
    "untrained_fraction",
)
DETAILS = ("details",)  # JSON: problem-specific metrics (per-class accuracy, learned values)
ORACLES = ("grad_f", "grad_g", "hvp", "jvp")
# flops: floating-point operations of the clients' work since round 0, counted by
# torch.utils.flop_counter.FlopCounterMode (matmul and convolution kernels)
COSTS = ("oracle_calls", "params_up", "params_down", "bytes_up", "bytes_down", "flops")
COVERAGE = ("coverage_x_min", "coverage_y_min", "coverage_x_hist", "coverage_y_hist")
TIMING = ("wall_time_s",)
# How a run was computed, in its last row's details (``engine.run.RunRecorder.result``): the
# torch version, the torch threads the run finished with and the CPU's vector capability
# (torch.backends.cpu.get_cpu_capability). Rows can differ between thread counts and CPUs
# (docs/scaling.md), so these say under what a run reproduces.
EXECUTION = ("torch", "torch_threads", "cpu_capability")
# The run's outcome, on every row of the run: "ok", or "diverged" (a NaN/Inf iterate or metric,
# or a metric blown up past diverge_factor x its round-0 value, ended it early; its last row is
# that round) with the reason, e.g. "round 7: x['x'] not finite".
STATUS = ("status", "reason")
COLUMNS = IDENTITY + METRICS + ORACLES + COSTS + COVERAGE + TIMING + STATUS + DETAILS
# Numeric columns mirrored to MLflow as per-round metrics.
NUMERIC = METRICS + ORACLES + COSTS + ("coverage_x_min", "coverage_y_min") + TIMING

Row = dict[str, Any]


def check_metrics(metrics: Mapping[str, Any], source: str) -> None:
    """Raise ValueError when ``metrics`` (what ``source`` evaluated) has a name that is not a
    column: it would otherwise be dropped from the table without a word. The runner checks
    the round-0 row, before any round is computed."""
    unknown = sorted(set(metrics) - set(METRICS + DETAILS))
    if unknown:
        raise ValueError(
            f"{source} returned metric(s) {unknown} that are not result columns; add them to "
            "METRICS in rabo_bench/engine/results.py, or put problem-specific values in 'details'"
        )


def run_file(out: Path, run_id: str) -> Path:
    return out / "runs" / f"{run_id}.csv"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


@contextmanager
def atomic_file(path: Path, mode: str = "w", **options: Any) -> Iterator[IO[Any]]:
    """A file to write ``path`` through: a temporary file ``.<name>.*.tmp`` in the same folder,
    moved over ``path`` with ``os.replace`` once complete, so readers see the old file or the
    complete new one, never a partial one (and a killed writer leaves at most the temporary)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 is for secrets; results are shared
        with os.fdopen(fd, mode, **options) as handle:
            yield handle
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_csv_atomic(path: Path, rows: Iterable[Row], columns: Sequence[str] = COLUMNS) -> None:
    """Write ``rows`` to ``path`` atomically (:func:`atomic_file`)."""
    with atomic_file(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        writer.writeheader()
        for row in rows:
            writer.writerow({c: _cell(row.get(c)) for c in columns})


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a results CSV, every cell as the string written (empty = missing)."""
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def comparable_rows(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` without what differs between two computations of the same runs: the ``TIMING``
    columns, and the ``EXECUTION`` keys of ``details`` (what two engines' tables compare)."""
    kept = []
    for row in rows:
        row = {k: v for k, v in row.items() if k not in TIMING}
        details = json.loads(row["details"]) if row.get("details") else None
        if isinstance(details, dict) and any(k in details for k in EXECUTION):
            rest = {k: v for k, v in details.items() if k not in EXECUTION}
            row["details"] = json.dumps(rest) if rest else None
        kept.append(row)
    return kept


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (:func:`atomic_file`)."""
    with atomic_file(path, "w") as handle:
        handle.write(text)


def write_results_table(out: Path, run_ids: Sequence[str]) -> Path:
    """Rebuild ``<out>/results.csv`` from every run file in ``<out>/runs``: those of ``run_ids``
    first, in that order, then the folder's other runs by file name."""
    on_disk = sorted(path.stem for path in (out / "runs").glob("*.csv"))
    rows: list[dict[str, str]] = []
    for run_id in dict.fromkeys([*run_ids, *on_disk]):
        path = run_file(out, run_id)
        if path.exists():
            rows.extend(read_rows(path))
    target = out / "results.csv"
    write_csv_atomic(target, rows)
    return target


def check_writable(out: Path) -> None:
    """Create ``out`` (and ``out/runs``) and prove a file can be written there, so an
    unwritable output folder is an error before any run starts (raises OSError)."""
    (out / "runs").mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=out / "runs", prefix=".probe."):
        pass
