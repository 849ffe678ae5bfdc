"""Metrics over seeds, from saved results: the final-round table (mean and 95% confidence
interval per (setting, algorithm), the paper's number beside ours where it reports one) and
each metric against the round with its band over the seeds (:func:`seed_bands`).

The interval is Student's t over seeds, t_{0.975, n-1} s / sqrt(n): with the 2-5 seeds of a
suite the normal 1.96 would be far too narrow (t_{0.975, 1} = 12.7). One seed has no interval
("1 seed"). A run that diverged (``status`` "diverged": a NaN/Inf iterate or metric, or a
metric blown up past the suite's ``diverge_factor``) stops early; it is
counted in the ``diverged`` column and left out of the means, which are over the runs that
finished. Results written before the ``status`` column existed count no run as diverged.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pandas as pd
from scipy import stats

from rabo_bench.algorithms import display_name
from rabo_bench.report.paper import paper_accuracy
from rabo_bench.report.runs import draw_method, final_rows, save_panels, setting_panels
from rabo_bench.report.titles import setup_title

# results column -> (label, scale, name in final.csv): accuracy in %, like the paper's tables
METRICS = {
    "accuracy": ("accuracy (%)", 100.0, "accuracy_pct"),
    "grad_norm_sq": ("||grad F||^2", 1.0, "grad_norm_sq"),
    "inner_error": ("||y - y*||", 1.0, "inner_error"),
    "upper_loss": ("upper loss", 1.0, "upper_loss"),
}
# the y axis of a metric's figure (mathtext), and the range of a bounded one (its band is clipped)
AXIS_LABELS = {
    "accuracy": "test accuracy (%)",
    "grad_norm_sq": r"$\|\nabla F(x^q)\|^2$",
    "inner_error": r"$\|y^q - y^*(x^q)\|$",
    "upper_loss": r"upper-level loss $\frac{1}{M}\sum_i f_i(x^q, y^q)$",
}
BOUNDS = {"accuracy": (0.0, 100.0)}
LOG_SCALE = ("grad_norm_sq", "inner_error")
KEYS = ["suite", "setting", "algorithm"]
LINEAR_BAND = "line: mean; shaded: 95% CI over seeds (Student t)"
LOG_BAND = "line: geometric mean; shaded: min-max over seeds"


def ci95(std: pd.Series | float, n: pd.Series | int) -> pd.Series | float:
    """Half-width of the 95% t interval of a mean of ``n`` values with standard deviation
    ``std`` (ddof 1); NaN where n < 2."""
    n = np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(n >= 2, stats.t.ppf(0.975, np.maximum(n - 1, 1)), np.nan)
        return t * np.asarray(std, dtype=float) / np.sqrt(n)


def seed_bands(
    values: pd.Series, keys: list[pd.Series], log: bool, bounds: tuple[float, float] | None = None
) -> pd.DataFrame:
    """Per group of ``keys``: the ``centre`` line over the seeds' ``values``, the band from
    ``low`` to ``high`` (NaN with one seed) and the number of ``seeds``.

    Linear axis: the mean with its Student-t 95% interval (:func:`ci95`), clipped to
    ``bounds`` where the quantity has them. Log axis (``values`` all positive): the geometric
    mean, and the band from the smallest to the largest value: a t interval of the mean would
    reach below 0 (off a log axis) or far above every seed there, its half-width being 2.5
    standard deviations of the seeds with 3 of them.
    """
    if log:
        groups = values.groupby(keys, sort=False)
        bands = groups.agg(["min", "max", "count"]).set_axis(["low", "high", "seeds"], axis=1)
        centre = np.exp(np.log(values).groupby(keys, sort=False).mean())
    else:
        moments = values.groupby(keys, sort=False).agg(["mean", "std", "count"])
        centre, half = moments["mean"], ci95(moments["std"], moments["count"])
        low, high = centre - half, centre + half
        if bounds is not None:
            low, high = low.clip(lower=bounds[0]), high.clip(upper=bounds[1])
        bands = pd.DataFrame({"low": low, "high": high, "seeds": moments["count"]})
    bands.insert(0, "centre", centre)
    bands.loc[bands["seeds"] < 2, ["low", "high"]] = np.nan
    return bands


def diverged(rows: pd.DataFrame) -> pd.Series:
    """Which rows belong to a diverged run (none where ``status`` is absent)."""
    if "status" not in rows:
        return pd.Series(False, index=rows.index)
    return rows["status"].astype(str).eq("diverged")


def metrics_of(results: pd.DataFrame) -> list[str]:
    """The metric columns this suite fills (the synthetic problems have no accuracy)."""
    return [m for m in METRICS if m in results and results[m].notna().any()]


def _spread(rows: pd.DataFrame, keys: list[str], metric: str) -> pd.DataFrame:
    """Mean, 95% CI half-width and count of the finite values of ``metric`` per ``keys``."""
    values = rows[metric].astype(float).replace([np.inf, -np.inf], np.nan) * METRICS[metric][1]
    grouped = values.groupby([rows[k] for k in keys], sort=False)
    out = grouped.agg(["mean", "std", "count"])
    out["ci95"] = ci95(out["std"], out["count"])
    return out


def seed_table(results: pd.DataFrame) -> pd.DataFrame:
    """One row per (suite, setting, algorithm): runs, diverged runs, seeds, the last round, and
    per metric the mean, ci95 and n over the finished runs' final rows; ``paper`` where the
    paper reports this accuracy."""
    finals = final_rows(results)
    bad = diverged(finals)
    ok = finals[~bad]
    groups = finals.groupby(KEYS, sort=False)
    table = pd.DataFrame(
        {
            "runs": groups.size(),
            "diverged": bad.groupby([finals[k] for k in KEYS], sort=False).sum().astype(int),
            "seeds": groups["seed"].agg(lambda s: " ".join(map(str, sorted(s)))),
            "round": groups["round"].max(),
        }
    )
    for metric in metrics_of(results):
        spread = _spread(ok, KEYS, metric).reindex(table.index)
        name = METRICS[metric][2]
        for stat in ("mean", "ci95", "count"):
            table[f"{name}_{stat}"] = spread[stat]
        table[f"{name}_count"] = table[f"{name}_count"].fillna(0).astype(int)
    table = table.reset_index()
    table["paper_accuracy_pct"] = [
        paper_accuracy(r.suite, r.setting, r.algorithm) for r in table.itertuples()
    ]
    return table


def _cell(mean: float, ci: float, n: int) -> str:
    if n == 0 or math.isnan(mean):
        return "n/a"
    if n == 1:
        return f"{mean:.4g} (1 seed)"
    return f"{mean:.4g} ± {ci:.2g}"


def seed_markdown(table: pd.DataFrame) -> str:
    metrics = [m for m in METRICS if f"{METRICS[m][2]}_mean" in table]
    paper = table["paper_accuracy_pct"].notna().any()
    keys = ["suite", "setting"] if table["setting"].ne("").any() else ["suite"]
    head = [*keys, "method", "seeds", "diverged", *(METRICS[m][0] for m in metrics)]
    head += ["paper accuracy (%)"] if paper else []
    lines = [
        "| " + " | ".join(h.replace("|", "\\|") for h in head) + " |",
        "|" + " --- |" * (len(keys) + 2) + " ---: |" * (len(head) - len(keys) - 2),
    ]
    for r in table.to_dict("records"):
        cells = [*(r[k] for k in keys), display_name(r["algorithm"]), r["seeds"]]
        cells.append(f"{r['diverged']}/{r['runs']}")
        names = [METRICS[m][2] for m in metrics]
        cells += [_cell(r[f"{n}_mean"], r[f"{n}_ci95"], r[f"{n}_count"]) for n in names]
        if paper:
            ref = r["paper_accuracy_pct"]
            cells.append("n/a" if ref is None or pd.isna(ref) else f"{ref:.2f}")
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines)


def plot_rounds(results: pd.DataFrame, metric: str, path: Path, title: str) -> list[Path]:
    """``metric`` against the round, one line per algorithm in its colour with its band over the
    seeds (:func:`seed_bands`; log axis where the metric is a norm and every value positive),
    one panel per setting, titled ``title``; runs that diverged are left out, as in the table.
    Writes ``path`` and a PDF beside it; returns both."""
    settings = list(dict.fromkeys(results["setting"]))
    fig, panels = setting_panels(settings)
    ok = results[~diverged(results)]
    values = ok[metric].astype(float).replace([np.inf, -np.inf], np.nan) * METRICS[metric][1]
    values = values.dropna()
    log = metric in LOG_SCALE and bool((values > 0).all())
    keys = [ok.loc[values.index, k] for k in ("setting", "algorithm", "round")]
    bands = seed_bands(values, keys, log, BOUNDS.get(metric)).sort_index()  # fast .loc
    drawn = bands.index.droplevel("round")
    for ax, setting in zip(panels, settings, strict=True):
        for algorithm in dict.fromkeys(results[results["setting"] == setting]["algorithm"]):
            if (setting, algorithm) not in drawn:
                continue  # every run diverged
            curve = bands.loc[(setting, algorithm)]
            draw_method(ax, curve.index, curve["centre"], curve["low"], curve["high"], algorithm)
        if log:
            ax.set_yscale("log")
    if bands["low"].notna().any():  # an empty patch names the bands in the legend
        label = LOG_BAND if log else LINEAR_BAND
        panels[0].fill_between([], [], color="0.5", alpha=0.3, lw=0, label=label)
    return save_panels(fig, panels, settings, AXIS_LABELS[metric], path, title)


def write_seed_report(folder: Path, results: pd.DataFrame) -> list[Path]:
    """``final.md`` and ``final.csv`` (the seed table) and ``rounds_<metric>.png`` with their
    PDFs."""
    table = seed_table(results)
    text = (
        "# Final-round metrics over seeds\n\n"
        "Mean ± 95% confidence half-width over seeds (Student t; one seed has no interval) at "
        "each run's last round, over the runs that did not diverge; `diverged` counts the runs "
        "that stopped on a NaN/Inf or a blow-up. The paper's accuracy is beside ours where it "
        "reports one.\n\n"
        f"{seed_markdown(table)}\n"
    )
    written = [folder / "final.md", folder / "final.csv"]
    written[0].write_text(text)
    table.to_csv(written[1], index=False)
    title = setup_title(folder, results)
    for metric in metrics_of(results):
        written += plot_rounds(results, metric, folder / f"rounds_{metric}.png", title)
    return written
