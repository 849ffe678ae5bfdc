"""Federated protocol pieces: server-side parameter-wise aggregation (SPEC eq. 6/8)."""

from rabo_bench.federated.aggregation import coverage, masked_mean, masked_step

__all__ = ["coverage", "masked_mean", "masked_step"]
