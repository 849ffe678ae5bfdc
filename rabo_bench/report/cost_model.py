"""``rabo-bench cost``: SPEC §8's cost accounting for a suite's networks, without any run.

For each preset (e.g. paper = ResNet12, cpu = Conv4) the width-r sub-models of the suite's
capacities are built on the real problem; their parameter and FLOP fractions give

    communication(method) / FedMBO = mean_i P(r_i) / P(1)                    (2 messages/round),
    computation(method)  / FedMBO = units(method) / units(FedMBO) * mean_i P(r_i) / P(1),

with SPEC §8's units (3 per client-iteration for FedMBO and RABO, 2 for RAFBO), and the same
with measured FLOP fractions in place of P(r)/P(1). The paper reports 26.7% / 17.8%
computation and 26.7% communication for Omniglot.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from rabo_bench.engine.problems import make_problem
from rabo_bench.engine.suite import load_suite
from rabo_bench.metrics.submodels import submodel_costs
from rabo_bench.report.paper import FIG4_COST, PAPER_UNITS
from rabo_bench.report.runs import save_figure


def preset_costs(suite_name: str, preset: str) -> dict:
    suite = load_suite(suite_name, preset).variants()[0]
    problem = make_problem(suite.problem, suite.problem_params)
    caps = list(suite.capacities)
    costs = {c.capacity: c for c in submodel_costs(problem, sorted(set(caps) | {1.0}))}
    mean_p = sum(costs[r].parameter_fraction for r in caps) / len(caps)
    mean_f = sum(costs[r].flop_fraction for r in caps) / len(caps)
    return {
        "preset": preset,
        "problem": suite.problem_params,
        "costs": costs,
        "mean_param": mean_p,
        "mean_flop": mean_f,
    }


def write_cost_report(suite_name: str, presets: list[str], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    results = [preset_costs(suite_name, p) for p in presets]
    lines = [f"# Cost accounting for suite {suite_name} (SPEC §8)", ""]
    csv = ["preset,capacity,parameters,parameter_fraction,flops,flop_fraction"]
    bars: dict[str, list[float]] = {}
    for res in results:
        lines += [
            f"## preset {res['preset']}: {res['problem']}",
            "",
            "| width r | parameters | P(r)/P(1) | FLOPs fwd+bwd of g | FLOP fraction |",
            "| ---: | ---: | ---: | ---: | ---: |",
        ]
        for c in res["costs"].values():
            lines.append(
                f"| {c.capacity:g} | {c.parameters:,} | {c.parameter_fraction:.5f} "
                f"| {c.flops:,} | {c.flop_fraction:.5f} |"
            )
            csv.append(
                f"{res['preset']},{c.capacity},{c.parameters},{c.parameter_fraction!r},"
                f"{c.flops},{c.flop_fraction!r}"
            )
        lines += [
            "",
            f"mean over the clients: P(r)/P(1) = {res['mean_param']:.4f}, "
            f"FLOP fraction = {res['mean_flop']:.4f}",
            "",
            "| method | computation (params) | computation (FLOPs) | communication "
            "| paper computation | paper communication |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for method in ("rabo", "rafbo"):
            units = PAPER_UNITS[method] / PAPER_UNITS["fedmbo"]
            row = [
                100 * units * res["mean_param"],
                100 * units * res["mean_flop"],
                100 * res["mean_param"],
            ]
            paper = FIG4_COST[method]
            lines.append(
                f"| {method} | {row[0]:.1f}% | {row[1]:.1f}% | {row[2]:.1f}% "
                f"| {paper['computation']}% | {paper['communication']}% |"
            )
            bars[f"{method} {res['preset']}"] = row
        lines.append("")
    for method, paper in FIG4_COST.items():
        bars[f"{method} paper"] = [
            paper["computation"],
            paper["computation"],
            paper["communication"],
        ]
    written = [out / "cost.md", out / "cost.csv", out / "cost.png"]
    written[0].write_text("\n".join(lines) + "\n")
    written[1].write_text("\n".join(csv) + "\n")
    _plot(bars, written[2])
    return written


def _plot(bars: dict[str, list[float]], path: Path) -> None:
    labels = ["computation (params)", "computation (FLOPs)", "communication"]
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(bars)
    for k, (name, values) in enumerate(sorted(bars.items())):
        ax.bar([i + k * width for i in range(3)], values, width, label=name)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(3)], labels)
    ax.set_ylabel("% of FedMBO (full model)")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(axis="y", alpha=0.3)
    save_figure(fig, path)
