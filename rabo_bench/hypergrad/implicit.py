"""Implicit differentiation (AID), written once; the linear solve is a parameter.

Every implicit estimator evaluates SPEC eq. (9) at the given (x, y):

    h = grad_x f(x, y) - d^2_xy g(x, y) · p,     d^2_yy g(x, y) p = grad_y f(x, y),

and they differ only in how they solve for p (Neumann series, conjugate gradient, dense, Neumann
with client-sampled factors). :func:`implicit_hypergradient` is that formula; its ``solve``
takes a :class:`LowerSystem` (where Hessian-vector products come from) and the right-hand side
grad_y f, and returns p together with the linearisation the mixed product must use, if any
(the same lower batch as its own products, "one local quadratic model"); without one, the mixed
product gets a fresh lower batch. The oracles behind the system count every product.

A solve's hyperparameters are the estimator's: :class:`LinearSolve` is a
:class:`HypergradientEstimator` whose call is the formula with itself as the solve, so
settings stay flat (``outer.estimator = { type = "neumann", terms = 5, eta = 0.01 }``) and one
file per solve in ``hypergrad/estimators/`` adds an estimator. FedMBO evaluates the same formula
on the server's system of all clients (``baselines/fedmbo.py``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import cached_property
from typing import ClassVar, Protocol

import torch
from torch.func import jacfwd

from rabo_bench.hypergrad.base import HypergradientEstimator
from rabo_bench.hypergrad.oracles import Oracles
from rabo_bench.problems.base import Batch


class MixedProduct(Protocol):
    def mixed(self, v: torch.Tensor) -> torch.Tensor:
        """d^2_xy g · v, a vector in x space."""


def uniform_client(rng: torch.Generator, clients: int) -> int:
    """i ~ Uniform{0, ..., clients - 1}, drawn from ``rng``."""
    return int(torch.randint(clients, (1,), generator=rng))


class LowerSystem(ABC):
    """The lower problem at a fixed (x, y), as a solve and the formula see it."""

    clients: int  # how many clients' Hessians products may come from (a client alone: 1)

    def sample_client(self, rng: torch.Generator):
        """A client for one factor of a sampled solve, uniform over the system's clients."""
        return uniform_client(rng, self.clients)

    @abstractmethod
    def upper_gradients(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(grad_x f, grad_y f) on a fresh upper batch."""

    @abstractmethod
    def linearise(self, client: int | None = None):
        """grad_y g linearised on a fresh lower batch: of client ``client``, or of the whole
        system (``None``). The result has ``hvp`` (d^2_yy g · v) and ``mixed`` (d^2_xy g · v)."""


@dataclass(frozen=True)
class Linearisation:
    """One client's grad_y g at (x, y) on one lower batch: every product taken from it is with
    the same d^2_yy g and d^2_xy g, through one graph of grad_y g built on the first product
    (:meth:`Oracles.linearise`); each product is one counted oracle call."""

    oracles: Oracles
    x: torch.Tensor
    y: torch.Tensor
    batch: Batch

    @cached_property
    def _products(self):
        return self.oracles.linearise(self.x, self.y, self.batch)

    def hvp(self, v: torch.Tensor) -> torch.Tensor:
        return self._products.hvp(v)

    def mixed(self, v: torch.Tensor) -> torch.Tensor:
        return self._products.mixed(v)

    def hessian(self) -> torch.Tensor:
        """d^2_yy g as a dense d_y x d_y matrix (forward mode), counted as the d_y hvp products
        that would form it."""
        oracles, batch = self.oracles, self.batch
        hess = jacfwd(lambda yy: oracles.grad_y_g_uncounted(self.x, yy, batch))(self.y)
        oracles.counter.hvp += self.y.numel()
        return hess


def _same_data(a: Batch, b: Batch) -> bool:
    """Whether two lower batches (one entry per client in view) are the same objects: what a
    deterministic problem (None) or a pinned task (its data) gives every time."""
    return len(a) == len(b) and all(p is q for p, q in zip(a, b, strict=True))


@dataclass(frozen=True)
class ClientSystem(LowerSystem):
    """One client's (or one task's) lower problem; batches come from its stream ``rng``."""

    oracles: Oracles
    x: torch.Tensor
    y: torch.Tensor
    rng: torch.Generator
    clients: ClassVar[int] = 1
    _last: list[Linearisation] = field(default_factory=list, init=False, repr=False, compare=False)

    def upper_gradients(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.oracles.grad_f(self.x, self.y, self.oracles.objective.sample_f(self.rng))

    def linearise(self, client: int | None = None) -> Linearisation:
        """On a fresh lower batch (a client alone: ``client`` can only be itself). A batch of the
        same data as the last one's gives the last linearisation again, so its graph serves
        the products of both."""
        batch = self.oracles.objective.sample_g(self.rng)
        if not (self._last and _same_data(self._last[0].batch, batch)):
            self._last[:] = [Linearisation(self.oracles, self.x, self.y, batch)]
        return self._last[0]


class LinearSolve(HypergradientEstimator):
    """A solve of d^2_yy g p = grad_y f; as an estimator, SPEC eq. (9) with this solve."""

    implicit: ClassVar[bool] = True

    @abstractmethod
    def solve(
        self, system: LowerSystem, rhs: torch.Tensor, rng: torch.Generator
    ) -> tuple[torch.Tensor, MixedProduct | None]:
        """(p, the linearisation the mixed product must use, or None for a fresh one); random
        draws of the solve's own (a depth, a client) come from ``rng``."""

    def __call__(self, oracles: Oracles, x, y, rng: torch.Generator) -> torch.Tensor:
        return implicit_hypergradient(ClientSystem(oracles, x, y, rng), self, rng)


def implicit_hypergradient(
    system: LowerSystem, solve: LinearSolve, rng: torch.Generator
) -> torch.Tensor:
    """SPEC eq. (9): h = grad_x f - d^2_xy g · p with p from ``solve``."""
    grad_x, grad_y = system.upper_gradients()
    p, model = solve.solve(system, grad_y, rng)
    return grad_x - (model if model is not None else system.linearise()).mixed(p)
