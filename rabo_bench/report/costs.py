"""Computation and communication of each run relative to FedMBO's, from saved results (SPEC §8).

* communication: parameters sent up and down, counted message by message by the round loop;
* oracle calls: every gradient, Hessian- and Jacobian-vector product, unweighted;
* parameter-weighted computation: oracle calls x the mean parameter fraction P(r_i)/P(1) of the
  clients' sub-models (SPEC §8's accounting; every client of our algorithms makes the same
  number of calls);
* FLOP-weighted computation: the same with the measured FLOP fraction of a forward-backward of
  the narrow model (FIARSE computes on the masked full-width model: fraction 1).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from rabo_bench.metrics.submodels import submodel_costs
from rabo_bench.problems.registry import make_problem, saved_params
from rabo_bench.report.runs import run_config

REFERENCE = "fedmbo"
FULL_WIDTH_COMPUTE = ("full", "global_top_k")  # policies whose clients compute at full width


def _fractions(folder: Path, finals: pd.DataFrame) -> pd.DataFrame:
    """Per run: mean parameter and FLOP fraction over its clients' capacities."""
    cache: dict[str, dict[float, tuple[float, float]]] = {}
    rows = []
    for run_id in finals["run_id"]:
        config = run_config(folder, run_id)
        problem = config["problem"]
        key = repr(sorted(problem.items()))
        caps = [float(r) for r in config["capacities"]]
        if key not in cache:
            instance = make_problem(problem["name"], saved_params(problem))
            cache[key] = {
                c.capacity: (c.parameter_fraction, c.flop_fraction)
                for c in submodel_costs(instance, sorted(set(caps) | {1.0}))
            }
        policy = config["algorithm"]["policy"]["type"]
        param, flops = (sum(cache[key][r][k] for r in caps) / len(caps) for k in (0, 1))
        if policy == "full":
            param = 1.0
        if policy in FULL_WIDTH_COMPUTE:
            flops = 1.0
        rows.append({"run_id": run_id, "param_fraction": param, "flop_fraction": flops})
    return pd.DataFrame(rows)


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
