"""The last round is evaluated on the whole test set, the curve on a fixed subset of it; the
final details carry the subset's accuracy at the same iterate, so the plateau check compares
like with like. It must be exactly what an intermediate evaluation would report there."""

import json

import pytest
import torch

from rabo_bench.engine.suite import load_suite
from rabo_bench.problems.registry import make_problem


@pytest.mark.parametrize("suite_name", ["omniglot", "cifar-lt"])
def test_final_details_hold_the_curve_subsets_accuracy(root, suite_name):
    setting = load_suite(suite_name, "smoke").variants()[0]
    problem = make_problem(setting.problem, setting.problem_params)
    x, y = problem.init_params(torch.Generator().manual_seed(0))
    final, curve = problem.evaluate_final(x, y), problem.evaluate(x, y)
    assert json.loads(final["details"])["curve_accuracy"] == curve["accuracy"]
    assert "curve_accuracy" not in json.loads(curve["details"])
