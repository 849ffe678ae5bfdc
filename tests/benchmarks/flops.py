"""FLOP counting and the FLOP-efficiency fraction the benchmarks record.

Counting rule (the convention of ``rabo_bench.metrics.cost``, extended to vector kernels):
``torch.utils.flop_counter.FlopCounterMode`` counts mm, addmm, bmm, baddbmm, convolutions and
attention at 2 FLOPs per multiply-add, but counts nothing for the matrix-vector and dot kernels
(aten.mv, aten.addmv, aten.dot, aten.vdot) that a one-client synthetic round is made of, while
the same products batched by ``vmap`` become bmm and are counted. So those four are registered
here at 2 FLOPs per multiply-add too; without them the sequential and the vectorised simulator
would be counted by different rules. Elementwise ops, reductions, activations, indexing and the
loss are not counted by either (so the fraction is a lower bound on the arithmetic done).

Efficiency fraction = (FLOPs of the measured call / its median wall time) / the FLOP/s of a
dense square matmul of the same dtype measured in the same process (``MatmulPeak``), i.e. the
share of the machine's practical limit the call achieves.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from tests.benchmarks.machine import cpu_model

aten = torch.ops.aten


def _mv_flops(matrix_shape, vector_shape, *args, **kwargs) -> int:
    return 2 * matrix_shape[0] * matrix_shape[1]


def _addmv_flops(self_shape, matrix_shape, vector_shape, *args, **kwargs) -> int:
    return _mv_flops(matrix_shape, vector_shape)


def _dot_flops(a_shape, b_shape, *args, **kwargs) -> int:
    return 2 * a_shape[0]


VECTOR_KERNELS = {
    aten.mv: _mv_flops,
    aten.addmv: _addmv_flops,
    aten.dot: _dot_flops,
    aten.vdot: _dot_flops,
}


def count_flops(call: Callable[[], object]) -> int:
    """FLOPs of one ``call()`` under the counting rule above (the call really runs)."""
    with FlopCounterMode(display=False, custom_mapping=VECTOR_KERNELS) as counter:
        call()
    return int(counter.get_total_flops())


@dataclass(frozen=True)
class MatmulPeak:
    """The practical FLOP/s limit: the best of ``repeats`` n x n matmuls per dtype."""

    size: int
    flop_per_s: dict[str, float]  # dtype name -> FLOP/s
    device: str

    @classmethod
    def measure(cls, size: int = 2048, repeats: int = 5) -> MatmulPeak:
        device = torch.get_default_device()
        rates = {}
        for dtype in (torch.float64, torch.float32):
            a = torch.randn(size, size, dtype=dtype)
            b = torch.randn(size, size, dtype=dtype)
            best = float("inf")
            for _ in range(repeats + 1):  # the first is a warm-up (allocation, thread pool)
                start = time.perf_counter()
                a @ b
                if device.type == "cuda":
                    torch.cuda.synchronize()
                best = min(best, time.perf_counter() - start)
            rates[dtype_name(dtype)] = 2 * size**3 / best
        return cls(size, rates, device_name(device))


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def device_name(device: torch.device) -> str:
    """The model of the device benchmarks run on (the CPU's from /proc/cpuinfo)."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()


def record(benchmark, flops: int, dtype: torch.dtype, peak: MatmulPeak) -> None:
    """Store the call's FLOPs, dtype, reference peak and (when timed) its efficiency fraction
    in ``benchmark.extra_info``, which pytest-benchmark writes to its JSON."""
    name = dtype_name(dtype)
    info = benchmark.extra_info
    info.update(
        flops=flops,
        dtype=name,
        device=peak.device,
        threads=torch.get_num_threads(),
        matmul_size=peak.size,
        matmul_flop_per_s=peak.flop_per_s[name],
    )
    if benchmark.stats is not None:  # None under --benchmark-disable
        achieved = flops / benchmark.stats.stats.median
        info.update(flop_per_s=achieved, flop_fraction=achieved / peak.flop_per_s[name])
