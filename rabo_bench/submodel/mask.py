"""Structured sub-model masks and the dense sub-models built on them.

A mask is the single source of truth about which part of a model a client holds (SPEC
section 2, Step 1 / eq. 3). It is *structured*: per parameter and per tensor dimension it keeps
a sorted set of indices (output channels, rows, ...), so the held coordinates form a Cartesian
product. That lets :func:`extract` materialise the physically smaller dense sub-model of
Step 2 (eq. 4) and :func:`scatter` / :func:`embed` put it back, e.g. as x ⊙ m.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import torch

from rabo_bench.params import Params

Index = tuple[torch.Tensor | None, ...]
_INTEGER_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def _shapes_of(params_or_shapes: Mapping[str, torch.Tensor | torch.Size | tuple[int, ...]]):
    return {
        name: torch.Size(v.shape if isinstance(v, torch.Tensor) else v)
        for name, v in params_or_shapes.items()
    }


def _check_index(name: str, index: Index, shape: torch.Size) -> Index:
    """Validate one parameter's per-dimension index and return it with LongTensor entries."""
    if len(index) != len(shape):
        raise ValueError(
            f"mask for {name!r}: {len(index)} index entries for a {len(shape)}-dim "
            f"parameter of shape {tuple(shape)}; give exactly one entry (or None) per dim"
        )
    out: list[torch.Tensor | None] = []
    for dim, (idx, size) in enumerate(zip(index, shape, strict=True)):
        if idx is None:
            out.append(None)
            continue
        where = f"mask for {name!r}, dim {dim} (size {size})"
        if not isinstance(idx, torch.Tensor) or idx.dtype not in _INTEGER_DTYPES:
            raise ValueError(f"{where}: indices must be an integer tensor, got {idx!r}")
        if idx.dim() != 1:
            raise ValueError(f"{where}: indices must be 1-D, got shape {tuple(idx.shape)}")
        idx = idx.to(torch.long, copy=True)
        if idx.numel() and (idx.min() < 0 or idx.max() >= size):
            raise ValueError(f"{where}: indices out of range [0, {size}): {idx.tolist()}")
        if not bool((idx[1:] > idx[:-1]).all()):
            raise ValueError(f"{where}: indices must be sorted and unique: {idx.tolist()}")
        out.append(idx)
    return tuple(out)


@dataclass(frozen=True)
class StructuredMask:
    """Which structured groups of each named parameter a client holds.

    ``index[name]`` has one entry per dimension of the parameter: a sorted, duplicate-free 1-D
    LongTensor of the indices kept along that dimension, or ``None`` for the whole dimension.
    The held coordinates are the Cartesian product of these selections. ``shapes[name]`` is
    the full shape. Construction copies the indices into read-only mappings. Equality compares
    shapes and indices; hashing uses the shapes only.
    """

    index: Mapping[str, Index]
    shapes: Mapping[str, torch.Size]
    # dense() per device, computed on first use: a mask is immutable, and one mask object is
    # shared by every client of a capacity, read by the engine, coverage and aggregation
    _dense: dict[torch.device, Mapping[str, torch.Tensor]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        shapes = _shapes_of(self.shapes)
        if set(self.index) != set(shapes):
            raise ValueError(
                f"mask index names {sorted(self.index)} differ from shape names {sorted(shapes)}"
            )
        index = {name: _check_index(name, tuple(self.index[name]), shapes[name]) for name in shapes}
        object.__setattr__(self, "index", MappingProxyType(index))
        object.__setattr__(self, "shapes", MappingProxyType(shapes))

    @classmethod
    def full(
        cls, params_or_shapes: Mapping[str, torch.Tensor | torch.Size | tuple[int, ...]]
    ) -> StructuredMask:
        """The mask that holds every coordinate (capacity r = 1)."""
        shapes = _shapes_of(params_or_shapes)
        return cls({name: (None,) * len(shape) for name, shape in shapes.items()}, shapes)

    @classmethod
    def rows(
        cls,
        shapes: Mapping[str, torch.Tensor | torch.Size | tuple[int, ...]],
        rows: Mapping[str, torch.Tensor],
    ) -> StructuredMask:
        """Keep the given rows (indices along dim 0) of the named parameters.

        On synthetic problems a "channel" is a row of a parameter, i.e. one index along dim 0;
        for a 1-D parameter a row is a single coordinate. Parameters not named in ``rows`` are
        held whole.
        """
        full = _shapes_of(shapes)
        unknown = set(rows) - set(full)
        if unknown:
            raise ValueError(f"rows given for unknown parameters {sorted(unknown)}")
        index = {name: (None,) * len(shape) for name, shape in full.items()}
        for name, idx in rows.items():
            index[name] = (idx, *index[name][1:])
        return cls(index, full)

    def dense(self, device: torch.device | str = "cpu") -> Mapping[str, torch.Tensor]:
        """Elementwise truth on ``device``: a bool tensor per parameter, the outer product of
        the selections (read-only; computed once per mask and device)."""
        device = torch.device(device)
        if device not in self._dense:
            self._dense[device] = MappingProxyType(self._held(device))
        return self._dense[device]

    def _held(self, device: torch.device) -> dict[str, torch.Tensor]:
        out = {}
        for name, shape in self.shapes.items():
            held = torch.ones(shape, dtype=torch.bool, device=device)
            for dim, idx in enumerate(self.index[name]):
                if idx is not None:
                    sel = torch.zeros(shape[dim], dtype=torch.bool, device=device)
                    sel[idx.to(sel.device)] = True
                    view = [1] * len(shape)
                    view[dim] = shape[dim]
                    held = held & sel.view(view)
            out[name] = held
        return out

    def sub_shapes(self) -> dict[str, torch.Size]:
        """Shapes of the dense sub-model tensors that :func:`extract` returns."""
        return {
            name: torch.Size(
                size if idx is None else idx.numel()
                for size, idx in zip(shape, self.index[name], strict=True)
            )
            for name, shape in self.shapes.items()
        }

    def numel(self) -> int:
        """Number of held coordinates over all parameters."""
        return sum(math.prod(shape) for shape in self.sub_shapes().values())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StructuredMask):
            return NotImplemented
        return self.shapes == other.shapes and all(
            (a is None and b is None)
            or (a is not None and b is not None and torch.equal(a, b.to(a.device)))
            for name in self.shapes
            for a, b in zip(self.index[name], other.index[name], strict=True)
        )

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.shapes.items())))

    def extract(self, params: Params) -> Params:
        return _extract_rows(params, self)

    def scatter(self, params: Params, sub: Params) -> Params:
        return _scatter_rows(params, self, sub)

    def embed(self, sub: Params, like: Params) -> Params:
        return self.scatter({name: torch.zeros_like(t) for name, t in like.items()}, sub)


