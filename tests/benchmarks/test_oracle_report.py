"""The report's oracle-overhead table (harness / reference per estimator and d); runs in CI."""

from __future__ import annotations

import json

from rabo_bench.report.performance import write
from tests.benchmarks.test_report import _bench, _run


def _overhead(harness: float, reference: float, ratio: float, estimator: str, dim: int) -> dict:
    info = {"harness_s": harness, "reference_s": reference, "ratio": ratio}
    return _bench("test_oracle_overhead", harness + reference, estimator=estimator, dim=dim, **info)


def test_overhead_table_and_verdict(tmp_path):
    bench = _run(
        tmp_path / "cpu.json",
        [
            _overhead(0.012, 0.010, 1.21, "neumann", 100),
            _overhead(2.0, 2.0, 1.0, "neumann", 10000),
            _overhead(0.011, 0.012, 0.95, "cg", 100),
        ],
    )
    write(bench, tmp_path / "out", None, wall=None, command="make bench")
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "| neumann | 12 ms / 10 ms: 1.21 | 2 s / 2 s: 1.00 |" in readme
    assert "| cg | 11 ms / 12 ms: 0.95 | — |" in readme
    assert "Target harness / reference <= 1.1: missed at neumann d=100." in readme


def test_no_overhead_section_without_its_benchmarks(tmp_path):
    bench = _run(tmp_path / "cpu.json", [_bench("test_estimator", 0.01, estimator="cg", dim=100)])
    write(bench, tmp_path / "out", None, wall=None, command="make bench")
    assert "Oracle overhead" not in (tmp_path / "out" / "README.md").read_text()


def test_a_rerun_of_one_test_replaces_its_benchmarks_and_is_named_in_the_provenance(tmp_path):
    base = _run(
        tmp_path / "cpu.json",
        [
            _overhead(0.012, 0.010, 1.21, "neumann", 100),
            _bench("test_estimator", 0.01, estimator="cg", dim=100),
        ],
    )
    out = tmp_path / "out"
    write(base, out, None, wall=600.0, command="make bench")
    for ratio, commit in ((1.05, "def456"), (1.04, "0a1b2c")):
        part = _run(
            tmp_path / f"{commit}.json",
            [_overhead(0.0105, 0.010, ratio, "neumann", 100)],
            pytest_args=["tests/benchmarks/test_oracle_speed.py"],
        )
        data = json.loads(part.read_text())
        data["commit_info"]["id"] = commit
        part.write_text(json.dumps(data))
        write(out / "benchmark.json", out, None, wall=None, command="make bench", update=part)

    merged = json.loads((out / "benchmark.json").read_text())
    overheads = [b for b in merged["benchmarks"] if b["name"].startswith("test_oracle_overhead")]
    assert [b["extra_info"]["ratio"] for b in overheads] == [1.04]
    assert len(merged["benchmarks"]) == 2  # the estimator benchmark is kept
    assert [u["commit_info"]["id"] for u in merged["updates"]] == ["def456", "0a1b2c"]
    assert "| neumann | 10.5 ms / 10 ms: 1.04 |" in (out / "README.md").read_text()
    provenance = (out / "PROVENANCE.md").read_text()
    assert "* git commit: abc123" in provenance and "10.0 min" in provenance
    assert provenance.count("## Re-run of `test_oracle_overhead`") == 2
    assert "* command: `pytest tests/benchmarks/test_oracle_speed.py`" in provenance
    assert "* git commit: 0a1b2c" in provenance
