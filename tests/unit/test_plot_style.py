"""Figures a paper can take as they are (issue 17), checked on hand-made results with known
numbers: one colour per method in every figure, seed bands that stay inside the seeds' values
on a log axis and inside 0-100% for accuracy, rate plots whose fitted line goes through the
plotted points, per-class bars on exactly the classes present, titles naming the data and the
network, a legend entry for every band, and a PDF beside every PNG."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import matplotlib.colors as mcolors
import numpy as np
import pandas as pd
import pytest

from rabo_bench.algorithms import display_name
from rabo_bench.algorithms.style import FIXED, method_style
from rabo_bench.engine.results import COLUMNS
from rabo_bench.report import cifar, cost_model, runs
from rabo_bench.report.build import write_report
from rabo_bench.report.seeds import seed_bands
from rabo_bench.theory import plots
from rabo_bench.theory.fit import RATE_COLUMNS, per_sweep_table

CIFAR = {"name": "cifar_lt", "network": "resnet8", "width": 16, "ratio": 100.0}
METHODS = ("rabo", "fedavg", "static")
# seed -> final-round accuracy of every method, and ||grad F||^2 at every round: on a log axis
# 0.01, 1 and 100 have geometric mean 1, and a mean of 33.67 with a t interval reaching -110
SEED_ACCURACY = {0: 0.0, 1: 0.5, 2: 1.0}
SEED_GRAD = {0: 0.01, 1: 1.0, 2: 100.0}


@pytest.fixture
def figures(monkeypatch) -> dict:
    """The figures the report functions save, by file name (still written; closed figures keep
    their artists)."""
    kept = {}
    save = runs.save_figure

    def keep(fig, path: Path) -> list[Path]:
        kept[path.name] = fig
        return save(fig, path)

    for module in (runs, cifar, cost_model):
        monkeypatch.setattr(module, "save_figure", keep)
    return kept


def cifar_folder(folder: Path, classes: int = 10) -> Path:
    """A CIFAR-LT results folder: three methods, three seeds, rounds 0-2."""
    rows = []
    (folder / "runs").mkdir()
    for seed, final in SEED_ACCURACY.items():
        for method in METHODS:
            run_id = f"{method}-{seed}"
            config = {"problem": CIFAR, "capacities": [0.5] * 4, "rounds": 2, "seed": seed}
            (folder / "runs" / f"{run_id}.json").write_text(json.dumps(config))
            per_class = [0.9 - 0.1 * c for c in range(classes)]
            details = {"per_class": per_class, "head": 0.5, "tail": 0.1}
            details |= {"delta": [1.0] * classes, "iota": [0.0] * classes}
            for q in range(3):
                row = {**dict.fromkeys(COLUMNS), "suite": "cifar-lt", "setting": ""}
                row |= {"run_id": run_id, "algorithm": method, "seed": seed, "round": q}
                row |= {"accuracy": final if q == 2 else 0.1 * q, "accuracy_ci95": 0.01}
                row |= {"grad_norm_sq": SEED_GRAD[seed], "status": "ok"}
                row |= {"params_up": q, "params_down": q, "bytes_up": 8 * q, "bytes_down": 8 * q}
                row |= {"oracle_calls": q, "flops": 100 * q, "details": json.dumps(details)}
                rows.append(row)
    pd.DataFrame(rows, columns=list(COLUMNS)).to_csv(folder / "results.csv", index=False)
    return folder


def colours_by_label(fig) -> dict[str, str]:
    """The colour of each labelled line and bar of a figure's panels, as hex."""
    found = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            found[line.get_label()] = mcolors.to_hex(line.get_color())
        for container in ax.containers:
            found[container.get_label()] = mcolors.to_hex(container.patches[0].get_facecolor())
    return {label: colour for label, colour in found.items() if not label.startswith("_")}


def band_heights(ax) -> np.ndarray:
    """The y of every vertex of the shaded bands drawn in a panel."""
    paths = [p for c in ax.collections for p in c.get_paths()]
    return np.concatenate([p.vertices[:, 1] for p in paths])


def legend_texts(fig) -> list[str]:
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes)]
    return [t.get_text() for legend in legends if legend is not None for t in legend.get_texts()]


