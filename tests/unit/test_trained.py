"""Evaluating what was trained (issue 14): the coordinates nobody held, the clients' own
sub-models, and the warning a run with an untrained coordinate prints. Exact counts: no
tolerances."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from rabo_bench.algorithms import get
from rabo_bench.engine.suite import SUITES_DIR
from rabo_bench.federated.policies import ImportanceSegments, segment_of
from rabo_bench.metrics.trained import TrainedCoordinates, submodel_accuracy
from rabo_bench.problems import QuadraticBilevel
from rabo_bench.report.summary import uncovered_note
from rabo_bench.submodel import ClientMasks, StructuredMask
from tests.cli import run_cli


def _rows_mask(params, rows: dict[str, list[int]]) -> StructuredMask:
    return StructuredMask.rows(params, {n: torch.tensor(r) for n, r in rows.items()})


def test_untrained_fraction_is_the_share_of_coordinates_no_round_held():
    x = {"a": torch.zeros(4, 2)}
    y = {"b": torch.zeros(4)}
    trained = TrainedCoordinates(x, y)
    first = ClientMasks(_rows_mask(x, {"a": [0]}), _rows_mask(y, {"b": [0, 1]}))
    second = ClientMasks(_rows_mask(x, {"a": [0, 1]}), _rows_mask(y, {"b": [1]}))
    trained.add([first, second])  # round 1: x rows {0, 1} (4 of 8), y {0, 1} (2 of 4)
    assert trained.untrained_fraction() == pytest.approx(1 - 6 / 12)
    trained.add([ClientMasks(_rows_mask(x, {"a": [3]}), _rows_mask(y, {"b": [3]}))])
    assert trained.untrained_fraction() == pytest.approx(1 - 9 / 12)  # unions, never shrinks


class _AccuracyOfX(QuadraticBilevel):
    """A problem whose "accuracy" is the sum of its x, so a sub-model's score is the sum of the
    coordinates it keeps; counts its evaluations."""

    reports_accuracy = True
    calls = 0

    def evaluate(self, x, y):
        type(self).calls += 1
        return {"accuracy": float(x["x"].sum())}


def test_submodel_accuracy_averages_the_clients_and_evaluates_a_shared_mask_once():
    problem = _AccuracyOfX(dim_x=4, dim_y=2, num_clients=3, seed=0)
    x = {"x": torch.tensor([1.0, 2.0, 3.0, 4.0])}
    y = {"y": torch.zeros(2)}
    half = ClientMasks(_rows_mask(x, {"x": [0, 1]}), StructuredMask.full(y))
    full = ClientMasks(StructuredMask.full(x), StructuredMask.full(y))
    _AccuracyOfX.calls = 0
    result = submodel_accuracy(problem, x, y, [half, half, full])  # x ⊙ m sums: 3, 3, 10
    assert result == {"submodel_accuracy": pytest.approx(16 / 3)}
    assert _AccuracyOfX.calls == 2
    plain = QuadraticBilevel(dim_x=4, dim_y=2, num_clients=3, seed=0)
    assert submodel_accuracy(plain, x, y, [half]) == {}  # no accuracy metric: nothing


@pytest.mark.parametrize("segments", [1, 2, 3, 16])
def test_segments_of_equal_capacity_clients_cycle_through_every_segment(segments):
    for colour in range(4):
        for q in range(3):
            taken = [segment_of(k, q, colour, segments) for k in range(segments)]
            assert sorted(taken) == list(range(segments))  # n consecutive clients: all n


def test_segments_of_two_coupled_layers_cover_every_block_with_eight_clients():
    """Two coupled layers (different colours) at two segments: eight clients of one capacity
    hold all four (out segment, in segment) blocks of the weight that joins them."""
    for colours in [(0, 1), (1, 2), (0, 3), (2, 3)]:
        blocks = {tuple(segment_of(k, 0, c, 2) for c in colours) for k in range(8)}
        assert blocks == {(0, 0), (0, 1), (1, 0), (1, 1)}


def test_importance_segments_hold_each_client_at_its_capacity():
    x, y = {"x": torch.arange(8.0)}, {"y": torch.arange(8.0, 0, -1)}
    masks = ImportanceSegments().assign(x, y, [1.0, 0.5, 0.5, 0.25], 0, torch.Generator())
    assert [m.x.numel() for m in masks] == [8, 4, 4, 2]
    # the two half-width clients take the two halves of x's importance order (7..4 and 3..0)
    held = [set(m.x.index["x"][0].tolist()) for m in masks[1:3]]
    assert held[0] | held[1] == set(range(8)) and not held[0] & held[1]


def test_summary_flags_runs_with_uncovered_coordinates():
    def run(algorithm, cx, cy):
        return {
            "run_id": algorithm,
            "setting": "",
            "algorithm": algorithm,
            "seed": 0,
            "round": 1,
            "accuracy": 0.5,
            "grad_norm_sq": None,
            "inner_error": None,
            "params_up": 1,
            "params_down": 1,
            "oracle_calls": 1,
            "coverage_x_min": cx,
            "coverage_y_min": cy,
            "wall_time_s": 1.0,
        }

    covered = pd.DataFrame([run("rabo", 2, 2)])
    assert uncovered_note(covered) == ""
    note = uncovered_note(pd.DataFrame([run("rabo", 2, 2), run("static", 2, 0)]))
    assert "1 of 2 runs (static)" in note


def test_a_run_with_an_untrained_coordinate_prints_one_warning_line(capsys, tmp_path: Path):
    suite = (SUITES_DIR / "synthetic.toml").read_text()
    nested = suite.replace(
        "capacities = [1, 1, 0.5, 0.5, 0.25, 0.25, 0.125, 0.125, 0.0625, 0.0625]\n",
        "capacities = [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]\n",
        1,
    )
    path = tmp_path / "nested.toml"
    path.write_text(nested)
    args = ["run", str(path), "--preset", "smoke", "--seeds", "1", "--no-progress", "--no-mlflow"]
    code, out, _ = run_cli(capsys, *args, "--algorithms", "rabo,oap", "--out", str(tmp_path / "o"))
    assert code == 0
    warnings = [line for line in out.splitlines() if line.startswith("warning:")]
    # OAP keeps nested top-r channels: half of every row set is held by nobody; RABO's
    # segments cover everything
    assert len(warnings) == 1 and "oap seed=0" in warnings[0]
    assert get("rabo").policy == ImportanceSegments()


def test_settings_option_runs_a_subset_and_refuses_unknown_names(capsys, tmp_path: Path):
    args = ["run", "omniglot", "--preset", "smoke", "--no-progress", "--no-mlflow"]
    code, _, err = run_cli(capsys, *args, "--settings", "9w9s", "--out", str(tmp_path))
    assert code == 2
    assert err.strip().count("\n") == 0 and "--settings: 9w9s not among" in err
