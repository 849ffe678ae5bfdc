"""What machine a benchmark ran on, read where Linux keeps it (/proc), for the JSON and the
report's provenance: numbers without the machine they came from cannot be compared."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch


def _proc_field(path: str, key: str) -> str | None:
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        name, _, value = line.partition(":")
        if name.strip() == key:
            return value.strip()
    return None


def cpu_model() -> str:
    return _proc_field("/proc/cpuinfo", "model name") or platform.processor() or "unknown CPU"


def ram_gib() -> float | None:
    total = _proc_field("/proc/meminfo", "MemTotal")  # "24576000 kB"
    return None if total is None else round(int(total.split()[0]) / 2**20, 1)


def describe() -> dict[str, object]:
    """CPU model, logical cores, RAM, torch version and threads, accelerator if any."""
    info: dict[str, object] = {
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "ram_gib": ram_gib(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info
