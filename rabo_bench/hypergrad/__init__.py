"""Hypergradient estimators behind one signature (see :mod:`rabo_bench.hypergrad.base`); the
estimators themselves live in :mod:`rabo_bench.hypergrad.estimators` and register on first use."""

from rabo_bench.hypergrad.base import (
    HypergradientEstimator,
    available_estimators,
    make_estimator,
)
from rabo_bench.hypergrad.objective import LocalObjective
from rabo_bench.hypergrad.oracles import OracleCounter, Oracles

__all__ = [
    "HypergradientEstimator",
    "LocalObjective",
    "OracleCounter",
    "Oracles",
    "available_estimators",
    "make_estimator",
]
