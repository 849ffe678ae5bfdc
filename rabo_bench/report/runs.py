"""Read a suite's saved results (never re-running): the results table and each run's config."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from rabo_bench.algorithms import display_name
from rabo_bench.algorithms.style import file_metadata, method_style
from rabo_bench.problems.registry import saved_params


def read_table(path: Path) -> pd.DataFrame:
    """A results CSV: empty cells and the "nan" a diverged run writes are missing values (and
    nothing else is, so a setting may be called "NA"); ``setting`` is a string, "" when the suite
    has none."""
    results = pd.read_csv(
        path, keep_default_na=False, na_values=["", "nan"], dtype={"setting": object}
    )
    setting = results["setting"] if "setting" in results else pd.Series("", index=results.index)
    results["setting"] = setting.fillna("").astype(str)  # older results have no such column
    return results


def read_results(folder: Path) -> pd.DataFrame:
    """``<folder>/results.csv`` (see :func:`read_table`), which must exist and hold rows."""
    path = folder / "results.csv"
    if not path.is_file():
        raise ValueError(f"{path} does not exist; give the output folder of a `rabo-bench run`")
    results = read_table(path)
    if results.empty:
        raise ValueError(f"{path} has no rows")
    return results


def run_config(folder: Path, run_id: str) -> dict:
    """The resolved configuration a run was made with (``runs/<run_id>.json``)."""
    return json.loads((folder / "runs" / f"{run_id}.json").read_text())


def final_rows(results: pd.DataFrame) -> pd.DataFrame:
    """One row per run: its last evaluated round (runs in the order of the results table)."""
    ordered = results.sort_values("round", kind="stable")
    last = ordered.groupby("run_id", sort=False).tail(1)
    order = {run_id: k for k, run_id in enumerate(results["run_id"].unique())}
    return last.sort_values("run_id", key=lambda ids: ids.map(order)).reset_index(drop=True)


def describe(folder: Path, results: pd.DataFrame) -> str:
    """What the runs were (problem settings shared by all runs, rounds), from their configs."""
    configs = [run_config(folder, r) for r in results["run_id"].unique()]
    problem = {"name": configs[0]["problem"]["name"], **saved_params(configs[0]["problem"])}
    shared = {
        k: v
        for k, v in problem.items()
        if all(c["problem"].get(k) == v for c in configs) and k not in ("ways", "shots")
    }
    rounds = sorted({c["rounds"] for c in configs})
    seeds = sorted({c["seed"] for c in configs})
    text = ", ".join(f"{k}={v}" for k, v in shared.items())
    return f"{len(configs)} runs; rounds {rounds}; seeds {seeds}; problem: {text}"


def save_figure(fig, path: Path) -> list[Path]:
    """Lay out, write at 150 dpi and close a matplotlib figure, with a PDF beside the PNG (same
    name, suffix .pdf) for a paper; returns both paths. The page is cut to what is drawn, a
    legend beside the panels included."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    written = [path, path.with_suffix(".pdf")]
    for target in written:
        fig.savefig(target, dpi=150, bbox_inches="tight", metadata=file_metadata(target.suffix))
    plt.close(fig)
    return written


def draw_method(ax, x, centre, low, high, algorithm: str, variant: str = "") -> None:
    """The curve of ``algorithm`` in its style (:mod:`rabo_bench.algorithms.style`), a marker
    on every tenth point or so, and its band from ``low`` to ``high`` (none where NaN). A
    ``variant`` (another run of the method in the same panel, e.g. a longer horizon) is drawn
    dotted and named in the legend."""
    colour, marker, line = method_style(algorithm)
    label = display_name(algorithm) + (f" ({variant})" if variant else "")
    every = max(1, len(x) // 10)
    ax.plot(x, centre, ":" if variant else line, color=colour, marker=marker, markersize=4,
            markevery=every, label=label)  # fmt: skip
    ax.fill_between(x, low, high, color=colour, alpha=0.15, lw=0)


def setting_panels(settings: list[str]):
    """A figure with one panel per setting, two to a row: (figure, the panels in order)."""
    import matplotlib.pyplot as plt

    cols = min(2, len(settings))
    rows = math.ceil(len(settings) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 4.4 * rows), squeeze=False)
    for ax in list(axes.flat)[len(settings) :]:
        ax.axis("off")
    return fig, list(axes.flat)[: len(settings)]


def save_panels(
    fig,
    panels: list,
    settings: list[str],
    ylabel: str,
    path: Path,
    title: str,
    xlabel: str = "global round $q$",
) -> list[Path]:
    """Title the figure ``title`` and each panel by its setting, label the axes, put one legend
    of every panel's entries right of the panels and save (see :func:`save_figure`)."""
    fig.suptitle(title, fontsize=10)
    entries = {}
    for ax, setting in zip(panels, settings, strict=True):
        ax.set_title(setting, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    fig.legend(entries.values(), entries.keys(), fontsize=7, loc="upper left",
               bbox_to_anchor=(1.0, 0.93))  # fmt: skip
    return save_figure(fig, path)
