"""The device a run computes on: the suite key ``device`` and ``run --device`` (docs/scaling.md,
"GPUs"). An execution choice, not part of a run's identity: a run's id, random streams and
initial point are the same on every device.

* ``auto`` (default): this process's GPU when CUDA is available and the problem can move there
  (the network problems, ``BilevelProblem.movable``), else the CPU;
* ``cpu``;
* ``cuda``: this process's GPU, i.e. GPU ``LOCAL_RANK`` under torchrun (one GPU a rank), else 0;
* ``cuda:N``: GPU N.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

import torch

from rabo_bench.problems.base import BilevelProblem
from rabo_bench.problems.registry import problems

if TYPE_CHECKING:
    from rabo_bench.engine.suite import Suite

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
_NAME = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def is_device_name(value: object) -> bool:
    return isinstance(value, str) and _NAME.match(value) is not None


def _own_gpu() -> torch.device:
    index = int(os.environ.get("LOCAL_RANK", "0"))
    if index >= torch.cuda.device_count():
        raise ValueError(
            f"device cuda: rank {index} of this machine has no GPU of its own "
            f"({torch.cuda.device_count()} GPUs); start at most that many ranks a machine"
        )
    return torch.device("cuda", index)


def run_device(requested: str, problem: type[BilevelProblem], precision: str) -> torch.device:
    """The device of a run of ``problem`` in ``precision`` for the ``requested`` name; raises
    ValueError (one line) when that cannot work on this machine."""
    if not is_device_name(requested):
        raise ValueError(f"device {requested!r} is not one of {DEVICE_CHOICES}")
    if requested == "auto":
        gpu = torch.cuda.is_available() and problem.movable
        requested = "cuda" if gpu else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {requested}: this machine has no CUDA device")
    device = _own_gpu() if requested == "cuda" else torch.device(requested)
    if device.type == "cuda" and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {device}: this machine has {torch.cuda.device_count()} GPUs")
    why = problem.unsupported(precision, device)
    if why is not None:
        raise ValueError(why)
    return device


def suite_device(suite: Suite) -> torch.device:
    """The device of the suite's runs on this machine, checked for every setting before
    anything runs (one-line ValueError); the settings must agree, since torchrun chooses its
    backend by it."""
    found = {
        run_device(suite.device, problems()[v.problem].problem, v.precision)
        for v in suite.variants()
    }
    if len(found) > 1:
        raise ValueError(
            f"device {suite.device}: the suite's settings would compute on "
            f"{', '.join(sorted(map(str, found)))}; choose one with --device"
        )
    return found.pop()
