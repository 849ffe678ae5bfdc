"""Template: a new hypergradient estimator (docs/extending.md).

To use it, copy this file to ``rabo_bench/hypergrad/estimators/<your_estimator>.py`` and
rename the class and its ``name``: the modules of that folder are imported on first use of the
registry, so ``@register_estimator`` runs. Then
``make_estimator("<name>", **params)`` builds it, and a suite can put it into any algorithm
with a ``LocalHypergradient`` outer step:

    [overrides.rabo]
    outer = { estimator = { type = "my_neumann_one_batch", terms = 10, eta = 0.5 } }

Every estimator has ONE signature, ``estimator(oracles, x, y, rng) -> h``:

* ``oracles`` wraps one client's sub-model objective (``oracles.objective``) and COUNTS every
  derivative: ``grad_f`` -> (grad_x f, grad_y f), ``grad_g`` -> grad_y g, ``hvp`` ->
  d^2_yy g · v, ``mixed`` -> d^2_xy g · v (counted as a jvp). Use only these, so the results
  table's oracle columns stay honest; no matrix is ever formed.
* ``x`` and ``y`` are flat vectors of the client's sub-model (only the coordinates it holds);
  the return value is shaped like ``x``.
* ``rng`` is the only source of randomness: draw batches with ``objective.sample_f(rng)`` /
  ``sample_g(rng)``, anything else through ``rabo_bench.hypergrad.base.draw``.

``tests/integration/test_templates.py`` checks this estimator against the closed-form
hypergradient of the quadratic problem and runs RABO with it for two rounds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from rabo_bench.hypergrad.base import HypergradientEstimator, register_estimator
from rabo_bench.hypergrad.oracles import Oracles
from rabo_bench.problems.ranges import COUNT, POSITIVE, setting


@register_estimator  # makes it known to make_estimator under ``name``
@dataclass(frozen=True)  # fields are its hyperparameters; frozen so a recipe is a value
class NeumannOneBatch(HypergradientEstimator):
    """AID with a truncated Neumann series whose factors all use ONE lower batch zeta
    (SPEC eq. 7 with zeta_n = zeta for every n, instead of a fresh batch per factor):

        p = eta * sum_{n=0}^{N-1} (I - eta d^2_yy g(zeta))^n grad_y f,
        h = grad_x f - d^2_xy g(zeta) · p.

    On a deterministic problem it equals ``neumann``; with minibatches it is biased (the
    product of one batch's factors is not the product of their expectations) but cheaper in
    data. Truncation as SPEC Lemma 1: (1 - eta mu_g)^N for eta <= 1 / L_g.
    Cost: 1 grad_f + (N - 1) hvp + 1 jvp.
    """

    name: ClassVar[str] = "my_neumann_one_batch"
    # implicit = True: it evaluates at the given (x, y) without inner steps of its own, so y
    # should approximate y*(x); comparisons (hypergrad/compare.py) then hand it y*(x).
    implicit: ClassVar[bool] = True
    # Each setting declares its allowed values beside its field (rabo_bench/problems/ranges.py):
    # a suite value outside them fails when the suite is loaded, as one line naming the key
    # path and the range, and docs/suites.md's table of allowed values lists them.
    terms: int = setting(5, COUNT)  # N
    eta: float = setting(0.01, POSITIVE)  # the Neumann step, <= 1 / L_g

    # ``vectorisable`` (a property, True by default) says the vectorised client simulator may run
    # it under vmap: no branch on the data's values, randomness only from batches and ``draw``.
    # An estimator that stops on a residual (cg) returns False there.

    def __call__(
        self, oracles: Oracles, x: torch.Tensor, y: torch.Tensor, rng: torch.Generator
    ) -> torch.Tensor:
        objective = oracles.objective
        grad_x, grad_y = oracles.grad_f(x, y, objective.sample_f(rng))  # 1 grad_f
        batch = objective.sample_g(rng)  # the one lower batch zeta
        term, total = grad_y, grad_y
        for _ in range(self.terms - 1):  # N - 1 hvp
            term = term - self.eta * oracles.hvp(x, y, term, batch)
            total = total + term
        return grad_x - oracles.mixed(x, y, self.eta * total, batch)  # 1 jvp
