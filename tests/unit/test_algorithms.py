"""The algorithm registry and recipe overrides."""

from __future__ import annotations

import json

import pytest

from rabo_bench.algorithms import available, get
from rabo_bench.federated.policies import ChannelImportance
from rabo_bench.submodel.channels import kept_rows


def test_registry_lists_the_paper_methods():
    names = available()
    assert {"rabo", "rafbo", "fedmbo"} <= set(names)
    assert all(desc and "\n" not in desc for desc in names.values())


def test_rafbo_is_rabo_with_coordinate_finite_differences():
    rabo, rafbo = get("rabo"), get("rafbo")
    assert rafbo.policy == rabo.policy and rafbo.inner == rabo.inner
    assert rabo.outer.estimator.name == "neumann"
    assert rafbo.outer.estimator.name == "coordinate_fd"


def test_overrides_are_nested_typed_and_serialisable():
    algo = get("rabo", {"inner": {"steps": 3}, "outer": {"lr": 1, "estimator": {"terms": 2}}})
    assert algo.inner.steps == 3 and algo.outer.lr == 1.0 and algo.outer.estimator.terms == 2
    assert get("rabo").inner.steps == 10  # the registered recipe is unchanged
    swapped = get("rabo", {"outer": {"estimator": {"type": "cg", "iterations": 4}}})
    assert swapped.outer.estimator.name == "cg" and swapped.outer.estimator.iterations == 4
    assert json.loads(json.dumps(algo.to_dict())) == algo.to_dict()


def test_neumann_depth_and_step_have_one_path_for_every_algorithm():
    """outer.estimator.terms / eta set RABO's local series and FedMBO's client-sampled one."""
    for name, solve in (("rabo", "neumann"), ("fedmbo", "sampled_neumann")):
        algo = get(name, {"outer": {"estimator": {"terms": 3, "eta": 0.5}}})
        estimator = algo.to_dict()["outer"]["estimator"]
        assert estimator == {"type": solve, "terms": 3, "eta": 0.5, "randomized": False}


def test_a_mask_policy_can_be_swapped_by_name_with_its_settings():
    """The coverage suite swaps RABO's importance masks for fixed segments per setting."""
    algo = get("rabo", {"policy": {"type": "fixed_segments", "coverage": 3}})
    assert algo.policy.name == "fixed_segments" and algo.policy.coverage == 3
    static = get("rabo", {"policy": {"type": "static_prefix"}})  # defined in baselines/
    assert static.policy.name == "static_prefix"
    assert algo.to_dict()["policy"] == {"type": "fixed_segments", "coverage": 3}


@pytest.mark.parametrize(
    ("name", "overrides", "message"),
    [
        ("nope", None, "unknown algorithm 'nope'"),
        ("rabo", {"inner": {"stepz": 3}}, "unknown setting rabo.inner.stepz"),
        ("rabo", {"inner": {"steps": 2.5}}, "rabo.inner.steps must be like 10"),
        ("rabo", {"inner": {"steps": True}}, "rabo.inner.steps must be like 10"),
        ("rabo", {"inner": {"type": "minibatch_sgd"}}, "cannot change"),
        ("rabo", {"solver": {}}, "unknown algorithm setting"),
        ("rabo", {"outer": {"estimator": {"type": "magic"}}}, "unknown hypergradient estimator"),
        ("rabo", {"policy": {"type": "magic"}}, "rabo.policy.type = 'magic' is not a mask policy"),
        ("rabo", {"policy": {"type": "fixed_segments", "cover": 2}}, "unknown setting"),
        ("rabo", {"outer": {"terms": 3}}, "rabo.outer.terms; 'local_hypergradient' takes"),
        ("fedmbo", {"outer": {"terms": 3}}, "; use fedmbo.outer.estimator.terms"),
        ("fedmbo", {"outer": {"eta": 0.5}}, "; use fedmbo.outer.estimator.eta"),
        ("fedmbo", {"outer": {"estimator": {"type": "cg"}}}, "takes the sampled_neumann"),
    ],
)
def test_bad_names_and_settings_raise_one_clear_error(name, overrides, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        get(name, overrides)


@pytest.mark.parametrize(
    ("r", "rows", "kept"), [(1, 10, 10), (0.1, 10, 1), (0.5, 7, 4), (1 / 16, 20, 2)]
)
def test_kept_rows_is_ceil_of_width(r, rows, kept):
    assert kept_rows(r, rows) == kept


@pytest.mark.parametrize("r", [0, -0.5, 1.5])
def test_capacity_outside_unit_interval_is_refused(r):
    with pytest.raises(ValueError, match=r"capacity must be in \(0, 1\]"):
        kept_rows(r, 10)


def test_channel_importance_keeps_the_largest_rows_and_nests():
    import torch

    x = {"x": torch.tensor([0.1, -3.0, 2.0, 0.0, -0.5])}
    y = {"y": torch.tensor([[1.0, 1.0], [0.0, 0.1], [3.0, 0.0]])}
    masks = ChannelImportance().assign(x, y, [1.0, 0.4, 0.2], 0, torch.Generator())
    assert masks[1].x.index["x"][0].tolist() == [1, 2]
    assert masks[2].x.index["x"][0].tolist() == [1]
    assert masks[2].y.index["y"][0].tolist() == [2] and masks[2].y.index["y"][1] is None
    assert masks[0].x.numel() == 5
