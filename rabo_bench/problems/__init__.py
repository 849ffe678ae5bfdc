"""Bilevel problems: the interface and the synthetic problems with closed forms."""

from rabo_bench.problems.base import BilevelProblem, ClosedFormUnavailable
from rabo_bench.problems.logistic import LogisticConfig, LogisticHyperProblem
from rabo_bench.problems.quadratic import QuadraticBilevel, QuadraticConfig

__all__ = [
    "BilevelProblem",
    "ClosedFormUnavailable",
    "LogisticConfig",
    "LogisticHyperProblem",
    "QuadraticBilevel",
    "QuadraticConfig",
]
