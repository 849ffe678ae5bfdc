"""The paper reports' budget-matched curves and their new table columns, on results built here
(two seeds, no run): accuracy against rounds, counted FLOPs and bytes, one PNG and one PDF each;
the curve is the mean over the seeds at the seeds' mean x, with the Student-t band; rows without
``flops`` (older results) are left out of the FLOPs figure alone; sub-model accuracy and the
untrained share appear in the tables, "-" where the results predate them."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from rabo_bench.algorithms import available, display_name
from rabo_bench.algorithms.style import method_style
from rabo_bench.engine.results import COLUMNS
from rabo_bench.report.cifar import vs_parameter_table, write_cifar_report
from rabo_bench.report.curves import X_AXES, mean_curves, panels_of
from rabo_bench.report.omniglot import write_omniglot_report
from rabo_bench.report.runs import read_results

T_975_1 = 12.706204736174698  # Student t quantile 0.975, 1 degree of freedom (2 seeds)
FIGURES = ("curves.png", "curves_flops.png", "curves_bytes.png")


def _run_rows(suite: str, setting: str, algorithm: str, seed: int, counted: bool) -> list[dict]:
    run_id = f"{setting}-{algorithm}-{seed}"
    rows = []
    for q in range(3):
        accuracy = 0.2 + 0.1 * q + 0.01 * seed + (0.05 if algorithm == "rabo" else 0.0)
        rows.append(
            {
                **dict.fromkeys(COLUMNS),
                "suite": suite,
                "setting": setting,
                "run_id": run_id,
                "algorithm": algorithm,
                "seed": seed,
                "round": q,
                "accuracy": accuracy,
                "accuracy_ci95": 0.01,
                "submodel_accuracy": accuracy - 0.05 if q else None,
                "untrained_fraction": 0.25 if q else None,
                "oracle_calls": 10 * q,
                "params_up": 100 * q,
                "params_down": 100 * q,
                "bytes_up": 400 * q,
                "bytes_down": (400 + seed) * q,
                "flops": (1000 + 10 * seed) * q if counted else None,
                "status": "ok",
                "details": json.dumps(
                    {"head": 0.5, "tail": 0.1, "per_class": [0.3] * 10, "delta": [1.0] * 10}
                    | {"iota": [0.0] * 10}
                ),
            }
        )
    return rows


def _folder(tmp_path: Path, suite: str, settings: list[str], old_seed1: bool) -> Path:
    """A results folder of ``suite``: rabo and static, seeds 0 and 1; with ``old_seed1`` the
    static runs of seed 1 have no flops (written before the column)."""
    rows = []
    (tmp_path / "runs").mkdir()
    for setting in settings:
        for seed in (0, 1):
            for algorithm in ("rabo", "static"):
                counted = not (old_seed1 and seed == 1 and algorithm == "static")
                rows += _run_rows(suite, setting, algorithm, seed, counted)
                config = {"problem": {"name": suite}, "rounds": 2, "seed": seed}
                run_file = tmp_path / "runs" / f"{rows[-1]['run_id']}.json"
                run_file.write_text(json.dumps(config))
    pd.DataFrame(rows, columns=list(COLUMNS)).to_csv(tmp_path / "results.csv", index=False)
    return tmp_path


def _assert_figures(folder: Path, written: list[Path]) -> None:
    for name in FIGURES:
        png, pdf = folder / name, (folder / name).with_suffix(".pdf")
        assert png in written and pdf in written
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert pdf.read_bytes()[:5] == b"%PDF-"


def test_omniglot_report_writes_three_figures_and_the_submodel_column(tmp_path):
    folder = _folder(tmp_path, "omniglot", ["5w1s", "5w5s"], old_seed1=True)
    written = write_omniglot_report(folder, read_results(folder))
    _assert_figures(folder, written)
    table = (folder / "table.md").read_text()
    assert "5w1s sub-models" in table and "5w5s sub-models" in table
    # rabo's final accuracy: 45% and 46% over the seeds, its sub-models' 40% and 41%:
    # s = |a - b| / sqrt(2), CI = t s / sqrt(2) = t / 2
    assert f"| {display_name('rabo')} | 45.50 ± {T_975_1 / 2:.2f} | 40.50 ± 6.35 |" in table


def test_cifar_report_writes_three_figures_and_the_new_columns(tmp_path):
    folder = _folder(tmp_path, "cifar-lt", [""], old_seed1=False)
    written = write_cifar_report(folder, read_results(folder))
    _assert_figures(folder, written)
    table = (folder / "table.md").read_text()
    assert "| sub-models (%) | untrained |" in table
    assert f"| {display_name('static')} | 40.50 ± 6.35 | 35.50 ± 6.35 | 25.0% |" in table


def test_a_cifar_folder_of_one_baseline_reports_no_empty_sections(tmp_path):
    """A run-on folder of one sub-model baseline (FedRolex alone, say) tests no claim,
    learns no loss parameters and has no FedMBO to divide costs by; its plateau row stays."""
    folder = _folder(tmp_path, "cifar-lt", [""], old_seed1=False)
    results = read_results(folder)
    write_cifar_report(folder, results[results["algorithm"] == "static"])
    table = (folder / "table.md").read_text()
    assert "## The paper's claims" not in table and "Learned VS-loss" not in table
    assert "no FedMBO run here to divide by" in table
    assert "|  | static | 1 -> 2 † | +10.00 |" in table  # † no curve_accuracy in details


def test_old_results_without_the_new_columns_still_report(tmp_path):
    folder = _folder(tmp_path, "cifar-lt", [""], old_seed1=False)
    old = [c for c in COLUMNS if c not in ("flops", "submodel_accuracy", "untrained_fraction")]
    results = read_results(folder)[old]
    written = write_cifar_report(folder, results)
    assert folder / "curves_flops.png" not in written  # nothing counted: no FLOPs figure
    assert folder / "curves_bytes.png" in written
    assert f"| {display_name('rabo')} | 45.50 ± 6.35 | - | - |" in (folder / "table.md").read_text()


def test_the_curve_is_the_seed_mean_at_the_seeds_mean_x(tmp_path):
    results = read_results(_folder(tmp_path, "omniglot", ["5w1s"], old_seed1=True))
    flops = mean_curves(results, "flops").set_index(["algorithm", "round"])
    # static: seed 1 has no flops, so the FLOPs curve is seed 0 alone, with its test-set CI
    static = flops.loc[("static", 2)]
    assert static["x"] == 2000 and static["seeds"] == 1 and static["band"] == "test"
    assert (static["low"], static["high"]) == pytest.approx((40.0 - 1.0, 40.0 + 1.0))
    assert flops.loc[("rabo", 2), "x"] == 2010 and flops.loc[("rabo", 2), "seeds"] == 2
    rounds = mean_curves(results, "round").set_index(["algorithm", "round"])
    rabo = rounds.loc[("rabo", 2)]
    assert rabo["mean"] == pytest.approx(45.5) and rabo["band"] == "seeds"
    half = T_975_1 / 2  # s / sqrt(2) = 1/2
    assert (rabo["low"], rabo["high"]) == pytest.approx((45.5 - half, 45.5 + half))
    assert set(X_AXES) == {"round", "flops", "bytes"}


def test_every_registered_algorithm_has_its_own_fixed_colour():
    colours = {name: method_style(name).colour for name in available()}
    assert len(set(colours.values())) == len(colours)
    assert colours["rabo"] == "#1f77b4"  # tab10 blue


def test_omniglot_report_puts_rabos_longer_horizon_beside_the_base_setting(tmp_path):
    folder = _folder(tmp_path, "omniglot", ["5w1s", "5w1s-long"], old_seed1=False)
    results = read_results(folder)
    results = results[(results["setting"] == "5w1s") | (results["algorithm"] == "rabo")]
    # the longer run ends 5 (seed 0) and 7 (seed 1) points above the base run's 45 and 46
    end = (results["setting"] == "5w1s-long") & (results["round"] == 2)
    results.loc[end, "accuracy"] += results.loc[end, "seed"].map({0: 0.05, 1: 0.07})
    write_omniglot_report(folder, results)
    table = (folder / "table.md").read_text()
    assert "5w1s-long ours" not in table  # not a column of the Table II analogue
    rabo, static = display_name("rabo"), display_name("static")
    assert (
        f"- 5w1s: {rabo} at the `5w1s-long` horizon 51.50 ± {T_975_1 * 1.5:.2f} (sub-models "
        f"40.50 ± 6.35; +6.00 ± {T_975_1:.2f} over its own 2 rounds (2 seeds, paired)); at "
        f"`5w1s`'s: {rabo} 45.50, {static} 40.50"
    ) in table
    assert "| RABO at 2 rounds (5w1s-long) above static | 5w1s |" in table


def test_a_long_variant_is_drawn_in_its_base_settings_panel():
    settings = ["5w1s", "5w5s", "5w1s-long", "7w1s-long"]
    assert panels_of(settings) == {
        "5w1s": ["5w1s", "5w1s-long"],
        "5w5s": ["5w5s"],
        "7w1s-long": ["7w1s-long"],  # no base setting in the results: a panel of its own
    }
    # but not in the budget-matched panel: that setting runs RABO beside its baselines
    matched = ["5w1s", "5w1s-matched", "5w5s-matched", "5w1s-long"]
    assert panels_of(matched) == {
        "5w1s": ["5w1s", "5w1s-long"],
        "5w1s-matched": ["5w1s-matched"],
        "5w5s-matched": ["5w5s-matched"],
    }


def test_vs_parameter_table_averages_the_seeds():
    """The learned VS parameters are the means over the seeds, not one seed's values."""
    details = pd.DataFrame(
        [
            {"algorithm": "rabo", "seed": 0, "delta": [1.0, 2.0], "iota": [0.5, -0.5]},
            {"algorithm": "rabo", "seed": 1, "delta": [3.0, 4.0], "iota": [-0.1, 0.1]},
            {"algorithm": "static", "seed": 0, "delta": [1.0, 1.0], "iota": [0.0, 0.0]},
        ]
    )
    lines = vs_parameter_table(details)
    assert "means over the seeds" in lines[0]
    assert lines[4:] == [f"| {display_name('rabo')} | 2.000, 3.000 | +0.200, -0.200 |"]
