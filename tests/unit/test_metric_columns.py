"""A metric a problem evaluates but the results table has no column for is an error at round 0
(before any round is computed), not a value dropped from the table without a word."""

from __future__ import annotations

import pytest

from rabo_bench.engine.results import METRICS, check_metrics
from rabo_bench.engine.run import execute_run, expand
from rabo_bench.engine.runner import ProblemCache
from rabo_bench.engine.suite import load_suite


def test_known_metrics_and_details_pass():
    check_metrics({name: 0.0 for name in METRICS} | {"details": "{}"}, "problem 'x'")


def test_an_unknown_metric_stops_the_run_before_its_first_round():
    spec = expand(load_suite("synthetic", "smoke", seeds=1, algorithm_names=["rabo"]))[0]
    problem = ProblemCache()(spec)
    evaluate = problem.evaluate
    problem.evaluate = lambda x, y: {**evaluate(x, y), "mystery": 1.0}
    rounds: list[int] = []
    with pytest.raises(ValueError, match=r"\['mystery'\] that are not result columns"):
        execute_run(spec, problem, rounds.append)
    assert rounds == []
