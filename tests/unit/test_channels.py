"""Channel structure (``ChannelLayers``) and the mask policies built on it (SPEC §2 Step 1).

Everything here is exact integer / index bookkeeping on tiny hand-made parameter dicts, so
equalities are exact except the importance norms, which are compared with float64 rounding
tolerance.
"""

from __future__ import annotations

import pytest
import torch

from rabo_bench.federated.aggregation import coverage
from rabo_bench.federated.policies import (
    ChannelImportance,
    CoverageHalves,
    FixedSegments,
    largest_channels,
    layer_masks,
    prefix_channels,
)
from rabo_bench.models.networks import channel_layers, conv4, init, init_head, resnet12
from rabo_bench.submodel import ClientMasks, StructuredMask
from rabo_bench.submodel.channels import ChannelLayer, ChannelLayers


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def rand_params(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    g = gen(seed)
    return {n: torch.randn(s, generator=g, dtype=torch.float64) for n, s in shapes.items()}


def idx(*values: int) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.long)


# A coupled structure: layer "L" has 4 channels made by x.a's rows (and x.a_bias) and read by
# x.b's columns and y.h's columns (a "head"); "M" is b's rows; "H" is h's rows (y only).
SHAPES_X = {"a": (4, 3), "a_bias": (4,), "b": (2, 4)}
SHAPES_Y = {"h": (5, 4)}
COUPLED = ChannelLayers(
    (
        ChannelLayer("L", 4, (("x", "a", 0), ("x", "a_bias", 0), ("x", "b", 1), ("y", "h", 1))),
        ChannelLayer("M", 2, (("x", "b", 0),)),
        ChannelLayer("H", 5, (("y", "h", 0),)),
    )
)


def coupled_params(seed: int = 0):
    return rand_params(SHAPES_X, seed), rand_params(SHAPES_Y, seed + 1)


# -- rows_of: the synthetic problems' structure -----------------------------------------------
def test_rows_of_masks_equal_the_per_parameter_row_masks():
    x = rand_params({"w": (5, 3), "v": (4,)}, 0)
    y = rand_params({"u": (6, 2, 2), "c": (3,)}, 1)
    layers = ChannelLayers.rows_of(x, y)
    assert [(layer.name, layer.size) for layer in layers.layers] == [
        ("x.w", 5),
        ("x.v", 4),
        ("y.u", 6),
        ("y.c", 3),
    ]
    assert all(len(layer.members) == 1 and layer.members[0][2] == 0 for layer in layers.layers)
    kept = [idx(0, 2, 4), None, idx(1, 5), idx(2)]
    m_x, m_y = layers.masks(x, y, kept)
    assert m_x == StructuredMask.rows(x, {"w": idx(0, 2, 4)})
    assert m_y == StructuredMask.rows(y, {"u": idx(1, 5), "c": idx(2)})
    assert m_x.sub_shapes() == {"w": torch.Size((3, 3)), "v": torch.Size((4,))}
    assert m_y.sub_shapes() == {"u": torch.Size((2, 2, 2)), "c": torch.Size((1,))}


def test_rows_of_with_nothing_kept_restricted_is_the_full_mask():
    x = rand_params({"w": (5, 3)}, 0)
    y = rand_params({"u": (2,)}, 1)
    m_x, m_y = ChannelLayers.rows_of(x, y).masks(x, y, [None, None])
    assert (m_x, m_y) == (StructuredMask.full(x), StructuredMask.full(y))


def test_one_kept_set_per_layer_is_required():
    x, y = coupled_params()
    with pytest.raises(ValueError, match="2 kept-channel sets for 3 layers"):
        COUPLED.masks(x, y, [None, None])


# -- coupling ---------------------------------------------------------------------------------
def test_a_coupled_layer_carries_one_kept_set_to_every_member_dimension():
    x = rand_params({"a": (4, 3), "b": (2, 4)}, 0)
    y = rand_params({"h": (3, 4)}, 1)
    layers = ChannelLayers((ChannelLayer("L", 4, (("x", "a", 0), ("x", "b", 1), ("y", "h", 1))),))
    kept = idx(1, 3)
    m_x, m_y = layers.masks(x, y, [kept])
    assert torch.equal(m_x.index["a"][0], kept) and m_x.index["a"][1] is None
    assert m_x.index["b"][0] is None and torch.equal(m_x.index["b"][1], kept)
    assert m_y.index["h"][0] is None and torch.equal(m_y.index["h"][1], kept)
    # the narrow sub-model really is the product: a's rows 1, 3 and b's, h's columns 1, 3
    sub_x, sub_y = m_x.extract(x), m_y.extract(y)
    assert torch.equal(sub_x["a"], x["a"][[1, 3]])
    assert torch.equal(sub_x["b"], x["b"][:, [1, 3]])
    assert torch.equal(sub_y["h"], y["h"][:, [1, 3]])
    # the product "a's kept rows times b's kept columns" is the narrow layer's function
    features = torch.randn(7, 3, generator=gen(2), dtype=torch.float64)
    narrow = (features @ sub_x["a"].T) @ sub_x["b"].T
    masked = (features @ m_x.embed(sub_x, x)["a"].T) @ m_x.embed(sub_x, x)["b"].T
    torch.testing.assert_close(narrow, masked, rtol=1e-12, atol=1e-12)


