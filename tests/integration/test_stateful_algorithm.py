"""A stateful algorithm is one file (issue 18): ``tests/integration/heavy_ball.py`` adds RABO
with server momentum through the round state alone; it runs through the suite runner, equals
RABO at momentum 0 bit for bit, differs from round 2 on otherwise (round 1 has an empty buffer,
so it equals RABO there too), and a run killed mid-way resumes to the rows of an uninterrupted
one, which needs the momentum buffer in the checkpoint."""

from __future__ import annotations

from dataclasses import replace

from rabo_bench.algorithms import registered
from rabo_bench.engine.checkpoint import Checkpoint
from rabo_bench.engine.results import comparable_rows, read_rows
from rabo_bench.engine.run import execute_run, expand
from rabo_bench.engine.runner import ProblemCache, execute_suite
from rabo_bench.engine.suite import load_suite
from tests.integration.heavy_ball import rabo_heavy_ball
from tests.integration.interrupted import run_killed_at
from tests.integration.tiny_suite import tiny_suite

METRICS = ("upper_loss", "grad_norm_sq", "inner_error")
SAME_SETTINGS = "\n".join(
    f"""
[overrides.{name}]
inner = {{ steps = 3, lr = 0.2 }}
outer = {{ lr = 0.1, estimator = {{ eta = 0.5, terms = 5 }} }}"""
    for name in ("rabo", "rabo-heavy-ball")
)


def trajectories(tmp_path, momentum: float) -> dict[str, list[dict[str, str]]]:
    """Rows of rabo and of rabo-heavy-ball with the same settings, by algorithm (a two-client
    quadratic, 8 rounds, run by the suite runner)."""
    algorithms = ["rabo", "rabo-heavy-ball"]
    path = tiny_suite(tmp_path, "heavy", 8, algorithms, tables=SAME_SETTINGS)
    with registered(rabo_heavy_ball(momentum)):
        execute_suite(load_suite(str(path)), tmp_path, sink=None, progress=False, echo=print)
    rows = read_rows(tmp_path / "results.csv")
    return {a: [r for r in rows if r["algorithm"] == a] for a in ("rabo", "rabo-heavy-ball")}


def test_momentum_zero_is_rabo_bit_for_bit(tmp_path):
    runs = trajectories(tmp_path, 0.0)
    assert len(runs["rabo"]) > 2
    for plain, heavy in zip(runs["rabo"], runs["rabo-heavy-ball"], strict=True):
        assert [heavy[m] for m in METRICS] == [plain[m] for m in METRICS]


def test_momentum_changes_the_trajectory_from_round_two(tmp_path):
    runs = trajectories(tmp_path, 0.9)
    by_round = {a: {r["round"]: r["upper_loss"] for r in rows} for a, rows in runs.items()}
    assert by_round["rabo"]["1"] == by_round["rabo-heavy-ball"]["1"]
    later = [q for q in by_round["rabo"] if int(q) >= 2]
    assert later and all(by_round["rabo"][q] != by_round["rabo-heavy-ball"][q] for q in later)


def test_a_killed_stateful_run_resumes_with_its_momentum(tmp_path):
    path = tiny_suite(tmp_path, "heavy", 8, ["rabo-heavy-ball"], tables=SAME_SETTINGS)
    with registered(rabo_heavy_ball(0.9)):
        spec = expand(load_suite(str(path)))[0]
    problem = ProblemCache()(spec)
    checkpoint = run_killed_at(spec, problem, tmp_path, 4)
    saved = checkpoint.load()
    assert saved.round == 3 and set(saved.carried) == {"heavy_ball_hypergradient"}
    whole = comparable_rows(execute_run(spec, problem))
    resumed = execute_run(spec, problem, checkpoint=checkpoint)
    assert comparable_rows(resumed) == whole

    # the control: the same resume without the buffer lands elsewhere
    Checkpoint(checkpoint.path).save(replace(saved, carried=None))
    assert comparable_rows(execute_run(spec, problem, checkpoint=checkpoint)) != whole
