"""The allowed values of a setting, declared beside the dataclass field that holds it.

A field made with :func:`setting` carries its allowed values (a :class:`Range` of numbers or a
:class:`OneOf` set of choices); a dataclass that derives from :class:`Checked` checks each such
field when it is built (``__init__`` and ``dataclasses.replace`` alike) and raises
:class:`RangeError`, whose message names the key and what it may be: ``steps = -5 must be an
integer >= 1``. Code that builds a part from a table of a suite file prefixes the tables
that hold the key (:meth:`RangeError.under`), so the suite's error names the whole key path.

Problem configs and every part of an algorithm (mask policies, inner solvers, outer steps,
hypergradient estimators, single-level losses) declare their settings this way; it lives with
the problems because that is the lowest floor that holds such dataclasses.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import Field, dataclass, field, fields
from typing import Any

_KEY = "allowed"  # where a field's metadata keeps its allowed values


@dataclass(frozen=True)
class Range:
    """Finite numbers from ``low`` to ``high`` (None: unbounded), each end closed unless
    ``low_open`` / ``high_open``; only integers when ``integer``; also None when ``optional``
    (a default that means "not set", e.g. every coordinate)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    optional: bool = False

    def admits(self, value: Any) -> bool:
        if value is None:
            return self.optional
        kinds = int if self.integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def __str__(self) -> str:
        kind = "an integer" if self.integer else "a finite number"
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            kind = "an integer" if self.integer else "a number"
            return f"{kind} in {left}{self.low:g}, {self.high:g}{right}"
        if self.low is not None:
            return f"{kind} {'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None:
            return f"{kind} {'<' if self.high_open else '<='} {self.high:g}"
        return kind


@dataclass(frozen=True)
class OneOf:
    """One of ``choices`` (names, or numbers such as image sizes)."""

    choices: tuple[Any, ...]

    def admits(self, value: Any) -> bool:
        return not isinstance(value, bool) and value in self.choices

    def __str__(self) -> str:
        return f"one of {list(self.choices)}"


Allowed = Range | OneOf

COUNT = Range(1, integer=True)  # steps, terms, iterations, sizes, counts
SEED = Range(0, integer=True)
POSITIVE = Range(0, low_open=True)  # step sizes, smoothing, curvature
NON_NEGATIVE = Range(0)
UNIT = Range(0, 1)  # [0, 1]
FRACTION = Range(0, 1, low_open=True)  # (0, 1]
FINITE = Range()


def setting(default: Any, allowed: Allowed) -> Any:
    """A dataclass field with ``default`` whose values must be ``allowed``."""
    return field(default=default, metadata={_KEY: allowed})


def allowed_values(f: Field) -> Allowed | None:
    """What field ``f`` may hold (None: it declares nothing)."""
    return f.metadata.get(_KEY)


class RangeError(ValueError):
    """A setting outside its allowed values; ``key`` is its path, the field's name first and
    then, as callers add them, the tables above it."""

    def __init__(self, key: tuple[str, ...], value: Any, allowed: Allowed) -> None:
        super().__init__(f"{'.'.join(key)} = {value!r} must be {allowed}")
        self.key, self.value, self.allowed = key, value, allowed

    def under(self, path: str | Iterable[str]) -> RangeError:
        """The same error for the key inside the tables ``path`` (dotted or a sequence)."""
        tables = path.split(".") if isinstance(path, str) else tuple(path)
        return RangeError((*tables, *self.key), self.value, self.allowed)


class Checked:
    """Checks every field declared with :func:`setting` when the dataclass is built; a subclass
    with a ``__post_init__`` of its own calls this one first."""

    def __post_init__(self) -> None:
        for f in fields(self):
            allowed, value = allowed_values(f), getattr(self, f.name)
            if allowed is not None and not allowed.admits(value):
                raise RangeError((f.name,), value, allowed)
