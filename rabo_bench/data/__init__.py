"""Real data sets from the data root (``RABO_BENCH_DATA``): checked, never downloaded here."""

from rabo_bench.data.archives import ARCHIVES, DataError, data_root, load_archive
from rabo_bench.data.omniglot import Omniglot, load_omniglot

__all__ = ["ARCHIVES", "DataError", "Omniglot", "data_root", "load_archive", "load_omniglot"]
