"""Read a suite's saved results (never re-running): the results table and each run's config."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd


def read_results(folder: Path) -> pd.DataFrame:
    """``<folder>/results.csv`` with ``setting`` as a string ("" when the suite has none)."""
    path = folder / "results.csv"
    if not path.is_file():
        raise ValueError(f"{path} does not exist; give the output folder of a `rabo-bench run`")
    results = pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={"setting": object})
    if results.empty:
        raise ValueError(f"{path} has no rows")
    results["setting"] = results["setting"].fillna("").astype(str)
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
    problem = configs[0]["problem"]
    shared = {
        k: v
        for k, v in problem.items()
        if all(c["problem"].get(k) == v for c in configs) and k not in ("ways", "shots")
    }
    rounds = sorted({c["rounds"] for c in configs})
    seeds = sorted({c["seed"] for c in configs})
    text = ", ".join(f"{k}={v}" for k, v in shared.items())
    return f"{len(configs)} runs; rounds {rounds}; seeds {seeds}; problem: {text}"


def save_figure(fig, path: Path) -> None:
    """Lay out, write at 120 dpi and close a matplotlib figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
