"""The shared signature of every hypergradient estimator, and the registry of estimators.

An estimator is a frozen dataclass of its hyperparameters, called as

    estimator(oracles, x, y, rng) -> h          (flat tensor shaped like x)

where ``oracles`` wraps one client's (possibly masked) sub-model objective and counts every
derivative, x and y are the flat sub-model vectors, and ``rng`` is the only source of randomness
(batches, Neumann depth, coordinate samples, directions). Implicit estimators (exact, neumann,
sampled_neumann, cg: SPEC eq. 9 around a linear solve, :mod:`rabo_bench.hypergrad.implicit`)
evaluate at (x, y). Unrolled ones (itd, coordinate_fd, gaussian_zo) run inner SGD steps from y
and evaluate the upper gradient at the end of the unperturbed run.

Every numeric hyperparameter declares its allowed range beside its field (``setting``,
:mod:`rabo_bench.problems.ranges`); it is checked when the estimator is built.

Estimators register themselves: every module of :mod:`rabo_bench.hypergrad.estimators` is
imported on first use of the registry, so adding an estimator is one new file there that
decorates its class with :func:`register_estimator`.
"""

from __future__ import annotations

import importlib
import pkgutil
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import fields
from typing import Any, ClassVar

import torch

from rabo_bench.hypergrad.oracles import Oracles
from rabo_bench.problems.ranges import Checked

_REGISTRY: dict[str, type[HypergradientEstimator]] = {}
_loaded = False


class HypergradientEstimator(Checked, ABC):
    name: ClassVar[str]
    implicit: ClassVar[bool] = False  # True: evaluates at the given (x, y), no inner steps

    @property
    def vectorisable(self) -> bool:
        """True when clients may run this estimator under ``vmap`` (the vectorised simulator): no
        data-dependent control flow, random draws only through the objective's batches and
        :func:`draw`."""
        return True

    def theory_settings(self, steps: int, lr: float, depth: int | None) -> dict[str, Any]:
        """This estimator's settings at a point of the theory's grid (``theory/rates.py``): an
        estimator that runs T inner steps of its own takes the grid's T and beta (SPEC: T_fd =
        T), a series solve its depth N (when the grid sets one); {} for neither (the default).
        """
        return {}

    @abstractmethod
    def __call__(
        self, oracles: Oracles, x: torch.Tensor, y: torch.Tensor, rng: torch.Generator
    ) -> torch.Tensor:
        """An estimate of grad F at x for the client behind ``oracles``."""


def draw(rng, sample: Callable[[torch.Generator], torch.Tensor]) -> torch.Tensor:
    """``sample(rng)``: a random draw an estimator makes besides its batches. Under the
    vectorised simulator ``rng`` stands for a group of clients, and each client gets the draw
    from its own generator, as in the sequential simulator (``rng.draw``)."""
    return sample(rng) if isinstance(rng, torch.Generator) else rng.draw(sample)


def register_estimator(cls: type[HypergradientEstimator]) -> type[HypergradientEstimator]:
    if cls.name in _REGISTRY:
        raise ValueError(f"hypergradient estimator {cls.name!r} is already registered")
    _REGISTRY[cls.name] = cls
    return cls


def _load_estimators() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    package = importlib.import_module("rabo_bench.hypergrad.estimators")
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")


def available_estimators() -> list[str]:
    _load_estimators()
    return sorted(_REGISTRY)


def make_estimator(name: str, **params) -> HypergradientEstimator:
    """Build a registered estimator by name; unknown names or parameters raise ValueError."""
    _load_estimators()
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown hypergradient estimator {name!r}; choose one of {available_estimators()}"
        )
    cls = _REGISTRY[name]
    allowed = {f.name for f in fields(cls)}
    unknown = set(params) - allowed
    if unknown:
        raise ValueError(
            f"estimator {name!r} has no parameter(s) {sorted(unknown)}; it takes {sorted(allowed)}"
        )
    return cls(**params)
