"""``run --device`` and ``--precision`` (issue 15) on a machine without CUDA (simulated where a
GPU exists, so the results are the same anywhere): what cannot work is a one-line error before
anything is written; ``--device cpu`` gives the table of the default; bf16 runs on the CPU too
and is recorded in the runs' configuration and identity."""

from __future__ import annotations

import json

import pytest
import torch

from rabo_bench.engine.results import COSTS, COVERAGE, ORACLES, comparable_rows, read_rows
from tests.cli import run_cli

OMNIGLOT = ["run", "omniglot", "--preset", "smoke", "--settings", "5w1s", "--no-progress"]
QUICK = [*OMNIGLOT, "--algorithms", "rabo,static", "--no-mlflow"]


@pytest.fixture(autouse=True)
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["run", "synthetic", "--preset", "smoke", "--precision", "bf16"], "computes in float64"),
        ([*OMNIGLOT, "--device", "cuda"], "no CUDA device"),
        ([*OMNIGLOT, "--device", "gpu"], "auto, cpu, cuda or cuda:N"),
        ([*OMNIGLOT, "--precision", "tf32"], "tf32 is a CUDA tensor-core mode"),
        ([*OMNIGLOT, "--precision", "fp16"], "'fp16' is not one of fp32, tf32, bf16"),
        (["run", "synthetic", "--set", 'device="cuda:0"'], "no CUDA device"),
    ],
)
def test_what_cannot_work_stops_with_one_line(capsys, tmp_path, args, words):
    code, _, err = run_cli(capsys, *args, "--out", str(tmp_path / "out"))
    assert code == 2 and err.startswith("rabo-bench: error: ") and err.count("\n") == 1, err
    assert words in err
    assert not (tmp_path / "out").exists()


def test_device_cpu_gives_the_table_of_the_default(capsys, tmp_path):
    tables = []
    for name, extra in (("default", []), ("cpu", ["--device", "cpu"])):
        code, stdout, err = run_cli(capsys, *QUICK, *extra, "--out", str(tmp_path / name))
        assert code == 0, err
        assert "device: cpu, precision fp32" in stdout
        tables.append(comparable_rows(read_rows(tmp_path / name / "results.csv")))
    assert tables[0] == tables[1]


def test_bf16_is_part_of_the_runs_identity_and_changes_no_cost(capsys, tmp_path):
    folders = {p: tmp_path / p for p in ("fp32", "bf16")}
    for precision, out in folders.items():
        code, stdout, err = run_cli(capsys, *QUICK, "--precision", precision, "--out", str(out))
        assert code == 0, err
        assert f"precision {precision}" in stdout
    fp32, bf16 = (read_rows(out / "results.csv") for out in folders.values())
    assert [r["status"] for r in bf16] == ["ok"] * len(fp32)
    for a, b in zip(fp32, bf16, strict=True):
        assert a["run_id"] != b["run_id"]
        for column in ORACLES + COSTS + COVERAGE + ("algorithm", "seed", "round"):
            assert a[column] == b[column], column
        assert 0 <= float(b["accuracy"]) <= 1
    configs = {
        precision: [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]
        for precision, out in folders.items()
    }
    assert all(c["precision"] == "bf16" for c in configs["bf16"])
    assert not any("precision" in c for c in configs["fp32"])  # fp32 ids are the old ones
    code, stdout, _ = run_cli(capsys, *QUICK, "--precision", "bf16", "--dry-run")
    assert code == 0 and "omniglot-smoke-bf16" in stdout  # its own default folder
