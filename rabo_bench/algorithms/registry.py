"""The algorithm registry: ``register``, ``registered`` (for a block), ``get``, ``available``.

RABO and RAFBO live in :mod:`rabo_bench.algorithms.rabo`; every module of the
``rabo_bench.baselines`` package (the top-level ``baselines/`` folder) is imported on first use,
so adding an algorithm is one new file that calls :func:`register`, and no other change.
``groups`` names sets of algorithms that a suite's overrides may address at once.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from rabo_bench.algorithms.recipe import Algorithm

_ALGORITHMS: dict[str, Algorithm] = {}
_loaded = False
# Override groups (suite files: ``[overrides.single_level]``), each a rule on the recipe.
_GROUPS: dict[str, Callable[[Algorithm], bool]] = {
    "all": lambda algorithm: True,
    "bilevel": lambda algorithm: algorithm.bilevel,
    "single_level": lambda algorithm: not algorithm.bilevel,
}


def register(algorithm: Algorithm) -> Algorithm:
    if algorithm.name in _ALGORITHMS:
        raise ValueError(f"algorithm {algorithm.name!r} is already registered")
    if algorithm.name in _GROUPS:
        raise ValueError(f"algorithm name {algorithm.name!r} is taken by an override group")
    _ALGORITHMS[algorithm.name] = algorithm
    return algorithm


@contextmanager
def registered(algorithm: Algorithm) -> Iterator[Algorithm]:
    """``algorithm`` registered for the duration of a ``with`` block, then removed (tests,
    templates and notebooks that define an algorithm outside ``baselines/``)."""
    _load_plugins()
    register(algorithm)
    try:
        yield algorithm
    finally:
        del _ALGORITHMS[algorithm.name]


def _load_plugins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    importlib.import_module("rabo_bench.algorithms.rabo")
    baselines = importlib.import_module("rabo_bench.baselines")
    for module in pkgutil.iter_modules(baselines.__path__):
        importlib.import_module(f"rabo_bench.baselines.{module.name}")


def available() -> dict[str, str]:
    """Registered names and their one-line descriptions, sorted by name."""
    _load_plugins()
    return {name: _ALGORITHMS[name].description for name in sorted(_ALGORITHMS)}


def get(name: str, overrides: Mapping[str, Any] | None = None) -> Algorithm:
    """The registered algorithm ``name`` with ``overrides`` applied; unknown names raise."""
    _load_plugins()
    if name not in _ALGORITHMS:
        raise ValueError(f"unknown algorithm {name!r}; choose one of {sorted(_ALGORITHMS)}")
    return _ALGORITHMS[name].with_overrides(overrides)


def groups() -> dict[str, tuple[str, ...]]:
    """Override group -> the registered algorithms in it, sorted: ``all``, ``bilevel`` (with an
    outer step: RABO, RAFBO, FedMBO) and ``single_level`` (the sub-model and full-model
    baselines that train x and y jointly)."""
    _load_plugins()
    return {
        group: tuple(name for name in sorted(_ALGORITHMS) if rule(_ALGORITHMS[name]))
        for group, rule in _GROUPS.items()
    }


def display_name(name: str) -> str:
    """The name reports show: the algorithm's label if it has one (unknown names unchanged)."""
    _load_plugins()
    algorithm = _ALGORITHMS.get(name)
    return algorithm.label if algorithm is not None and algorithm.label else name
