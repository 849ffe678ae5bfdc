"""Read a suite's saved results (never re-running): the results table and each run's config."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from rabo_bench.problems.registry import saved_params

PAPER_METHODS = ("rabo", "rafbo")  # their curves are solid, the baselines' dashed


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


def save_figure(fig, path: Path, pdf: bool = False) -> None:
    """Lay out, write at 120 dpi and close a matplotlib figure; ``pdf``: also as a PDF beside
    it (same name, suffix .pdf)."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120)
    if pdf:
        fig.savefig(path.with_suffix(".pdf"))
    plt.close(fig)


def algorithm_colours() -> dict[str, tuple[float, ...]]:
    """One colour per registered algorithm, the same in every figure of every report: the
    qualitative colormap tab10 (tab20 beyond ten algorithms) in a fixed order of
    ``rabo_bench.algorithms.available()``: the paper's methods first (blue, orange), then the
    others by name."""
    import matplotlib

    from rabo_bench.algorithms import available

    names = sorted(available(), key=lambda name: (name not in PAPER_METHODS, name))
    cmap = matplotlib.colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {name: cmap(k % cmap.N) for k, name in enumerate(names)}


def setting_panels(settings: list[str]):
    """A figure with one panel per setting, two to a row: (figure, the panels in order)."""
    import matplotlib.pyplot as plt

    cols = min(2, len(settings))
    rows = math.ceil(len(settings) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 4 * rows), squeeze=False)
    for ax in list(axes.flat)[len(settings) :]:
        ax.axis("off")
    return fig, list(axes.flat)[: len(settings)]


def save_panels(
    fig,
    panels: list,
    settings: list[str],
    ylabel: str,
    path: Path,
    xlabel: str = "global round q",
    pdf: bool = False,
) -> None:
    """Title each panel by its setting (``ylabel`` without settings), label the axes, put the
    legend in the first panel and save (see :func:`save_figure`)."""
    for ax, setting in zip(panels, settings, strict=True):
        ax.set_title(setting or ylabel)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    panels[0].legend(fontsize=7)
    save_figure(fig, path, pdf)
