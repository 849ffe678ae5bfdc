"""The report writer on a hand-made pytest-benchmark JSON (CPU run plus a GPU run); runs in CI."""

from __future__ import annotations

import json
from pathlib import Path

from rabo_bench.report.performance import write

PEAK = {"dtype": "float64", "matmul_flop_per_s": 1e10, "matmul_size": 2048, "threads": 2}


def _bench(test: str, median: float, **info) -> dict:
    extra = {**PEAK, "device": "cpu", "flops": 1e9, "flop_fraction": 0.05, **info}
    return {"name": f"{test}[x]", "stats": {"median": median, "rounds": 3}, "extra_info": extra}


def _run(path: Path, benchmarks: list[dict], **machine) -> Path:
    data = {
        "machine_info": {"cpu_model": "Test CPU", "logical_cores": 2, "ram_gib": 8.0, **machine},
        "commit_info": {"id": "abc123", "dirty": False},
        "datetime": "2026-01-01T00:00:00",
        "benchmarks": benchmarks,
    }
    path.write_text(json.dumps(data))
    return path


def _round(median: float, clients: int, engine: str) -> dict:
    return _bench("test_round", median, clients=clients, algorithm="rabo", engine=engine)


def _seed_batch(median: float, mode: str) -> dict:
    """A seed-batch point: no FLOP fraction, so no matmul reference in its extra_info."""
    info = {"seeds": 50, "rounds": 4, "algorithm": "rabo", "mode": mode, "threads": 2}
    return {
        "name": "test_seed_batch[x]",
        "stats": {"median": median, "rounds": 1},
        "extra_info": info,
    }


def test_report_tables_speedup_refusal_and_gpu(tmp_path):
    cpu = _run(
        tmp_path / "cpu.json",
        [
            _round(20.0, 1000, "sequential"),
            _round(1.0, 1000, "vectorised"),
            *(_seed_batch(t, mode) for t, mode in ((80.0, "sequential"), (5.0, "batched"))),
            _bench("test_estimator", 0.01, estimator="exact", dim=100),
            _bench("test_estimator", 0.02, estimator="cg", dim=10000),
        ],
    )
    gpu = _run(tmp_path / "gpu.json", [_round(0.1, 1000, "vectorised")], gpu="Fake GPU 80GB")
    write(cpu, tmp_path / "out", gpu, wall=120.0, command="make bench")

    readme = (tmp_path / "out" / "README.md").read_text()
    assert "| 1000 | rabo | 20 s | 1 s | 20.0x | 5 % | 5 % | 3 / 3 |" in readme
    assert "(target >= 10x): rabo: 20.0x." in readme
    assert "| sequential | 80 s | 400 ms |\n| batched | 5 s | 25 ms |" in readme
    assert "Batched-seed speed-up at S = 50 (target >= 10x): 16.0x." in readme
    assert "| exact | 10 ms | 5 % | refuses d > 2000 | — |" in readme
    assert "Not run (no Omniglot data" in readme
    assert "## CPU vs GPU (Fake GPU 80GB)" in readme
    assert "| 1000 | rabo | vectorised | 1 s | 100 ms | 10.0x |" in readme
    provenance = (tmp_path / "out" / "PROVENANCE.md").read_text()
    assert "abc123" in provenance and "2.0 min" in provenance and "GPU: Fake GPU 80GB" in provenance
    assert (tmp_path / "out" / "benchmark-gpu.json").is_file()
    # a refresh of the CPU run beside the GPU run already in the folder (the committed one)
    write(cpu, tmp_path / "out", tmp_path / "out" / "benchmark-gpu.json", 60.0, "make bench")
    assert "## CPU vs GPU (Fake GPU 80GB)" in (tmp_path / "out" / "README.md").read_text()


def _fewshot(size: str, algorithm: str, ours: float, reference: float) -> dict:
    kind = "bilevel" if algorithm == "rabo" else "single_level"
    info = {"size": size, "algorithm": algorithm, "reference_kind": kind, "best_s": ours}
    info.update(reference_s=reference, ratio=ours / reference, reference_flops=2e9)
    info.update(reference_flop_fraction=0.1, reference_config="--net=conv4 --shots=5")
    return _bench("test_fewshot_round", ours, **info)


def test_fewshot_round_next_to_the_reference(tmp_path):
    cpu = _run(tmp_path / "cpu.json", [_fewshot("cpu", "rabo", 0.6, 0.5)])
    gpu = _run(tmp_path / "gpu.json", [_fewshot("paper", "static", 0.9, 1.2)], gpu="Fake GPU 80GB")
    write(cpu, tmp_path / "out", gpu, None, "make bench", gpu_command="bash gpu_session.sh")
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "## CPU vs GPU" not in readme  # the GPU run timed no synthetic round
    provenance = (tmp_path / "out" / "PROVENANCE.md").read_text()
    assert "* command: `make bench`" in provenance
    assert "* command: `bash gpu_session.sh`, i.e. `pytest" in provenance
    row = "| cpu | rabo | bilevel | 600 ms | 500 ms | 1.20 | 1 | 2 | 5 % | 10 % |"
    assert "## Omniglot round vs a plain PyTorch loop (CPU)" in readme and row in readme
    assert "## Omniglot round vs a plain PyTorch loop (Fake GPU 80GB)" in readme
    assert "| paper | static | single-level | 900 ms | 1.2 s | 0.75 |" in readme
    assert "* `cpu`: `reference_round.py --net=conv4 --shots=5`" in readme
