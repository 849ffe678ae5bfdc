"""Real data sets from the data root (``RABO_BENCH_DATA``): checked, never downloaded here."""

from rabo_bench.data.archives import ARCHIVES, DataError, data_root, load_archive
from rabo_bench.data.cifar import (
    CIFAR10,
    ClientSplit,
    client_splits,
    load_cifar10,
    long_tail_counts,
    long_tail_indices,
)
from rabo_bench.data.episodes import Episode, sample_episode, sample_episodes, shard_classes
from rabo_bench.data.omniglot import Omniglot, load_omniglot

__all__ = [
    "ARCHIVES",
    "CIFAR10",
    "ClientSplit",
    "DataError",
    "Episode",
    "Omniglot",
    "client_splits",
    "data_root",
    "load_archive",
    "load_cifar10",
    "load_omniglot",
    "long_tail_counts",
    "long_tail_indices",
    "sample_episode",
    "sample_episodes",
    "shard_classes",
]
