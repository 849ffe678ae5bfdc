"""Resume mid-run: a sweep killed with SIGKILL and started again gives the results table of an
uninterrupted sweep (wall time aside), skips its finished runs and continues the killed one from
its checkpoint.

The suite is two runs of 60 rounds with a checkpoint after every round, so the kill lands in
the second run after it has saved some rounds; the killed and the resumed sweep are the real
``rabo-bench`` entry point in a subprocess, as a user runs it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rabo_bench.engine.checkpoint import Checkpoint, CheckpointPolicy, checkpoint_file
from rabo_bench.engine.results import comparable_rows, read_rows, run_file
from rabo_bench.engine.run import execute_run, expand
from rabo_bench.engine.runner import ProblemCache, execute_suite
from rabo_bench.engine.suite import load_suite
from tests.integration.interrupted import run_killed_at
from tests.integration.tiny_suite import tiny_suite

ROUNDS = 60
OVERRIDES = """
[overrides.fedmbo]
inner = { steps = 2, lr = 0.2 }
outer = { lr = 0.05, estimator = { eta = 0.5, terms = 3 } }
"""


def command(suite: Path, out: Path) -> list[str]:
    return [
        *(sys.executable, "-m", "rabo_bench.cli", "run", str(suite), "--out", str(out)),
        *("--no-mlflow", "--no-progress", "--checkpoint-every", "1"),
    ]


def kill_during_second_run(suite: Path, out: Path, first: str, second: str) -> int:
    """Start the sweep, SIGKILL it once the first run is written and the second has a
    checkpoint; return the checkpoint's round."""
    with (out.parent / "killed.log").open("w") as log:
        process = subprocess.Popen(command(suite, out), stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 300  # a hang guard, not a timing check
            while not (run_file(out, first).exists() and checkpoint_file(out, second).exists()):
                if process.poll() is not None:
                    pytest.fail(f"the sweep ended (code {process.returncode}) before the kill")
                if time.monotonic() > deadline:
                    pytest.fail("no checkpoint of the second run appeared")
                time.sleep(0.02)
            process.send_signal(signal.SIGKILL)
        finally:
            process.kill()
            process.wait()
    return Checkpoint(checkpoint_file(out, second)).load().round


def test_killed_sweep_resumes_to_the_uninterrupted_rows(tmp_path):
    suite = tiny_suite(tmp_path, "resume", ROUNDS, ["fedmbo"], seeds=2, tables=OVERRIDES)
    first, second = (spec.run_id for spec in expand(load_suite(str(suite))))
    out = tmp_path / "killed"
    saved_round = kill_during_second_run(suite, out, first, second)
    assert 1 <= saved_round < ROUNDS
    assert not run_file(out, second).exists()
    first_written = run_file(out, first).stat().st_mtime_ns

    resumed = subprocess.run(command(suite, out), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "skipped fedmbo seed=0" in resumed.stdout
    assert "resuming fedmbo seed=1" in resumed.stdout
    assert run_file(out, first).stat().st_mtime_ns == first_written  # not recomputed
    assert not list((out / "checkpoints").iterdir())  # deleted with the run file written

    whole = tmp_path / "whole"
    execute_suite(load_suite(str(suite)), whole, progress=False, echo=lambda _: None)
    rows = read_rows(out / "results.csv")
    assert comparable_rows(rows) == comparable_rows(read_rows(whole / "results.csv"))
    keys = [(r["run_id"], r["round"]) for r in rows]
    assert len(keys) == len(set(keys)) == 2 * (ROUNDS + 1)


@pytest.mark.parametrize("name", ["rabo", "fednest", "lfednest", "simfbo", "aggitd", "fedbioacc"])
def test_restarted_run_continues_from_its_checkpoint_round(tmp_path, name):
    spec = expand(load_suite("synthetic", "smoke", seeds=1, algorithm_names=[name]))[0]
    problem = ProblemCache()(spec)
    checkpoint = run_killed_at(spec, problem, tmp_path, 3)
    assert checkpoint.load().round == 2
    rounds: list[int] = []
    resumed = execute_run(spec, problem, rounds.append, checkpoint=checkpoint)
    assert rounds == list(range(3, spec.rounds + 1))  # rounds 1 and 2 were not recomputed
    assert comparable_rows(resumed) == comparable_rows(execute_run(spec, problem))


def test_an_unreadable_checkpoint_is_set_aside_and_the_run_starts_over(tmp_path, capsys):
    spec = expand(load_suite("synthetic", "smoke", seeds=1, algorithm_names=["rabo"]))[0]
    problem = ProblemCache()(spec)
    path = checkpoint_file(tmp_path, spec.run_id)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")
    checkpoint = Checkpoint(path, CheckpointPolicy(rounds=1000))
    rounds: list[int] = []
    rows = execute_run(spec, problem, rounds.append, checkpoint=checkpoint)
    assert rounds == list(range(1, spec.rounds + 1))
    assert comparable_rows(rows) == comparable_rows(execute_run(spec, problem))
    assert path.with_name(path.name + ".unreadable").read_bytes() == b"not a checkpoint"
    warning = capsys.readouterr().err.strip().splitlines()
    assert len(warning) == 1 and "is unreadable" in warning[0] and "starts over" in warning[0]
