"""One global round of the synthetic suite (RABO, RAFBO) at N = 10 .. 10000 clients, sequential
engine vs vectorised simulator (DESIGN.md §5: the vectorised one should be 10x faster at N = 1000).

Problem and algorithm settings are the synthetic suite's (suites/synthetic.toml): the noisy
quadratic with d_x = d_y = 20, the suite's RABO/RAFBO overrides, num_clients scaled to N and the
capacity pattern {1, 1, 1/2, ..., 1/16} repeated. Each point times ``ROUNDS[N]`` further rounds
of one run after ``WARMUP[N]`` untimed ones (a sequential round at N = 10000 takes minutes).

FLOPs of a round (rule in tests/benchmarks/flops.py): the vectorised simulator's are counted on
one untimed round at N. The sequential simulator's are N / 10 times those of a sequential round of
the 10-client problem: its clients run one after another, each client's counted work depends
only on its capacity, which repeats with period 10, and the server's averaging has no counted
kernel (test_flops.py checks this linearity); counting directly would cost 5x a round, i.e.
many minutes at N = 10000.
"""

from __future__ import annotations

import resource

import pytest
import torch

from rabo_bench.engine.suite import Suite, load_suite
from rabo_bench.federated.rounds import FederatedRun
from tests.benchmarks.flops import count_flops, record
from tests.benchmarks.rounds import scaled

CLIENTS = (10, 100, 1000, 10000)
ROUNDS = {10: 10, 100: 5, 1000: 3, 10000: 1}
WARMUP = {10: 1, 100: 1, 1000: 1, 10000: 0}
RUN_KEY = "bench"


@pytest.fixture(scope="module")
def suite() -> Suite:
    return load_suite("synthetic")


@pytest.fixture(scope="module", params=CLIENTS, ids=lambda n: f"N={n}")
def instance(request, suite):
    """(N, problem, capacities); module scope with N as the parameter, so pytest builds each
    size once and drops it before the next (the N = 10000 problem holds about 2 GB)."""
    return request.param, *scaled(suite, request.param)


def sequential_round_flops(suite: Suite, algorithm: str, clients: int) -> int:
    period = len(suite.capacities)
    problem, capacities = scaled(suite, period)
    run = FederatedRun(
        problem, suite.algorithm(algorithm), capacities, RUN_KEY, clients="sequential"
    )
    return count_flops(run.step) * clients // period


@pytest.mark.parametrize("engine", ["sequential", "vectorised"])
@pytest.mark.parametrize("algorithm", ["rabo", "rafbo"])
def test_round(benchmark, peak, suite, instance, algorithm, engine):
    clients, problem, capacities = instance
    run = FederatedRun(problem, suite.algorithm(algorithm), capacities, RUN_KEY, clients=engine)
    if engine == "sequential":
        flops = sequential_round_flops(suite, algorithm, clients)
    else:
        flops = count_flops(run.step)
    benchmark.group = f"round N={clients}"
    benchmark.extra_info.update(clients=clients, algorithm=algorithm, engine=engine)
    benchmark.pedantic(run.step, rounds=ROUNDS[clients], warmup_rounds=WARMUP[clients])
    record(benchmark, flops, problem.dtype, peak)
    # the process's peak resident memory so far (Linux: KiB): bounds this point's footprint
    benchmark.extra_info["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    x, y = run.params
    assert all(torch.isfinite(t).all() for t in (*x.values(), *y.values()))
