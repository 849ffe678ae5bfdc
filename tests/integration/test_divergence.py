"""A run whose iterate or metrics turn NaN/Inf, or whose upper_loss, grad_norm_sq or inner_error
grows past ``diverge_factor`` (default 1e6) times its round-0 value, ends with status "diverged"
(its round and reason recorded), is written like any other run (so a resumed sweep skips it) and
the sweep goes on; a tracking server that cannot be reached costs one warning line, never a
result.

Divergence is forced for real: FedAvg with an inner step size of 1e6 on a small quadratic blows
up at once (and overflows within a few rounds when the factor is out of reach), while FedMBO
with sane settings runs to the end.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from rabo_bench.engine.results import read_rows
from rabo_bench.engine.run import expand
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
    first, last = diverged[0], diverged[-1]
    assert {r["status"] for r in diverged} == {"diverged"}
    assert {r["reason"] for r in diverged} == {last["reason"]}
    assert 0 < int(last["round"]) < ROUNDS
    # finite but blown up: the factor, not an overflow, ended the run, and the reason says so
    # with the row's values
    assert all(math.isfinite(float(last[k])) for k in ("upper_loss", "grad_norm_sq"))
    for metric in ("upper_loss", "grad_norm_sq"):
        values = f"{float(last[metric]):.1e} > 1e+06 x round-0 value {float(first[metric]):.1e}"
        assert f"{metric} {values}" in last["reason"]
    assert last["reason"].startswith(f"round {last['round']}: upper_loss ")
    assert f"diverged fedavg seed=0 (run {last['run_id']}) [1/2]: round" in stdout
    assert [r["round"] for r in fine] == [str(q) for q in range(ROUNDS + 1)]
    assert {(r["status"], r["reason"]) for r in fine} == {("ok", "")}

    code, stdout, _ = run_cli(capsys, *args)
    assert code == 0 and stdout.count("skipped") == 2  # the diverged run is not re-run
    tags = mlflow_tags(out, "diverge")
    assert tags == {"fedavg": ("diverged", last["reason"]), "fedmbo": ("ok", "")}


def test_out_of_reach_factor_leaves_the_non_finite_check(suite, tmp_path):
    """With a factor no float can exceed, the same run ends on its first NaN/Inf metric."""
    loaded = load_suite(str(suite), algorithm_names=["fedavg"], changes=[{"diverge_factor": 1e300}])
    execute_suite(loaded, tmp_path, progress=False, echo=lambda _: None)
    last = read_rows(tmp_path / "results.csv")[-1]
    assert last["status"] == "diverged" and 1 < int(last["round"]) < ROUNDS
    assert re.fullmatch(rf"round {last['round']}: [a-z_]+ = (nan|inf|-inf)(, .*)?", last["reason"])


def test_the_factor_is_a_suite_key_and_part_of_the_identity_only_when_set(tmp_path):
    """RABO with a large outer step: ||grad F||^2 rises from 1.5 to about 5 and stays bounded.
    The default factor lets it run; a factor of 2 stops it at the first round past 2 x 1.5."""
    table = "[overrides.rabo]\ninner = { steps = 5, lr = 0.2 }\nouter = { lr = 1.5 }"
    path = tiny_suite(tmp_path, "factor", 10, ["rabo"], tables=table)
    default = load_suite(str(path))
    strict = load_suite(str(path), changes=[{"diverge_factor": 2}])
    assert "diverge_factor" not in expand(default)[0].config()
    assert expand(strict)[0].config()["diverge_factor"] == 2.0
    assert expand(strict)[0].run_id != expand(default)[0].run_id
    for name, loaded in (("default", default), ("strict", strict)):
        execute_suite(loaded, tmp_path / name, progress=False, echo=lambda _: None)
    rows = read_rows(tmp_path / "default" / "results.csv")
    assert len(rows) == 11 and {r["status"] for r in rows} == {"ok"}
    start = float(rows[0]["grad_norm_sq"])
    stop = next(r for r in rows if float(r["grad_norm_sq"]) > 2 * start)
    *_, last = read_rows(tmp_path / "strict" / "results.csv")
    assert (last["round"], last["status"]) == (stop["round"], "diverged")
    assert last["reason"].startswith(f"round {stop['round']}: grad_norm_sq ")
    assert f"> 2 x round-0 value {start:.1e}" in last["reason"]


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
