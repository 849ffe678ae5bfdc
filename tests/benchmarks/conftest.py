"""Benchmarks are not part of ``make test`` (CI): the modules that time things
(``test_*_speed.py``) are collected only when RABO_BENCH_BENCH=1, which ``make bench`` sets.
The other tests here (FLOP rule, report writer) are fast and always run."""

from __future__ import annotations

import os

import pytest

from tests.benchmarks.flops import MatmulPeak
from tests.benchmarks.machine import describe

ENABLE = "RABO_BENCH_BENCH"

if os.environ.get(ENABLE) != "1":
    collect_ignore_glob = ["test_*_speed.py"]


@pytest.fixture(scope="session")
def peak() -> MatmulPeak:
    """The dense-matmul FLOP/s of this process: the denominator of every FLOP fraction."""
    return MatmulPeak.measure()


def pytest_benchmark_update_machine_info(config, machine_info) -> None:
    """The machine (for PROVENANCE.md) and the exact pytest arguments of this run."""
    machine_info.update(describe(), pytest_args=list(config.invocation_params.args))