def _check_names(params: Params, mask: StructuredMask, what: str) -> None:
    if set(params) != set(mask.shapes):
        raise ValueError(
            f"{what} names {sorted(params)} differ from mask names {sorted(mask.shapes)}"
        )
    for name, t in params.items():
        if t.shape != mask.shapes[name]:
            raise ValueError(
                f"{what} {name!r} has shape {tuple(t.shape)}, "
                f"mask expects {tuple(mask.shapes[name])}"
            )


def _extract_rows(params: Params, mask: StructuredMask) -> Params:
    """The physically smaller dense sub-model (SPEC eq. 4): ``index_select`` per restricted dim.

    Differentiable w.r.t. ``params``; the result never shares storage with ``params``.
    """
    _check_names(params, mask, "params")
    out = {}
    for name, t in params.items():
        sub = t
        for dim, idx in enumerate(mask.index[name]):
            if idx is not None:
                sub = sub.index_select(dim, idx.to(t.device))
        out[name] = sub.clone() if sub is t else sub
    return out


def _scatter_rows(params: Params, mask: StructuredMask, sub: Params) -> Params:
    """A new dict equal to ``params`` except that the held coordinates take the values of ``sub``.

    Out of place and differentiable w.r.t. ``sub`` (and w.r.t. the unheld entries of ``params``).
    The inverse of :func:`extract` on the held coordinates.
    """
    _check_names(params, mask, "params")
    if set(sub) != set(params):
        raise ValueError(f"sub-model names {sorted(sub)} differ from params names {sorted(params)}")
    sub_shapes = mask.sub_shapes()
    out = {}
    for name, t in params.items():
        s = sub[name]
        if s.shape != sub_shapes[name] or s.dtype != t.dtype:
            raise ValueError(
                f"sub-model {name!r} is {tuple(s.shape)} {s.dtype}, "
                f"expected {tuple(sub_shapes[name])} {t.dtype}"
            )
        index = mask.index[name]
        if all(idx is None for idx in index):
            out[name] = s.clone()
            continue
        grids = []
        for dim, (idx, size) in enumerate(zip(index, t.shape, strict=True)):
            full = torch.arange(size, device=t.device) if idx is None else idx.to(t.device)
            view = [1] * t.dim()
            view[dim] = -1
            grids.append(full.view(view))
        out[name] = t.index_put(tuple(grids), s)
    return out


def extract(params: Params, mask) -> Params:
    """The client's sub-model: dense smaller tensors (structured) or held values (element masks)."""
    return mask.extract(params)


def scatter(params: Params, mask, sub: Params) -> Params:
    """``params`` with the held coordinates replaced by ``sub`` (out of place, differentiable)."""
    return mask.scatter(params, sub)


def embed(mask, sub: Params, like: Params) -> Params:
    """The sub-model as a full-shaped dict, zero off the mask: x ⊙ m (SPEC eq. 5/7)."""
    return mask.embed(sub, like)


@dataclass(frozen=True)
class ClientMasks:
    """Client i's sub-model in one round: m_{x,i}^q and m_{y,i}^q (SPEC eq. 3)."""

    x: StructuredMask
    y: StructuredMask
