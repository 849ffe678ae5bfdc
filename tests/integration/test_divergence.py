"""A run whose iterate or metrics turn NaN/Inf ends with status "diverged" (its round and reason
recorded), is written like any other run (so a resumed sweep skips it) and the sweep goes on;
a tracking server that cannot be reached costs one warning line, never a result.

Divergence is forced for real: FedAvg with an inner step size of 1e6 on a small quadratic
overflows within a few rounds, while FedMBO with sane settings runs to the end.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from rabo_bench.engine.results import read_rows
from rabo_bench.engine.runner import execute_suite
from rabo_bench.engine.suite import load_suite
from tests.cli import run_cli
from tests.integration.tiny_suite import tiny_suite

ROUNDS = 30


@pytest.fixture
def suite(tmp_path) -> Path:
    fedavg_blows_up = "[overrides.fedavg]\ninner = { steps = 5, lr = 1e6 }"
    return tiny_suite(tmp_path, "diverge", ROUNDS, ["fedavg", "fedmbo"], tables=fedavg_blows_up)


def by_algorithm(rows: list[dict[str, str]]) -> dict[str, list[dict[str, str]]]:
    runs: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        runs.setdefault(row["algorithm"], []).append(row)
    return runs


def test_diverged_run_is_recorded_and_the_suite_goes_on(suite, tmp_path, capsys):
    out = tmp_path / "out"
    args = ("run", str(suite), "--no-progress", "--out", str(out))
    code, stdout, _ = run_cli(capsys, *args)
    assert code == 0
    runs = by_algorithm(read_rows(out / "results.csv"))
    diverged, fine = runs["fedavg"], runs["fedmbo"]
    last = diverged[-1]
    assert {r["status"] for r in diverged} == {"diverged"}
    assert {r["reason"] for r in diverged} == {last["reason"]}
    assert re.fullmatch(rf"round {last['round']}: .*(nan|inf).*", last["reason"])
    assert 0 < int(last["round"]) < ROUNDS
    assert f"diverged fedavg seed=0 (run {last['run_id']}) [1/2]: round" in stdout
    assert [r["round"] for r in fine] == [str(q) for q in range(ROUNDS + 1)]
    assert {(r["status"], r["reason"]) for r in fine} == {("ok", "")}

    code, stdout, _ = run_cli(capsys, *args)
    assert code == 0 and stdout.count("skipped") == 2  # the diverged run is not re-run
    tags = mlflow_tags(out, "diverge")
    assert tags == {"fedavg": ("diverged", last["reason"]), "fedmbo": ("ok", "")}


def mlflow_tags(out: Path, experiment: str) -> dict[str, tuple[str, str]]:
    """{algorithm: (status, reason)} from the MLflow store the run wrote."""
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{out.parent / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return {
        run.data.tags["rabo_bench.algorithm"]: (
            run.data.tags["rabo_bench.status"],
            run.data.tags["rabo_bench.reason"],
        )
        for run in runs
        if "rabo_bench.algorithm" in run.data.tags  # not the commands' parent runs
    }


def test_non_finite_iterate_ends_the_run_between_evaluations(suite, tmp_path):
    """With no evaluation before the last round, the iterate itself is checked every round:
    the run stops at the first non-finite x or y, and its last row has no metrics."""
    sparse = replace(load_suite(str(suite), algorithm_names=["fedavg"]), eval_every=ROUNDS)
    execute_suite(sparse, tmp_path, progress=False, echo=lambda _: None)
    first, last = read_rows(tmp_path / "results.csv")
    assert first["round"] == "0" and first["upper_loss"] != ""
    assert 0 < int(last["round"]) < ROUNDS and last["status"] == "diverged"
    assert re.fullmatch(rf"round {last['round']}: ([xy]\['.+'\](, )?)+ not finite", last["reason"])
    assert last["upper_loss"] == last["grad_norm_sq"] == "" and int(last["oracle_calls"]) > 0


def test_unreachable_tracking_server_warns_once_and_keeps_every_result(suite, tmp_path):
    """Nothing listens on port 9 of this machine: MLflow's requests fail (after the sink's
    short retries) and the sweep finishes without it."""
    out = tmp_path / "out"
    command = [sys.executable, "-m", "rabo_bench.cli", "run", str(suite), "--no-progress"]
    command += ["--out", str(out), "--mlflow-uri", "http://127.0.0.1:9"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rabo-bench: warning: MLflow"), done.stderr
    runs = sorted((out / "runs").glob("*.csv"))
    assert len(runs) == 2
    assert len(read_rows(out / "results.csv")) == sum(len(read_rows(run)) for run in runs)
