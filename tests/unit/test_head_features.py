"""What the Omniglot head reads in g and f (``head_features``), and how that setting enters a
run's identity (``loss_settings`` in rabo_bench.problems.registry).

* ``unit`` (the default): g and f read unit-normalised features, as the evaluation's heads do;
  ``raw``: the backbone's features as they come (the runs before stop 26).
* The single-level losses (the prototypical loss, the global reading's joint training) never
  read it: their values are bit-identical under both, so their run ids may leave it out.
* A run's id holds it only where it can change the run's numbers (an algorithm that reads g
  and f) and only at ``unit`` (runs made at ``raw`` keep the ids they had before the setting
  existed); the random streams never hold it, so a bilevel run at ``unit`` is paired seed by
  seed with the sub-model runs.

Needs the real data (tests/unit/test_data.py's rule). Tolerance: rows normalised in float32
have norm 1 to a few ulps (1e-6).
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from rabo_bench.algorithms import registry
from rabo_bench.engine.run import expand
from rabo_bench.engine.suite import load_suite
from rabo_bench.models.networks import forward, init, init_head
from rabo_bench.problems.fewshot import FewShotConfig, FewShotProblem
from rabo_bench.problems.registry import make_problem, saved_params

UNIT = FewShotConfig(width=4, test_tasks=6, curve_tasks=3, eval_steps=5)
RAW = replace(UNIT, head_features="raw")


@pytest.fixture(scope="module")
def problems(root) -> dict[str, FewShotProblem]:
    return {c.head_features: FewShotProblem(c) for c in (UNIT, RAW)}


def params(seed: int = 0):
    rng = torch.Generator().manual_seed(seed)
    return init(UNIT.net, rng, torch.float32), init_head(
        UNIT.net, UNIT.ways, rng, torch.float32, "head"
    )


def test_unit_is_the_default():
    assert FewShotConfig().head_features == "unit"


def test_g_and_f_read_unit_rows_or_the_raw_features(problems):
    x, y = params()
    e = problems["unit"].sample_task_batch(0, torch.Generator().manual_seed(1))[0]
    batch = (e.support, e.support_labels)
    raw = forward(UNIT.net, x, e.support)
    phi, labels = problems["unit"].lower_features(0, x, batch)
    torch.testing.assert_close(phi.norm(dim=-1), torch.ones(len(phi)), rtol=0, atol=1e-6)
    assert torch.equal(phi, F.normalize(raw, dim=-1)) and torch.equal(labels, e.support_labels)
    assert torch.equal(problems["raw"].lower_features(0, x, batch)[0], raw)
    assert not torch.allclose(raw.norm(dim=-1), torch.ones(len(raw)))  # the case is not trivial
    unit_f = problems["unit"].upper_loss(0, x, y, (e.query, e.query_labels))
    raw_f = problems["raw"].upper_loss(0, x, y, (e.query, e.query_labels))
    assert not torch.equal(unit_f, raw_f)


def test_episode_features_in_one_pass_are_the_head_input_of_each_episode(problems):
    problem = problems["unit"]
    x, _ = params(2)
    episodes = [problem.sample_task_batch(1, torch.Generator().manual_seed(s))[0] for s in (3, 4)]
    batches = [(e.support, e.support_labels) for e in episodes]
    phi, labels = problem.episode_features(x, batches)
    for k, batch in enumerate(batches):
        one, one_labels = problem.lower_features(1, x, batch)
        torch.testing.assert_close(phi[k], one, rtol=1e-5, atol=1e-6)
        assert torch.equal(labels[k], one_labels)


@pytest.mark.parametrize("one_pass", [False, True])
def test_the_prototypical_loss_does_not_read_it(problems, one_pass):
    x, _ = params(5)
    episodes = problems["unit"].sample_task_batch(0, torch.Generator().manual_seed(6))
    episodes += problems["unit"].sample_task_batch(0, torch.Generator().manual_seed(7))
    for problem in problems.values():
        problem.one_pass = one_pass
    try:
        proto = [p.prototypical_loss(x, episodes) for p in problems.values()]
    finally:
        for problem in problems.values():
            problem.one_pass = None
    assert torch.equal(*proto)


def test_the_global_readings_joint_training_does_not_read_it(root):
    glob = [FewShotProblem(replace(c, reading="global")) for c in (UNIT, RAW)]
    x, _ = params(8)
    y = init_head(UNIT.net, 964, torch.Generator().manual_seed(9), torch.float32, "head")
    batch = glob[0].sample_task_batch(2, torch.Generator().manual_seed(10))
    assert torch.equal(*(p.task_loss(2, x, y, batch) for p in glob))


@pytest.fixture(scope="module")
def specs():
    """The cpu preset's 5w1s runs of seed 0, by algorithm, at head_features unit."""
    suite = load_suite("omniglot", "cpu").only_settings(["5w1s"])
    return {s.algorithm.name: s for s in expand(suite) if s.seed == 0}


def at(spec, value: str | None):
    """``spec`` with head_features ``value``; None: as before the setting existed."""
    problem = {k: v for k, v in spec.problem_params.items() if k != "head_features"}
    return replace(
        spec, problem_params=problem if value is None else {**problem, "head_features": value}
    )


def test_a_run_id_holds_it_only_where_it_changes_the_numbers(specs):
    assert specs["rabo"].problem_params["head_features"] == "unit"
    maml = replace(specs["static"], algorithm=registry.get("maml"))
    for spec in (specs["rabo"], specs["rafbo"], specs["fedmbo"], maml):
        assert spec.algorithm.reads_losses, spec.algorithm.name
        assert at(spec, "unit").run_id != at(spec, "raw").run_id
        assert at(spec, "raw").run_id == at(spec, None).run_id
        assert at(spec, "unit").config()["problem"]["head_features"] == "unit"
    for name in ("static", "oap", "fedrolex", "fiarse", "protonet"):
        spec = specs[name]
        assert not spec.algorithm.reads_losses, name
        assert at(spec, "unit").run_id == at(spec, "raw").run_id == at(spec, None).run_id
    keys = {at(s, v).stream_key for s in specs.values() for v in ("unit", "raw", None)}
    assert len(keys) == 1


def test_a_saved_run_rebuilds_its_problem_with_the_features_it_read(specs, root):
    for value in ("unit", "raw", None):
        identity = at(specs["rabo"], value).config()["problem"]
        assert saved_params(identity)["head_features"] == (value or "raw")
    identity = specs["static"].config()["problem"]  # left out: rebuilt at the earlier value
    assert make_problem("omniglot", saved_params(identity)).config.head_features == "raw"
