"""CIFAR-10 loading, long-tail counts and per-client train/validation splits (SPEC §7.2)."""

from __future__ import annotations

import pytest
import torch

from rabo_bench.data import (
    ClientSplit,
    client_splits,
    load_cifar10,
    long_tail_counts,
    long_tail_indices,
)

RATIO_100 = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def balanced_labels(per_class: int = 5000, classes: int = 10) -> torch.Tensor:
    """Labels sorted by class, like cifar10.npz, then shuffled so positions do not give labels."""
    labels = torch.arange(classes).repeat_interleave(per_class)
    return labels[torch.randperm(labels.numel(), generator=gen(123))]


def test_ratio_100_counts_follow_the_formula():
    counts = long_tail_counts()
    assert counts == RATIO_100  # floor(5000 * 0.01 ** (i / 9)), i = 0..9
    assert counts[0] / counts[-1] == 100
    assert sum(counts) == 12406
    mu = 0.01 ** (1 / 9)
    assert all(n == int(5000 * mu**i + 1e-9) for i, n in enumerate(counts))


def test_other_ratios():
    assert long_tail_counts(ratio=1.0) == [5000] * 10
    assert long_tail_counts(ratio=10.0) == [5000, 3871, 2997, 2320, 1796, 1391, 1077, 834, 645, 500]
    assert long_tail_counts(per_class=100, ratio=4.0, classes=3) == [100, 50, 25]
    assert long_tail_counts(per_class=7, ratio=9.0, classes=1) == [7]


def test_ratio_below_one_is_refused():
    with pytest.raises(ValueError, match="imbalance ratio must be >= 1"):
        long_tail_counts(ratio=0.5)


def test_long_tail_indices_have_the_counts_and_depend_on_the_seed_only():
    labels = balanced_labels()
    indices = long_tail_indices(labels, RATIO_100, gen(0))
    assert indices.dtype == torch.long
    assert indices.unique().numel() == indices.numel() == sum(RATIO_100)
    assert torch.all(indices[1:] > indices[:-1])  # sorted
    assert torch.bincount(labels[indices], minlength=10).tolist() == RATIO_100
    assert torch.equal(indices, long_tail_indices(labels, RATIO_100, gen(0)))
    assert not torch.equal(indices, long_tail_indices(labels, RATIO_100, gen(1)))


def test_long_tail_indices_refuse_more_than_a_class_holds():
    with pytest.raises(ValueError, match="class 1 has 5 images, cannot keep 6"):
        long_tail_indices(balanced_labels(5, 3), [5, 6, 1], gen(0))


@pytest.fixture(scope="module")
def lt_set() -> tuple[torch.Tensor, torch.Tensor]:
    labels = balanced_labels()
    return long_tail_indices(labels, RATIO_100, gen(0)), labels


def test_client_splits_partition_the_long_tail_set(lt_set):
    indices, labels = lt_set
    splits = client_splits(indices, labels, num_clients=10, val_fraction=0.2, rng=gen(0))
    assert len(splits) == 10 and all(isinstance(split, ClientSplit) for split in splits)
    parts = [part for split in splits for part in (split.train, split.val)]
    union = torch.cat(parts)
    assert union.numel() == indices.numel() == union.unique().numel()  # no overlap
    assert torch.equal(union.sort().values, indices)  # union = the whole LT set
    sizes = [split.train.numel() + split.val.numel() for split in splits]
    assert max(sizes) - min(sizes) <= 1
    for split in splits:
        assert torch.all(split.train[1:] > split.train[:-1])
        assert torch.all(split.val[1:] > split.val[:-1])


def test_each_client_holds_out_a_fifth_of_every_class(lt_set):
    indices, labels = lt_set
    for split in client_splits(indices, labels, 10, 0.2, rng=gen(0)):
        train = torch.bincount(labels[split.train], minlength=10)
        val = torch.bincount(labels[split.val], minlength=10)
        held = train + val
        for m, v in zip(held.tolist(), val.tolist(), strict=True):
            assert v == max(int(0.2 * m + 0.5), 1 if m >= 2 else 0)
            assert abs(v - 0.2 * m) <= 0.5 or m < 3
        assert abs(val.sum() / held.sum() - 0.2) < 0.005
        # both splits stay long-tailed: head class well above the tail class
        assert train[0] > 20 * train[9] and val[0] > 20 * val[9]


def test_client_splits_depend_on_the_seed_only(lt_set):
    indices, labels = lt_set
    first = client_splits(indices, labels, 10, rng=gen(2))
    again = client_splits(indices, labels, 10, rng=gen(2))
    other = client_splits(indices, labels, 10, rng=gen(3))
    assert all(torch.equal(a.val, b.val) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a.val, b.val) for a, b in zip(first, other, strict=True))


def test_small_classes_keep_a_validation_image():
    labels = torch.tensor([0] * 10 + [1] * 2 + [2])
    (split,) = client_splits(torch.arange(13), labels, num_clients=1, rng=gen(0))
    assert torch.bincount(labels[split.val], minlength=3).tolist() == [2, 1, 0]
    assert torch.bincount(labels[split.train], minlength=3).tolist() == [8, 1, 1]


@pytest.mark.parametrize(
    ("clients", "fraction", "message"),
    [
        (0, 0.2, "num_clients must be between 1 and the number of images"),
        (11, 0.2, "num_clients must be between 1 and the number of images"),
        (3, 1.0, "val_fraction must lie in"),
        (3, -0.1, "val_fraction must lie in"),
    ],
)
def test_bad_split_arguments_are_refused(clients, fraction, message):
    with pytest.raises(ValueError, match=message):
        client_splits(
            torch.arange(10), torch.zeros(10, dtype=torch.long), clients, fraction, rng=gen(0)
        )


def test_real_cifar10_is_normalised_and_balanced(root):
    data = load_cifar10(root)
    assert data.x_train.shape == (50000, 3, 32, 32) and data.x_train.dtype == torch.float32
    assert data.x_test.shape == (10000, 3, 32, 32) and data.x_test.dtype == torch.float32
    assert data.y_train.dtype == data.y_test.dtype == torch.long
    assert data.x_train.is_contiguous()
    var, mean = torch.var_mean(data.x_train, dim=(0, 2, 3), correction=0)
    assert torch.allclose(mean, torch.zeros(3), atol=1e-3)
    assert torch.allclose(var.sqrt(), torch.ones(3), atol=1e-3)
    test_mean = data.x_test.mean(dim=(0, 2, 3), dtype=torch.float64)
    assert test_mean.abs().max() < 0.05  # test set uses the training constants
    # PROVENANCE.md: train mean (0.49125, 0.48209, 0.44652), std (0.24523, 0.24278, 0.26063)
    assert data.mean == pytest.approx((0.49125, 0.48209, 0.44652), abs=1e-5)
    assert data.std == pytest.approx((0.24523, 0.24278, 0.26063), abs=1e-5)
    assert torch.bincount(data.y_train).tolist() == [5000] * 10
    assert torch.bincount(data.y_test).tolist() == [1000] * 10
    counts = long_tail_counts()
    lt = long_tail_indices(data.y_train, counts, gen(0))
    assert torch.bincount(data.y_train[lt]).tolist() == counts
