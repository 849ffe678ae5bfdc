"""Nothing computed is lost and nothing is half-written: narrower re-runs add to a folder's
table, a folder never mixes two configurations of one run, result files get the umask's modes,
``report`` writes all or nothing, and the CLI conveniences (--version, --dry-run, comparing
folders, the GPU-sized guard) say what they should."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from rabo_bench import __version__
from rabo_bench.algorithms import display_name
from rabo_bench.engine.results import read_rows
from tests.cli import run_cli

SMOKE = ["run", "synthetic", "--preset", "smoke", "--no-progress", "--no-mlflow"]


def _runs(folder) -> set[tuple[str, str]]:
    return {(r["algorithm"], r["seed"]) for r in read_rows(folder / "results.csv")}


def test_a_narrower_rerun_adds_to_the_table_and_drops_nothing(tmp_path, capsys):
    out = str(tmp_path / "out")
    code, _, err = run_cli(capsys, *SMOKE, "--algorithms", "rabo,fedmbo", "--out", out)
    assert code == 0, err
    code, _, err = run_cli(capsys, *SMOKE, "--algorithms", "rafbo", "--seeds", "1", "--out", out)
    assert code == 0, err
    expected = {(a, s) for a in ("rabo", "fedmbo") for s in "01"} | {("rafbo", "0")}
    assert _runs(tmp_path / "out") == expected
    assert f"| {display_name('rafbo')} |" in (tmp_path / "out" / "summary.md").read_text()


def test_another_configuration_of_a_run_in_the_same_folder_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--algorithms", "rabo", "--seeds", "1", "--out", str(out)]
    assert run_cli(capsys, *SMOKE, *args)[0] == 0
    before = sorted(p.name for p in (out / "runs").iterdir())
    code, _, err = run_cli(capsys, *SMOKE, *args, "--rounds", "2")
    assert code == 2 and err.count("\n") == 1
    assert "already holds run" in err and "another --out" in err
    assert sorted(p.name for p in (out / "runs").iterdir()) == before


def test_result_files_get_the_modes_the_umask_allows(tmp_path, capsys):
    old = os.umask(0o022)
    try:
        code, _, err = run_cli(capsys, *SMOKE, "--algorithms", "rabo", "--out", str(tmp_path))
    finally:
        os.umask(old)
    assert code == 0, err
    written = [tmp_path / "results.csv", tmp_path / "summary.md", *(tmp_path / "runs").iterdir()]
    assert {stat.S_IMODE(p.stat().st_mode) for p in written} == {0o644}


def test_version(capsys):
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and out.strip() == f"rabo-bench {__version__}"


def test_dry_run_lists_the_runs_and_what_each_needs_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    run_cli(capsys, *SMOKE, "--algorithms", "rabo", "--seeds", "1", "--out", str(out))
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    args = ["--algorithms", "rabo,fedmbo", "--out", str(out), "--dry-run"]
    code, stdout, err = run_cli(capsys, *SMOKE, *args)
    assert code == 0, err
    lines = [s.split() for s in stdout.splitlines()]
    assert [row[-1] for row in lines if row[2:3] in (["rabo"], ["fedmbo"])] == [
        "done", "todo", "todo", "todo"
    ]  # fmt: skip
    assert "4 runs: 1 done, 0 to resume, 3 to run; 9 rounds to compute" in stdout
    assert "estimated engine time" in stdout and "not timed" in stdout and "fedmbo" in stdout
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


def test_report_compares_folders_side_by_side(tmp_path, capsys):
    for name, algorithm in (("a", "rabo"), ("b", "fedmbo")):
        args = ["--algorithms", algorithm, "--out", str(tmp_path / name)]
        assert run_cli(capsys, *SMOKE, *args)[0] == 0
    code, stdout, err = run_cli(capsys, "report", str(tmp_path / "a"), str(tmp_path / "b"))
    assert code == 0, err
    rows = [line for line in stdout.splitlines() if line.startswith(f"| {tmp_path}")]
    assert [r.split(" | ")[:4] for r in rows] == [
        [f"| {tmp_path / 'a'}", "synthetic", "-", display_name("rabo")],
        [f"| {tmp_path / 'b'}", "synthetic", "-", display_name("fedmbo")],
    ]
    assert all(" ± " in r for r in rows)  # two seeds: mean and interval


def test_a_gpu_sized_suite_asks_before_starting_on_a_cpu(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = ["run", "omniglot", "--dry-run", "--out", str(tmp_path)]
    code, _, err = run_cli(capsys, *args)
    assert code == 2 and "sized for a GPU" in err and "--preset" in err and "--yes" in err
    code, stdout, err = run_cli(capsys, *args, "--yes", "--settings", "5w1s")
    assert code == 0 and "resnet12" not in err and " todo" in stdout, err
    assert run_cli(capsys, *args, "--preset", "smoke")[0] == 0


def test_report_needs_no_data_and_writes_all_or_nothing(tmp_path, capsys, monkeypatch):
    """Reported once with the data (which caches the sub-model cost fractions), a folder is
    reported again without them with the same tables; a report that fails halfway leaves the
    folder as it was."""
    pytest.importorskip("matplotlib")
    out = tmp_path / "out"
    args = ["run", "omniglot", "--preset", "smoke", "--settings", "5w1s", "--no-progress"]
    code, _, err = run_cli(capsys, *args, "--no-mlflow", "--algorithms", "fedmbo,rabo",
                           "--seeds", "1", "--out", str(out))  # fmt: skip
    if code == 2 and "RABO_BENCH_DATA" in err:
        pytest.skip("no Omniglot data")
    assert code == 0, err
    assert run_cli(capsys, "report", str(out))[0] == 0
    table = (out / "table.md").read_text()
    monkeypatch.setenv("RABO_BENCH_DATA", str(tmp_path / "nowhere"))
    (out / "table.md").unlink()
    code, _, err = run_cli(capsys, "report", str(out))
    assert code == 0, err
    assert (out / "table.md").read_text() == table

    import rabo_bench.report.build as build

    def broken(folder, results):
        (folder / "half.md").write_text("half")
        raise ValueError("a writer failed")

    monkeypatch.setitem(build.REPORTS, "omniglot", broken)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    code, _, err = run_cli(capsys, "report", str(out))
    assert code == 2 and "nothing was written" in err and "a writer failed" in err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


@pytest.mark.parametrize(
    "target, message",
    [("results.csv", "is a file"), ("missing/folder", "no results folder")],
)
def test_report_says_what_a_wrong_target_is(tmp_path, capsys, monkeypatch, target, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results.csv").write_text("x\n")
    code, _, err = run_cli(capsys, "report", target)
    assert code == 2 and message in err
