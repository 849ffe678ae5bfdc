"""Same seed, same rows; another seed, other rows (DESIGN.md §4); evaluation never changes the
trajectory. Checked for every registered algorithm the synthetic problem supports
(``Algorithm.supports``); the others (e.g. single-level losses that need episodes) must run on
the Omniglot problem and fail on the synthetic one with a clear ValueError, so a new algorithm
is covered one way or the other."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from rabo_bench.algorithms import available, get
from rabo_bench.engine.results import comparable_rows, read_rows
from rabo_bench.engine.runner import execute_suite
from rabo_bench.engine.suite import load_suite
from rabo_bench.problems import QuadraticBilevel
from rabo_bench.problems.fewshot import FewShotProblem

SUPPORTED = [name for name in available() if get(name).supports(QuadraticBilevel)]
FEW_SHOT_ONLY = [name for name in available() if name not in SUPPORTED]


def results(out: Path, **overrides) -> list[dict[str, str]]:
    suite = load_suite("synthetic", "smoke", **overrides)
    execute_suite(suite, out, sink=None, progress=False, echo=lambda _: None)
    return read_rows(out / "results.csv")


@pytest.fixture(scope="module")
def first(tmp_path_factory) -> list[dict[str, str]]:
    return results(tmp_path_factory.mktemp("first"), seeds=2, algorithm_names=SUPPORTED)


def test_same_seed_gives_identical_rows_for_every_supported_algorithm(first, tmp_path):
    assert {r["algorithm"] for r in first} == set(SUPPORTED)
    again = results(tmp_path, seeds=2, algorithm_names=SUPPORTED)
    assert comparable_rows(again) == comparable_rows(first)


def test_a_runs_last_row_says_under_what_it_reproduces(first):
    """Rows reproduce at one torch thread count on one kind of CPU (docs/scaling.md): each
    run's last row records both and the torch version in its details, the others do not, and
    ``comparable_rows`` (how engines' tables are compared) drops exactly these facts."""
    runs = [[r for r in first if (r["algorithm"], r["seed"]) == key] for key in {
        (r["algorithm"], r["seed"]) for r in first}]  # fmt: skip
    facts = {
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),  # in-process engine: this process's threads
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    for rows in runs:
        assert json.loads(rows[-1]["details"]) == facts
        assert all(not r["details"] for r in rows[:-1])
        assert comparable_rows(rows)[-1]["details"] is None
    extra = {"details": json.dumps({"curve_accuracy": 0.5, **facts}), "wall_time_s": "1.0"}
    assert comparable_rows([extra]) == [{"details": '{"curve_accuracy": 0.5}'}]


def test_few_shot_only_algorithms_are_deterministic_on_their_own_problem(root, tmp_path):
    """protonet and maml have no synthetic counterpart: check them on the Omniglot smoke
    setting instead (one setting, one round, one seed; real data, so the root fixture)."""
    names = list(FEW_SHOT_ONLY)
    suite = load_suite("omniglot", "smoke", seeds=1, rounds=1, algorithm_names=names)
    suite = suite.only_settings(["5w1s"])
    tables = []
    for name in ("a", "b"):
        execute_suite(suite, tmp_path / name, sink=None, progress=False, echo=lambda _: None)
        tables.append(comparable_rows(read_rows(tmp_path / name / "results.csv")))
    assert {r["algorithm"] for r in tables[0]} == set(FEW_SHOT_ONLY) == {"maml", "protonet"}
    assert all(get(name).supports(FewShotProblem) for name in FEW_SHOT_ONLY)
    assert tables[0] == tables[1]


@pytest.mark.parametrize("name", FEW_SHOT_ONLY)
def test_few_shot_only_algorithms_fail_clearly_on_the_synthetic_problem(name, tmp_path):
    with pytest.raises(ValueError, match=f"{name} seed=0 .*no single-level loss '{name}'"):
        results(tmp_path, seeds=1, algorithm_names=[name])
    assert not list((tmp_path / "runs").glob("*.csv"))  # nothing half-written


def test_different_seeds_differ(first):
    for algorithm in ("rabo", "rafbo", "fedmbo", "simfbo"):
        runs = [[r for r in first if r["algorithm"] == algorithm and r["seed"] == s] for s in "01"]
        assert runs[0][0]["run_id"] != runs[1][0]["run_id"]
        for q in (0, -1):
            assert runs[0][q]["upper_loss"] != runs[1][q]["upper_loss"]


def test_algorithms_of_one_seed_start_from_the_same_point(first):
    starts = {r["upper_loss"] for r in first if r["round"] == "0" and r["seed"] == "0"}
    assert len(starts) == 1


def test_rounds_and_eval_every_do_not_change_the_trajectory(first, tmp_path):
    """Random streams are keyed by (suite, problem, capacities, seed), not by the horizon or
    the evaluation schedule: a shorter or sparser run is a sub-sequence of the full one."""
    dense = {r["round"]: r for r in first if r["algorithm"] == "rabo" and r["seed"] == "0"}
    shorter = results(tmp_path / "shorter", seeds=1, rounds=2, algorithm_names=["rabo"])
    suite = load_suite("synthetic", "smoke", seeds=1, algorithm_names=["rabo"])
    sparse = tmp_path / "sparse"
    execute_suite(replace(suite, eval_every=2), sparse, progress=False, echo=lambda _: None)
    sparse_rows = read_rows(sparse / "results.csv")
    assert [r["round"] for r in shorter] == ["0", "1", "2"]
    assert [r["round"] for r in sparse_rows] == ["0", "2", "3"]
    for row in [*shorter, *sparse_rows]:
        for column in ("grad_norm_sq", "inner_error", "oracle_calls", "coverage_x_min"):
            assert row[column] == dense[row["round"]][column]


def test_client_engine_is_an_execution_choice_not_part_of_the_run_id(first, tmp_path):
    """``clients`` reaches the round loop (an unknown name fails there) and leaves the run
    ids, the trajectory's identity, unchanged."""
    suite = load_suite("synthetic", "smoke", seeds=1, algorithm_names=["fedmbo"])
    quiet = {"progress": False, "echo": lambda _: None}
    with pytest.raises(ValueError, match="unknown client simulator 'bogus'"):
        execute_suite(suite, tmp_path / "bogus", clients="bogus", **quiet)
    execute_suite(suite, tmp_path / "vectorised", clients="vectorised", **quiet)
    rows = read_rows(tmp_path / "vectorised" / "results.csv")
    same = [r for r in first if r["algorithm"] == "fedmbo" and r["seed"] == "0"]
    assert [r["run_id"] for r in rows] == [r["run_id"] for r in same]
