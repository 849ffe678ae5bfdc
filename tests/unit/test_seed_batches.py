"""A seed batch gives each of its runs the rows the run has alone (issue 16 item 2: to 1e-10 in
float64), on the rate suite's quadratic (d_x = d_y = 10, ten clients at capacity 1/2).

Batched and alone, a run's clients run the same code on the same batches from the same
streams; the two differ in the order of floating-point sums (a seed batch sums its clients per
run with index_add, the sequential simulator one by one) and in torch.func against eager
autograd, i.e. by a few ulps per operation. RAFBO's finite differences divide such differences
by mu = 1e-3 (measured: 3e-13 after three rounds), still three orders below 1e-10 over the
smoke preset's four contractive rounds. Identity, oracle counts, parameters and bytes sent and
coverage must agree exactly; ``wall_time_s`` (the batch's round time shared out) and the
execution facts (a batch runs at one thread) are not compared (``results.comparable_rows``).
"""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rabo_bench.engine.batches import execute_batch, seed_batches
from rabo_bench.engine.checkpoint import Checkpoint, CheckpointPolicy
from rabo_bench.engine.results import comparable_rows, read_rows, run_file
from rabo_bench.engine.run import execute_run, expand
from rabo_bench.engine.runner import execute_specs
from rabo_bench.engine.suite import load_suite
from rabo_bench.federated.rounds import FederatedRun
from rabo_bench.federated.seeds import SeedBatch
from rabo_bench.problems.registry import make_problem
from rabo_bench.theory.rates import RateGrid, rate_runs
from tests.integration.heavy_ball import rabo_heavy_ball

TOL = 1e-10
SUITE = load_suite("rates", "smoke", seeds=3)
PROBLEM = make_problem(SUITE.problem, SUITE.problem_params)
ALGORITHMS = ("rabo", "rafbo", "fedmbo")


def point(algorithm: str):
    """The three seeds' runs of ``algorithm`` at the smoke grid's base point (Q = 4)."""
    runs = rate_runs(SUITE, RateGrid.parse(SUITE))
    specs = [s for sweep, _, s in runs if sweep == "rounds" and s.algorithm.name == algorithm]
    return [s for s in specs if s.rounds == SUITE.rounds]


def alone(specs):
    return [execute_run(spec, PROBLEM, clients="sequential") for spec in specs]


def assert_same_rows(expected: list[dict], got: list[dict]) -> None:
    """Rows of execute_run (Python values) or of run files (text): floats to TOL, the rest
    (identity, counts, status, coverage histograms) exactly."""
    assert len(got) == len(expected)
    for a, b in zip(comparable_rows(expected), comparable_rows(got), strict=True):
        assert a.keys() == b.keys()
        for key, value in a.items():
            if b[key] == value:
                continue
            assert _is_float(value), (key, value, b[key])
            assert math.isclose(float(b[key]), float(value), rel_tol=TOL, abs_tol=TOL), key


def _is_float(value) -> bool:
    if isinstance(value, float):
        return True
    try:
        return isinstance(value, str) and not float(value).is_integer()
    except ValueError:
        return False


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_batch_of_seeds_gives_every_run_its_rows_alone(algorithm):
    specs = point(algorithm)
    assert len(specs) == 3 and len({s.seed for s in specs}) == 3
    for expected, got in zip(alone(specs), execute_batch(specs, PROBLEM), strict=True):
        assert_same_rows(expected, got)
        assert got[-1]["round"] == SUITE.rounds and got[-1]["status"] == "ok"


SYNTHETIC = load_suite("synthetic", "smoke", seeds=2, rounds=2)


@pytest.mark.parametrize("algorithm", SYNTHETIC.algorithms)
def test_every_synthetic_algorithm_batches_to_its_rows_alone(algorithm):
    """Masks drawn per run from its own iterate (importance segments, FIARSE's thresholds),
    joint single-level training: two seeds, two rounds of the synthetic suite's smoke preset."""
    specs = [s for s in expand(SYNTHETIC) if s.algorithm.name == algorithm]
    problem = make_problem(SYNTHETIC.problem, SYNTHETIC.problem_params)
    expected = [execute_run(spec, problem, clients="sequential") for spec in specs]
    for rows, got in zip(expected, execute_batch(specs, problem), strict=True):
        assert_same_rows(rows, got)


def test_a_run_that_diverges_in_a_batch_ends_there_and_the_others_go_on():
    """A divergence factor of 1.5 stops seed 0 at round 3 (its grad_norm_sq grows past 1.5x its
    round-0 value) and not the others: each keeps its rows alone."""
    specs = [dataclasses.replace(s, diverge_factor=1.5) for s in point("rabo")]
    batched = execute_batch(specs, PROBLEM)
    assert {rows[-1]["status"] for rows in batched} == {"diverged", "ok"}
    for expected, got in zip(alone(specs), batched, strict=True):
        assert_same_rows(expected, got)


