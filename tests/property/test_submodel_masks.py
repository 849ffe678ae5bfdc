"""Properties of structured masks and the dense sub-models built on them (SPEC eq. 3/4)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rabo_bench.submodel import StructuredMask, embed, extract, scatter

shapes_st = st.dictionaries(
    st.sampled_from(["a", "b", "c", "d"]),
    st.lists(st.integers(1, 6), min_size=0, max_size=4).map(tuple),
    min_size=1,
    max_size=3,
)
row_shapes_st = st.dictionaries(
    st.sampled_from(["a", "b", "c"]),
    st.lists(st.integers(1, 6), min_size=1, max_size=4).map(tuple),
    min_size=1,
    max_size=3,
)
seeds = st.integers(0, 2**32 - 1)


def _subset(draw, size: int) -> torch.Tensor:
    kept = draw(st.lists(st.booleans(), min_size=size, max_size=size))
    return torch.tensor([i for i, k in enumerate(kept) if k], dtype=torch.long)


@st.composite
def masks_st(draw, shapes=shapes_st) -> StructuredMask:
    """A structured mask on random shapes: each dim whole (None) or a random sorted subset."""
    drawn = draw(shapes)
    index = {
        name: tuple(None if draw(st.booleans()) else _subset(draw, size) for size in shape)
        for name, shape in drawn.items()
    }
    return StructuredMask(index, {name: torch.Size(s) for name, s in drawn.items()})


@st.composite
def row_masks_st(draw) -> StructuredMask:
    drawn = draw(row_shapes_st)
    names = draw(st.lists(st.sampled_from(sorted(drawn)), unique=True))
    return StructuredMask.rows(drawn, {name: _subset(draw, drawn[name][0]) for name in names})


def _randn(shapes, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {n: torch.randn(s, generator=g, dtype=torch.float64) for n, s in shapes.items()}


@settings(deadline=None)
@given(masks_st(), seeds, seeds)
def test_extract_then_scatter_replaces_exactly_the_held_coordinates(mask, seed_p, seed_t):
    params, target = _randn(mask.shapes, seed_p), _randn(mask.shapes, seed_t)
    before = {n: t.clone() for n, t in target.items()}
    out = scatter(target, mask, extract(params, mask))
    for name, held in mask.dense().items():
        assert torch.equal(out[name][held], params[name][held])
        assert torch.equal(out[name][~held], target[name][~held])
        assert torch.equal(target[name], before[name])


@settings(deadline=None)
@given(masks_st(), seeds)
def test_scatter_of_own_extract_is_identity(mask, seed):
    params = _randn(mask.shapes, seed)
    out = scatter(params, mask, extract(params, mask))
    assert out.keys() == params.keys()
    assert all(torch.equal(out[n], params[n]) for n in params)


@settings(deadline=None)
@given(masks_st(), seeds)
def test_dense_agrees_with_extract_in_row_major_order(mask, seed):
    params = _randn(mask.shapes, seed)
    sub = extract(params, mask)
    dense = mask.dense()
    assert sum(int(d.sum()) for d in dense.values()) == mask.numel()
    assert mask.numel() == sum(t.numel() for t in sub.values())
    assert {n: t.shape for n, t in sub.items()} == mask.sub_shapes()
    for name, held in dense.items():
        assert held.dtype == torch.bool and held.shape == params[name].shape
        assert torch.equal(sub[name].reshape(-1), params[name][held])


@settings(deadline=None)
@given(row_masks_st(), seeds)
def test_row_masks_keep_the_named_rows_and_whole_other_parameters(mask, seed):
    params = _randn(mask.shapes, seed)
    sub = extract(params, mask)
    for name, held in mask.dense().items():
        rows = mask.index[name][0]
        expected = params[name] if rows is None else params[name][rows]
        assert torch.equal(sub[name], expected)
        assert torch.equal(sub[name].reshape(-1), params[name][held])


@settings(deadline=None)
@given(shapes_st, seeds)
def test_full_mask_extract_is_params_and_does_not_alias(shapes, seed):
    params = _randn(shapes, seed)
    mask = StructuredMask.full(params)
    assert mask == StructuredMask.full(shapes)
    assert mask.numel() == sum(math.prod(s) for s in shapes.values())
    sub = extract(params, mask)
    assert all(torch.equal(sub[n], params[n]) for n in params)
    assert all(sub[n].data_ptr() != params[n].data_ptr() for n in params)


@settings(deadline=None)
@given(masks_st(), seeds)
def test_embedding_is_params_times_mask(mask, seed):
    params = _randn(mask.shapes, seed)
    out = embed(mask, extract(params, mask), like=params)
    for name, held in mask.dense().items():
        assert torch.equal(out[name], torch.where(held, params[name], 0.0))


@settings(deadline=None)
@given(masks_st(), seeds)
def test_gradients_through_scatter_and_extract_are_the_mask(mask, seed):
    params = {n: t.requires_grad_() for n, t in _randn(mask.shapes, seed).items()}
    sub = {n: t.detach().requires_grad_() for n, t in extract(params, mask).items()}
    zeros = {n: torch.zeros(s, dtype=torch.float64) for n, s in mask.shapes.items()}
    total = sum(t.sum() for t in scatter(zeros, mask, sub).values())
    total = total + sum(t.sum() for t in extract(params, mask).values())
    total.backward()
    dense = mask.dense()
    for name in params:
        assert torch.equal(sub[name].grad, torch.ones_like(sub[name]))
        assert torch.equal(params[name].grad, dense[name].to(torch.float64))


@settings(deadline=None)
@given(masks_st(), st.data())
def test_equality_compares_indices(mask, data):
    same = StructuredMask(dict(mask.index), dict(mask.shapes))
    assert same == mask and hash(same) == hash(mask)
    restricted = [
        (n, d) for n, idx in mask.index.items() for d, i in enumerate(idx) if i is not None
    ]
    if restricted:
        name, dim = data.draw(st.sampled_from(restricted))
        index = dict(mask.index)
        index[name] = tuple(None if d == dim else i for d, i in enumerate(index[name]))
        assert StructuredMask(index, dict(mask.shapes)) != mask


@settings(deadline=None)
@given(row_shapes_st, st.data())
def test_out_of_range_indices_raise(shapes, data):
    name = data.draw(st.sampled_from(sorted(shapes)))
    size = shapes[name][0]
    bad = data.draw(st.one_of(st.integers(-6, -1), st.integers(size, size + 6)))
    with pytest.raises(ValueError, match="out of range"):
        StructuredMask.rows(shapes, {name: torch.tensor([bad])})


@settings(deadline=None)
@given(row_shapes_st.filter(lambda s: any(shape[0] >= 2 for shape in s.values())), st.data())
def test_unsorted_or_repeated_indices_raise(shapes, data):
    name = data.draw(st.sampled_from(sorted(n for n, s in shapes.items() if s[0] >= 2)))
    i = data.draw(st.integers(0, shapes[name][0] - 2))
    j = data.draw(st.integers(i, shapes[name][0] - 1))
    with pytest.raises(ValueError, match="sorted and unique"):
        StructuredMask.rows(shapes, {name: torch.tensor([j, i])})


@pytest.mark.parametrize(
    ("index", "shape", "message"),
    [
        ((None,), (3, 2), "one entry"),
        ((None, None, None), (3, 2), "one entry"),
        ((torch.tensor([0]),), (), "one entry"),
        ((torch.tensor([[0, 1]]), None), (3, 2), "1-D"),
        ((torch.tensor([0.0, 1.0]), None), (3, 2), "integer"),
        ((torch.tensor([True, False, True]), None), (3, 2), "integer"),
        (([0, 1], None), (3, 2), "integer"),
    ],
)
def test_malformed_indices_raise(index, shape, message):
    with pytest.raises(ValueError, match=message):
        StructuredMask({"w": index}, {"w": torch.Size(shape)})


def test_mismatched_names_raise():
    with pytest.raises(ValueError, match="names"):
        StructuredMask({"w": (None,)}, {"v": torch.Size([2])})
    with pytest.raises(ValueError, match="unknown"):
        StructuredMask.rows({"w": (2,)}, {"v": torch.tensor([0])})
    mask = StructuredMask.full({"w": (2, 3)})
    with pytest.raises(ValueError, match="shape"):
        extract({"w": torch.zeros(3, 2)}, mask)
    with pytest.raises(ValueError, match="expected"):
        scatter({"w": torch.zeros(2, 3)}, mask, {"w": torch.zeros(2, 2)})
