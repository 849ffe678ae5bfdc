"""The Q-sweep fit with an error floor (rabo_bench.theory.floor) on data drawn from known laws:
y = c Q^a + b with log-normal scatter, the rate suite's Q grid and replicates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rabo_bench.theory.floor import fit_with_floor, floor_table

Q_GRID = np.array([16, 32, 64, 128, 256, 512])


def draw(c: float, a: float, b: float, seeds: int, scatter: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    q = np.repeat(Q_GRID, seeds).astype(float)
    return q, (c * q**a + b) * np.exp(scatter * rng.standard_normal(len(q)))


def fitted(floor: float, seed: int):
    """Both fits of y = 2 Q^-0.5 + floor, 10 runs per Q, 3% log-normal scatter."""
    return fit_with_floor(*draw(c=2.0, a=-0.5, b=floor, seeds=10, scatter=0.03, seed=seed))


@pytest.mark.parametrize("seed", range(3))
def test_a_floor_in_the_data_is_found_with_its_exponent(seed):
    fit = fitted(0.05, seed)
    assert fit.preferred == "with floor"
    assert fit.exponent_ci[0] <= -0.5 <= fit.exponent_ci[1]
    assert fit.floor_ci[0] <= 0.05 <= fit.floor_ci[1] and fit.floor_ci[0] > 0
    # the pure power law, forced through the floor, flattens: a biased exponent
    assert fit.power_exponent > fit.exponent_ci[1]


@pytest.mark.parametrize("seed", range(3))
def test_without_a_floor_the_power_law_suffices_and_the_floor_interval_starts_at_zero(seed):
    fit = fitted(0.0, seed)
    assert fit.preferred == "power law"
    assert fit.power_exponent_ci[0] <= -0.5 <= fit.power_exponent_ci[1]
    assert fit.floor_ci[0] == 0.0 and fit.floor_ci[1] < 2.0 * 512**-0.5


def test_the_table_reads_the_q_sweep_of_each_algorithm_once():
    q, y = draw(c=2.0, a=-0.5, b=0.05, seeds=3, scatter=0.03)
    rows = pd.DataFrame({"algorithm": "rabo", "sweep": "Q", "Q": q, "seed": np.tile(range(3), 6)})
    rows["avg_grad_norm_sq"] = y
    other = rows.assign(sweep="coverage")  # another sweep's runs are not the Q sweep's
    table = floor_table(pd.concat([rows, other.assign(avg_grad_norm_sq=1.0)]))
    assert list(table["algorithm"]) == ["rabo"] and int(table["n"].iloc[0]) == 18


def test_too_few_points_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 4 runs at 3 or more values of Q"):
        fit_with_floor(np.array([16.0, 32.0, 16.0, 32.0]), np.ones(4))