def test_runs_that_cannot_be_batched_run_one_by_one(tmp_path):
    """cg stops on a residual, so the vectorised simulator (and a batch) cannot run it."""
    cg = {"outer": {"estimator": {"type": "cg", "iterations": 3}}}
    specs = [
        dataclasses.replace(s, algorithm=s.algorithm.with_overrides(cg)) for s in point("rabo")
    ]
    for batch, out in ((1, tmp_path / "one"), (3, tmp_path / "asked")):
        execute_specs(specs, PROBLEM, out, progress=False, echo=lambda _: None, seed_batch=batch)
    for spec in specs:
        one, asked = (read_rows(run_file(tmp_path / d, spec.run_id)) for d in ("one", "asked"))
        assert_same_rows(one, asked)


def test_a_batch_resumed_from_its_checkpoints_gives_the_uninterrupted_rows(tmp_path):
    specs = point("rabo")
    policy = CheckpointPolicy(rounds=2, minutes=1e9)

    def checkpoints():
        return [Checkpoint(tmp_path / f"{s.run_id}.pt", policy) for s in specs]

    first = execute_batch(specs, PROBLEM, checkpoints=checkpoints())  # saves round 2
    assert all(c.load().round == 2 for c in checkpoints())
    resumed = execute_batch(specs, PROBLEM, checkpoints=checkpoints())
    for expected, got in zip(alone(specs), resumed, strict=True):
        assert_same_rows(expected, got)
    for a, b in zip(first, resumed, strict=True):
        assert_same_rows(a, b)


def test_a_stateful_algorithm_keeps_each_runs_state_in_a_batch_and_its_checkpoints(tmp_path):
    """Heavy-ball momentum (the carried-state template): the buffer is stacked per run, saved
    in each run's checkpoint at round 2 and stacked again on resume."""
    specs = [dataclasses.replace(s, algorithm=rabo_heavy_ball(0.5)) for s in point("rabo")]
    policy = CheckpointPolicy(rounds=2, minutes=1e9)
    paths = [tmp_path / f"{s.run_id}.pt" for s in specs]
    execute_batch(specs, PROBLEM, checkpoints=[Checkpoint(p, policy) for p in paths])
    saved = [Checkpoint(p, policy).load().carried for p in paths]
    assert all(c["heavy_ball_hypergradient"]["x"].shape == (10,) for c in saved)
    resumed = execute_batch(specs, PROBLEM, checkpoints=[Checkpoint(p, policy) for p in paths])
    for expected, got in zip(alone(specs), resumed, strict=True):
        assert_same_rows(expected, got)


def test_the_runner_writes_the_same_run_files_batched_and_one_by_one(tmp_path):
    specs = [spec for name in ALGORITHMS for spec in point(name)]
    for batch, out in ((1, tmp_path / "one"), (3, tmp_path / "batched")):
        execute_specs(specs, PROBLEM, out, progress=False, echo=lambda _: None, seed_batch=batch)
    for spec in specs:
        one, batched = (run_file(tmp_path / d, spec.run_id) for d in ("one", "batched"))
        assert one.with_suffix(".json").read_text() == batched.with_suffix(".json").read_text()
        assert_same_rows(read_rows(one), read_rows(batched))


def test_a_seed_batch_refuses_runs_that_differ_in_more_than_the_seed():
    rabo, rafbo = point("rabo")[0], point("rafbo")[0]
    runs = [FederatedRun(PROBLEM, s.algorithm, s.capacities, s.stream_key) for s in (rabo, rafbo)]
    with pytest.raises(ValueError, match="one problem, algorithm"):
        SeedBatch(runs)


CELLS = [point(name)[0] for name in ALGORITHMS]
CELLS.append(dataclasses.replace(CELLS[0], rounds=SUITE.rounds + 1))


@settings(deadline=None, max_examples=30)
@given(st.lists(st.integers(0, len(CELLS) - 1), min_size=1, max_size=12), st.integers(1, 4))
def test_seed_batches_group_runs_that_differ_only_in_the_seed(picks, size):
    """Every run once, in batches of at most ``size`` runs of one configuration but the seed."""
    specs = [dataclasses.replace(CELLS[p], seed=i) for i, p in enumerate(picks)]
    batches = seed_batches(specs, size)
    assert sorted(s.seed for b in batches for s in b) == list(range(len(specs)))
    for batch in batches:
        assert 1 <= len(batch) <= size
        configs = [{**s.config(), "seed": None} for s in batch]
        assert all(c == configs[0] for c in configs)
