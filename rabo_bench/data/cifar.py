"""CIFAR-10 and its long-tailed, per-client train/validation splits (SPEC §7.2).

The pixels come from ``cifar10.npz`` in the data root, decoded from a quality-75 JPEG copy of
CIFAR-10 (``data/PROVENANCE.md``): means match the usual values to 2e-4, per-channel stds are
about 0.001-0.002 lower, and the images are stored sorted by class. :func:`load_cifar10`
normalises with the statistics of this copy's own training set, not the published constants.

Long tail (SPEC §7.2, ambiguity 14): class i keeps n_i = floor(5000 * (1/ratio)^(i/9)) training
images, ratio 100 by default (5000 ... 50). The long-tailed set is cut into IID client shards and
each shard into an 80 % train / 20 % validation part, stratified by class, so both are long-tailed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rabo_bench.data.archives import load_archive

ARCHIVE = "cifar10.npz"
CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


@dataclass(frozen=True)
class CIFAR10:
    """CIFAR-10 as normalised float32 NCHW tensors (SPEC §7.2).

    ``x = (pixel / 255 - mean[c]) / std[c]`` per channel c, with ``mean`` and ``std`` (population
    std) computed exactly over all 50,000 training images; the test set uses the same constants.
    """

    x_train: torch.Tensor  # float32 [50000, 3, 32, 32]
    y_train: torch.Tensor  # long [50000], sorted by class
    x_test: torch.Tensor  # float32 [10000, 3, 32, 32]
    y_test: torch.Tensor  # long [10000], sorted by class
    mean: tuple[float, float, float]  # per channel, on the [0, 1] scale
    std: tuple[float, float, float]


def _to_nchw(pixels: np.ndarray) -> torch.Tensor:
    """uint8 ``[N, H, W, 3]`` -> contiguous uint8 ``[N, 3, H, W]``."""
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)))


def _channel_stats(pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact per-channel mean and population std (float64, [0, 1] scale) of uint8 NCHW pixels.

    Uses a 256-bin histogram per channel, so no float copy of the data is made.
    """
    values = torch.arange(256, dtype=torch.float64) / 255.0
    hist = torch.stack(
        [torch.bincount(pixels[:, c].reshape(-1), minlength=256) for c in range(pixels.shape[1])]
    ).to(torch.float64)
    total = hist.sum(dim=1)
    mean = (hist * values).sum(dim=1) / total
    var = (hist * (values - mean[:, None]) ** 2).sum(dim=1) / total
    return mean, var.sqrt()


