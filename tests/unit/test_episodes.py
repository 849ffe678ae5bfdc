"""Omniglot client shards and N-way K-shot episodes (SPEC §7.1)."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import chisquare

from rabo_bench.data import Episode, load_omniglot, sample_episode, sample_episodes, shard_classes

DRAWINGS = 20


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def coded_images(num_classes: int, size: int = 2) -> torch.Tensor:
    """[C, 20, size, size] images whose every pixel is 100 * class + drawing."""
    code = 100 * torch.arange(num_classes)[:, None] + torch.arange(DRAWINGS)[None, :]
    return code[:, :, None, None].expand(-1, -1, size, size).to(torch.float32).clone()


def decode(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(class, drawing) of each image of an [n, 1, H, W] batch of coded images."""
    pixels = images.flatten(1)
    assert torch.all(pixels == pixels[:, :1])  # images come out whole
    code = pixels[:, 0].long()
    return code // 100, code % 100


@pytest.mark.parametrize(("num_classes", "num_clients"), [(964, 10), (10, 3), (7, 7), (5, 1)])
def test_shards_are_disjoint_balanced_and_cover_all(num_classes, num_clients):
    shards = shard_classes(num_classes, num_clients, gen(0))
    assert len(shards) == num_clients
    assert all(shard.dtype == torch.long for shard in shards)
    every = torch.cat(shards)
    assert sorted(every.tolist()) == list(range(num_classes))  # disjoint and covering
    sizes = [shard.numel() for shard in shards]
    assert max(sizes) - min(sizes) <= 1


def test_shards_depend_on_the_seed_only():
    assert all(map(torch.equal, shard_classes(50, 5, gen(3)), shard_classes(50, 5, gen(3))))
    assert not all(map(torch.equal, shard_classes(50, 5, gen(3)), shard_classes(50, 5, gen(4))))


@pytest.mark.parametrize("num_clients", [0, -1, 11])
def test_impossible_shard_counts_are_refused(num_clients):
    with pytest.raises(ValueError, match="num_clients must be between 1 and num_classes=10"):
        shard_classes(10, num_clients, gen(0))


@pytest.mark.parametrize(("ways", "shots"), [(5, 1), (5, 5), (20, 1), (20, 5)])
def test_episode_shapes_labels_and_images(ways, shots):
    images = coded_images(40, size=3)
    allowed = torch.arange(5, 40)  # 35 allowed classes out of 40
    queries = DRAWINGS - shots
    episode = sample_episode(images, allowed, ways, shots, queries, gen(1))
    assert isinstance(episode, Episode) and episode.ways == ways
    assert episode.support.shape == (ways * shots, 1, 3, 3)
    assert episode.query.shape == (ways * queries, 1, 3, 3)
    assert episode.support.dtype == images.dtype
    for labels, count in ((episode.support_labels, shots), (episode.query_labels, queries)):
        assert labels.dtype == torch.long
        assert labels.tolist() == [n for n in range(ways) for _ in range(count)]  # class-major
    assert episode.classes.dtype == torch.long
    assert len(set(episode.classes.tolist())) == ways
    assert set(episode.classes.tolist()) <= set(allowed.tolist())

    support_class, support_drawing = decode(episode.support)
    query_class, query_drawing = decode(episode.query)
    assert torch.equal(support_class, episode.classes[episode.support_labels])
    assert torch.equal(query_class, episode.classes[episode.query_labels])
    for n in range(ways):
        support = set(support_drawing[episode.support_labels == n].tolist())
        query = set(query_drawing[episode.query_labels == n].tolist())
        assert len(support) == shots and len(query) == queries  # distinct drawings
        assert not support & query
        assert support | query == set(range(DRAWINGS))  # queries = 20 - shots uses them all


def test_fewer_queries_use_distinct_drawings():
    episode = sample_episode(coded_images(8), torch.arange(8), 4, 2, 3, gen(2))
    _, support_drawing = decode(episode.support)
    _, query_drawing = decode(episode.query)
    for n in range(4):
        drawings = support_drawing[episode.support_labels == n].tolist()
        drawings += query_drawing[episode.query_labels == n].tolist()
        assert len(set(drawings)) == 5


