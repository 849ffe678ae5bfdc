"""Properties of parameter-wise masked aggregation (SPEC eq. 6/8, HeteroFL rule)."""

from __future__ import annotations

import itertools

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rabo_bench.federated import coverage, masked_mean, masked_step
from rabo_bench.federated.aggregation import MaskedSum

shapes_st = st.dictionaries(
    st.sampled_from(["x", "y", "z"]),
    st.lists(st.integers(1, 6), min_size=0, max_size=4).map(tuple),
    min_size=1,
    max_size=3,
)
seeds = st.integers(0, 2**32 - 1)


@st.composite
def rounds_st(draw, full: bool = False):
    """Shapes, full-shaped float64 params/updates and unstructured bool masks for 1..6 clients."""
    shapes = draw(shapes_st)
    n = draw(st.integers(1, 6))
    g = torch.Generator().manual_seed(draw(seeds))

    def randn():
        return {k: torch.randn(s, generator=g, dtype=torch.float64) for k, s in shapes.items()}

    def bools(p: float):
        return {k: torch.rand(s, generator=g) < p for k, s in shapes.items()}

    updates = [randn() for _ in range(n)]
    masks = [bools(1.0 if full else draw(st.floats(0.0, 1.0))) for _ in range(n)]
    return randn(), updates, masks


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@settings(deadline=None)
@given(rounds_st(full=True), st.floats(0.01, 1.0))
def test_full_masks_give_the_plain_mean(round_, lr):
    params, updates, masks = round_
    mean, covered = masked_mean(updates, masks)
    stepped = masked_step(params, updates, masks, lr)
    for name, p in params.items():
        plain = torch.stack([u[name] for u in updates]).mean(0)
        _close(mean[name], plain)
        _close(stepped[name], p - lr * plain)
        assert covered[name].all()


@settings(deadline=None)
@given(rounds_st(), st.floats(0.01, 1.0))
def test_coordinates_nobody_holds_never_move(round_, lr):
    params, updates, masks = round_
    stepped = masked_step(params, updates, masks, lr)
    mean, covered = masked_mean(updates, masks)
    for name, p in params.items():
        idle = ~covered[name]
        assert torch.equal(stepped[name][idle], p[idle])
        assert torch.equal(mean[name][idle], torch.zeros_like(p[idle]))
        _close(stepped[name][~idle], p[~idle] - lr * mean[name][~idle])


@settings(deadline=None)
@given(rounds_st(), st.data())
def test_result_is_independent_of_client_order(round_, data):
    params, updates, masks = round_
    order = data.draw(st.permutations(range(len(updates))))
    mean, covered = masked_mean(updates, masks)
    mean_p, covered_p = masked_mean([updates[i] for i in order], [masks[i] for i in order])
    for name in params:
        _close(mean_p[name], mean[name])
        assert torch.equal(covered_p[name], covered[name])


@settings(deadline=None)
@given(rounds_st())
def test_single_holder_takes_exactly_its_value(round_):
    _, updates, masks = round_
    mean, _ = masked_mean(updates, masks)
    counts = coverage(masks)
    for name, count in counts.items():
        for u, m in zip(updates, masks, strict=True):
            alone = (count == 1) & m[name]
            assert torch.equal(mean[name][alone], u[name][alone])


@settings(deadline=None)
@given(rounds_st(), st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e300]))
def test_values_outside_a_clients_mask_do_not_leak(round_, junk):
    params, updates, masks = round_
    dirty = [
        {k: torch.where(m[k], u[k], junk) for k in u} for u, m in zip(updates, masks, strict=True)
    ]
    clean = [
        {k: torch.where(m[k], u[k], 0.0) for k in u} for u, m in zip(updates, masks, strict=True)
    ]
    mean_dirty, _ = masked_mean(dirty, masks)
    mean_clean, _ = masked_mean(clean, masks)
    stepped = masked_step(params, dirty, masks, 0.5)
    for name in params:
        assert torch.equal(mean_dirty[name], mean_clean[name])
        assert torch.isfinite(stepped[name]).all()


@settings(deadline=None)
@given(rounds_st())
def test_coverage_and_mean_match_a_brute_force_count(round_):
    _, updates, masks = round_
    counts = coverage(masks)
    mean, covered = masked_mean(updates, masks)
    for name, count in counts.items():
        assert count.dtype == torch.long
        for j in itertools.product(*(range(s) for s in count.shape)):
            holders = [u[name][j].item() for u, m in zip(updates, masks, strict=True) if m[name][j]]
            assert count[j].item() == len(holders)
            assert covered[name][j].item() == bool(holders)
            expected = sum(holders) / len(holders) if holders else 0.0
            assert abs(mean[name][j].item() - expected) <= 1e-12 * (1 + abs(expected))


@settings(deadline=None)
@given(rounds_st(), st.integers(1, 4), seeds)
def test_rows_of_a_seed_batch_are_each_runs_own_server(round_, size, seed):
    """``add_rows`` puts client k's masked update into row rows[k] only: row s of the sums is
    the sums of the clients of run s added one by one (and zero with no client of run s)."""
    _, updates, masks = round_
    g = torch.Generator().manual_seed(seed)
    rows = torch.randint(size, (len(updates),), generator=g)
    batched = MaskedSum()
    batched.add_rows(
        {k: torch.stack([u[k] for u in updates]) for k in updates[0]},
        {k: torch.stack([m[k] for m in masks]) for k in masks[0]},
        rows,
        size,
    )
    for s in range(size):
        alone = MaskedSum()
        for k, (u, m) in enumerate(zip(updates, masks, strict=True)):
            if rows[k] == s:
                alone.add(u, m)
        for name, total in batched.total.items():
            expected = alone.total.get(name, torch.zeros_like(total[s]))
            _close(total[s], expected)  # a sum of at most 6 terms in another order
            count = alone.count.get(name, torch.zeros_like(batched.count[name][s]))
            assert torch.equal(batched.count[name][s], count)
