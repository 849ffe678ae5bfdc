"""``rabo-bench report``: tables and plots of a finished suite from its saved results alone.

The suite is recognised by the ``suite`` column of ``results.csv``; every suite gets the
summary table (``summary.md``) and the seed table with its plots (``final.md``, ``final.csv``,
``rounds_<metric>.png``), and the paper's suites get their own report beside them (the
synthetic suite: its methods at equal oracle calls and bytes, ``budgets.md``). Nothing
here needs the data sets: the sub-model cost fractions come from the folder's cache
(``report.costs``) when the data are absent.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd

from rabo_bench.engine.suite import load_suite
from rabo_bench.report.budgets import write_budget_report
from rabo_bench.report.cifar import write_cifar_report
from rabo_bench.report.costs import COST_CACHE
from rabo_bench.report.omniglot import (
    write_coverage_report,
    write_omniglot_report,
    write_scaling_report,
)
from rabo_bench.report.runs import read_results
from rabo_bench.report.seeds import write_seed_report
from rabo_bench.report.summary import write_summary

REPORTS = {
    "omniglot": write_omniglot_report,
    "omniglot-scaling": write_scaling_report,
    "omniglot-coverage": write_coverage_report,
    "cifar-lt": write_cifar_report,
    "synthetic": write_budget_report,
}


INPUTS = ("results.csv", "runs", COST_CACHE)  # what the report reads in a results folder


def write_report(folder: Path) -> list[Path]:
    """Write the report of the results in ``folder``; returns the files written.

    All or nothing: the report is written into a staging folder beside the results (holding
    links to its inputs) and its files are moved into ``folder`` only once every one of them
    has been written, so a failure leaves the folder as it was."""
    results = read_results(folder)
    folder = folder.resolve()
    with tempfile.TemporaryDirectory(dir=folder, prefix=".report-") as tmp:
        stage = Path(tmp)
        for name in INPUTS:
            if (folder / name).exists():
                (stage / name).symlink_to(folder / name)
        _write_all(stage, results)
        staged = [p for p in sorted(stage.rglob("*")) if p.is_file() and not p.is_symlink()]
        written = []
        for path in staged:
            target = folder / path.relative_to(stage)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
            written.append(target)
    return written


def _write_all(folder: Path, results: pd.DataFrame) -> None:
    write_summary(folder / "results.csv")
    write_seed_report(folder, results)
    for suite in sorted(set(results["suite"].astype(str))):
        if suite in REPORTS:
            REPORTS[suite](folder, results[results["suite"] == suite])


def results_folder(target: str, preset: str | None = None, out: Path | None = None) -> Path:
    """The results folder that ``target`` names: a folder itself, or the suite (name or .toml
    path) whose ``rabo-bench run`` wrote to ``out`` or, by default, ``out/<suite>`` or
    ``out/<suite>-<preset>`` under the working directory. Raises ValueError when no results
    are there, naming the command that makes them."""
    path = Path(target)
    if path.is_file() and path.suffix != ".toml":
        raise ValueError(
            f"{target} is a file; give a results folder (the --out of a run) or a suite"
        )
    if not path.exists() and path.suffix != ".toml" and ("/" in target or "\\" in target):
        raise ValueError(f"no results folder {target}")
    if path.is_dir():
        if preset is not None or out is not None:
            raise ValueError(f"{target} is a results folder: --preset and --out name a suite's")
        folder = Path(target)
        make = "give the output folder of a `rabo-bench run`"
    else:
        suite = load_suite(target, preset)
        folder = out if out is not None else suite.default_out
        options = (f" --preset {preset}" if preset else "") + (f" --out {out}" if out else "")
        make = f"make them with `rabo-bench run {target}{options}`"
    if not (folder / "results.csv").is_file():
        raise ValueError(f"no results in {folder} (no results.csv); {make}")
    return folder.resolve()
