"""The report's oracle-overhead table (harness / reference per estimator and d); runs in CI."""

from __future__ import annotations

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
