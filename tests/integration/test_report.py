"""``rabo-bench report`` builds its tables and plots from saved results alone: by results folder
or by suite (name or path, with --preset and --out), the seed table's 95% interval checked
against one computed here from the rows of results.csv, and diverged runs counted.
"""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path

import pytest

from rabo_bench.algorithms import display_name
from rabo_bench.cli import main
from rabo_bench.engine.suite import SUITES_DIR
from tests.cli import run_cli

ALGORITHMS = ("rabo", "fedmbo", "fedavg")
T_975_1 = 12.706204736174698  # Student t quantile 0.975 with 1 degree of freedom (2 seeds)
PLOTS = ("rounds_grad_norm_sq.png", "rounds_inner_error.png", "rounds_upper_loss.png")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> Path:
    """``synthetic --preset smoke`` (two seeds), three algorithms, no MLflow."""
    out = tmp_path_factory.mktemp("report") / "out"
    args = ["run", "synthetic", "--preset", "smoke", "--algorithms", ",".join(ALGORITHMS)]
    assert main([*args, "--no-mlflow", "--no-progress", "--out", str(out)]) == 0
    return out


def rows_of(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def copy_of(smoke: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "copy"
    shutil.copytree(smoke, folder)
    return folder


def report(capsys, *args: str) -> str:
    code, out, err = run_cli(capsys, "report", *args)
    assert code == 0, err
    return out


def test_report_by_folder_writes_tables_and_plots(smoke, capsys):
    out = report(capsys, str(smoke))
    for name in ("summary.md", "final.md", "final.csv", *PLOTS):
        assert f"wrote {smoke / name}" in out
        assert (smoke / name).stat().st_size > 0
    for name in PLOTS:
        assert (smoke / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    final = (smoke / "final.md").read_text()
    for name in ALGORITHMS:
        assert f"| {display_name(name)} |" in final
    table = final.split("\n\n")[-1]  # the synthetic problem has no accuracy, no paper number
    assert "accuracy" not in table and "paper" not in table


def test_the_interval_is_student_t_over_the_seeds(smoke, capsys):
    """Recomputed from results.csv: the final-round ||grad F||^2 of each seed's run."""
    report(capsys, str(smoke))
    rows = rows_of(smoke / "results.csv")
    table = {r["algorithm"]: r for r in rows_of(smoke / "final.csv")}
    markdown = (smoke / "final.md").read_text()
    for name in ALGORITHMS:
        last = max(int(r["round"]) for r in rows if r["algorithm"] == name)
        values = [
            float(r["grad_norm_sq"])
            for r in rows
            if r["algorithm"] == name and int(r["round"]) == last
        ]
        assert len(values) == 2
        mean = (values[0] + values[1]) / 2
        ci = T_975_1 * abs(values[0] - values[1]) / 2  # t s / sqrt(2), s = |a - b| / sqrt(2)
        assert math.isclose(float(table[name]["grad_norm_sq_mean"]), mean, rel_tol=1e-12)
        assert math.isclose(float(table[name]["grad_norm_sq_ci95"]), ci, rel_tol=1e-9)
        assert table[name]["grad_norm_sq_count"] == "2" and table[name]["diverged"] == "0"
        assert f"{mean:.4g} ± {ci:.2g}" in markdown


def test_report_by_suite_name_or_path_with_out(smoke, capsys):
    for suite in ("synthetic", str(SUITES_DIR / "synthetic.toml")):
        (smoke / "final.csv").unlink()
        out = report(capsys, suite, "--preset", "smoke", "--out", str(smoke))
        assert f"wrote {smoke / 'final.csv'}" in out and (smoke / "final.csv").exists()


def test_a_diverged_run_is_counted_and_left_out_of_the_means(smoke, capsys, tmp_path):
    folder = copy_of(smoke, tmp_path)
    rows = rows_of(folder / "results.csv")
    columns = list(rows[0]) + ([] if "status" in rows[0] else ["status"])
    bad = next(r["run_id"] for r in rows if r["algorithm"] == "rabo" and r["seed"] == "1")
    kept = []
    for row in rows:
        row["status"] = "diverged" if row["run_id"] == bad else "ok"
        if row["run_id"] == bad and row["round"] == "3":
            continue  # it stopped at round 2 ...
        if row["run_id"] == bad and row["round"] == "2":
            row["grad_norm_sq"] = "nan"  # ... on a NaN
        kept.append(row)
    with (folder / "results.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(kept)
    report(capsys, str(folder))
    table = {r["algorithm"]: r for r in rows_of(folder / "final.csv")}
    assert (table["rabo"]["diverged"], table["rabo"]["grad_norm_sq_count"]) == ("1", "1")
    seed0 = next(
        float(r["grad_norm_sq"])
        for r in kept
        if r["algorithm"] == "rabo" and r["seed"] == "0" and r["round"] == "3"
    )
    assert float(table["rabo"]["grad_norm_sq_mean"]) == seed0
    assert table["fedmbo"]["diverged"] == "0"
    assert f"| {seed0:.4g} (1 seed) |" in (folder / "final.md").read_text()
    summary = (folder / "summary.md").read_text()
    assert f"| {display_name('rabo')} | 2 | 1 |" in summary
    assert f"| {display_name('fedmbo')} | 2 | 0 |" in summary


def test_results_without_a_status_column_still_report(smoke, capsys, tmp_path):
    folder = copy_of(smoke, tmp_path)
    rows = rows_of(folder / "results.csv")
    columns = [c for c in rows[0] if c not in ("status", "reason")]
    with (folder / "results.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    report(capsys, str(folder))
    assert {r["diverged"] for r in rows_of(folder / "final.csv")} == {"0"}


def refused(capsys, *args: str) -> str:
    code, out, err = run_cli(capsys, "report", *args)
    assert code == 2 and out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("rabo-bench: error: ") and "Traceback" not in err
    return lines[0]


def test_missing_results_name_the_command_that_makes_them(capsys, tmp_path):
    empty = tmp_path / "empty"
    message = refused(capsys, "synthetic", "--preset", "smoke", "--out", str(empty))
    assert f"no results in {empty}" in message
    assert f"`rabo-bench run synthetic --preset smoke --out {empty}`" in message
    suite = tmp_path / "never-run-here.toml"
    suite.write_text((SUITES_DIR / "synthetic.toml").read_text().replace("synthetic", "zq-none"))
    message = refused(capsys, str(suite))
    assert "out/zq-none (no results.csv)" in message and f"`rabo-bench run {suite}`" in message
    assert "give the output folder" in refused(capsys, str(tmp_path))


def test_bad_report_arguments(smoke, capsys):
    assert "unknown preset 'nope'" in refused(capsys, "synthetic", "--preset", "nope")
    assert "unknown suite" in refused(capsys, "no-such-suite")
    assert "--preset and --out name a suite" in refused(capsys, str(smoke), "--preset", "smoke")
