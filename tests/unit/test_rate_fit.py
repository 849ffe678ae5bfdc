"""Rate fits (SPEC §4): the power-law fitter, the exponent tables, the report and ``fit-rate``.

Data are generated as y = c * Q^a * C^b * T^e * exp(noise) with a seeded numpy Generator, in the
real design's one-factor sweeps around a base point and as a full factorial.

That 95% intervals hold the true exponent 95% of the time is checked over 300 fits. A test that
checks k intervals at once uses Bonferroni levels 1 - FAMILY / k, so by chance it fails with
probability <= FAMILY for any generator seed (the seeds are not chosen to pass).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from rabo_bench.cli import main
from rabo_bench.hypergrad.compare import Setting
from rabo_bench.theory.fit import (
    PREDICTED,
    RATE_COLUMNS,
    TABLE_COLUMNS,
    exponent_table,
    fit_power_law,
    per_sweep_table,
    to_markdown,
    to_text,
)
from rabo_bench.theory.pareto import estimator_pareto, pareto_flags
from tests.cli import run_cli

BASE = {"Q": 64, "coverage": 3, "T": 2}
LEVELS = {"Q": [16, 32, 64, 128, 256, 512], "coverage": [1, 2, 3, 4, 5], "T": [1, 2, 5, 10]}
# true exponents (Q, C_x*, T); fedmbo's C_x* is 10 whatever the target coverage
TRUE = {"rabo": (-0.5, -0.5, 0.0), "rafbo": (-0.4, -0.6, -0.2), "fedmbo": (-0.5, 0.0, 0.0)}
FAMILY = 0.01


def power_law(rng, q, c, t, exponents, noise):
    a, b, e = exponents
    return 2.0 * q**a * c**b * t**e * np.exp(noise * rng.standard_normal())


def sweep_rates(
    seeds: int = 5, noise: float = 0.1, rng_seed: int = 0, fedmbo_coverage: bool = False
) -> pd.DataFrame:
    """rates.csv rows of the one-factor design, as ``theory.rates`` writes them (with run_id).

    The base point is one run listed in each sweep. FedMBO (C_x* = 10 always) skips the coverage
    sweep, or with ``fedmbo_coverage`` is listed at each target with identical results.
    """
    rng = np.random.default_rng(rng_seed)
    cache, rows = {}, []
    for algorithm, exponents in TRUE.items():
        for sweep, levels in LEVELS.items():
            full = algorithm == "fedmbo"
            if full and sweep == "coverage" and not fedmbo_coverage:
                continue
            for level, seed in itertools.product(levels, range(seeds)):
                point = {**BASE, sweep: level}
                cx = 10 if full else point["coverage"]
                key = (algorithm, seed, point["Q"], cx, point["T"])
                if key not in cache:
                    cache[key] = power_law(rng, point["Q"], cx, point["T"], exponents, noise)
                y = cache[key]
                rows.append(
                    {"algorithm": algorithm, "seed": seed, "sweep": sweep, **point, "cx_star": cx,
                     "alpha": 0.1 * np.sqrt(cx / point["Q"]), "beta": 0.2,
                     "avg_grad_norm_sq": y, "final_grad_norm_sq": y / 2,
                     "run_id": "-".join(map(str, key))}
                )  # fmt: skip
                if full and sweep != "coverage":
                    rows[-1]["coverage"] = cx
    return pd.DataFrame(rows, columns=[*RATE_COLUMNS, "run_id"])


def factorial(seeds: int, noise: float, rng) -> pd.DataFrame:
    grid = itertools.product(LEVELS["Q"], LEVELS["coverage"], LEVELS["T"], range(seeds))
    rows = [
        {"Q": q, "C": c, "T": t, "y": power_law(rng, q, c, t, TRUE["rafbo"], noise)}
        for q, c, t, _ in grid
    ]
    return pd.DataFrame(rows)


def test_factorial_fit_recovers_exponents_and_intercept():
    data = factorial(2, 0.2, np.random.default_rng(1))
    fit = fit_power_law(data, "y", ["Q", "C", "T"], level=1 - FAMILY / 3)
    assert fit.factors == ("Q", "C", "T") and fit.constant == {}
    assert fit.n == 6 * 5 * 4 * 2 and fit.dof == fit.n - 4 and fit.n_dropped == 0
    for name, true in zip(fit.factors, TRUE["rafbo"], strict=True):
        low, high = fit.ci[name]
        assert low < true < high
        t_quantile = stats.t.ppf(1 - FAMILY / 6, fit.dof)
        assert high - low == pytest.approx(2 * t_quantile * fit.std_errors[name], rel=1e-12)
    assert abs(fit.intercept - np.log(2.0)) < 0.15
    assert fit.resid_sd == pytest.approx(0.2, rel=0.15)
    assert fit.r2 > 0.9 and fit.shapiro_p > 0.01 and fit.max_abs_std_resid < 4


def test_intervals_cover_at_their_level_and_shrink_with_data():
    rng = np.random.default_rng(2)
    hits = [fit_power_law(factorial(1, 0.3, rng), "y", ["Q", "C", "T"]).ci["C"] for _ in range(300)]
    coverage = np.mean([low < TRUE["rafbo"][1] < high for low, high in hits])
    assert 0.91 <= coverage <= 0.99  # 95% +- 3 binomial standard deviations for 300 fits
    small, large = (fit_power_law(factorial(k, 0.3, rng), "y", ["Q"]).ci["Q"] for k in (2, 16))
    # width ~ 1/sqrt(n): 8x the data, about 2.8x narrower
    assert (large[1] - large[0]) < (small[1] - small[0]) / 2


def test_one_factor_sweeps_recover_every_exponent():
    rates = sweep_rates(seeds=5)
    table = per_sweep_table(rates, level=1 - FAMILY / 8)  # 8 fitted exponents
    assert list(table.columns) == TABLE_COLUMNS
    fitted = [(a, f) for a in TRUE for f in LEVELS if (a, f) != ("fedmbo", "coverage")]
    assert list(zip(table["algorithm"], table["factor"], strict=True)) == fitted
    for (algorithm, factor), row in table.set_index(["algorithm", "factor"]).iterrows():
        true = TRUE[algorithm][list(LEVELS).index(factor)]
        assert row["ci_low"] < true < row["ci_high"], (algorithm, factor)
        assert row["n"] == 5 * len(LEVELS[factor])
        assert row["theory in CI"] == (row["ci_low"] <= PREDICTED[factor] <= row["ci_high"])
    rafbo_t = table[(table["algorithm"] == "rafbo") & (table["factor"] == "T")].iloc[0]
    assert not rafbo_t["theory in CI"] and not rafbo_t["design card in CI"]  # true -0.2


def test_identical_runs_at_several_coverage_targets_count_once():
    table = per_sweep_table(sweep_rates(seeds=5, fedmbo_coverage=True))
    row = table[(table["algorithm"] == "fedmbo") & (table["factor"] == "coverage")].iloc[0]
    assert np.isnan(row["exponent"]) and pd.isna(row["theory in CI"])
    assert row["note"] == "not varied (cx_star = 10)"
    assert row["n"] == 5  # one base run per seed, listed at 5 targets


def test_joint_table_counts_the_base_point_once():
    rates = sweep_rates(seeds=3)
    table = exponent_table(rates, level=1 - FAMILY / 3)
    assert list(table.columns) == TABLE_COLUMNS
    rabo = table[table["algorithm"] == "rabo"].set_index("factor")
    distinct_points = sum(map(len, LEVELS.values())) - 2  # the base point is in all 3 sweeps
    assert (rabo["n"] == 3 * distinct_points).all()
    for factor, true in zip(LEVELS, TRUE["rabo"], strict=True):
        assert rabo.loc[factor, "ci_low"] < true < rabo.loc[factor, "ci_high"]
    fedmbo = table[table["algorithm"] == "fedmbo"].set_index("factor")
    assert np.isnan(fedmbo.loc["coverage", "exponent"])
    assert fedmbo.loc["coverage", "note"] == "not varied (cx_star = 10)"
    assert np.isfinite(fedmbo.loc[["Q", "T"], "exponent"]).all()
    assert (fedmbo["n"] == 3 * (len(LEVELS["Q"]) + len(LEVELS["T"]) - 1)).all()


def test_non_varying_factor_is_left_out():
    data = pd.DataFrame({"Q": [16, 32, 64, 128], "C": [10] * 4, "y": [1.0, 0.7, 0.5, 0.36]})
    fit = fit_power_law(data, "y", ["Q", "C"])
    assert fit.factors == ("Q",) and fit.constant == {"C": 10.0}
    assert set(fit.exponents) == {"Q"} and fit.exponents["Q"] == pytest.approx(-0.5, abs=0.02)


def test_non_positive_and_non_finite_responses_are_dropped_and_counted():
    rates = sweep_rates(seeds=2)
    rabo_q = (rates["algorithm"] == "rabo") & (rates["sweep"] == "Q")
    bad = rates.index[rabo_q][:4]
    rates.loc[bad, "avg_grad_norm_sq"] = [0.0, -1.0, np.nan, np.inf]
    fit = fit_power_law(rates[rabo_q], "avg_grad_norm_sq", ["Q"])
    assert fit.n_dropped == 4 and fit.n == rabo_q.sum() - 4
    row = per_sweep_table(rates).query("algorithm == 'rabo' and factor == 'Q'").iloc[0]
    assert row["note"] == "4 row(s) with non-positive response dropped"
    rates.loc[rates["algorithm"] == "rafbo", "avg_grad_norm_sq"] = 0.0
    with pytest.raises(ValueError, match=r"^rafbo, sweep Q: no row with a positive finite"):
        per_sweep_table(rates)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (pd.DataFrame({"Q": [1, 2]}), "missing column"),
        (pd.DataFrame({"Q": [1, 2], "y": [0.0, -1.0]}), "no row with a positive"),
        (pd.DataFrame({"Q": [0, 2], "y": [1.0, 2.0]}), "positive finite values"),
        (pd.DataFrame({"Q": [1, 2, 4], "C": [2, 4, 8], "y": [1.0, 2.0, 3.0]}), "collinear"),
    ],
)
def test_fit_errors(data, message):
    with pytest.raises(ValueError, match=message):
        fit_power_law(data, "y", [c for c in ("Q", "C") if c in data])


def test_no_residual_degrees_of_freedom_gives_nan_intervals():
    fit = fit_power_law(pd.DataFrame({"Q": [16, 64], "y": [1.0, 0.5]}), "y", ["Q"])
    assert fit.exponents["Q"] == pytest.approx(-0.5)
    assert fit.dof == 0 and all(np.isnan(fit.ci["Q"])) and np.isnan(fit.shapiro_p)


def test_markdown_and_text_tables():
    table = exponent_table(sweep_rates(seeds=3))
    markdown = to_markdown(table).splitlines()
    assert len(markdown) == 2 + len(table)
    assert markdown[0].startswith("| algorithm | factor")
    assert set(markdown[1]) <= set("|-: ")
    assert all(line.count("|") == len(TABLE_COLUMNS) + 1 for line in markdown)
    text = to_text(table).splitlines()
    assert len(text) == 2 + len(table) and set(text[1]) <= set("- ")
    assert "not varied (cx_star = 10)" in to_text(table)
    assert "yes" in to_text(table) and "nan" not in to_text(table).lower()


PARETO_SETTINGS = [
    Setting("cg", {"iterations": 10}),  # converges in <= 4 iterations at d = 4: cheap and exact
    Setting("cg", {"iterations": 1}),
    Setting("neumann", {"terms": 20, "eta": 0.5}),  # more calls and less accurate than cg
]


def test_pareto_flags_mark_dominated_points():
    cost, error = [1, 2, 2, 3, 3], [0.5, 0.1, 0.2, 0.1, 0.01]
    assert pareto_flags(cost, error).tolist() == [True, True, False, False, True]
    assert pareto_flags([1, 1], [0.1, 0.1]).tolist() == [True, True]  # ties dominate nothing


def test_estimator_pareto_tiny_run():
    table = estimator_pareto([4], seed=0, settings=lambda dim, step: PARETO_SETTINGS)
    expected = ["dim", "estimator", "setting", "start", "rel_error"]
    expected += ["grad_f", "grad_g", "hvp", "jvp", "total", "wall_ms", "pareto"]
    assert list(table.columns) == expected
    assert (table["dim"] == 4).all() and table["pareto"].dtype == bool
    assert table["pareto"].tolist() == [True, True, False]


@pytest.fixture(scope="module")
def fit_rate_run(tmp_path_factory) -> tuple[Path, int]:
    """``rabo-bench fit-rate`` on synthetic rates.csv and pareto.csv: (folder, exit code)."""
    results = tmp_path_factory.mktemp("rates")
    sweep_rates(seeds=3).to_csv(results / "rates.csv", index=False)
    pareto = pd.DataFrame(
        {"dim": [4] * 3 + [8] * 3, "estimator": ["cg", "neumann", "itd"] * 2,
         "setting": ["iterations=5", "terms=5", "steps=5"] * 2, "rel_error": [1e-6, 1e-2, 0.0] * 2,
         "total": [7, 6, 16] * 2, "wall_ms": [1.0, 2.0, 3.0] * 2}
    )  # fmt: skip
    pareto.assign(pareto=True).to_csv(results / "pareto.csv", index=False)
    return results, main(["fit-rate", str(results)])


def test_fit_rate_writes_tables_and_plots(fit_rate_run):
    results, code = fit_rate_run
    assert code == 0
    markdown = (results / "exponents.md").read_text()
    assert "Headline: per-sweep" in markdown and "| rabo      | Q" in markdown
    assert "## The Q sweep with an error floor" in markdown and "| rabo | " in markdown
    csv = pd.read_csv(results / "exponents.csv")
    assert set(csv["fit"]) == {"per-sweep", "joint"} and list(csv.columns[1:]) == TABLE_COLUMNS
    stems = ["rate_Q", "rate_coverage", "rate_T", "coverage_bars", "pareto_oracle", "pareto_wall"]
    for stem in stems:
        for suffix in (".png", ".pdf"):
            path = results / "plots" / f"{stem}{suffix}"
            assert path.is_file() and path.stat().st_size > 1000, path
        assert f"plots/{stem}.png" in markdown


def test_fit_rate_prints_the_tables(tmp_path, capsys):
    sweep_rates(seeds=2).to_csv(tmp_path / "rates.csv", index=False)
    code, out, err = run_cli(capsys, "fit-rate", str(tmp_path))
    assert code == 0 and err == ""
    assert out.startswith("Per-sweep fits (headline), 95% CI:") and "Joint fit:" in out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "rates.csv: no such file"),
        ("algorithm,seed,Q\nrabo,0,16\n", "missing column(s) sweep, coverage, T, cx_star, alpha"),
        (",".join(RATE_COLUMNS) + "\n", "rates.csv: no rows"),
    ],
)
def test_fit_rate_errors_are_one_line(tmp_path, capsys, content, message):
    if content is not None:
        (tmp_path / "rates.csv").write_text(content)
    code, out, err = run_cli(capsys, "fit-rate", str(tmp_path))
    assert code == 2 and out == ""
    assert err.startswith("rabo-bench: error: ") and err.count("\n") == 1
    assert message in err
