"""The FLOP-counting rule the benchmarks rely on (tests/benchmarks/flops.py); runs in CI."""

from __future__ import annotations

import pytest
import torch

from rabo_bench.engine.suite import load_suite
from rabo_bench.federated.rounds import FederatedRun
from tests.benchmarks.flops import count_flops
from tests.benchmarks.rounds import scaled


def test_vector_kernels_count_like_their_batched_form():
    a = torch.randn(5, 7, 3, dtype=torch.float64)
    v = torch.randn(5, 3, dtype=torch.float64)
    looped = count_flops(lambda: [a[k] @ v[k] for k in range(5)])
    assert looped == 2 * 5 * 7 * 3
    assert count_flops(lambda: torch.func.vmap(torch.mv)(a, v)) == looped
    assert count_flops(lambda: v[0] @ v[1]) == 2 * 3
    assert count_flops(lambda: torch.addmv(v[0, :1].expand(7), a[0], v[0])) == 2 * 7 * 3


@pytest.mark.parametrize("algorithm", ["rabo", "rafbo"])
def test_sequential_round_flops_are_linear_in_clients(algorithm):
    """test_round_speed.py counts a sequential round at N clients as N / 10 times the
    10-client round: true because each client's counted work depends only on its capacity."""
    suite = load_suite("synthetic", "smoke")
    counts = []
    for clients in (10, 20):
        problem, capacities = scaled(suite, clients)
        run = FederatedRun(
            problem, suite.algorithm(algorithm), capacities, "bench", clients="sequential"
        )
        counts.append(count_flops(run.step))
    assert counts[0] > 0 and counts[1] == 2 * counts[0]
