"""Parameter-wise masked aggregation on the server (SPEC eq. 6 and eq. 8).

Each client i sends a full-shaped update and a boolean mask m_i saying which coordinates it
holds. For coordinate j let C_j = {i : m_{i,j} = 1} (SPEC Def. 3). The server averages the
updates over C_j only; a coordinate that no client holds keeps its value. Masks are dense
boolean dicts, so any pattern works: structured (``StructuredMask.dense()``) or unstructured.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from rabo_bench.params import Params

Masks = Sequence[Mapping[str, torch.Tensor]]


def _check(masks: Masks, updates: Sequence[Params] | None = None) -> None:
    if not masks:
        raise ValueError("need at least one client mask")
    if updates is not None and len(updates) != len(masks):
        raise ValueError(f"{len(updates)} updates but {len(masks)} masks")
    first = masks[0]
    for i, m in enumerate(masks):
        if set(m) != set(first):
            raise ValueError(f"client {i} mask names {sorted(m)} differ from {sorted(first)}")
        if updates is not None and set(updates[i]) != set(first):
            raise ValueError(
                f"client {i} update names {sorted(updates[i])} differ from {sorted(first)}"
            )
        for name, t in m.items():
            if t.dtype != torch.bool or t.shape != first[name].shape:
                raise ValueError(
                    f"client {i} mask {name!r} is {tuple(t.shape)} {t.dtype}, "
                    f"expected {tuple(first[name].shape)} torch.bool"
                )
            if updates is not None and updates[i][name].shape != t.shape:
                raise ValueError(
                    f"client {i} update {name!r} has shape {tuple(updates[i][name].shape)}, "
                    f"its mask has {tuple(t.shape)}"
                )


def coverage(masks: Masks) -> dict[str, torch.Tensor]:
    """Per coordinate j, the number of clients holding it: |C_j| of SPEC Def. 3 (a LongTensor)."""
    _check(masks)
    out = {}
    for name in masks[0]:
        count = torch.zeros(masks[0][name].shape, dtype=torch.long, device=masks[0][name].device)
        for m in masks:
            count = count + m[name]
        out[name] = count
    return out


def masked_mean(updates: Sequence[Params], masks: Masks) -> tuple[Params, dict[str, torch.Tensor]]:
    """Per coordinate j, the mean of the client updates over C_j; 0 where C_j is empty.

    This is the averaged term (1/|C_j|) Σ_{i∈C_j} Δ_{i,j} of SPEC eq. (6) (inner, y) and eq. (8)
    (outer, x). Values of an update outside its client's mask are ignored, whatever they are
    (NaN and inf included). Returns ``(mean, covered)`` with ``covered = |C_j| >= 1``.
    """
    _check(masks, updates)
    counts = coverage(masks)
    mean, covered = {}, {}
    for name, count in counts.items():
        total = torch.zeros((), dtype=updates[0][name].dtype, device=count.device)
        for u, m in zip(updates, masks, strict=True):
            total = total + torch.where(m[name], u[name], 0)
        covered[name] = count > 0
        mean[name] = torch.where(covered[name], total / count.clamp(min=1), 0)
    return mean, covered


def masked_step(params: Params, updates: Sequence[Params], masks: Masks, lr: float) -> Params:
    """One server step with parameter-wise masked aggregation, SPEC eq. (6) and eq. (8).

    x_j ← x_j − lr · (1/|C_j|) Σ_{i∈C_j} u_{i,j} where |C_j| ≥ 1, and x_j unchanged
    (bit-identical) where no client holds j. This is the HeteroFL rule: every parameter is
    averaged over exactly the clients whose sub-model contains it. With full masks it is the
    plain FedAvg mean. Eq. (6) uses lr = β and the clients' accumulated inner gradients; eq. (8)
    uses lr = α and the clients' hypergradient estimates. Returns a new dict.
    """
    mean, covered = masked_mean(updates, masks)
    if set(params) != set(mean):
        raise ValueError(f"params names {sorted(params)} differ from mask names {sorted(mean)}")
    for name, p in params.items():
        if p.shape != mean[name].shape:
            raise ValueError(
                f"params {name!r} has shape {tuple(p.shape)}, masks have {tuple(mean[name].shape)}"
            )
    return {name: torch.where(covered[name], p - lr * mean[name], p) for name, p in params.items()}
