"""Compare hypergradient estimators against a problem's closed-form grad F(x) (SPEC eq. 9).

One row per estimator setting: the relative error ||h - grad F(x)|| / ||grad F(x)|| on the
global objective (all clients, full masks), the oracle calls the estimator made and its wall
time. Implicit estimators (exact, neumann, cg) are evaluated at y = y*(x), so their error is
their own approximation of [d^2_yy g]^{-1}; unrolled ones (itd, coordinate_fd, gaussian_zo)
start their inner runs from the problem's initial y, so their error includes the inner
truncation. Only the estimator call is timed; the closed forms are not.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch

from rabo_bench.hypergrad.base import HypergradientEstimator, make_estimator
from rabo_bench.hypergrad.objective import LocalObjective
from rabo_bench.hypergrad.oracles import OracleCounter, Oracles
from rabo_bench.problems.base import BilevelProblem


@dataclass(frozen=True)
class Setting:
    """One estimator configuration: a registered name and its parameters."""

    estimator: str
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """``name=value`` pairs (floats to 4 significant digits); "default" without params."""
        pairs = (
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.params.items()
        )
        return " ".join(pairs) or "default"

    @property
    def implicit(self) -> bool:
        return make_estimator(self.estimator, **self.params).implicit


def _timed_run(
    estimator: HypergradientEstimator,
    obj: LocalObjective,
    x: torch.Tensor,
    y: torch.Tensor,
    seed: int,
) -> tuple[torch.Tensor, OracleCounter, float]:
    """One estimator call on fresh counted oracles and a fresh generator; its wall time in ms."""
    oracles, rng = Oracles(obj), torch.Generator().manual_seed(seed)
    tic = time.perf_counter()
    h = estimator(oracles, x, y, rng)
    return h, oracles.counter, 1e3 * (time.perf_counter() - tic)


def compare_estimators(
    problem: BilevelProblem, settings: Sequence[Setting], seed: int = 0
) -> pd.DataFrame:
    """Run each setting once at the problem's initial point (drawn with ``seed``).

    Every run gets its own generator seeded with ``seed``, so a row does not depend on the rows
    before it. The first setting of each estimator also runs once untimed beforehand: the
    first ``torch.func`` transforms of a process pay a one-off set-up cost of about a second.
    Columns: estimator, setting, start, rel_error, grad_f, grad_g, hvp, jvp, total, wall_ms.
    """
    x, y_init = problem.init_params(torch.Generator().manual_seed(seed))
    obj = LocalObjective(problem, None, x, y_init)
    x_flat, reference = obj.pack_x(x), obj.pack_x(problem.hypergradient(x))
    starts = {
        True: ("y*(x)", obj.pack_y(problem.inner_solution(x))),
        False: ("y0", obj.pack_y(y_init)),
    }
    rows, warmed = [], set()
    for setting in settings:
        estimator = make_estimator(setting.estimator, **setting.params)
        start, y_flat = starts[setting.implicit]
        if setting.estimator not in warmed:
            _timed_run(estimator, obj, x_flat, y_flat, seed)
            warmed.add(setting.estimator)
        h, counter, wall_ms = _timed_run(estimator, obj, x_flat, y_flat, seed)
        rows.append(
            {
                "estimator": setting.estimator,
                "setting": setting.label,
                "start": start,
                "rel_error": float((h - reference).norm() / reference.norm()),
                **counter.as_dict(),
                "total": counter.total,
                "wall_ms": wall_ms,
            }
        )
    return pd.DataFrame(rows)


def format_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The comparison as strings: errors in scientific notation, milliseconds to 0.1."""
    out = frame.astype(str)
    if "rel_error" in frame:
        out["rel_error"] = frame["rel_error"].map("{:.2e}".format)
    if "wall_ms" in frame:
        out["wall_ms"] = frame["wall_ms"].map("{:.1f}".format)
    return out


def _aligned(frame: pd.DataFrame) -> tuple[list[list[str]], list[int], list[bool]]:
    """Header plus formatted rows, the column widths, and which columns are numeric."""
    text = format_table(frame)
    rows = [list(frame.columns), *(list(row) for row in text.itertuples(index=False))]
    widths = [max(len(row[k]) for row in rows) for k in range(len(frame.columns))]
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) for c in frame.columns]
    return rows, widths, numeric


def _pad(cells: Sequence[str], widths: Sequence[int], numeric: Sequence[bool]) -> list[str]:
    """Numbers right-aligned, text left-aligned."""
    return [
        cell.rjust(w) if num else cell.ljust(w)
        for cell, w, num in zip(cells, widths, numeric, strict=True)
    ]


def to_text(frame: pd.DataFrame) -> str:
    """A plain-text table with aligned columns and a dashed rule under the header."""
    rows, widths, numeric = _aligned(frame)
    lines = ["  ".join(_pad(row, widths, numeric)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"


def to_markdown(frame: pd.DataFrame) -> str:
    """A GitHub-style markdown table, written without the ``tabulate`` package."""
    rows, widths, numeric = _aligned(frame)
    rule = ["-" * (w - 1) + ":" if num else "-" * w for w, num in zip(widths, numeric, strict=True)]
    lines = [
        "| " + " | ".join(_pad(row, widths, numeric)) + " |" for row in [rows[0], rule, *rows[1:]]
    ]
    return "\n".join(lines) + "\n"
