"""compare_estimators: one row per setting, exact and CG agree with the closed form."""

from __future__ import annotations

import math

import pytest

from rabo_bench.hypergrad.compare import Setting, compare_estimators, to_markdown, to_text
from rabo_bench.problems import LogisticHyperProblem, QuadraticBilevel

SETTINGS = [
    Setting("exact"),
    Setting("cg", {"iterations": 20}),
    Setting("neumann", {"terms": 5, "eta": 0.5}),
    Setting("itd", {"steps": 3, "lr": 0.5}),
    Setting("coordinate_fd", {"steps": 3, "lr": 0.5, "mu": 1e-4, "coordinates": 2}),
    Setting("gaussian_zo", {"steps": 3, "lr": 0.5, "directions": 4}),
]


@pytest.mark.parametrize(
    "problem",
    [
        QuadraticBilevel(dim_x=4, dim_y=5, num_clients=3, nu=0.5),
        LogisticHyperProblem(dim=3, num_clients=2, train_samples=20, val_samples=20),
    ],
    ids=["quadratic", "logistic"],
)
def test_compare_estimators_table(problem):
    table = compare_estimators(problem, SETTINGS, seed=3)
    assert len(table) == len(SETTINGS)
    assert table["estimator"].tolist() == [s.estimator for s in SETTINGS]
    assert table["start"].tolist() == ["y*(x)"] * 3 + ["y0"] * 3
    assert all(math.isfinite(e) for e in table["rel_error"])
    exact_and_cg = table.set_index("estimator").loc[["exact", "cg"], "rel_error"]
    # dense solve and converged CG on a well-conditioned float64 problem: round-off only
    assert (exact_and_cg < 1e-10).all()
    assert (table["total"] > 0).all()
    assert (table["total"] == table[["grad_f", "grad_g", "hvp", "jvp"]].sum(axis=1)).all()
    assert (table["wall_ms"] >= 0).all()


def test_compare_is_reproducible_and_labels_settings():
    problem = QuadraticBilevel(dim_x=3, dim_y=3, num_clients=2)
    settings = [Setting("gaussian_zo", {"steps": 2, "lr": 0.5, "directions": 3})]
    first, second = (compare_estimators(problem, settings, seed=7) for _ in range(2))
    assert first["rel_error"].tolist() == second["rel_error"].tolist()
    assert first["setting"].tolist() == ["steps=2 lr=0.5 directions=3"]
    assert Setting("exact").label == "default"


def test_tables_have_one_line_per_row():
    table = compare_estimators(QuadraticBilevel(dim_x=2, dim_y=2, num_clients=1), SETTINGS[:2])
    markdown, text = to_markdown(table).splitlines(), to_text(table).splitlines()
    assert len(markdown) == len(text) == 2 + len(SETTINGS[:2])
    assert markdown[0].startswith("| estimator") and set(markdown[1]) <= set("|-: ")
    assert len({len(line) for line in markdown}) == 1
