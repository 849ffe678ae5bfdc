"""The problem registry: problems register themselves, and retired settings stay in a run's
identity (its id and random streams) without being settings any more."""

from __future__ import annotations

import pytest

from rabo_bench.problems.registry import (
    identity_params,
    make_problem,
    problems,
    resolved_params,
    saved_params,
)


def test_every_shipped_problem_is_discovered():
    assert {"quadratic", "logistic", "omniglot", "cifar_lt"} <= set(problems())


def test_retired_settings_are_in_the_identity_but_not_settings():
    resolved = resolved_params("omniglot", {"ways": 5})
    assert "maml_steps" not in resolved
    identity = identity_params("omniglot", resolved, reads_losses=True)
    assert identity["maml_steps"] == 5 and identity["maml_lr"] == 0.1
    assert saved_params({"name": "omniglot", **identity}) == resolved


def test_saved_params_of_a_synthetic_run_build_its_problem():
    resolved = resolved_params("quadratic", {"dim_x": 3, "dim_y": 3, "num_clients": 2})
    problem = make_problem("quadratic", saved_params({"name": "quadratic", **resolved}))
    assert problem.num_clients == 2


def test_an_unknown_saved_problem_keeps_its_keys_and_fails_by_name():
    params = saved_params({"name": "nope", "a": 1})
    assert params == {"a": 1}
    with pytest.raises(ValueError, match="'nope' is not a problem"):
        make_problem("nope", params)
