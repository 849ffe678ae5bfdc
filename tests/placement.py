"""Checking device placement on a machine without a GPU (tests/unit/test_placement.py).

Two stand-ins for a second device:

* :class:`UnplacedOnMeta`: inside it, every tensor that code creates without naming a device
  (``torch.zeros(n)``, ``torch.arange(k)``, ``torch.tensor([...])``) lands on the ``meta``
  device, while the problem's data and parameters stay on the CPU. Such a tensor meeting the
  data raises (meta and CPU tensors do not mix, as CPU and CUDA tensors do not), and a value
  read from it raises too, so a round that runs through unchanged creates every tensor where
  it says. Random draws from a generator are left where the generator is (the CPU: sampling
  is on CPU generators by design, so that a seed draws the same batches on every device).
* a problem placed on ``meta`` (``problem.place``): then the CPU-made tensors (random draws,
  index sets) that meet the data must be moved to it, or the op raises. Meta tensors hold no
  values, so this runs only code without data-dependent steps.
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._device import _device_constructors


class UnplacedOnMeta(TorchFunctionMode):
    """Tensors created without ``device=`` (and not drawn from a generator) go to ``meta``."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        unplaced = kwargs.get("device") is None and kwargs.get("generator") is None
        if unplaced and func in _device_constructors():
            kwargs = {**kwargs, "device": "meta"}
        return func(*args, **kwargs)


def tensors_of(value: Any, path: str = "") -> dict[str, torch.Tensor]:
    """Every tensor reachable from ``value`` through attributes, dataclass fields, mappings and
    sequences, by its path (``._train``, ``.splits[3].val``)."""
    if isinstance(value, torch.Tensor):
        return {path: value}
    if isinstance(value, dict):
        items = [(f"[{k!r}]", v) for k, v in value.items()]
    elif isinstance(value, (list, tuple)):
        items = [(f"[{i}]", v) for i, v in enumerate(value)]
    elif is_dataclass(value) and not isinstance(value, type):
        items = [(f".{f.name}", getattr(value, f.name)) for f in fields(value)]
    elif hasattr(value, "__dict__") and type(value).__module__.startswith("rabo_bench"):
        items = [(f".{k}", v) for k, v in vars(value).items()]
    else:
        return {}
    found = {}
    for key, item in items:
        found.update(tensors_of(item, path + key))
    return found
