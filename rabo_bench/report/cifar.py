"""The long-tail CIFAR-10 report (SPEC §7.2, Fig. 6) from saved results: accuracy against the
round, the counted FLOPs and the bytes communicated (:mod:`rabo_bench.report.curves`; FedMBO
and FedAvg-without-tuning, the full-model references, are dashed curves there rather than Fig.
6's horizontal lines at their final level, which have no place on a budget axis), head/tail and
per-class accuracy, the final table with the clients' sub-model accuracy, the share of the
network never trained and costs relative to FedMBO, and the learned VS-loss parameters."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from rabo_bench.algorithms import display_name
from rabo_bench.algorithms.style import method_style
from rabo_bench.report.claims import cifar_claims_table, plateau_table
from rabo_bench.report.costs import percent, relative_costs
from rabo_bench.report.curves import write_budget_curves
from rabo_bench.report.omniglot import accuracy_table, mean_ci_cell
from rabo_bench.report.paper import CIFAR_COST, CIFAR_GAIN, mean_gain
from rabo_bench.report.runs import describe, final_rows, save_figure
from rabo_bench.report.titles import setup_title

JPEG_NOTE = (
    "Our CIFAR-10 is decoded from a quality-75 JPEG copy (data/PROVENANCE.md), not the "
    "original PNGs."
)


def _details(finals: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for r in finals.itertuples():
        d = json.loads(r.details)
        rows.append({"algorithm": r.algorithm, "seed": r.seed, **d})
    return pd.DataFrame(rows)


def plot_curves(folder: Path, results: pd.DataFrame) -> list[Path]:
    """Test accuracy against the round, the counted FLOPs and the bytes communicated:
    ``curves.png``, ``curves_flops.png``, ``curves_bytes.png`` and their PDFs."""
    return write_budget_curves(folder, results)


def untrained_cell(finals: pd.DataFrame, algorithm: str) -> str:
    """Mean over the seeds of the final share of the network no client ever trained, in %
    ("-" where the results predate the column)."""
    if "untrained_fraction" not in finals:
        return "-"
    values = finals.loc[finals["algorithm"] == algorithm, "untrained_fraction"].dropna()
    return f"{100 * values.mean():.1f}%" if len(values) else "-"


def vs_parameter_table(details: pd.DataFrame) -> list[str]:
    """The learned VS-loss parameters of the bilevel methods at the last round, per class,
    means over the seeds (``details``: one row per run with its ``delta`` and ``iota``); no
    section where no bilevel method ran."""
    rows = []
    for method in ("rabo", "rafbo", "fedmbo"):
        d = details[details["algorithm"] == method]
        if len(d):
            delta = ", ".join(f"{v:.3f}" for v in np.mean(d["delta"].tolist(), axis=0))
            iota = ", ".join(f"{v:+.3f}" for v in np.mean(d["iota"].tolist(), axis=0))
            rows.append(f"| {display_name(method)} | {delta} | {iota} |")
    if not rows:
        return []
    return [
        "## Learned VS-loss parameters at the last round (Delta = 2 sigmoid(d), iota), "
        "means over the seeds",
        "",
        "| method | Delta per class | iota per class |",
        "| --- | --- | --- |",
        *rows,
    ]


def plot_per_class(details: pd.DataFrame, path: Path, title: str) -> list[Path]:
    """Final test accuracy per class, one bar per method in its colour (the mean over the
    seeds), grouped and centred on the class's tick; the classes are those of the
    ``per_class`` lists. Writes ``path`` and a PDF beside it; returns both."""
    classes = {len(v) for v in details["per_class"]}
    if len(classes) != 1:
        raise ValueError(f"per_class lists of different lengths {sorted(classes)}")
    n = classes.pop()
    fig, ax = plt.subplots(figsize=(8, 4))
    methods = list(dict.fromkeys(details["algorithm"]))
    width = 0.8 / len(methods)
    for k, method in enumerate(methods):
        per_class = details.loc[details["algorithm"] == method, "per_class"].tolist()
        mean = [100 * sum(v[c] for v in per_class) / len(per_class) for c in range(n)]
        offset = (k - (len(methods) - 1) / 2) * width
        colour = method_style(method).colour
        ax.bar(
            [c + offset for c in range(n)], mean, width, color=colour, label=display_name(method)
        )
    ax.set_xticks(range(n))
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_xlabel(f"class (0 = most frequent, {n - 1} = rarest)")
    ax.set_ylabel("test accuracy (%), mean over seeds")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    return save_figure(fig, path)


def write_cifar_report(folder: Path, results: pd.DataFrame) -> list[Path]:
    finals = final_rows(results)
    table = accuracy_table(finals)
    details = _details(finals)
    costs = relative_costs(folder, finals) if "fedmbo" in set(finals["algorithm"]) else None
    lines = [
        "# Long-tail CIFAR-10 loss tuning: Fig. 6 analogue",
        "",
        f"Our runs: {describe(folder, results)}. {JPEG_NOTE} A reduced preset is not the "
        "paper's setting (ResNet18, 500+ rounds).",
        "",
        "'sub-models': mean accuracy of the clients' own sub-models (95% CI over the seeds for "
        "several); 'untrained': share of the network's parameters no client has trained since "
        "round 0. Both at the last round, means over the seeds; '-' where the results predate "
        "them.",
        "",
        "| method | accuracy (%) | sub-models (%) | untrained | head classes 0-4 "
        "| tail classes 5-9 | communication | param-weighted compute | FLOP-weighted compute |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in table.itertuples():
        d = details[details["algorithm"] == r.algorithm]
        cost = "n/a | n/a | n/a"
        if costs is not None:
            c = costs[costs["algorithm"] == r.algorithm].mean(numeric_only=True)
            cost = (
                f"{percent(c['comm_ratio'])} | {percent(c['param_weighted_ratio'])} "
                f"| {percent(c['flop_weighted_ratio'])}"
            )
        lines.append(
            f"| {display_name(r.algorithm)} | {r.accuracy:.2f} ± {r.ci95:.2f} "
            f"| {mean_ci_cell(r.submodel, r.submodel_ci95)} "
            f"| {untrained_cell(finals, r.algorithm)} "
            f"| {100 * d['head'].mean():.2f} | {100 * d['tail'].mean():.2f} | {cost} |"
        )
    ours = {r.algorithm: {"all": r.accuracy} for r in table.itertuples()}
    lines += [
        "",
        "Costs are relative to FedMBO (paper, SPEC §7.2/§8: communication 25% for "
        f"both; computation predicted {CIFAR_COST['rabo']['computation']}% RABO, "
        f"{CIFAR_COST['rafbo']['computation']}% RAFBO)"
        + ("." if costs is not None else "; no FedMBO run here to divide by."),
        "",
    ]
    for method in ("rabo", "rafbo"):
        if method in ours:
            lines.append(
                f"- {display_name(method)}: mean gain over the sub-model baselines "
                f"{mean_gain(ours, method):+.2f} points (paper: +{CIFAR_GAIN[method]:.2f})"
            )
    if "rabo" in ours and "fedavg" in ours:
        gap = ours["rabo"]["all"] - ours["fedavg"]["all"]
        lines.append(f"- RABO minus FedAvg without tuning (full model): {gap:+.2f} points")
    claims = cifar_claims_table(finals)
    if claims:
        lines += [
            "",
            "## The paper's claims, paired over seeds",
            "",
            "Per-seed differences of final accuracy (every method of a seed starts from the "
            "same point with common random numbers); mean and Student-t 95% CI over the "
            "seeds. A verdict needs the interval to exclude 0.",
            "",
            *claims,
        ]
    lines += ["", *plateau_table(results)]
    vs = vs_parameter_table(details)
    if vs:
        lines += ["", *vs]
    table_md = folder / "table.md"
    table_md.write_text("\n".join(lines) + "\n")
    per_class = plot_per_class(details, folder / "per_class.png", setup_title(folder, results))
    return [table_md, *per_class, *plot_curves(folder, results)]
