"""Cost metrics: measured and analytic FLOPs, parameter and communication fractions (SPEC §8)."""

from rabo_bench.metrics.cost import (
    analytic_flops,
    communication_fraction,
    mean_parameter_fraction,
    measured_flops,
    measured_forward_flops,
    parameter_fraction,
)

__all__ = [
    "analytic_flops",
    "communication_fraction",
    "mean_parameter_fraction",
    "measured_flops",
    "measured_forward_flops",
    "parameter_fraction",
]
