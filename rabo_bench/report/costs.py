"""Computation and communication of each run relative to FedMBO's, from saved results (SPEC §8).

* communication: parameters sent up and down, counted message by message by the round loop;
* oracle calls: every gradient, Hessian- and Jacobian-vector product, unweighted;
* parameter-weighted computation: oracle calls x the mean parameter fraction P(r_i)/P(1) of the
  clients' sub-models (SPEC §8's accounting; every client of our algorithms makes the same
  number of calls);
* FLOP-weighted computation: the same with the measured FLOP fraction of a forward-backward of
  the narrow model (FIARSE computes on the masked full-width model: fraction 1).

The fractions are measured on the problem once and cached beside the results
(``submodel_costs.json``), so a folder reported once with its data is reported anywhere.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from rabo_bench.data.archives import DataError
from rabo_bench.engine.results import write_text_atomic
from rabo_bench.metrics.submodels import submodel_costs
from rabo_bench.problems.registry import make_problem, saved_params
from rabo_bench.report.runs import run_config

REFERENCE = "fedmbo"
FULL_WIDTH_COMPUTE = ("full", "global_top_k")  # policies whose clients compute at full width


COST_CACHE = "submodel_costs.json"  # beside results.csv: the fractions, so reports need no data


def _measured(folder: Path, problem: dict, capacities: list[float]) -> dict[float, list[float]]:
    """capacity -> [parameter fraction, FLOP fraction] of ``problem``'s sub-models: from the
    folder's cache, else measured on the problem (which needs its data; then cached). Without
    the data and the cache: {} (the weighted columns are then n/a)."""
    path = folder / COST_CACHE
    cache = json.loads(path.read_text()) if path.exists() else {}
    key = json.dumps(saved_params(problem) | {"name": problem["name"]}, sort_keys=True)
    if key in cache:
        return {float(r): v for r, v in cache[key].items()}
    try:
        instance = make_problem(problem["name"], saved_params(problem))
    except DataError:
        return {}
    measured = {
        c.capacity: [c.parameter_fraction, c.flop_fraction]
        for c in submodel_costs(instance, sorted(set(capacities) | {1.0}))
    }
    cache[key] = {repr(r): v for r, v in measured.items()}
    write_text_atomic(path, json.dumps(cache, indent=1, sort_keys=True) + "\n")
    return measured


def _fractions(folder: Path, finals: pd.DataFrame) -> pd.DataFrame:
    """Per run: mean parameter and FLOP fraction over its clients' capacities (NaN where
    neither the data nor the folder's cache can give them)."""
    rows = []
    for run_id in finals["run_id"]:
        config = run_config(folder, run_id)
        caps = [float(r) for r in config["capacities"]]
        fractions = _measured(folder, config["problem"], caps)
        policy = config["algorithm"]["policy"]["type"]
        param, flops = (
            sum(fractions[r][k] for r in caps) / len(caps) if fractions else math.nan
            for k in (0, 1)
        )
        if policy == "full":
            param = 1.0
        if policy in FULL_WIDTH_COMPUTE:
            flops = 1.0
        rows.append({"run_id": run_id, "param_fraction": param, "flop_fraction": flops})
    return pd.DataFrame(rows)


def percent(ratio: float) -> str:
    """A cost ratio as a percentage for the tables; "n/a" where it could not be measured."""
    return "n/a" if math.isnan(ratio) else f"{100 * ratio:.1f}%"


def relative_costs(folder: Path, finals: pd.DataFrame) -> pd.DataFrame:
    """``finals`` (one row per run) with the four cost ratios to FedMBO of the same setting and
    seed (NaN where the suite has no FedMBO run)."""
    runs = finals.merge(_fractions(folder, finals), on="run_id")
    runs["comm"] = runs["params_up"] + runs["params_down"]
    runs["calls"] = runs["oracle_calls"]
    runs["param_weighted"] = runs["calls"] * runs["param_fraction"]
    runs["flop_weighted"] = runs["calls"] * runs["flop_fraction"]
    ref = runs[runs["algorithm"] == REFERENCE].set_index(["setting", "seed"])
    keys = pd.MultiIndex.from_frame(runs[["setting", "seed"]])
    for column in ("comm", "calls", "param_weighted", "flop_weighted"):
        base = ref[column].reindex(keys).to_numpy() if len(ref) else float("nan")
        runs[f"{column}_ratio"] = runs[column] / base
    return runs