def _normalise(pixels: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(pixels / 255 - mean) / std per channel, as float32, in two in-place passes."""
    shift = (255.0 * mean).to(torch.float32).view(1, -1, 1, 1)
    scale = (1.0 / (255.0 * std)).to(torch.float32).view(1, -1, 1, 1)
    return pixels.to(torch.float32).sub_(shift).mul_(scale)


def load_cifar10(root: str | Path | None = None) -> CIFAR10:
    """Load ``cifar10.npz`` from ``root`` (else ``$RABO_BENCH_DATA``), digests checked.

    Raises :class:`~rabo_bench.data.archives.DataError` for a missing or corrupt archive.
    """
    arrays = load_archive(ARCHIVE, root)
    train, test = _to_nchw(arrays["x_train"]), _to_nchw(arrays["x_test"])
    mean, std = _channel_stats(train)
    m0, m1, m2 = mean.tolist()
    s0, s1, s2 = std.tolist()
    return CIFAR10(
        x_train=_normalise(train, mean, std),
        y_train=torch.from_numpy(arrays["y_train"].astype(np.int64)),
        x_test=_normalise(test, mean, std),
        y_test=torch.from_numpy(arrays["y_test"].astype(np.int64)),
        mean=(m0, m1, m2),
        std=(s0, s1, s2),
    )


def long_tail_counts(per_class: int = 5000, ratio: float = 100.0, classes: int = 10) -> list[int]:
    """Images kept per class: n_i = floor(per_class * (1/ratio)^(i/(classes-1))), SPEC §7.2.

    This is n_i = per_class * mu^i with mu = (1/ratio)^(1/(classes-1)) (mu = 0.01^(1/9) ~ 0.599
    for ratio 100), so n_0 / n_{classes-1} = ratio when per_class / ratio is an integer. A 1e-9
    slack inside the floor keeps exact products such as 5000 * 0.01 = 50 from rounding down.
    """
    if ratio < 1:
        raise ValueError(f"the imbalance ratio must be >= 1 (1 = balanced), got {ratio}")
    if classes < 1 or per_class < 0:
        raise ValueError(f"need classes >= 1 and per_class >= 0, got {classes} and {per_class}")
    steps = max(classes - 1, 1)
    return [math.floor(per_class * ratio ** (-i / steps) + 1e-9) for i in range(classes)]


def long_tail_indices(
    labels: torch.Tensor, counts: Sequence[int], rng: torch.Generator
) -> torch.Tensor:
    """Indices of a long-tailed subset: ``counts[i]`` random images of each class i (SPEC §7.2).

    For class i = 0, 1, ... in turn, its indices (positions where ``labels == i``) are put in a
    random order with ``torch.randperm(..., generator=rng)`` and the first ``counts[i]`` are kept.
    Classes with no entry in ``counts`` are dropped. The result is sorted ascending (for the
    class-sorted ``cifar10.npz`` this is also class-major).
    """
    labels = labels.detach().to("cpu", torch.long)
    kept = []
    for cls, count in enumerate(counts):
        members = torch.nonzero(labels == cls).flatten()
        if not 0 <= count <= members.numel():
            raise ValueError(
                f"class {cls} has {members.numel()} images, cannot keep {count}; "
                f"counts must lie between 0 and the class size"
            )
        kept.append(members[torch.randperm(members.numel(), generator=rng)[:count]])
    if not kept:
        return torch.empty(0, dtype=torch.long)
    return torch.cat(kept).sort().values


@dataclass(frozen=True)
class ClientSplit:
    """One client's data as sorted long index tensors into the full training set (SPEC §7.2)."""

    train: torch.Tensor  # inner problem: VS loss on this part
    val: torch.Tensor  # outer problem: class-balanced CE on this part


def _validation_size(members: int, val_fraction: float) -> int:
    if members == 0 or val_fraction == 0:
        return 0
    size = math.floor(val_fraction * members + 0.5)  # round half up
    return min(max(size, 1), members - 1) if members >= 2 else size


def client_splits(
    indices: torch.Tensor,
    labels: torch.Tensor,
    num_clients: int = 10,
    val_fraction: float = 0.2,
    *,
    rng: torch.Generator,
) -> list[ClientSplit]:
    """Cut the long-tailed set ``indices`` into per-client train/validation splits (SPEC §7.2).

    1. IID shards (SPEC ambiguity 14): ``indices`` are put in random order
       (``torch.randperm`` with ``rng``) and cut into ``num_clients`` contiguous shards whose
       sizes differ by at most 1 (the first ``len % num_clients`` shards get one more).
    2. Per client and class c with m_c images in the shard, the first v_c of them in the shard's
       random order go to validation and the rest to train, where v_c = round(val_fraction * m_c)
       (round half up), but at least 1 and at most m_c - 1 when m_c >= 2 and val_fraction > 0, so
       that every class a client holds twice or more appears in both of its splits. A class held
       once stays in train (when round(val_fraction) = 0). Both splits are thus long-tailed.

    ``labels`` is indexed by the values of ``indices`` (labels of the full training set). Each
    ``train`` and ``val`` tensor is sorted ascending. The splits partition ``indices`` exactly.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must lie in [0, 1), got {val_fraction}")
    indices = indices.detach().to("cpu", torch.long)
    if not 1 <= num_clients <= max(indices.numel(), 1):
        raise ValueError(
            f"num_clients must be between 1 and the number of images ({indices.numel()}), "
            f"got {num_clients}"
        )
    labels = labels.detach().to("cpu", torch.long)
    shuffled = indices[torch.randperm(indices.numel(), generator=rng)]
    splits = []
    for shard in torch.tensor_split(shuffled, num_clients):
        shard_labels = labels[shard]
        train, val = [], []
        for cls in torch.unique(shard_labels).tolist():
            members = shard[shard_labels == cls]  # keeps the shard's random order
            size = _validation_size(members.numel(), val_fraction)
            val.append(members[:size])
            train.append(members[size:])
        splits.append(
            ClientSplit(
                train=torch.cat(train).sort().values if train else shard[:0],
                val=torch.cat(val).sort().values if val else shard[:0],
            )
        )
    return splits
