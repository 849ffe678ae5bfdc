"""The summary table of a suite, computed from its results CSV alone (never by re-running).

One line per algorithm (means over seeds; C_x*, C_y* are minima over seeds):
  * final ||grad F||^2 and final ||y - y*(x)|| at the last round Q;
  * round-averaged ||grad F||^2 = mean over the evaluated rounds q < Q, i.e. the iterates
    x^0 .. x^{Q-1} that the convergence theory averages (with eval_every = 1 it is exactly
    (1/Q) sum_{q<Q} ||grad F(x^q)||^2);
  * communication (params up + down) and computation (oracle calls) at round Q, each as the
    ratio algorithm / fedmbo for the same seed ("n/a" without fedmbo);
  * sub-model accuracy = the mean accuracy of the clients' own sub-models at round Q;
  * C_x*, C_y* = min over rounds of min_j |C_j^q| (Def. 3); wall time excludes evaluation;
    a C* of 0 (some coordinate trained by no client in some round) is flagged under the table;
  * diverged = how many of its runs stopped on a NaN/Inf or a blow-up (``status`` "diverged";
    0 for results written before that column existed); their final values are at the round
    they stopped.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from rabo_bench.algorithms import display_name
from rabo_bench.report.runs import read_table

REFERENCE = "fedmbo"
HEADERS = (
    "setting",
    "algorithm",
    "seeds",
    "diverged",
    "rounds",
    "final accuracy",
    "sub-model accuracy",
    "final ||grad F||^2",
    "avg ||grad F||^2",
    "final ||y - y*||",
    "comm / fedmbo",
    "compute / fedmbo",
    "C_x*",
    "C_y*",
    "wall time (s)",
)


def _per_run(results: pd.DataFrame) -> pd.DataFrame:
    runs = []
    for run_id, rows in results.groupby("run_id", sort=False):
        rows = rows.sort_values("round")
        last = rows.iloc[-1]
        earlier = rows[rows["round"] < last["round"]]
        runs.append(
            {
                "run_id": run_id,
                "setting": last["setting"],
                "algorithm": last["algorithm"],
                "accuracy": last["accuracy"],
                "submodel_accuracy": last.get("submodel_accuracy", math.nan),
                "seed": last["seed"],
                "rounds": last["round"],
                "final_grad": last["grad_norm_sq"],
                "avg_grad": earlier["grad_norm_sq"].mean() if len(earlier) else math.nan,
                "final_inner": last["inner_error"],
                "comm": last["params_up"] + last["params_down"],
                "compute": last["oracle_calls"],
                "cx": rows["coverage_x_min"].min(),
                "cy": rows["coverage_y_min"].min(),
                "wall": last["wall_time_s"],
                "diverged": last.get("status") == "diverged",
            }
        )
    runs = pd.DataFrame(runs)
    ref = runs[runs["algorithm"] == REFERENCE].set_index(["setting", "seed"])
    keys = pd.MultiIndex.from_frame(runs[["setting", "seed"]])
    for column in ("comm", "compute"):
        base = ref[column].reindex(keys).to_numpy() if len(ref) else math.nan
        runs[f"{column}_ratio"] = runs[column] / base
    return runs


def _number(value: float, spec: str) -> str:
    return "n/a" if value is None or pd.isna(value) else format(value, spec)


def summary_rows(results: pd.DataFrame) -> list[list[str]]:
    """The summary table's cells (strings), one list per algorithm in order of appearance."""
    runs = _per_run(results)
    table = []
    for (setting, algorithm), group in runs.groupby(["setting", "algorithm"], sort=False):
        rounds = sorted(set(group["rounds"]))
        table.append(
            [
                str(setting),
                display_name(str(algorithm)),
                str(len(group)),
                str(int(group["diverged"].sum())),
                "/".join(str(int(q)) for q in rounds),
                _number(100 * group["accuracy"].mean(), ".2f"),
                _number(100 * group["submodel_accuracy"].mean(), ".2f"),
                _number(group["final_grad"].mean(), ".4g"),
                _number(group["avg_grad"].mean(), ".4g"),
                _number(group["final_inner"].mean(), ".4g"),
                _number(group["comm_ratio"].mean(), ".3f"),
                _number(group["compute_ratio"].mean(), ".3f"),
                _number(group["cx"].min(), ".0f"),
                _number(group["cy"].min(), ".0f"),
                _number(group["wall"].mean(), ".2f"),
            ]
        )
    return table


def shown(rows: list[list[str]]) -> tuple[list[str], list[list[str]]]:
    """The headers and rows without the columns that say nothing for these results: a setting
    column when the suite has no settings, a metric that is n/a for every algorithm (accuracy
    on the synthetic problems, ||grad F||^2 on the networks)."""
    keep = [
        k
        for k, header in enumerate(HEADERS)
        if header == "algorithm" or any(row[k] not in ("", "n/a") for row in rows)
    ]
    return [HEADERS[k] for k in keep], [[row[k] for k in keep] for row in rows]


def to_text(rows: list[list[str]]) -> str:
    headers, rows = shown(rows)
    widths = [max(len(r[k]) for r in [headers, *rows]) for k in range(len(headers))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        return "  ".join([first, *(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))])

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def to_markdown(rows: list[list[str]]) -> str:
    headers, rows = shown(rows)

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    rule = "| " + " | ".join(["---"] + ["---:"] * (len(headers) - 1)) + " |"
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def uncovered_note(results: pd.DataFrame) -> str:
    """A line naming the algorithms with C_x* or C_y* = 0 (the theory needs C* >= 1), or ""."""
    runs = _per_run(results)
    bad = runs[(runs["cx"] == 0) | (runs["cy"] == 0)]
    if bad.empty:
        return ""
    names = ", ".join(dict.fromkeys(display_name(str(a)) for a in bad["algorithm"]))
    return (
        f"Warning: {len(bad)} of {len(runs)} runs ({names}) left some coordinate untrained by "
        "every client in some round (C* = 0; the theory assumes C_x*, C_y* >= 1)."
    )


def caption(results: pd.DataFrame) -> str:
    suites = ", ".join(sorted(set(results["suite"].astype(str))))
    seeds = sorted(set(results["seed"]))
    return (
        f"Suite {suites}: {results['run_id'].nunique()} runs, seeds {seeds}; means over seeds. "
        "accuracy in % at round Q; avg = mean over evaluated rounds q < Q; "
        "comm = params up+down, compute = oracle calls, both relative to fedmbo with the same "
        "seed; C* = min over rounds of min_j |C_j^q|; diverged = runs stopped on NaN/Inf or "
        "a blow-up (their values are at the round they stopped); "
        "wall time excludes evaluation."
    )


def write_summary(results_csv: Path) -> tuple[str, Path]:
    """The terminal summary of ``results_csv`` and the path of ``summary.md`` written beside it."""
    results = read_table(results_csv)
    if results.empty:
        text = "no results"
        markdown = text
    else:
        rows = summary_rows(results)
        note = uncovered_note(results)
        note = f"\n\n{note}" if note else ""
        text = f"{to_text(rows)}\n\n{caption(results)}{note}"
        markdown = f"# Summary\n\n{caption(results)}\n\n{to_markdown(rows)}{note}"
    path = results_csv.parent / "summary.md"
    path.write_text(markdown + "\n")
    return text, path
