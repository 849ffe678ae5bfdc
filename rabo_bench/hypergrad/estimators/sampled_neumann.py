"""FedMBO's solve: a Neumann series whose factors come from clients sampled one per factor."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from rabo_bench.hypergrad.base import register_estimator
from rabo_bench.hypergrad.estimators.neumann import Neumann


@register_estimator
@dataclass(frozen=True)
class SampledNeumann(Neumann):
    """The Neumann series of :class:`Neumann` with factor n's Hessian H_{i_n} from client
    i_n ~ Uniform{0, ..., M-1}, drawn from ``rng`` (FedMBO's parallel hypergradient
    estimator, SPEC §5): on the server's system of M clients the product estimates the global
    [d^2_yy G]^{-1}, not a local one.

    A system of one client makes no draw (there is nothing to choose), so on a client's own
    objective this is ``neumann`` exactly, with the same random stream.
    Cost: as ``neumann``; each factor's hvp is booked to the sampled client.
    """

    name: ClassVar[str] = "sampled_neumann"

    def factor_client(self, system, rng: torch.Generator) -> int:
        return 0 if system.clients == 1 else system.sample_client(rng)