def test_every_method_has_one_style_and_unknown_names_a_fixed_one():
    brief = ("rabo", "rafbo", "fedmbo", "fedavg", "static", "oap", "fedrolex", "fiarse")
    names = (*brief, "protonet", "maml", "fednest", "lfednest", "simfbo", "aggitd", "fedbioacc")
    styles = [method_style(name) for name in names]
    assert len({s.colour for s in styles}) == len({s.marker for s in styles}) == len(names)
    assert [s.linestyle for s in styles[:3]] == ["-", "-", "--"]  # the paper's methods solid
    unknown = method_style("my-new-method")
    assert unknown == method_style("my-new-method")  # a fixed hash, not Python's hash()
    assert unknown.colour not in {colour for colour, _ in FIXED.values()}
    assert unknown.marker not in {marker for _, marker in FIXED.values()}


def test_a_log_band_is_positive_and_within_the_seeds_a_linear_one_is_clipped():
    values = pd.Series([0.01, 1.0, 100.0, 0.0, 50.0, 100.0])
    keys = [pd.Series(["grad"] * 3 + ["accuracy"] * 3)]
    log = seed_bands(values[:3], [keys[0][:3]], log=True).iloc[0]
    assert log["centre"] == pytest.approx(1.0) and (log["low"], log["high"]) == (0.01, 100.0)
    linear = seed_bands(values[:3], [keys[0][:3]], log=False).iloc[0]
    assert linear["low"] < 0  # what a t interval does on a log axis
    accuracy = seed_bands(values[3:], [keys[0][3:]], log=False, bounds=(0.0, 100.0)).iloc[0]
    assert accuracy["centre"] == 50.0 and (accuracy["low"], accuracy["high"]) == (0.0, 100.0)
    one = seed_bands(pd.Series([3.0]), [pd.Series(["a"])], log=True).iloc[0]
    assert one["seeds"] == 1 and np.isnan(one["low"]) and np.isnan(one["high"])


def test_report_figures_share_colours_bands_titles_and_pdfs(tmp_path, figures):
    folder = cifar_folder(tmp_path)
    written = write_report(folder)
    for png in folder.glob("*.png"):
        assert png.with_suffix(".pdf") in written
        assert png.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-"
    names = ("rounds_accuracy.png", "rounds_grad_norm_sq.png", "curves.png", "per_class.png")
    expected = {display_name(m): method_style(m).colour for m in METHODS}
    for name in names:
        fig = figures[name]
        found = colours_by_label(fig)
        assert {label: found[label] for label in expected if label in found} == expected, name
        titles = [fig.get_suptitle(), *(ax.get_title() for ax in fig.axes)]
        title = "long-tail CIFAR-10 (ratio 100), ResNet-8, width 16; clients at width 1/2"
        assert title in titles, name

    grad = figures["rounds_grad_norm_sq.png"].axes[0]
    assert grad.get_yscale() == "log"
    heights = band_heights(grad)
    assert heights.min() == pytest.approx(0.01) and heights.max() == pytest.approx(100.0)
    assert all(line.get_ydata()[-1] == pytest.approx(1.0) for line in grad.get_lines())
    accuracy = band_heights(figures["curves.png"].axes[0])
    assert accuracy.min() == 0.0 and accuracy.max() == 100.0  # clipped: t = 4.3 at 3 seeds

    assert "line: geometric mean; shaded: min-max over seeds" in legend_texts(
        figures["rounds_grad_norm_sq.png"]
    )
    assert "line: mean; shaded: 95% CI over seeds (Student t)" in legend_texts(
        figures["curves.png"]
    )


def test_per_class_bars_sit_on_the_classes_present(tmp_path, figures):
    folder = cifar_folder(tmp_path, classes=7)
    cifar.write_cifar_report(folder, runs.read_results(folder))
    ax = figures["per_class.png"].axes[0]
    assert list(ax.get_xticks()) == list(range(7))
    assert ax.get_xlim() == (-0.5, 6.5)
    centres = np.array([[p.get_x() + p.get_width() / 2 for p in c.patches] for c in ax.containers])
    assert centres.mean(axis=0) == pytest.approx(range(7))  # each class's group on its tick
    assert "6 = rarest" in ax.get_xlabel()