def test_a_member_in_two_layers_is_refused():
    with pytest.raises(ValueError, match=r"\('x', 'a', 0\) belongs to channel layers 'P' and 'Q'"):
        ChannelLayers(
            (
                ChannelLayer("P", 4, (("x", "a", 0), ("y", "h", 1))),
                ChannelLayer("Q", 4, (("x", "a", 0),)),
            )
        )


def test_the_same_parameter_at_two_dimensions_may_sit_in_two_layers():
    # a square conv reading and producing different layers: (x, w, 0) and (x, w, 1) are distinct
    ChannelLayers((ChannelLayer("P", 3, (("x", "w", 0),)), ChannelLayer("Q", 3, (("x", "w", 1),))))


def test_sides_name_every_side_with_a_member():
    assert COUPLED.layers[0].sides == {"x", "y"}
    assert COUPLED.layers[1].sides == {"x"}
    assert COUPLED.layers[2].sides == {"y"}


# -- importance -------------------------------------------------------------------------------
def test_importance_is_the_norm_over_the_producing_members_only():
    x = {
        "a": torch.tensor([[3.0, 0.0], [1.0, 1.0], [0.0, 0.0]], dtype=torch.float64),
        "a_bias": torch.tensor([4.0, -1.0, 0.0], dtype=torch.float64),
        # b reads the layer (dim 1): huge entries that must not count
        "b": torch.full((2, 3), 100.0, dtype=torch.float64),
    }
    y = {"s": torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)}
    layer = ChannelLayer("L", 3, (("x", "a", 0), ("x", "a_bias", 0), ("x", "b", 1), ("y", "s", 0)))
    # channel 0: 3^2 + 0 + 4^2 + 0 = 25; channel 1: 1 + 1 + 1 + 1 = 4; channel 2: 0 + 0 + 0 + 4
    expected = torch.tensor([5.0, 2.0, 2.0], dtype=torch.float64)
    torch.testing.assert_close(layer.importance(x, y), expected, rtol=1e-15, atol=0)
    # l1: |3| + |4| = 7, 1 + 1 + 1 + 1 = 4, 2
    l1 = torch.tensor([7.0, 4.0, 2.0], dtype=torch.float64)
    torch.testing.assert_close(layer.importance(x, y, order=1), l1, rtol=1e-15, atol=0)
    # the largest-importance chooser breaks the tie between channels 1 and 2 towards index 1
    assert largest_channels(2)(layer, x, y, 2).tolist() == [0, 1]


def test_importance_without_a_producer_is_refused():
    x = {"b": torch.ones(2, 3)}
    layer = ChannelLayer("reader", 3, (("x", "b", 1),))
    with pytest.raises(ValueError, match="'reader' has no producing parameter"):
        layer.importance(x, {})


# -- policies on a coupled structure ----------------------------------------------------------
def test_fixed_segments_refuse_to_cut_both_ends_of_a_weight():
    # L and M both hold b (rows M, columns L): halves of both would leave b's off-diagonal
    # blocks to no client
    x, y = coupled_params()
    with pytest.raises(ValueError, match=r"both ends of a weight of layer 'L'.*coverage_halves"):
        FixedSegments(coverage=1).assign(x, y, [0.5] * 4, 0, gen(), COUPLED)


def test_coverage_halves_cut_one_end_of_every_weight_and_the_coupled_y_dims_follow():
    x, y = coupled_params()
    # L odd-sized to check the cut (C + 1) // 2
    x["a"], x["a_bias"], x["b"] = torch.randn(5, 3), torch.randn(5), torch.randn(2, 5)
    y["h"] = torch.randn(5, 5)
    layers = ChannelLayers(
        (
            ChannelLayer("L", 5, (("x", "a", 0), ("x", "a_bias", 0), ("x", "b", 1), ("y", "h", 1))),
            *COUPLED.layers[1:],
        )
    )
    masks = CoverageHalves(coverage=1).assign(x, y, [0.25] * 4, 0, gen(), layers)
    first, second = masks[0], masks[3]
    assert masks[:3] == [first] * 3 and first != second
    for member_x, dim in (("a", 0), ("a_bias", 0), ("b", 1)):
        assert first.x.index[member_x][dim].tolist() == [0, 1, 2]
        assert second.x.index[member_x][dim].tolist() == [3, 4]
    # M (colour 1: coupled to L through b) stays whole, so b is cut on its columns alone
    assert first.x.index["b"][0] is None and second.x.index["b"][0] is None
    # the two halves partition every coordinate of x
    dense_first, dense_second = first.x.dense(), second.x.dense()
    for name in x:
        assert not (dense_first[name] & dense_second[name]).any()
        assert (dense_first[name] | dense_second[name]).all()
    # y: h's columns follow L; h's rows (a y-only layer) stay whole
    assert first.y.index["h"][1].tolist() == [0, 1, 2]
    assert second.y.index["h"][1].tolist() == [3, 4]
    assert first.y.index["h"][0] is None and second.y.index["h"][0] is None


