"""The rate-measurement suite's grid, step-size rule and outputs (smoke preset)."""

from __future__ import annotations

import math
import shutil

import pytest
import torch

from rabo_bench.engine.suite import SUITES_DIR, load_suite
from rabo_bench.federated.policies import FixedSegments
from rabo_bench.hypergrad import make_estimator
from rabo_bench.theory.rates import RateGrid, execute_rates, rate_runs


@pytest.fixture(scope="module")
def smoke_rates(tmp_path_factory):
    out = tmp_path_factory.mktemp("rates")
    suite = load_suite("rates", "smoke")
    return suite, execute_rates(suite, out, progress=False, echo=lambda _: None), out


def test_grid_covers_each_sweep_and_reuses_the_base_runs(smoke_rates):
    _, table, out = smoke_rates
    sub_model = table[table["algorithm"] != "fedmbo"]
    assert set(sub_model["sweep"]) == {"Q", "coverage", "T"}
    assert set(table[table["algorithm"] == "fedmbo"]["sweep"]) == {"Q", "T"}
    # the base point appears in every sweep but is one run
    assert len(list((out / "runs").glob("*.csv"))) == table["run_id"].nunique()
    assert table["run_id"].nunique() < len(table)


def test_measured_coverage_and_step_sizes_follow_the_theory(smoke_rates):
    suite, table, _ = smoke_rates
    grid = RateGrid.parse(suite)
    for row in table.itertuples():
        expected_c = 10 if row.algorithm == "fedmbo" else row.coverage
        assert row.cx_star == expected_c
        assert row.alpha == pytest.approx(grid.alpha0 * math.sqrt(expected_c / row.Q))
        assert row.beta == pytest.approx(min(grid.beta_max, grid.beta_ratio * row.alpha))
        assert row.avg_grad_norm_sq > 0 and math.isfinite(row.final_grad_norm_sq)


def test_neumann_depth_grows_with_log_q_for_rabo_and_fedmbo_alike():
    """N = ceil(terms_per_log_q ln Q) reaches both series through outer.estimator.terms."""
    suite = load_suite("rates", "cpu")
    grid = RateGrid.parse(suite)
    depths = {
        (spec.algorithm.name, cell["rounds"]): spec.algorithm.outer.estimator.terms
        for _, cell, spec in rate_runs(suite, grid)
        if spec.algorithm.name in ("rabo", "fedmbo")
    }
    assert {(name, q) for name, q in depths} == {
        (name, q) for name in ("rabo", "fedmbo") for q in grid.sweeps["rounds"]
    }
    assert all(n == grid.neumann_terms(q) for (_, q), n in depths.items())
    assert depths[("fedmbo", 16)] == 6 and depths[("fedmbo", 512)] == 13


def test_fixed_segments_give_the_requested_minimum_coverage():
    x, y = {"x": torch.zeros(7)}, {"y": torch.zeros(3)}
    for coverage in range(1, 6):
        masks = FixedSegments(coverage).assign(x, y, [0.5] * 10, 0, torch.Generator())
        counts = sum(m.x.dense()["x"].long() for m in masks)
        assert int(counts.min()) == coverage and int(counts.max()) == 10 - coverage
        assert all(m.y.numel() == 3 for m in masks)
    with pytest.raises(ValueError, match="coverage must be in"):
        FixedSegments(6).assign(x, y, [0.5] * 10, 0, torch.Generator())


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            "coverage = 5",
            "coverage = 6",
        ),
        ("alpha0 = 0.5", "alpha0 = -1"),
        ("steps = 2 ", "steps = 0 "),
    ],
)
def test_bad_rate_tables_are_one_line_errors(tmp_path, edit, message):
    text = (SUITES_DIR / "rates.toml").read_text()
    assert edit in text
    path = tmp_path / "rates.toml"
    path.write_text(text.replace(edit, message, 1))
    with pytest.raises(ValueError, match=r"rates\.") as err:
        RateGrid.parse(load_suite(str(path)))
    assert "\n" not in str(err.value)


def test_rate_suite_is_listed_with_its_presets(tmp_path):
    shutil.copy(SUITES_DIR / "rates.toml", tmp_path / "copy.toml")
    suite = load_suite(str(tmp_path / "copy.toml"), "cpu")
    assert suite.rates and set(suite.presets) == {"smoke", "cpu", "coupled", "field"}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("itd", {"steps": 4, "lr": 0.2}),
        ("coordinate_fd", {"steps": 4, "lr": 0.2}),
        ("gaussian_zo", {"steps": 4, "lr": 0.2}),
        ("neumann", {"terms": 7}),
        ("sampled_neumann", {"terms": 7}),
        ("cg", {}),
        ("exact", {}),
    ],
)
def test_estimators_say_which_grid_settings_they_take(name, expected):
    """The grid's T and beta go to estimators that unroll inner steps, its depth N to series
    solves (the parts declare it; the rate suite does not guess from field names)."""
    estimator = make_estimator(name)
    assert estimator.theory_settings(4, 0.2, 7) == expected
    assert estimator.theory_settings(4, 0.2, None) == {
        k: v for k, v in expected.items() if k != "terms"
    }
