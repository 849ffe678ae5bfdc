"""torch.distributed sharding (issue 8): 2 gloo ranks on one machine reproduce the single-process
run of every synthetic algorithm to 1e-10 in float64 (only the order of the sums differs: each
rank sums its half of the clients, then the halves are added), with identical cost ledgers;
through the CLI, rank 0 writes the single-process results table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rabo_bench.engine.results import COLUMNS, METRICS, TIMING, read_rows
from tests.integration.distributed_worker import trajectories

WORKER = Path(__file__).with_name("distributed_worker.py")
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("clients", ["sequential", "vectorised"])
def test_two_gloo_ranks_equal_one_process(tmp_path, clients):
    target = tmp_path / "sharded.pt"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
        "--tee=3", str(WORKER), str(target), clients,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[:3000] + " ... " + done.stderr[-3000:]
    sharded = torch.load(target)
    single = trajectories(clients)
    assert sharded.keys() == single.keys()
    for name, ref in single.items():
        got = sharded[name]
        assert got["simulator"] == f"{clients}, sharded over 2 ranks"
        for key in ("x", "y"):
            for param, value in ref[key].items():
                torch.testing.assert_close(got[key][param], value, rtol=0, atol=1e-10)
        assert got["ledgers"] == ref["ledgers"]


def test_torchrun_cli_writes_the_single_process_table_once(tmp_path):
    """``torchrun -m rabo_bench.cli run``: rank 0 writes the same rows (identity and costs
    exactly, metrics to 1e-10) as one process; the follower rank writes nothing."""
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    args = ["run", "synthetic", "--preset", "smoke", "--no-mlflow", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    for command in (
        [sys.executable, "-m", "rabo_bench.cli", *args, "--out", str(single)],
        [*launch, "-m", "rabo_bench.cli", *args, "--out", str(sharded)],
    ):
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr[-3000:]
    ours, theirs = (read_rows(folder / "results.csv") for folder in (single, sharded))
    assert len(ours) == len(theirs) > 0
    assert sorted(p.name for p in (single / "runs").iterdir()) == sorted(
        p.name for p in (sharded / "runs").iterdir()
    )
    for a, b in zip(ours, theirs, strict=True):
        for column in COLUMNS:
            if column in METRICS and a[column]:
                assert float(b[column]) == pytest.approx(float(a[column]), rel=1e-10, abs=1e-12)
            elif column not in METRICS + TIMING:
                assert b[column] == a[column], column
