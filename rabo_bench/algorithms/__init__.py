"""Algorithms as recipes of round-engine parts, behind one registry."""

from rabo_bench.algorithms.recipe import Algorithm, single_level
from rabo_bench.algorithms.registry import available, display_name, get, groups, register

__all__ = ["Algorithm", "available", "display_name", "get", "groups", "register", "single_level"]
