"""One global round of the Omniglot ``smoke`` setting (5-way 1-shot, Conv4 of width 4, one
episode per batch, 10 clients with capacities 1..1/16; suites/omniglot.toml) for RABO and
RAFBO with the preset's overrides, on the sequential simulator: clients train physically narrow
CNNs of different widths, which do not stack (the vectorised simulator refuses this problem).
FLOPs are counted on one untimed round (convolutions and matmuls, float32). Needs the
Omniglot data (RABO_BENCH_DATA)."""

from __future__ import annotations

import pytest

from rabo_bench.engine.suite import Suite, load_suite
from rabo_bench.federated.rounds import FederatedRun
from rabo_bench.problems.registry import make_problem
from tests.benchmarks.flops import count_flops, record


@pytest.fixture(scope="module")
def setting(root) -> Suite:
    """The first setting (5w1s) of the smoke preset; ``root`` skips the module without data."""
    return load_suite("omniglot", "smoke").variants()[0]


@pytest.mark.parametrize("algorithm", ["rabo", "rafbo"])
def test_cnn_round(benchmark, peak, setting, algorithm):
    problem = make_problem(setting.problem, setting.problem_params)
    run = FederatedRun(
        problem, setting.algorithm(algorithm), setting.capacities, "bench", clients="sequential"
    )
    flops = count_flops(run.step)
    benchmark.group = f"cnn round omniglot smoke {setting.setting}"
    benchmark.extra_info.update(algorithm=algorithm, setting=setting.setting)
    benchmark.pedantic(run.step, rounds=10, warmup_rounds=1)
    record(benchmark, flops, problem.dtype, peak)
