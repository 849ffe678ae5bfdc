"""The ``rabo-bench`` command end to end on the synthetic suite's smoke preset.

Most calls run in-process (``main([...])``) to stay fast; a few go through a subprocess to check
the real entry point, exit codes and that no traceback reaches the terminal.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rabo_bench.algorithms import display_name
from rabo_bench.cli import main
from rabo_bench.engine.results import COLUMNS, read_rows
from rabo_bench.engine.suite import SUITES_DIR
from rabo_bench.engine.suite_file import read_toml
from tests.cli import run_cli

SMOKE = ["run", "synthetic", "--preset", "smoke", "--no-progress"]
SYNTHETIC = (SUITES_DIR / "synthetic.toml").read_text()
SUITE_ALGORITHMS = tuple(read_toml(SUITES_DIR / "synthetic.toml")["algorithms"])
RUNS = 2 * len(SUITE_ALGORITHMS)  # the smoke preset has two seeds


def suite_file(tmp_path: Path, old: str, new: str) -> str:
    """The synthetic suite with ``old`` replaced by ``new``, written to ``tmp_path``."""
    assert old in SYNTHETIC, old
    path = tmp_path / "edited.toml"
    path.write_text(SYNTHETIC.replace(old, new, 1))
    return str(path)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    """One smoke run of the synthetic suite, MLflow on (the default store under the output)."""
    out = tmp_path_factory.mktemp("smoke") / "out"
    assert main([*SMOKE, "--out", str(out)]) == 0
    return out


def mlflow_runs(out: Path, parents: bool = False):
    """The runs of the default store beside ``out`` (its parent folder's mlflow.db): the runs
    of the suite, or with ``parents`` the commands' parent runs."""
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{out.parent / 'mlflow.db'}")
    try:
        runs = mlflow.search_runs(experiment_names=["synthetic"])
    finally:
        mlflow.set_tracking_uri(None)
    child = runs["tags.rabo_bench.run_id"].notna()
    return runs[~child if parents else child]


def test_list_shows_algorithms_suites_and_presets(capsys):
    code, out, _ = run_cli(capsys, "list")
    assert code == 0
    for word in (*SUITE_ALGORITHMS, "synthetic", "smoke", "our interpretation"):
        assert word in out


def test_smoke_run_writes_results_runs_and_summary(smoke_run):
    rows = read_rows(smoke_run / "results.csv")
    assert list(rows[0]) == list(COLUMNS)
    runs = {(r["algorithm"], r["seed"]) for r in rows}
    assert runs == {(a, s) for a in SUITE_ALGORITHMS for s in ("0", "1")}
    assert len(rows) == RUNS * 4  # rounds 0..3 for each run
    assert len(list((smoke_run / "runs").glob("*.csv"))) == RUNS
    summary = (smoke_run / "summary.md").read_text()
    for name in SUITE_ALGORITHMS:
        assert f"| {display_name(name)} |" in summary


def test_mlflow_store_lists_one_run_per_algorithm_and_seed(smoke_run):
    runs = mlflow_runs(smoke_run)
    assert sorted(runs["tags.mlflow.runName"]) == sorted(
        f"{a} seed{s}" for a in SUITE_ALGORITHMS for s in (0, 1)
    )
    assert (runs["status"] == "FINISHED").all()
    artifacts = (smoke_run.parent / "mlartifacts").as_uri()
    assert all(uri.startswith(artifacts) for uri in runs.artifact_uri)
    assert "metrics.grad_norm_sq" in runs.columns and "params.problem.dim_x" in runs.columns


def test_mlflow_runs_say_which_code_packages_and_machine_made_them(smoke_run):
    """Every run carries the command's context, and is a child of the command's parent run."""
    import torch

    runs, parents = mlflow_runs(smoke_run), mlflow_runs(smoke_run, parents=True)
    assert (runs["tags.rabo_bench.preset"] == "smoke").all()
    assert (runs["tags.rabo_bench.version.torch"] == torch.__version__).all()
    assert runs["tags.rabo_bench.git_commit"].str.fullmatch(r"[0-9a-f]{40}(-dirty)?|unknown").all()
    assert runs["tags.rabo_bench.device"].str.startswith(("cpu:", "cuda:")).all()
    assert runs["tags.rabo_bench.command"].str.contains("run synthetic --preset smoke").all()
    assert set(runs["tags.mlflow.parentRunId"]) <= set(parents["run_id"])
    assert (parents["tags.rabo_bench.preset"] == "smoke").all()
    assert (parents["status"] == "FINISHED").all()


def test_rerun_skips_finished_runs_and_keeps_the_table(smoke_run, capsys):
    before = (smoke_run / "results.csv").read_bytes()
    code, out, _ = run_cli(capsys, *SMOKE, "--out", str(smoke_run))
    assert code == 0
    assert out.count("skipped") == RUNS
    assert (smoke_run / "results.csv").read_bytes() == before
    assert len(mlflow_runs(smoke_run)) == RUNS  # not mirrored twice


def test_no_mlflow_writes_no_store(tmp_path, capsys):
    out = tmp_path / "out"
    code, _, _ = run_cli(
        capsys, *SMOKE, "--algorithms", "fedmbo", "--seeds", "1", "--no-mlflow", "--out", str(out)
    )
    assert code == 0
    assert (out / "results.csv").exists()
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlartifacts").exists()


def test_set_changes_the_suite_after_its_preset(tmp_path, capsys):
    out = tmp_path / "out"
    sets = ["--set", "rounds=1", "--set", "problem.dim_x=4", "--set", "overrides.all.inner.lr=0.1"]
    args = [*SMOKE, "--algorithms", "static", "--seeds", "1", "--no-mlflow", "--out", str(out)]
    code, _, err = run_cli(capsys, *args, *sets)
    assert code == 0, err
    (config,) = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    assert config["rounds"] == 1 and config["problem"]["dim_x"] == 4
    assert config["problem"]["dim_y"] == 6  # the smoke preset's, kept
    assert config["algorithm"]["inner"]["lr"] == 0.1 and config["algorithm"]["inner"]["steps"] == 5


def test_the_default_output_folder_is_under_the_working_directory(tmp_path, monkeypatch, capsys):
    """Choosing runs (--algorithms, --seeds) keeps the suite's folder; changing their
    configuration (--rounds, --set) names its own, so no table mixes the two."""
    monkeypatch.chdir(tmp_path)
    args = ["--algorithms", "fedmbo", "--seeds", "1", "--no-mlflow"]
    folders = {
        "synthetic-smoke": [],
        "synthetic-smoke-rounds1": ["--rounds", "1"],
        "synthetic-smoke-set-": ["--set", "problem.dim_x=3"],
    }
    for name, extra in folders.items():
        code, stdout, err = run_cli(capsys, *SMOKE, *args, *extra)
        assert code == 0, err
        (line,) = [s for s in stdout.splitlines() if s.startswith("output folder: ")]
        folder = Path(line.removeprefix("output folder: "))
        assert folder.parent == tmp_path / "out" and folder.name.startswith(name), line
        assert (folder / "results.csv").is_file()
    assert len(list((tmp_path / "out").glob("synthetic-smoke*"))) == 3


def test_broken_mlflow_only_warns_and_keeps_every_result(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = tmp_path / "out"
    code, stdout, err = run_cli(
        capsys,
        *SMOKE,
        "--algorithms",
        "rabo,fedmbo",
        "--mlflow-uri",
        f"sqlite:///{blocker}/mlflow.db",
        "--out",
        str(out),
    )
    assert code == 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rabo-bench: warning: MLflow")
    assert len(read_rows(out / "results.csv")) == 2 * 2 * 4
    assert "fedmbo" in stdout  # the summary is printed


BAD_INPUTS = {
    "unknown algorithm": (["synthetic", "--algorithms", "rabo,nope"], None),
    "unknown suite": (["no-such-suite"], None),
    "unknown preset": (["synthetic", "--preset", "nope"], None),
    "capacity 1.5": ([], ("capacities = [1, 1,", "capacities = [1, 1.5,")),
    "capacity 0": ([], ("capacities = [1, 1,", "capacities = [1, 0,")),
    "capacities count": ([], ("capacities = [1, 1,", "capacities = [1,")),
    "malformed toml": ([], ("rounds = 100", "rounds = = 100")),
    "unknown key": ([], ("rounds = 100", "rounds = 100\nbogus = 1")),
    "unknown problem parameter": ([], ("dim_x = 20", "dim_z = 20")),
    "wrong type": ([], ("dim_x = 20", 'dim_x = "twenty"')),
    "bad override": ([], ("terms = 10 } }", "termz = 10 } }")),
    "rounds 0": (["synthetic", "--rounds", "0"], None),
    "rounds not a number": (["synthetic", "--rounds", "many"], None),
    "no suite": ([], None),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_error_with_exit_code_2(case, tmp_path, capsys):
    args, edit = BAD_INPUTS[case]
    if edit is not None:
        args = [suite_file(tmp_path, *edit)]
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "run", *args, "--no-progress", "--out", str(out))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rabo-bench: error:"), err
    assert "Traceback" not in err
    assert not out.exists()  # validation happens before anything is written


def test_error_names_file_and_key(tmp_path, capsys):
    path = suite_file(tmp_path, "capacities = [1, 1,", "capacities = [1, 1, 1.5,")
    _, _, err = run_cli(capsys, "run", path, "--out", str(tmp_path / "out"))
    assert "edited.toml" in err and "capacities[2] = 1.5 is outside (0, 1]" in err


def test_unwritable_output_folder(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, _, err = run_cli(capsys, *SMOKE, "--out", str(blocker / "out"))
    assert code == 2
    assert err.startswith("rabo-bench: error: output folder") and err.count("\n") == 1


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "rabo_bench.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=120)


def test_entry_point_runs_and_prints_the_summary(tmp_path):
    done = cli(
        *SMOKE, "--algorithms", "fedmbo", "--seeds", "1", "--no-mlflow", "--out", "o", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "fedmbo" in done.stdout and "C_x*" in done.stdout
    assert (tmp_path / "o" / "summary.md").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o"]  # nothing else in the cwd


def test_entry_point_error_has_no_traceback(tmp_path):
    (tmp_path / "bad.toml").write_text("rounds = [\n")
    done = cli("run", "bad.toml", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("rabo-bench: error: bad.toml: invalid TOML")
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