@pytest.mark.parametrize(
    "spec", [conv4(width=8, in_channels=1), resnet12((4, 6, 8, 10), 1)], ids=["conv4", "resnet12"]
)
def test_coverage_halves_give_every_coordinate_of_a_network_its_coverage(spec):
    """Def. 3 counted per coordinate: ten clients, the last C on the second halves, C_x* =
    min(C, 10 - C) for C = 1..5; y (a head reading the last layer) is held by all ten."""
    x = init(spec, gen(), torch.float64)
    y = init_head(spec, 5, gen(1), torch.float64, "head")
    layers = ChannelLayers(tuple(channel_layers(spec, "x", (("y", "head.weight", 1),))))
    for c in range(1, 6):
        masks = CoverageHalves(coverage=c).assign(x, y, [0.5] * 10, 0, gen(), layers)
        held_x = coverage([m.x.dense() for m in masks])
        held_y = coverage([m.y.dense() for m in masks])
        assert min(int(t.min()) for t in held_x.values()) == c
        assert {int(v) for t in held_x.values() for v in t.unique()} == {c, 10 - c, 10}
        assert all((t == 10).all() for t in held_y.values())
        # each client holds about half of x (a cut end on every weight, norms of cut layers)
        share = masks[0].x.numel() / sum(t.numel() for t in x.values())
        assert 0.45 < share < 0.6


def test_fixed_segments_coverage_must_leave_a_majority():
    x, y = coupled_params()
    with pytest.raises(ValueError, match=r"coverage must be in \[1, 2\] for 4 clients, got 3"):
        FixedSegments(coverage=3).assign(x, y, [1.0] * 4, 0, gen(), COUPLED)


def test_layer_masks_on_y_only_keep_x_only_layers_whole():
    x, y = coupled_params()
    masks = layer_masks(COUPLED, x, y, 0.5, prefix_channels, frozenset({"y"}))
    # L has a y member: masked (ceil(0.5 * 4) = 2 channels) on every member, x ones included
    assert masks.x.index["a"][0].tolist() == [0, 1]
    assert masks.x.index["b"][1].tolist() == [0, 1]
    assert masks.y.index["h"][1].tolist() == [0, 1]
    # M is x only: b's rows whole; H is y only: h's rows keep ceil(0.5 * 5) = 3
    assert masks.x.index["b"][0] is None
    assert masks.y.index["h"][0].tolist() == [0, 1, 2]
    # with sides = {"x"} the y-only layer H is the one held whole
    only_x = layer_masks(COUPLED, x, y, 0.5, prefix_channels, frozenset({"x"}))
    assert only_x.y.index["h"][0] is None and only_x.x.index["b"][0].tolist() == [0]


def test_importance_policy_without_x_equals_layer_masks_on_y():
    x, y = coupled_params(3)
    policy = ChannelImportance(mask_x=False)
    got = policy.assign(x, y, [0.5, 0.25], 0, gen(), COUPLED)
    for capacity, masks in zip((0.5, 0.25), got, strict=True):
        want = layer_masks(COUPLED, x, y, capacity, largest_channels(2), frozenset({"y"}))
        assert masks == want
        assert masks.x.index["b"][0] is None
    # nested: the smaller capacity keeps a subset of the larger one's channels, layer by layer
    big, small = got[0].y.index["h"][0], got[1].y.index["h"][0]
    assert set(small.tolist()) <= set(big.tolist())


def test_importance_policy_keeps_the_largest_channels_of_the_coupled_layer():
    x, y = coupled_params(4)
    layer = COUPLED.layers[0]
    scores = layer.importance(x, y)
    top2 = sorted(torch.argsort(scores, descending=True)[:2].tolist())
    masks = ChannelImportance().assign(x, y, [0.5], 0, gen(), COUPLED)[0]
    assert isinstance(masks, ClientMasks)
    assert masks.x.index["a"][0].tolist() == top2
    assert masks.y.index["h"][1].tolist() == top2
