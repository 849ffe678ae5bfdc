"""The results table (DESIGN.md §3): one row per run per evaluation point, as CSV.

Each finished run is written to ``<out>/runs/<run_id>.csv`` atomically (a temporary file, then
``os.replace``), so a file that exists is a complete run; ``<out>/results.csv`` is rebuilt from
the run files of the suite. Floats are written with ``repr`` precision, so a CSV round trip is
exact. The columns are documented in README.md ("The rabo-bench command").
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

IDENTITY = ("suite", "setting", "run_id", "algorithm", "seed", "round")
METRICS = ("upper_loss", "grad_norm_sq", "inner_error", "accuracy", "accuracy_ci95")
DETAILS = ("details",)  # JSON: problem-specific metrics (per-class accuracy, learned values)
ORACLES = ("grad_f", "grad_g", "hvp", "jvp")
COSTS = ("oracle_calls", "params_up", "params_down", "bytes_up", "bytes_down")
COVERAGE = ("coverage_x_min", "coverage_y_min", "coverage_x_hist", "coverage_y_hist")
TIMING = ("wall_time_s",)
COLUMNS = IDENTITY + METRICS + ORACLES + COSTS + COVERAGE + TIMING + DETAILS
# Numeric columns mirrored to MLflow as per-round metrics.
NUMERIC = METRICS + ORACLES + COSTS + ("coverage_x_min", "coverage_y_min") + TIMING

Row = dict[str, Any]


def run_file(out: Path, run_id: str) -> Path:
    return out / "runs" / f"{run_id}.csv"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def write_csv_atomic(path: Path, rows: Iterable[Row], columns: Sequence[str] = COLUMNS) -> None:
    """Write ``rows`` to ``path`` via a temporary file in the same folder and ``os.replace``:
    readers see the old file or the complete new one, never a partial one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(columns))
            writer.writeheader()
            for row in rows:
                writer.writerow({c: _cell(row.get(c)) for c in columns})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a results CSV, every cell as the string written (empty = missing)."""
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def write_results_table(out: Path, run_ids: Sequence[str]) -> Path:
    """Rebuild ``<out>/results.csv`` from the run files of ``run_ids`` (in that order)."""
    rows: list[dict[str, str]] = []
    for run_id in run_ids:
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
