"""The Omniglot report (SPEC §7.1): Table II beside the paper's (with the accuracy of the
clients' own sub-models beside the global model's), learning curves against rounds, FLOPs and
bytes (Fig. 2 analogue, :mod:`rabo_bench.report.curves`), costs relative to FedMBO (Fig. 4
left), and the scaling (Table III) and coverage (Fig. 4 right) tables, all from saved results."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from rabo_bench.algorithms import display_name
from rabo_bench.report.claims import (
    LONG,
    MATCHED,
    claims_table,
    coverage_claims_table,
    horizon,
    over_seeds,
    paired_gain,
    per_seed,
    plateau_table,
    same_horizon,
)
from rabo_bench.report.costs import percent, relative_costs
from rabo_bench.report.curves import write_budget_curves
from rabo_bench.report.paper import (
    SUBMODEL_BASELINES,
    TABLE_II,
    mean_gain,
    paper_accuracy,
    paper_table_ii,
)
from rabo_bench.report.runs import describe, final_rows
from rabo_bench.report.seeds import ci95


def mean_ci_cell(mean: float, ci: float) -> str:
    """The cell "mean ± ci"; the mean alone without a CI; "-" without a value (old results)."""
    if math.isnan(mean):
        return "-"
    return f"{mean:.2f}" if math.isnan(ci) else f"{mean:.2f} ± {ci:.2f}"


def accuracy_table(finals: pd.DataFrame) -> pd.DataFrame:
    """Per (setting, algorithm), in %: the mean final accuracy and its 95% CI half-width (the
    test-task CI for one seed, the CI over seeds, Student t as in the seed table, for several),
    and the same for the clients' sub-models (``submodel``, ``submodel_ci95``: NaN where the
    results have no such column or value; no CI for one seed)."""
    rows = []
    for (setting, algorithm), group in finals.groupby(["setting", "algorithm"], sort=False):
        acc = 100 * group["accuracy"]
        if len(group) == 1:
            ci = 100 * float(group["accuracy_ci95"].iloc[0])
        else:
            ci = float(ci95(acc.std(ddof=1), len(group)))
        sub = group["submodel_accuracy"] if "submodel_accuracy" in group else acc * math.nan
        sub_mean, sub_ci, _ = over_seeds((100 * sub).astype(float))
        rows.append(
            {
                "setting": setting,
                "algorithm": algorithm,
                "accuracy": acc.mean(),
                "ci95": ci,
                "submodel": sub_mean,
                "submodel_ci95": sub_ci,
            }
        )
    return pd.DataFrame(rows)


def _ours(table: pd.DataFrame) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for row in table.itertuples():
        out.setdefault(row.algorithm, {})[row.setting] = row.accuracy
    return out


def orderings(ours: dict[str, dict[str, float]]) -> list[str]:
    """The paper's Table II orderings, each with how many settings our run reproduces it in,
    out of the settings in which its methods ran (the first and at least one of the others)."""
    settings = sorted({s for v in ours.values() for s in v})

    def count(check) -> str:
        ran = [s for s in settings if check(s) is not None]
        hits = [s for s in ran if check(s)]
        return f"{len(hits)}/{len(ran)}" + (f" ({', '.join(hits)})" if hits else "")

    def above(a: str, bs, s: str) -> bool | None:
        """a above every one of ``bs`` that ran in ``s``; None where a or all of them did not."""
        others = [ours[b][s] for b in bs if s in ours.get(b, {})]
        if s not in ours.get(a, {}) or not others:
            return None
        return all(ours[a][s] > other for other in others)

    checks = [
        ("RABO above every sub-model baseline", lambda s: above("rabo", SUBMODEL_BASELINES, s)),
        ("RAFBO above every sub-model baseline", lambda s: above("rafbo", SUBMODEL_BASELINES, s)),
        ("RABO above RAFBO", lambda s: above("rabo", ["rafbo"], s)),
        ("FedMBO (full) above RABO", lambda s: above("fedmbo", ["rabo"], s)),
        (
            "FedMBO above Dist-MAML and Dist-ProtoNet",
            lambda s: above("fedmbo", ["maml", "protonet"], s),
        ),
    ]
    needed = {"rabo", "rafbo", "fedmbo", *SUBMODEL_BASELINES}
    if not needed <= set(ours):
        return []
    return [f"- {name}: {count(pred)} settings (paper: 4/4)" for name, pred in checks]


def table_ii_markdown(table: pd.DataFrame) -> str:
    settings = list(dict.fromkeys(table["setting"]))
    head = " | ".join(f"{s} ours | {s} sub-models | {s} paper | {s} diff" for s in settings)
    head = f"| method | {head} |"
    rule = "| --- |" + " ---: | ---: | ---: | ---: |" * len(settings)
    lines = [head, rule]
    cells = {(r.setting, r.algorithm): r for r in table.itertuples()}
    order = [m for m in TABLE_II if m in set(table["algorithm"])]
    order += [m for m in dict.fromkeys(table["algorithm"]) if m not in order]
    for method in order:
        parts = [display_name(method)]
        for s in settings:
            r = cells.get((s, method))
            ref = paper_accuracy("omniglot", s, method)
            ours = f"{r.accuracy:.2f} ± {r.ci95:.2f}" if r is not None else "n/a"
            sub = mean_ci_cell(r.submodel, r.submodel_ci95) if r is not None else "n/a"
            diff = f"{r.accuracy - ref:+.2f}" if r is not None and ref is not None else "n/a"
            parts += [ours, sub, f"{ref:.2f}" if ref is not None else "n/a", diff]
        lines.append("| " + " | ".join(parts) + " |")
    return "\n".join(lines)


def cost_markdown(costs: pd.DataFrame) -> str:
    """One line per (setting, method): its cost ratios to FedMBO, averaged over the seeds."""
    lines = [
        "| setting | method | communication | oracle calls | param-weighted compute "
        "| FLOP-weighted compute |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in costs.itertuples():
        lines.append(
            f"| {r.setting} | {display_name(r.algorithm)} | {percent(r.comm_ratio)} "
            f"| {percent(r.calls_ratio)} | {percent(r.param_weighted_ratio)} "
            f"| {percent(r.flop_weighted_ratio)} |"
        )
    return "\n".join(lines)


def plot_curves(folder: Path, results: pd.DataFrame) -> list[Path]:
    """Test accuracy against the round, the counted FLOPs and the bytes communicated, one
    panel per setting (Fig. 2 analogue): ``curves.png``, ``curves_flops.png``,
    ``curves_bytes.png`` and their PDFs (:func:`rabo_bench.report.curves.write_budget_curves`)."""
    return write_budget_curves(folder, results)


def matched_markdown(finals: pd.DataFrame, table: pd.DataFrame) -> list[str]:
    """The budget-matched comparison: each ``<setting>-matched`` variant's sub-model baselines
    (as many backbone updates per round as the bilevel methods) against RABO and RAFBO at as
    many rounds (in the matched setting itself, ``<setting>`` or ``<setting>-long``:
    ``claims.same_horizon``; else in ``<setting>``, its horizon named), with the mean gain over
    them."""
    lines = []
    for setting in dict.fromkeys(table["setting"]):
        if not setting.endswith(MATCHED):
            continue
        base, rounds = setting.removesuffix(MATCHED), horizon(finals, setting)
        source = same_horizon(finals, base, rounds) or base
        ours = _ours(table[table["setting"] == source])
        if source not in ours.get("rabo", {}):
            continue
        rows = table[(table["setting"] == setting) & table["algorithm"].isin(SUBMODEL_BASELINES)]
        cells = ", ".join(
            f"{display_name(r.algorithm)} {r.accuracy:.2f} ± {r.ci95:.2f}"
            for r in rows.itertuples()
        )
        lines.append(f"- {base}, one local step per round, {rounds} rounds: {cells}")
        for method in ("rabo", "rafbo"):
            if source in ours.get(method, {}):
                gains = [ours[method][source] - r.accuracy for r in rows.itertuples()]
                lines.append(
                    f"  - {display_name(method)} at `{source}` ({horizon(finals, source)} "
                    f"rounds) {ours[method][source]:.2f}: mean gain over them "
                    f"{sum(gains) / len(gains):+.2f} points"
                )
    return lines


def long_markdown(
    finals: pd.DataFrame, table: pd.DataFrame, ours: dict[str, dict[str, float]]
) -> list[str]:
    """The methods of each ``<setting>-long`` variant (more rounds) at its horizon, next to
    ``<setting>``'s methods at theirs, with what the extra rounds gave each, paired over the
    seeds: a ``-long`` run shares its base run's random streams (episodes, masks, test
    episodes), and computed at the same torch thread count it is that run continued (at
    another, the order of floating-point sums differs, and a run can drift from its base run's
    path: docs/scaling.md). A curve that passed the last-fifth test at the base horizon can
    still gain here: the test has little power where the seeds spread widely."""
    lines = []
    for row in table[table["setting"].astype(str).str.endswith(LONG)].itertuples():
        base = row.setting.removesuffix(LONG)
        others = ", ".join(f"{display_name(m)} {v[base]:.2f}" for m, v in ours.items() if base in v)
        gain, half, n = paired_gain(
            per_seed(finals, row.setting, row.algorithm), per_seed(finals, base, row.algorithm)
        )
        extra = (
            f"; {gain:+.2f} ± {half:.2f} over its own {horizon(finals, base)} rounds "
            f"({n} seeds, paired)"
            if n
            else ""
        )
        lines.append(
            f"- {base}: {display_name(row.algorithm)} at the `{row.setting}` horizon "
            f"{row.accuracy:.2f} ± {row.ci95:.2f} (sub-models "
            f"{mean_ci_cell(row.submodel, row.submodel_ci95)}{extra}); at `{base}`'s: {others}"
        )
    return lines


def write_omniglot_report(folder: Path, results: pd.DataFrame) -> list[Path]:
    finals = final_rows(results)
    everything = accuracy_table(finals)
    table = everything[~everything["setting"].astype(str).str.endswith((MATCHED, LONG))]
    ours = _ours(table)
    parts = [
        "# Omniglot: Table II analogue",
        "",
        f"Our runs: {describe(folder, results)}.",
        "Accuracy in % on the test episodes of the 20 evaluation alphabets (95% CI: over the "
        "test episodes for one seed, over the seeds for several); 'sub-models' is the mean "
        "accuracy of the clients' own sub-models (95% CI over the seeds for several; '-' where "
        "the results predate it). The paper's numbers are its Table II (ResNet12, 2000 "
        "rounds). A reduced preset is not the paper's setting: compare orderings, not levels.",
        "",
        table_ii_markdown(table),
        "",
    ]
    if "rabo" in ours and any(b in ours for b in SUBMODEL_BASELINES):
        paper = paper_table_ii()
        for method in ("rabo", "rafbo"):
            if method in ours:
                gain, reported = mean_gain(ours, method), mean_gain(paper, method)
                parts.append(
                    f"- {display_name(method)}: mean gain over the sub-model baselines "
                    f"{gain:+.2f} points (paper: {reported:+.2f})"
                )
        parts += ["", "Orderings of Table II reproduced:", *orderings(ours), ""]
    matched = matched_markdown(finals, everything)
    if matched:
        parts += ["## Budget-matched sub-model baselines", "", *matched, ""]
    longer = long_markdown(finals, everything, ours)
    if longer:
        parts += ["## At a longer horizon (the `-long` settings)", "", *longer, ""]
    if "rabo" in ours:
        parts += [
            "## The paper's claims, paired over seeds",
            "",
            "Per-seed differences of final accuracy (points; every method of a seed starts from "
            "the same point with common random numbers), mean and Student-t 95% CI over the "
            "seeds; a verdict needs the CI to exclude 0.",
            "",
            *claims_table(finals),
            "",
            *plateau_table(results),
            "",
        ]
    if "fedmbo" in ours:
        costs = relative_costs(folder, finals)
        focus = costs[costs["algorithm"].isin(["rabo", "rafbo", "fedmbo"])]
        # settings with a FedMBO run to divide by; a -long one repeats its base's ratios
        fedmbo = set(focus.loc[focus["algorithm"] == "fedmbo", "setting"])
        referenced = focus["setting"].isin(fedmbo)
        focus = focus[referenced & ~focus["setting"].astype(str).str.endswith(LONG)]
        ratios = [c for c in focus.columns if c.endswith("_ratio")]
        focus = focus.groupby(["setting", "algorithm"], sort=False)[ratios].mean().reset_index()
        parts += [
            "## Cost relative to FedMBO (Fig. 4 left analogue; paper: RABO 26.7%, RAFBO 17.8% "
            "computation, both 26.7% communication)",
            "",
            cost_markdown(focus),
            "",
        ]
    table_md = folder / "table.md"
    table_md.write_text("\n".join(parts) + "\n")
    return [table_md, *plot_curves(folder, results)]


def _sweep_report(folder: Path, results: pd.DataFrame, head: list[str], cells) -> list[Path]:
    """A table.md of final accuracies, global and the clients' sub-models', one line per
    (setting, method): ``cells(row)`` gives the leading cells and the trailing cells."""
    lines = head
    for r in accuracy_table(final_rows(results)).itertuples():
        lead, trail = cells(r)
        sub = mean_ci_cell(r.submodel, r.submodel_ci95)
        lines.append(
            f"| {lead} | {display_name(r.algorithm)} | {r.accuracy:.2f} ± {r.ci95:.2f} | {sub}"
            f"{trail} |"
        )
    path = folder / "table.md"
    path.write_text("\n".join(lines) + "\n")
    return [path]


def write_scaling_report(folder: Path, results: pd.DataFrame) -> list[Path]:
    """Table III analogue: accuracy against the number of clients (settings <NwKs>-m<M>)."""

    def cells(r) -> tuple[str, str]:
        base, _, clients = r.setting.partition("-m")
        ref = paper_accuracy("omniglot-scaling", r.setting, r.algorithm)
        return f"{base} | {clients}", f" | {ref:.2f}" if ref is not None else " | n/a"

    head = [
        "# Omniglot scaling: Table III analogue",
        "",
        f"Our runs: {describe(folder, results)}.",
        "",
        "| setting | clients | method | ours (%) | sub-models (%) | paper (%) |",
        "| --- | ---: | --- | ---: | ---: | ---: |",
    ]
    return _sweep_report(folder, results, head, cells)


def write_coverage_report(folder: Path, results: pd.DataFrame) -> list[Path]:
    """Fig. 4 right analogue: accuracy against C_x* (settings c<C>), C_x* as the runs measured
    it (per coordinate, Def. 3), and the claim "the larger C_x*, the better" paired over the
    seeds."""
    finals = final_rows(results)
    measured = finals.groupby(["setting", "algorithm"], sort=False)["coverage_x_min"].min()
    head = [
        "# Omniglot coverage: Fig. 4 right analogue (5-way 5-shot)",
        "",
        f"Our runs: {describe(folder, results)}. The paper reports only that larger C_x* is "
        "better for both methods (values lost). C_x* measured: the least number of clients "
        "holding a coordinate of x in any round (Def. 3).",
        "",
        "| C_x* | C_x* measured | method | accuracy (%) | sub-models (%) |",
        "| ---: | ---: | --- | ---: | ---: |",
    ]

    def cells(r) -> tuple[str, str]:
        return f"{r.setting.lstrip('c')} | {measured[(r.setting, r.algorithm)]:.0f}", ""

    paths = _sweep_report(folder, results, head, cells)
    claims = coverage_claims_table(finals)
    if len(claims) > 2:
        sections = [
            "## The larger C_x*, the better? Paired over seeds",
            "",
            *claims,
            "",
            *plateau_table(results),
        ]
        with paths[0].open("a") as out:
            out.write("\n" + "\n".join(sections) + "\n")
    return paths
