"""``rabo-bench report``: tables and plots of a finished suite from its saved results alone.

The suite is recognised by the ``suite`` column of ``results.csv``; every suite gets the
summary table (``summary.md``) and the seed table with its plots (``final.md``, ``final.csv``,
``rounds_<metric>.png``), and the paper's suites get their own report beside them.
"""

from __future__ import annotations

from pathlib import Path

from rabo_bench.engine.suite import load_suite
from rabo_bench.report.cifar import write_cifar_report
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
}


def write_report(folder: Path) -> list[Path]:
    """Write the report of the results in ``folder``; returns the files written."""
    results = read_results(folder)
    _, summary = write_summary(folder / "results.csv")
    written = [summary, *write_seed_report(folder, results)]
    for suite in sorted(set(results["suite"].astype(str))):
        if suite in REPORTS:
            written += REPORTS[suite](folder, results[results["suite"] == suite])
    return written


def results_folder(target: str, preset: str | None = None, out: Path | None = None) -> Path:
    """The results folder that ``target`` names: a folder itself, or the suite (name or .toml
    path) whose ``rabo-bench run`` wrote to ``out`` or, by default, ``out/<suite>`` or
    ``out/<suite>-<preset>`` under the working directory. Raises ValueError when no results
    are there, naming the command that makes them."""
    if Path(target).is_dir():
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
