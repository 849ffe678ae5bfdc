"""The Neumann-series solve: stochastic AID with a truncated Neumann series (SPEC eq. 7)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import accumulate
from typing import ClassVar

import torch

from rabo_bench.hypergrad.base import register_estimator
from rabo_bench.hypergrad.implicit import LinearSolve, LowerSystem
from rabo_bench.problems.ranges import COUNT, POSITIVE, setting


def _last(items: Iterator[torch.Tensor]) -> torch.Tensor:
    return deque(items, maxlen=1).pop()


@register_estimator
@dataclass(frozen=True)
class Neumann(LinearSolve):
    """p ≈ [d^2_yy g]^{-1} grad_y f by a truncated Neumann series, each factor on a fresh lower
    batch zeta_n (SPEC eq. 7).

    Deterministic depth (``randomized=False``):
        p = eta * sum_{n=0}^{N-1} prod_{k=1}^{n} (I - eta H_k) grad_y f.
    Randomised depth (``randomized=True``, the theory's version), N' ~ Uniform{0, ..., N-1}:
        p = N * eta * prod_{k=1}^{N'} (I - eta H_k) grad_y f,
    whose expectation over N' is the deterministic p. The mixed product then takes a fresh
    batch zeta_0: h = grad_x f - d^2_xy g(zeta_0) · p.

    Truncation (SPEC Lemma 1): for eta <= 1/L_g, ||p - H^{-1} grad_y f|| <= (1 - eta mu_g)^N
    / mu_g * ||grad_y f|| on a deterministic problem.
    Cost: 1 grad_f + (N - 1) hvp (N' hvp when randomised) + 1 jvp.
    """

    name: ClassVar[str] = "neumann"
    terms: int = setting(5, COUNT)
    eta: float = setting(0.01, POSITIVE)
    randomized: bool = False

    @property
    def vectorisable(self) -> bool:
        return not self.randomized  # a random depth is a draw outside the batches

    def theory_settings(self, steps, lr, depth):
        return {} if depth is None else {"terms": depth}  # N = O(log Q), Corollary 1

    def factor_client(self, system: LowerSystem, rng: torch.Generator) -> int | None:
        """Whose Hessian the next factor uses: the system's own (``None``)."""
        return None

    def series(
        self, system: LowerSystem, rhs: torch.Tensor, rng: torch.Generator, depth: int
    ) -> Iterator[torch.Tensor]:
        """prod_{k=1}^{n} (I - eta H_k) rhs for n = 0, ..., depth, each H_k on a fresh batch."""
        term = rhs
        yield term
        for _ in range(depth):
            model = system.linearise(self.factor_client(system, rng))
            term = term - self.eta * model.hvp(term)
            yield term

    def solve(self, system, rhs, rng):
        if self.randomized:
            depth = int(torch.randint(self.terms, (1,), generator=rng))
            return self.terms * self.eta * _last(self.series(system, rhs, rng, depth)), None
        total = _last(accumulate(self.series(system, rhs, rng, self.terms - 1)))
        return self.eta * total, None
