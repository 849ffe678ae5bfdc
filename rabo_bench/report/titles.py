"""Figure titles that say what was run: the dataset, the network and the clients' widths, read
from the saved run configs (``runs/<run_id>.json``); a setting that differs between the runs is
left out rather than guessed."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pandas as pd

from rabo_bench.report.runs import run_config

DATASETS = {
    "cifar_lt": "long-tail CIFAR-10",
    "omniglot": "Omniglot",
    "quadratic": "synthetic quadratic problem",
    "logistic": "synthetic logistic hyperparameter problem",
}
NETWORKS = {
    "conv4": "Conv4",
    "resnet8": "ResNet-8",
    "resnet12": "ResNet-12",
    "resnet18": "ResNet-18",
    "resnet20": "ResNet-20",
}


def dataset_label(problem: dict) -> str:
    """The data of a problem's settings (its config's ``problem`` table, with or without the
    name), with the imbalance ratio where it has one: "long-tail CIFAR-10 (ratio 100)"."""
    name = DATASETS.get(problem.get("name", ""), problem.get("name", ""))
    return f"{name} (ratio {problem['ratio']:g})" if "ratio" in problem else name


def network_label(problem: dict) -> str:
    """The network of a problem's settings ("ResNet-8, width 16"); "" for a problem without one
    (the synthetic ones)."""
    network = problem.get("network", problem.get("backbone"))
    if network is None:
        return ""
    name = NETWORKS.get(network, network)
    return f"{name}, width {problem['width']}" if "width" in problem else name


def widths_label(capacities: set[float]) -> str:
    """The clients' widths: "clients at width 1/2", "clients at widths 1, 1/2, 1/4"."""
    names = [str(Fraction(c).limit_denominator(1024)) for c in sorted(capacities, reverse=True)]
    return f"clients at width{'s' if len(names) > 1 else ''} {', '.join(names)}"


def setup_title(folder: Path, results: pd.DataFrame) -> str:
    """What the runs of ``results`` share: "long-tail CIFAR-10 (ratio 100), ResNet-8, width 16;
    clients at width 1/2"."""
    configs = [run_config(folder, run_id) for run_id in results["run_id"].unique()]
    problem = {
        key: value
        for key, value in configs[0]["problem"].items()
        if all(c["problem"].get(key) == value for c in configs)
    }
    parts = [dataset_label(problem), network_label(problem)]
    title = ", ".join(p for p in parts if p)
    widths = {tuple(c["capacities"]) for c in configs if "capacities" in c}
    if len(widths) == 1:
        title += f"; {widths_label(set(widths.pop()))}"
    return title
