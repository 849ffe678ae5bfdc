"""Methods at equal budgets (report/budgets.py, issue 19) on results built here: the value at a
budget is the last evaluated round within it, the budgets are fractions of the smallest final
cost over the methods, and the seeds' geometric mean and its interval are those of the logs."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from scipy import stats

from rabo_bench.engine.results import COLUMNS
from rabo_bench.report.budgets import at_budget, budget_markdown, budgets, summarise


def _rows(algorithm: str, seed: int, calls_per_round: int, values: list[float]) -> list[dict]:
    return [
        {
            **dict.fromkeys(COLUMNS),
            "suite": "synthetic",
            "setting": "",
            "run_id": f"{algorithm}-{seed}",
            "algorithm": algorithm,
            "seed": seed,
            "round": q,
            "grad_norm_sq": value,
            "oracle_calls": calls_per_round * q,
            "bytes_up": 10 * q,
            "bytes_down": 10 * q,
            "status": "ok",
        }
        for q, value in enumerate(values)
    ]


@pytest.fixture
def results() -> pd.DataFrame:
    # "cheap" spends 4 calls a round, "dear" 16: after 4 rounds, 16 and 64 calls
    rows = []
    for seed, scale in enumerate((1.0, 2.0)):
        rows += _rows("cheap", seed, 4, [scale * v for v in (8.0, 4.0, 2.0, 1.0, 0.5)])
        rows += _rows("dear", seed, 16, [scale * v for v in (8.0, 2.0, 0.5, 0.125, 0.03125)])
    return pd.DataFrame(rows)


def test_budgets_are_fractions_of_the_smallest_final_cost(results):
    assert budgets(results, "oracle_calls") == [16 / 64, 16 / 16, 16 / 4, 16.0]


def test_the_value_at_a_budget_is_the_last_round_within_it(results):
    dear = results[results["algorithm"] == "dear"]
    # 16 calls: dear has done one round (16 calls), cheap four (16 calls)
    assert at_budget(dear, "grad_norm_sq", "oracle_calls", 16.0).to_dict() == {
        "dear-0": 2.0,
        "dear-1": 4.0,
    }
    cheap = results[results["algorithm"] == "cheap"]
    # 15.9 calls: round 3 (12 calls) is within, round 4 (16) is not
    assert at_budget(cheap, "grad_norm_sq", "oracle_calls", 15.9).to_dict() == {
        "cheap-0": 1.0,
        "cheap-1": 2.0,
    }


def test_the_seeds_geometric_mean_and_its_interval():
    values = pd.Series([1.0, 4.0])
    centre, low, high, n = summarise(values, log=True)
    half = stats.t.ppf(0.975, 1) * math.log(4.0) / math.sqrt(2) / math.sqrt(2)
    assert n == 2 and centre == pytest.approx(2.0)
    assert (low, high) == pytest.approx((2.0 * math.exp(-half), 2.0 * math.exp(half)))
    centre, low, high, n = summarise(pd.Series([3.0]), log=False)
    assert (centre, n) == (3.0, 1) and math.isnan(low) and math.isnan(high)


def test_the_markdown_has_a_table_per_cost(results):
    text = budget_markdown(results, "grad_norm_sq")
    assert "## At equal oracle calls" in text and "## At equal bytes" in text
    # at 16 calls (the last column): cheap's seeds 0.5 and 1.0, dear's 2.0 and 4.0
    lines = text.splitlines()
    cheap = next(row for row in lines if row.startswith("| cheap"))
    dear = next(row for row in lines if row.startswith("| dear"))
    assert cheap.split(" | ")[-1].startswith("0.7071 [")
    assert dear.split(" | ")[-1].startswith("2.828 [")
