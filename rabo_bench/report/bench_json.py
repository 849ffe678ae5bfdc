"""pytest-benchmark JSON files of ``make bench``: their benchmarks as :class:`Result` rows, a
re-run of some tests merged into a whole run (:func:`merge`), and a run's provenance block."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Result:
    test: str  # the test function: test_round, test_estimator, test_cnn_round, ...
    median: float  # seconds
    rounds: int
    info: dict[str, Any]  # extra_info: the benchmark's parameters, FLOPs and fraction


def load(path: Path) -> tuple[dict[str, Any], list[Result]]:
    return results_of(json.loads(path.read_text()))


def function_of(benchmark: dict[str, Any]) -> str:
    """The test function that ran ``benchmark`` (its name without the parameters)."""
    return benchmark["name"].split("[")[0]


def results_of(data: dict[str, Any]) -> tuple[dict[str, Any], list[Result]]:
    results = [
        Result(function_of(b), b["stats"]["median"], b["stats"]["rounds"], b["extra_info"])
        for b in data["benchmarks"]
    ]
    return data, results


def merge(base: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    """``base`` with every benchmark of the test functions ``part`` ran replaced by ``part``'s,
    and that run (its tests, commit, date and machine) appended to ``updates``."""
    tests = sorted({function_of(b) for b in part["benchmarks"]})
    kept = [b for b in base["benchmarks"] if function_of(b) not in tests]
    run = {k: part.get(k) for k in ("machine_info", "commit_info", "datetime")}
    return {
        **base,
        "benchmarks": kept + part["benchmarks"],
        "updates": [*base.get("updates", []), {"tests": tests, **run}],
    }


def provenance(
    data: dict[str, Any], command: str | None, wall: float | None, label: str
) -> list[str]:
    """A run's provenance block; ``command`` None: the pytest command alone (a re-run)."""
    machine, commit = data["machine_info"], data.get("commit_info", {})
    dirty = " (with uncommitted changes)" if commit.get("dirty") else ""
    pytest = f"pytest {shlex.join(machine.get('pytest_args', []))}"
    lines = [
        f"## {label}",
        "",
        f"* command: `{pytest}`" if command is None else f"* command: `{command}`, i.e. `{pytest}`",
        f"* git commit: {commit.get('id', 'unknown')}{dirty}",
        f"* date (end of run): {data['datetime']}",
        f"* CPU: {machine.get('cpu_model')}, {machine.get('logical_cores')} logical cores, "
        f"{machine.get('ram_gib')} GiB RAM",
        f"* torch {machine.get('torch')}, {machine.get('torch_threads')} threads, "
        f"Python {machine.get('python_version')}",
    ]
    if machine.get("gpu"):
        lines.append(f"* GPU: {machine['gpu']}")
    if wall is not None:
        lines.append(f"* wall time of the whole run: {wall / 60:.1f} min")
    return [*lines, ""]
