"""Where a problem computes and in what precision (docs/scaling.md, "GPUs").

``Compute`` is a run's execution setting for the network problems: the device that holds the
data, parameters and batches, the floating-point precision of the networks' forward pass, and
the convolutions' memory format. The precision changes the numbers, so a precision other than
fp32 is part of a run's identity; the device and the memory format are not (they change float
rounding at most, like the choice of client simulator).

* ``fp32``: full precision in the problem's dtype; on CUDA, TF32 is switched off for matmuls
  and cuDNN convolutions alike (cuDNN allows it by default), so fp32 means IEEE float32;
* ``tf32``: float32 tensors, matmuls and convolutions on TF32 tensor cores (CUDA only);
* ``bf16``: the networks' forward pass under ``torch.autocast`` in bfloat16 (convolutions and
  matmuls in bfloat16, normalisation and the features handed back in float32), parameters,
  gradients and the estimators' vector algebra in float32.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

PRECISIONS = ("fp32", "tf32", "bf16")
FULL_PRECISION = "fp32"


@dataclass(frozen=True)
class Compute:
    """A problem's device, forward precision and memory format (``channels_last``: NHWC
    convolutions, for tensor cores on CUDA)."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    precision: str = FULL_PRECISION
    channels_last: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r} is not one of {list(PRECISIONS)}")
        object.__setattr__(self, "device", torch.device(self.device))

    def autocast(self) -> contextlib.AbstractContextManager:
        """The context of a network's forward pass: bfloat16 autocast for ``bf16``."""
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()


@contextlib.contextmanager
def tf32_switched(precision: str) -> Iterator[None]:
    """TF32 for CUDA matmuls and cuDNN convolutions on (``tf32``) or off (the others) inside
    the block, as it was after it (process-wide flags, so one run at a time per process; they
    do nothing on the CPU)."""
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = matmul.allow_tf32, cudnn.allow_tf32
    matmul.allow_tf32 = cudnn.allow_tf32 = precision == "tf32"
    try:
        yield
    finally:
        matmul.allow_tf32, cudnn.allow_tf32 = saved
