"""``rabo-bench report``: tables and plots of a finished suite from its saved results alone.

The suite is recognised by the ``suite`` column of ``results.csv``; every suite gets the
summary table (``summary.md``), and the paper's suites get their own report beside it.
"""

from __future__ import annotations

from pathlib import Path

from rabo_bench.report.cifar import write_cifar_report
from rabo_bench.report.omniglot import (
    write_coverage_report,
    write_omniglot_report,
    write_scaling_report,
)
from rabo_bench.report.runs import read_results
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
    written = [summary]
    for suite in sorted(set(results["suite"].astype(str))):
        if suite in REPORTS:
            written += REPORTS[suite](folder, results[results["suite"] == suite])
    return written
