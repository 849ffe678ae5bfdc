"""Shared by the round benchmarks: a suite's problem scaled to N clients, and one timed round.

A round advances the run's state, so every timed call is a further round of one run; the
rounds of a synthetic run all cost the same (fixed shapes, fixed step counts).
"""

from __future__ import annotations

from collections.abc import Sequence

from rabo_bench.engine.suite import Suite
from rabo_bench.problems import BilevelProblem
from rabo_bench.problems.registry import make_problem


def scaled(suite: Suite, clients: int) -> tuple[BilevelProblem, tuple[float, ...]]:
    """The suite's problem with ``clients`` clients and its capacity pattern repeated."""
    problem = make_problem(suite.problem, {**suite.problem_params, "num_clients": clients})
    return problem, repeat(suite.capacities, clients)


def repeat(pattern: Sequence[float], clients: int) -> tuple[float, ...]:
    return tuple(pattern[i % len(pattern)] for i in range(clients))
