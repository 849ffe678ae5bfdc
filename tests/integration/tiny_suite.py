"""A suite file of two clients on a 4 x 4 quadratic: runs of many rounds in about a second."""

from __future__ import annotations

from pathlib import Path


def tiny_suite(
    folder: Path, name: str, rounds: int, algorithms: list[str], seeds: int = 1, tables: str = ""
) -> Path:
    """Write ``<folder>/<name>.toml``; ``tables`` adds TOML tables (overrides)."""
    path = folder / f"{name}.toml"
    path.write_text(
        f"""
name = "{name}"
rounds = {rounds}
seeds = {seeds}
algorithms = {algorithms}
capacities = [1, 0.5]

[problem]
name = "quadratic"
dim_x = 4
dim_y = 4
num_clients = 2
{tables}
"""
    )
    return path
