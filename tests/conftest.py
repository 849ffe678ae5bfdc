"""Hypothesis profiles ('ci', under CI=true, is derandomised so CI runs are reproducible) and
the data-root fixture."""

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from rabo_bench.data.archives import ENV

settings.register_profile(
    "dev", deadline=None, max_examples=25, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "ci",
    deadline=None,
    max_examples=25,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(scope="session")
def root() -> Path:
    """The data root (RABO_BENCH_DATA): tests that need real data skip without it, except
    under CI=true, where missing data is a failure (make test points it at ../shared/data)."""
    value = os.environ.get(ENV, "")
    if not value or not Path(value).is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{ENV} must point at the data in CI (make test sets ../shared/data)")
        pytest.skip(f"{ENV} is not set: run through make test")
    return Path(value)
