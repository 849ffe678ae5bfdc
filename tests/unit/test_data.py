"""Real data from the data root: digests, splits, and one-line errors for bad data."""

from __future__ import annotations

import numpy as np
import pytest

from rabo_bench.data import DataError, load_archive, load_omniglot
from rabo_bench.data.archives import ENV


@pytest.fixture(scope="module")
def omniglot28(root):
    return load_archive("omniglot28.npz", root)


def test_omniglot_splits_are_30_and_20_alphabets(root):
    data = load_omniglot(28, root)
    background, evaluation = data.split(True), data.split(False)
    assert (len(background.alphabets), len(evaluation.alphabets)) == (30, 20)
    assert (len(background.images), len(evaluation.images)) == (964, 659)
    assert not set(background.alphabets) & set(evaluation.alphabets)
    assert data.images.min() == 0.0 and data.images.max() == 1.0
    assert data.images.mean() < 0.5  # ink = 1 on a mostly empty page


def test_both_omniglot_sizes_agree_on_ink_and_metadata(root):
    small, large = load_omniglot(28, root), load_omniglot(105, root)
    assert large.images.shape == (1623, 20, 105, 105)
    assert np.array_equal(small.alphabet, large.alphabet)
    # the 28x28 images are a resampling of the 105x105 ones: ink fractions correlate strongly
    ink_small = small.images.mean(axis=(2, 3)).ravel()
    ink_large = large.images.mean(axis=(2, 3)).ravel()
    assert np.corrcoef(ink_small, ink_large)[0, 1] > 0.9


def test_cifar10_passes_its_digests(root):
    arrays = load_archive("cifar10.npz", root)
    assert np.bincount(arrays["y_train"]).tolist() == [5000] * 10


def test_missing_root_names_the_variable_and_files(monkeypatch):
    monkeypatch.setenv(ENV, "")
    with pytest.raises(DataError, match=f"set {ENV}.*omniglot28.npz"):
        load_archive("omniglot28.npz")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match=r"missing .*omniglot28\.npz"):
        load_archive("omniglot28.npz", tmp_path)


def test_truncated_archive_is_refused(root, tmp_path):
    (tmp_path / "omniglot28.npz").write_bytes((root / "omniglot28.npz").read_bytes()[:5000])
    with pytest.raises(DataError, match=r"not a readable \.npz"):
        load_archive("omniglot28.npz", tmp_path)


def test_changed_pixel_fails_the_digest(omniglot28, tmp_path):
    arrays = dict(omniglot28)
    arrays["images"] = arrays["images"].copy()
    arrays["images"][0, 0, 0, 0] ^= 1
    np.savez(tmp_path / "omniglot28.npz", **arrays)
    with pytest.raises(DataError, match="array 'images' fails its digest check"):
        load_archive("omniglot28.npz", tmp_path)


def test_wrong_shape_is_refused(omniglot28, tmp_path):
    np.savez(tmp_path / "omniglot28.npz", **{**omniglot28, "images": omniglot28["images"][:10]})
    with pytest.raises(DataError, match=r"expected uint8\[1623, 20, 28, 28\]"):
        load_archive("omniglot28.npz", tmp_path)
