"""Where and with what a command ran: the tags MLflow puts on every run of a command, so a run
in a shared store says which code, which packages and which machine made it."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import rabo_bench

if TYPE_CHECKING:
    import torch

PACKAGES = ("numpy", "scipy", "mlflow")  # and torch, with its build (e.g. 2.14.1+cu130)


def git_commit(where: Path | None = None) -> str:
    """The commit of the source checkout rabo_bench runs from, with "-dirty" when it has
    uncommitted changes; "unknown" for an installed package or without git."""
    where = where or Path(rabo_bench.__file__).resolve().parent
    try:

        def git(*args: str) -> str:
            done = subprocess.run(
                ["git", "-C", str(where), *args], capture_output=True, text=True, timeout=10
            )
            if done.returncode != 0:
                raise OSError(done.stderr.strip())
            return done.stdout.strip()

        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def device(where: torch.device) -> str:
    """The device the runs compute on (not whatever accelerator the machine has)."""
    import torch

    if where.type == "cuda":
        return f"{where}: {torch.cuda.get_device_name(where)}"
    return f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def command_tags(command: str, preset: str | None, where: torch.device) -> dict[str, str]:
    """Tags for every run of one command whose runs compute on ``where``."""
    import torch

    versions = {"rabo_bench": rabo_bench.__version__, "python": platform.python_version()}
    versions["torch"] = torch.__version__
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return {
        "rabo_bench.command": command,
        "rabo_bench.preset": preset or "",
        "rabo_bench.git_commit": git_commit(),
        "rabo_bench.device": device(where),
        **{f"rabo_bench.version.{name}": v for name, v in versions.items()},
    }
