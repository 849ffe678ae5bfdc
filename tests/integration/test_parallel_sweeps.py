"""Parallel sweeps (DESIGN.md §5): ``--jobs 2`` worker processes and a 2-CPU local Ray cluster
give the results table of the sequential run (wall time aside), in the same layout. Without Ray
installed, ``--engine ray`` is a one-line error that says how to install it; so is a cluster
address that cannot be reached (Ray itself would retry it for minutes)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from rabo_bench.engine.results import comparable_rows, read_rows
from rabo_bench.engine.runner import execute_suite
from rabo_bench.engine.suite import load_suite
from rabo_bench.engine.sweep import Engine
from tests.cli import run_cli

SMOKE = ("run", "synthetic", "--preset", "smoke", "--seeds", "1", "--no-progress", "--no-mlflow")


def table(out: Path) -> list[dict[str, str]]:
    return comparable_rows(read_rows(out / "results.csv"))


@pytest.fixture(scope="module")
def sequential(tmp_path_factory) -> list[dict[str, str]]:
    out = tmp_path_factory.mktemp("sequential")
    suite = load_suite("synthetic", "smoke", seeds=1)
    execute_suite(suite, out, progress=False, echo=lambda _: None)
    return table(out)


def test_two_worker_processes_give_the_sequential_table(sequential, tmp_path, capsys):
    code, stdout, _ = run_cli(capsys, *SMOKE, "--jobs", "2", "--out", str(tmp_path))
    assert code == 0
    assert table(tmp_path) == sequential
    finished = [line for line in stdout.splitlines() if line.startswith("ok ")]
    runs = len({row["run_id"] for row in sequential})  # the suite's algorithms, one seed
    assert len(finished) == len(list((tmp_path / "runs").glob("*.csv"))) == runs == 13
    assert not list((tmp_path / "runs").glob(".*"))  # no temporary file left behind


def test_local_ray_cluster_gives_the_sequential_table(sequential, tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        suite = load_suite("synthetic", "smoke", seeds=1)
        execute_suite(suite, tmp_path, progress=False, echo=lambda _: None, engine=Engine("ray"))
    finally:
        ray.shutdown()
    assert table(tmp_path) == sequential
    assert not (tmp_path / "checkpoints").exists()  # Ray workers keep no files here


def test_ray_engine_without_ray_says_how_to_install_it(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` sees when not installed
    code, _, err = run_cli(capsys, *SMOKE, "--engine", "ray", "--out", str(tmp_path / "out"))
    assert code == 2
    assert err.startswith("rabo-bench: error:") and err.count("\n") == 1
    assert "pip install rabo-bench[ray]" in err
    assert not (tmp_path / "out").exists()


def test_unreachable_ray_address_is_a_prompt_one_line_error(tmp_path, capsys):
    pytest.importorskip("ray")
    out = tmp_path / "out"
    args = ("--engine", "ray", "--ray-address", "127.0.0.1:1", "--out", str(out))
    code, _, err = run_cli(capsys, *SMOKE, *args)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("rabo-bench: error: cannot reach the Ray cluster at 127.0.0.1:1")
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--jobs", "0"), "argument --jobs: '0' must be >= 1"),
        (("--engine", "ray", "--jobs", "2"), "--jobs is for --engine local"),
        (("--ray-address", "127.0.0.1:6379"), "--ray-address needs --engine ray"),
        (("--engine", "spark"), "argument --engine: invalid choice: 'spark'"),
        (("--clients", "threads"), "argument --clients: invalid choice: 'threads'"),
    ],
)
def test_engine_options_that_cannot_work_are_one_line_errors(args, message, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, *SMOKE, *args, "--out", str(out))
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"rabo-bench: error: {message}")
    assert not out.exists()
