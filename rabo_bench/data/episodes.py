"""Few-shot episodes and per-client character shards for Omniglot (SPEC §7.1).

The training characters (the 964 of the 30 background alphabets) are split by character into one
shard per client, so clients hold disjoint classes (:func:`shard_classes`). An N-way K-shot
episode draws N distinct characters of a shard and, per character, K support and Q query drawings
out of its 20, without replacement (:func:`sample_episode`); the paper uses Q = 20 - K. The inner
problem fits the head on the support set, the outer loss is the query loss (SPEC §7.1).

All randomness comes from the ``torch.Generator`` passed in, so a seed fixes every shard and
episode exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def shard_classes(num_classes: int, num_clients: int, rng: torch.Generator) -> list[torch.Tensor]:
    """Disjoint class shards, one per client (SPEC §7.1: "10 shards, one per client").

    A random permutation of ``0..num_classes-1`` is cut into ``num_clients`` contiguous pieces
    whose sizes differ by at most 1 (the first ``num_classes % num_clients`` shards get the extra
    class). Each shard is returned sorted ascending, as a long tensor of class indices.
    """
    if not 1 <= num_clients <= num_classes:
        raise ValueError(
            f"num_clients must be between 1 and num_classes={num_classes} so that every client "
            f"gets at least one class, got {num_clients}"
        )
    order = torch.randperm(num_classes, generator=rng)
    return [shard.sort().values for shard in torch.tensor_split(order, num_clients)]


@dataclass(frozen=True)
class Episode:
    """One N-way K-shot task with Q queries per class (SPEC §7.1).

    Images keep the dtype and device of the source images. Episode labels are ``0..N-1`` in the
    order the classes were drawn; ``classes[labels]`` maps them to the source class indices.
    Support and query are ordered class-major: rows ``n*K .. n*K+K-1`` of ``support`` (and
    ``n*Q .. n*Q+Q-1`` of ``query``) belong to episode label ``n``.
    """

    support: torch.Tensor  # [N*K, 1, H, W]
    support_labels: torch.Tensor  # long [N*K], values 0..N-1
    query: torch.Tensor  # [N*Q, 1, H, W]
    query_labels: torch.Tensor  # long [N*Q], values 0..N-1
    classes: torch.Tensor  # long [N], source class index of each episode label

    @property
    def ways(self) -> int:
        return int(self.classes.numel())


def _check_request(
    images: torch.Tensor, classes: torch.Tensor, ways: int, shots: int, queries: int
) -> None:
    if images.dim() != 4:
        raise ValueError(
            f"images must be [classes, drawings, H, W] (Omniglot: [C, 20, H, W]), "
            f"got shape {list(images.shape)}"
        )
    if classes.dim() != 1:
        raise ValueError(f"classes must be a 1-D tensor of class indices, got {classes.dim()}-D")
    if ways < 1 or shots < 1 or queries < 1:
        raise ValueError(
            f"ways, shots and queries must each be >= 1, got ways={ways} shots={shots} "
            f"queries={queries}"
        )
    if ways > classes.numel():
        raise ValueError(
            f"a {ways}-way episode needs at least {ways} allowed classes, this set has "
            f"{classes.numel()}; lower ways or use a larger shard (fewer clients)"
        )
    drawings = images.shape[1]
    if shots + queries > drawings:
        raise ValueError(
            f"shots + queries = {shots} + {queries} exceeds the {drawings} drawings per class; "
            f"use queries <= {drawings - shots}"
        )
    if classes.numel() and (int(classes.min()) < 0 or int(classes.max()) >= images.shape[0]):
        raise ValueError(
            f"class indices must lie in 0..{images.shape[0] - 1} (the rows of images), got "
            f"{int(classes.min())}..{int(classes.max())}"
        )
    if torch.unique(classes).numel() != classes.numel():
        raise ValueError("classes contains repeated indices; pass each allowed class once")


def _as_tensor(images: torch.Tensor | np.ndarray) -> torch.Tensor:
    return images if isinstance(images, torch.Tensor) else torch.from_numpy(np.asarray(images))


def sample_episode(
    images: torch.Tensor | np.ndarray,
    classes: torch.Tensor,
    ways: int,
    shots: int,
    queries: int,
    rng: torch.Generator,
) -> Episode:
    """Draw one N-way K-shot episode with Q queries per class from the allowed ``classes``.

    ``images`` is ``[C, drawings, H, W]`` (Omniglot: 20 drawings; a NumPy array is viewed without a
    copy). ``ways`` distinct classes are chosen uniformly from ``classes``; for each, ``shots +
    queries`` distinct drawings are chosen uniformly without replacement, the first ``shots``
    forming the support set and the rest the query set. Uses ``torch.randperm`` with ``rng`` only
    (one call for the classes, then one per class for the drawings, in label order).
    """
    images = _as_tensor(images)
    classes = classes.detach().to("cpu", torch.long)
    _check_request(images, classes, ways, shots, queries)
    chosen = classes[torch.randperm(classes.numel(), generator=rng)[:ways]]
    per_class = shots + queries
    drawings = torch.stack(
        [torch.randperm(images.shape[1], generator=rng)[:per_class] for _ in range(ways)]
    )
    device = images.device
    picked = images[chosen.to(device)[:, None], drawings.to(device)]  # [N, K+Q, H, W]
    height, width = images.shape[2:]
    labels = torch.arange(ways, device=device)
    return Episode(
        support=picked[:, :shots].reshape(ways * shots, 1, height, width),
        support_labels=labels.repeat_interleave(shots),
        query=picked[:, shots:].reshape(ways * queries, 1, height, width),
        query_labels=labels.repeat_interleave(queries),
        classes=chosen.to(device),
    )


def sample_episodes(
    images: torch.Tensor | np.ndarray,
    classes: torch.Tensor,
    ways: int,
    shots: int,
    queries: int,
    count: int,
    rng: torch.Generator,
) -> list[Episode]:
    """``count`` independent episodes (a client's meta-batch, SPEC §7.1: 16 tasks per round).

    Identical to ``count`` successive :func:`sample_episode` calls with the same ``rng``.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    images = _as_tensor(images)
    return [sample_episode(images, classes, ways, shots, queries, rng) for _ in range(count)]
