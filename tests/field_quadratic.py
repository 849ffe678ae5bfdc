"""The small deterministic quadratic on which the field's methods (docs/algorithms/) are checked
against hand-written references: 3 clients, d_x = 3, d_y = 4, heterogeneous, float64; and the
loop that runs a method beside its reference."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from rabo_bench.algorithms import Algorithm, get
from rabo_bench.federated.rounds import FederatedRun
from rabo_bench.problems import QuadraticBilevel

TOL = 1e-12  # float64 round-off of a few rounds of the same arithmetic in another order


def quadratic(**changes) -> QuadraticBilevel:
    settings = dict(dim_x=3, dim_y=4, num_clients=3, noise=0.0, heterogeneity=0.5, nu=0.5, seed=1)
    return QuadraticBilevel(**{**settings, **changes})


def run_beside_reference(
    algorithm: Algorithm, reference_round: Callable, rounds: int, *carried: torch.Tensor
) -> tuple[FederatedRun, tuple[torch.Tensor, ...]]:
    """``rounds`` rounds of ``algorithm`` on :func:`quadratic` (three full-capacity clients)
    and of ``reference_round(x, y, *carried) -> (x, y, *carried)`` from the run's (x0, y0);
    checks that x and y agree to :data:`TOL` and returns the run and the reference's iterates."""
    run = FederatedRun(quadratic(), algorithm, [1.0] * 3, "reference")
    iterates = (run.params[0]["x"], run.params[1]["y"], *carried)
    for _ in range(rounds):
        run.step()
        iterates = reference_round(*iterates)
    torch.testing.assert_close(run.params[0]["x"], iterates[0], rtol=TOL, atol=TOL)
    torch.testing.assert_close(run.params[1]["y"], iterates[1], rtol=TOL, atol=TOL)
    return run, iterates


def assert_refuses_per_task(name: str, match: str) -> None:
    """Method ``name`` on :func:`quadratic` declared per-task (an inner problem per task, as the
    Omniglot problem's episode reading declares) stops its first round with a ValueError
    matching ``match``."""
    problem = quadratic()
    problem.per_task_inner = True
    run = FederatedRun(problem, get(name), [1.0] * 3, "tasks")
    with pytest.raises(ValueError, match=match):
        run.step()