def test_the_cost_figure_names_each_preset_network(tmp_path, monkeypatch, figures):
    def costs(suite: str, preset: str) -> dict:
        """What preset_costs gives, without building the networks: the cpu preset's ResNet-8 at
        width 16, the paper's ResNet-18 (no width)."""
        params = {"network": "resnet8", "width": 16} if preset == "cpu" else {"network": "resnet18"}
        shares = {
            r: SimpleNamespace(capacity=r, parameters=1, parameter_fraction=r * r, flops=1,
                               flop_fraction=r * r)
            for r in (0.5, 1.0)
        }  # fmt: skip
        return {
            "preset": preset,
            "suite": suite,
            "problem_name": "cifar_lt",
            "problem": {**params, "ratio": 100.0},
            "costs": shares,
            "mean_param": 0.25,
            "mean_flop": 0.25,
        }

    monkeypatch.setattr(cost_model, "preset_costs", costs)
    written = cost_model.write_cost_report("cifar-lt", ["paper", "cpu"], tmp_path)
    assert tmp_path / "cost.pdf" in written
    fig = figures["cost.png"]
    labels = legend_texts(fig)
    assert f"{display_name('rabo')}, ours, cpu preset: ResNet-8, width 16" in labels
    assert f"{display_name('rafbo')}, ours, paper preset: ResNet-18" in labels
    assert "long-tail CIFAR-10" in fig.axes[0].get_title()
    found = colours_by_label(fig)
    assert found[f"{display_name('rabo')}, paper"] == method_style("rabo").colour


def rates() -> pd.DataFrame:
    """A Q sweep of RABO, three seeds at Q = 16 and 64: at 16 the seeds give 1, 2 and 32
    (median 2, geometric mean 4), at 64 0.5, 1 and 16 (median 1, geometric mean 2); the fitted
    slope is log(2/4) / log(64/16) = -1/2."""
    rows = []
    for q, values in ((16, (1.0, 2.0, 32.0)), (64, (0.5, 1.0, 16.0))):
        for seed, value in enumerate(values):
            row = dict.fromkeys(RATE_COLUMNS, 1.0)
            row |= {"algorithm": "rabo", "seed": seed, "sweep": "Q", "Q": q}
            row |= {"T": 2, "coverage": 5, "cx_star": 5, "avg_grad_norm_sq": value}
            rows.append(row)
    return pd.DataFrame(rows)


def test_the_rate_fit_goes_through_the_plotted_geometric_means(tmp_path, monkeypatch):
    kept = {}
    save = plots._save

    def keep(fig, out_dir: Path, stem: str) -> list[Path]:
        kept[stem] = fig
        return save(fig, out_dir, stem)

    monkeypatch.setattr(plots, "_save", keep)
    table = per_sweep_table(rates())
    assert table["exponent"].iloc[0] == pytest.approx(-0.5)
    written = plots.plot_factor(rates(), "Q", table, tmp_path)
    assert [p.suffix for p in written] == [".png", ".pdf"]
    ax = kept["rate_Q"].axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    markers = lines[f"{display_name('rabo')}: geometric mean over seeds"]
    assert list(markers.get_ydata()) == pytest.approx([4.0, 2.0])
    fit = next(line for label, line in lines.items() if label.startswith("rabo fit: slope -0.50"))
    assert fit.get_ydata()[[0, -1]] == pytest.approx([4.0, 2.0])  # through the markers
    assert markers.get_color() == fit.get_color() == method_style("rabo").colour
    seeds = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert seeds.min() == pytest.approx(0.5) and seeds.max() == pytest.approx(32.0)
    texts = legend_texts(kept["rate_Q"])
    assert "shaded / whiskers: min-max over seeds" in texts
    assert "hatched: slopes at the ends of the fit's 95% CI" in texts


def test_a_figure_redrawn_from_the_same_data_is_the_same_file(tmp_path):
    """No creation date in the PDFs: a report regenerated from unchanged results changes no
    committed file."""
    import matplotlib.pyplot as plt

    files = []
    for name in ("a", "b"):
        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0])
        files.append(runs.save_figure(fig, tmp_path / f"{name}.png"))
    for first, second in zip(*files, strict=True):
        assert first.read_bytes() == second.read_bytes()
        assert b"CreationDate" not in first.read_bytes()  # (two saves in one second match anyway)
