"""Parameter-wise masked aggregation on the server (SPEC eq. 6 and eq. 8).

Each client i sends a full-shaped update and a boolean mask m_i saying which coordinates it
holds. For coordinate j let C_j = {i : m_{i,j} = 1} (SPEC Def. 3). The server averages the
updates over C_j only; a coordinate that no client holds keeps its value. Masks are dense
boolean dicts, so any pattern works: structured (``StructuredMask.dense()``) or unstructured.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch

from rabo_bench.params import Params

Masks = Sequence[Mapping[str, torch.Tensor]]
Reduce = Callable[[torch.Tensor], torch.Tensor] | None  # how stacked clients' terms are summed


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
    total = MaskedSum()
    for m in masks:
        total.count_mask(m)
    return total.count


class MaskedSum:
    """The server's running  S_j = sum_{i in C_j} u_{i,j}  and  |C_j|  over the clients added
    so far (one update at a time, or a stack of them from the vectorised simulator). A sharded run
    adds its local clients on each rank and all-reduces both sums (``all_reduce``). In a seed
    batch every sum has a leading seed axis: row s is the server of run s (``add_rows``)."""

    def __init__(self) -> None:
        self.total: dict[str, torch.Tensor] = {}
        self.count: dict[str, torch.Tensor] = {}

    def count_mask(self, mask: Mapping[str, torch.Tensor], reduce: Reduce = None) -> None:
        for name, m in mask.items():
            held = m.long() if reduce is None else reduce(m.long())
            self.count[name] = self.count[name] + held if name in self.count else held

    def add(self, update: Params, mask: Mapping[str, torch.Tensor]) -> None:
        """One client's update; its values off the mask are ignored (NaN and inf included)."""
        self._add(update, mask, None)

    def add_stacked(self, updates: Params, masks: Mapping[str, torch.Tensor]) -> None:
        """Updates and masks of several clients stacked along dimension 0."""
        self._add(updates, masks, lambda t: t.sum(0))

    def add_rows(
        self, updates: Params, masks: Mapping[str, torch.Tensor], rows: torch.Tensor, size: int
    ) -> None:
        """Updates and masks of several clients stacked along dimension 0, client k's into
        row ``rows[k]`` of sums with ``size`` rows (a seed batch: S_j and |C_j| per run)."""

        def reduce(t: torch.Tensor) -> torch.Tensor:
            return t.new_zeros((size, *t.shape[1:])).index_add(0, rows, t)

        self._add(updates, masks, reduce)

    def _add(self, update: Params, mask: Mapping[str, torch.Tensor], reduce: Reduce) -> None:
        self.count_mask(mask, reduce)
        for name, m in mask.items():
            held = torch.where(m, update[name], 0)
            held = held if reduce is None else reduce(held)
            self.total[name] = self.total[name] + held if name in self.total else held

    def all_reduce(self) -> MaskedSum:
        """Sum the partial sums and counts of every rank (torch.distributed, any backend)."""
        import torch.distributed as dist

        for table in (self.total, self.count):
            for name in sorted(table):
                dist.all_reduce(table[name])
        return self

    def mean(self) -> tuple[Params, dict[str, torch.Tensor]]:
        """(mean over C_j, covered = |C_j| >= 1); the mean is 0 where C_j is empty."""
        covered = {name: c > 0 for name, c in self.count.items()}
        mean = {
            name: torch.where(covered[name], t / self.count[name].clamp(min=1), 0)
            for name, t in self.total.items()
        }
        return mean, covered

    def step(self, params: Params, lr: float) -> Params:
        """x_j <- x_j - lr * mean_{i in C_j} u_{i,j} where |C_j| >= 1; x_j unchanged
        (bit-identical) where no client holds j. Returns a new dict."""
        mean, covered = self.mean()
        if set(params) != set(mean):
            raise ValueError(f"params names {sorted(params)} differ from mask names {sorted(mean)}")
        for name, p in params.items():
            if p.shape != mean[name].shape:
                raise ValueError(
                    f"params {name!r} has shape {tuple(p.shape)}, "
                    f"masks have {tuple(mean[name].shape)}"
                )
        return {
            name: torch.where(covered[name], p - lr * mean[name], p) for name, p in params.items()
        }


def _summed(updates: Sequence[Params], masks: Masks) -> MaskedSum:
    _check(masks, updates)
    total = MaskedSum()
    for u, m in zip(updates, masks, strict=True):
        total.add(u, m)
    return total


def masked_mean(updates: Sequence[Params], masks: Masks) -> tuple[Params, dict[str, torch.Tensor]]:
    """Per coordinate j, the mean of the client updates over C_j; 0 where C_j is empty.

    This is the averaged term (1/|C_j|) Σ_{i∈C_j} Δ_{i,j} of SPEC eq. (6) (inner, y) and eq. (8)
    (outer, x). Values of an update outside its client's mask are ignored, whatever they are
    (NaN and inf included). Returns ``(mean, covered)`` with ``covered = |C_j| >= 1``.
    """
    return _summed(updates, masks).mean()


def masked_step(params: Params, updates: Sequence[Params], masks: Masks, lr: float) -> Params:
    """One server step with parameter-wise masked aggregation, SPEC eq. (6) and eq. (8).

    x_j ← x_j − lr · (1/|C_j|) Σ_{i∈C_j} u_{i,j} where |C_j| ≥ 1, and x_j unchanged
    (bit-identical) where no client holds j. This is the HeteroFL rule: every parameter is
    averaged over exactly the clients whose sub-model contains it. With full masks it is the
    plain FedAvg mean. Eq. (6) uses lr = β and the clients' accumulated inner gradients; eq. (8)
    uses lr = α and the clients' hypergradient estimates. Returns a new dict.
    """
    return _summed(updates, masks).step(params, lr)
