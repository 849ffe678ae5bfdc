"""Algorithms as recipes of round-loop parts, behind one registry."""

from rabo_bench.algorithms.recipe import Algorithm, single_level
from rabo_bench.algorithms.registry import (
    available,
    display_name,
    get,
    groups,
    register,
    registered,
)

__all__ = [
    "Algorithm",
    "available",
    "display_name",
    "get",
    "groups",
    "register",
    "registered",
    "single_level",
]
