"""The commented templates of docs/templates/ run against the current API, so they cannot rot.

Each template is imported from its file and run for two rounds on a small problem. The
registries (algorithms, estimators, problems) are module-level, so the ``registries`` fixture
gives every test copies of them that monkeypatch restores afterwards: what a template
registers is gone when its test ends.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from rabo_bench.algorithms import available, get, registry
from rabo_bench.cli import main
from rabo_bench.engine.results import read_rows
from rabo_bench.federated.rounds import FederatedRun
from rabo_bench.hypergrad import available_estimators, make_estimator
from rabo_bench.hypergrad import base as estimator_registry
from rabo_bench.hypergrad.compare import Setting, compare_estimators
from rabo_bench.problems import QuadraticBilevel
from rabo_bench.problems import registry as problem_registry

TEMPLATES = Path(__file__).resolve().parents[2] / "docs" / "templates"
CAPACITIES = (1.0, 0.5, 0.5, 0.25)


def private_registries(monkeypatch) -> None:
    """Point the three registries at copies (built-in algorithms loaded first)."""
    available()
    problem_registry.problems()
    monkeypatch.setattr(registry, "_ALGORITHMS", dict(registry._ALGORITHMS))
    monkeypatch.setattr(estimator_registry, "_REGISTRY", dict(estimator_registry._REGISTRY))
    monkeypatch.setattr(problem_registry, "_PROBLEMS", dict(problem_registry._PROBLEMS))


@pytest.fixture
def registries(monkeypatch):
    """Copies of the registries for this test; monkeypatch restores the originals after it."""
    private_registries(monkeypatch)
    return monkeypatch


def load_template(name: str, monkeypatch) -> ModuleType:
    """docs/templates/<name>.py as a fresh module (in sys.modules for this test only, where
    dataclasses look up the module's names)."""
    path = TEMPLATES / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"docs_templates_{name}", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def two_rounds(problem, algorithm, clients: str = "sequential") -> FederatedRun:
    run = FederatedRun(problem, algorithm, CAPACITIES, "templates", clients=clients)
    for _ in range(2):
        report = run.step()
    assert report.oracles.total > 0
    assert all(torch.isfinite(t).all() for t in (*run.x.values(), *run.y.values()))
    return run


def small_quadratic(noise: float = 0.3) -> QuadraticBilevel:
    return QuadraticBilevel(dim_x=6, dim_y=6, num_clients=len(CAPACITIES), noise=noise)


def test_algorithm_template_registers_recipes_that_run(registries):
    template = load_template("my_algorithm", registries)
    names = ("my_rabo_cg", "my_rabo_random", "my_random_single_level")
    assert set(names) <= set(available())
    problem = small_quadratic()
    x0 = problem.init_params(torch.Generator().manual_seed(0))[0]["x"]
    for name in names:
        run = two_rounds(problem, get(name))
        assert not torch.equal(run.x["x"], x0)
    # the new policy: ceil(r C) random rows per client, reproducible from the mask stream
    x, y = problem.init_params(torch.Generator().manual_seed(0))
    policy = template.RandomChannels()
    masks = policy.assign(x, y, CAPACITIES, 0, torch.Generator().manual_seed(1))
    again = policy.assign(x, y, CAPACITIES, 0, torch.Generator().manual_seed(1))
    assert [m.x.dense()["x"].sum().item() for m in masks] == [6, 3, 3, 2]
    for first, second in zip(masks, again, strict=True):
        assert torch.equal(first.x.dense()["x"], second.x.dense()["x"])
    # its setting is a suite override, and it can be swapped into another algorithm by name
    only_y = get("my_rabo_random", {"policy": {"mask_x": False}})
    assert only_y.to_dict()["policy"] == {"type": "my_random_channels", "mask_x": False}
    assert get("rabo", {"policy": {"type": "my_random_channels"}}).policy == policy


def test_estimator_template_matches_the_closed_form_and_runs_in_rabo(registries):
    load_template("my_estimator", registries)
    deterministic = small_quadratic(noise=0.0)
    setting = Setting("my_neumann_one_batch", {"terms": 200, "eta": 0.5})
    row = compare_estimators(deterministic, [setting]).iloc[0]
    assert row.rel_error < 1e-10  # truncation (1 - eta mu_g)^N = 0.75^200
    assert (row.grad_f, row.grad_g, row.hvp, row.jvp) == (1, 0, 199, 1)
    swap = {"outer": {"estimator": {"type": "my_neumann_one_batch", "terms": 3, "eta": 0.5}}}
    algorithm = get("rabo", swap)
    assert algorithm.outer.estimator == make_estimator("my_neumann_one_batch", terms=3, eta=0.5)
    two_rounds(small_quadratic(), algorithm)


def test_problem_template_has_true_closed_forms_and_runs_as_a_suite(registries, tmp_path):
    template = load_template("my_problem", registries)
    exact = template.RidgeProblem(batch_size=0)
    row = compare_estimators(exact, [Setting("exact")]).iloc[0]
    assert row.rel_error < 1e-10  # autograd through the losses agrees with the closed form
    # vectorisable = True is true: both client simulators give the same iterate
    problem = template.RidgeProblem()
    runs = [two_rounds(problem, get("rabo"), clients) for clients in ("sequential", "vectorised")]
    torch.testing.assert_close(runs[0].x, runs[1].x, rtol=0, atol=1e-10)
    # registered by the template itself, a suite runs it with any algorithm
    assert problem_registry.problems()["my_ridge"].problem is template.RidgeProblem
    suite = tmp_path / "ridge.toml"
    suite.write_text(
        'rounds = 2\nalgorithms = ["rabo", "fedmbo", "static"]\n'
        "capacities = [1, 0.5, 0.5, 0.25]\n"
        '[problem]\nname = "my_ridge"\ndim = 4\n'
    )
    out = tmp_path / "out"
    assert main(["run", str(suite), "--out", str(out), "--no-mlflow", "--no-progress"]) == 0
    rows = read_rows(out / "results.csv")
    assert {r["algorithm"] for r in rows} == {"rabo", "fedmbo", "static"}
    assert all(math.isfinite(float(r["grad_norm_sq"])) for r in rows)


def test_what_templates_register_is_gone_after_their_scope():
    with pytest.MonkeyPatch.context() as scope:
        private_registries(scope)
        for name in ("my_algorithm", "my_estimator", "my_problem"):
            load_template(name, scope)
        assert "my_rabo_cg" in available() and "my_ridge" in problem_registry.problems()
    assert "my_rabo_cg" not in available()
    assert "my_neumann_one_batch" not in available_estimators()
    assert "my_ridge" not in problem_registry.problems()
    assert not any(name.startswith("docs_templates_") for name in sys.modules)