def fields(episode: Episode) -> list[torch.Tensor]:
    return [
        episode.support,
        episode.support_labels,
        episode.query,
        episode.query_labels,
        episode.classes,
    ]


def test_episodes_depend_on_the_seed_only():
    images, allowed = coded_images(30), torch.arange(30)
    first = sample_episode(images, allowed, 5, 1, 19, gen(7))
    again = sample_episode(images, allowed, 5, 1, 19, gen(7))
    other = sample_episode(images, allowed, 5, 1, 19, gen(8))
    assert all(map(torch.equal, fields(first), fields(again)))
    assert not all(map(torch.equal, fields(first), fields(other)))


def test_batch_equals_successive_draws_and_numpy_input_works():
    images, allowed = coded_images(12), torch.tensor([1, 4, 6, 9, 11])
    batch = sample_episodes(images.numpy(), allowed, 3, 2, 4, count=4, rng=gen(5))
    rng = gen(5)
    singles = [sample_episode(images, allowed, 3, 2, 4, rng) for _ in range(4)]
    assert len(batch) == 4
    for a, b in zip(batch, singles, strict=True):
        assert all(map(torch.equal, fields(a), fields(b)))


def test_class_choice_is_uniform():
    images, allowed = coded_images(20, size=1), torch.arange(2, 20, 2)  # 9 allowed classes
    rng, episodes, ways = gen(11), 1800, 3
    seen = torch.zeros(20, dtype=torch.long)
    drawing_seen = torch.zeros(DRAWINGS, dtype=torch.long)
    for _ in range(episodes):
        episode = sample_episode(images, allowed, ways, 1, 1, rng)
        seen += torch.bincount(episode.classes, minlength=20)
        drawing_seen += torch.bincount(decode(episode.support)[1], minlength=DRAWINGS)
    assert seen.sum() == episodes * ways and seen[~torch.isin(torch.arange(20), allowed)].sum() == 0
    assert chisquare(seen[allowed].numpy()).pvalue > 1e-3
    assert chisquare(drawing_seen.numpy()).pvalue > 1e-3


@pytest.mark.parametrize(
    ("ways", "shots", "queries", "message"),
    [
        (6, 1, 1, "6-way episode needs at least 6 allowed classes, this set has 5"),
        (2, 5, 16, r"shots \+ queries = 5 \+ 16 exceeds the 20 drawings"),
        (0, 1, 1, "must each be >= 1"),
        (2, 0, 1, "must each be >= 1"),
    ],
)
def test_impossible_episodes_are_refused(ways, shots, queries, message):
    with pytest.raises(ValueError, match=message):
        sample_episode(coded_images(10), torch.arange(5), ways, shots, queries, gen(0))


@pytest.mark.parametrize(
    ("allowed", "message"),
    [
        (torch.tensor([0, 1, 10]), r"class indices must lie in 0\.\.9"),
        (torch.tensor([1, 1, 2]), "repeated indices"),
    ],
)
def test_bad_class_sets_are_refused(allowed, message):
    with pytest.raises(ValueError, match=message):
        sample_episode(coded_images(10), allowed, 2, 1, 1, gen(0))


def test_real_omniglot_background_shards_and_episode(root):
    background = load_omniglot(28, root).split(True)
    images = torch.from_numpy(background.images)
    shards = shard_classes(images.shape[0], 10, gen(0))
    assert sorted(shard.numel() for shard in shards) == [96] * 6 + [97] * 4
    episode = sample_episode(images, shards[0], 20, 5, 15, gen(0))
    assert episode.support.shape == (100, 1, 28, 28)
    assert episode.query.shape == (300, 1, 28, 28)
    assert episode.support.dtype == torch.float32
    assert set(episode.classes.tolist()) <= set(shards[0].tolist())
    first = episode.classes[0]
    assert any(torch.equal(episode.support[0, 0], drawing) for drawing in images[first])
