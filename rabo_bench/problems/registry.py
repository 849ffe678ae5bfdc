"""The problem registry: a suite names a problem and its settings; this builds it.

Each problem module registers itself (``register_problem`` at its end: the config dataclass,
the problem class and the data archives it reads); every module of this package is imported
on first use, so adding a problem is one new file in ``rabo_bench/problems/``.
``problem_config`` only builds (and so validates) the frozen config dataclass, which is cheap;
``make_problem`` builds the problem instance (its data drawn from the config's own ``seed``).
Every error is a ParamError (a ValueError) that names the offending key.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

from rabo_bench.problems.ranges import RangeError

if TYPE_CHECKING:
    from rabo_bench.problems.base import BilevelProblem


@dataclass(frozen=True)
class ProblemEntry:
    """A registered problem: its config dataclass, its class (built from a config), the data
    archives (file names in the data root) a config reads, ``retired`` settings: keys that
    left the config, with the value they always had, which stay in the run identity so that
    earlier runs keep their ids and random streams (:func:`identity_params`), and
    ``loss_settings``: settings that only g and f read (``lower_loss`` / ``upper_loss``, never
    a draw), with the value they had before they existed. Such a setting enters a run's
    identity only at another value and only for an algorithm that reads g and f, and never the
    random streams: earlier runs, and runs whose numbers it cannot change, keep their ids."""

    config: type
    problem: type
    archives: Callable[[Any], tuple[str, ...]] = lambda config: ()
    retired: Mapping[str, Any] = field(default_factory=dict)
    loss_settings: Mapping[str, Any] = field(default_factory=dict)


_PROBLEMS: dict[str, ProblemEntry] = {}
_loaded = False


def register_problem(
    name: str,
    config: type,
    problem: type,
    archives: Callable[[Any], tuple[str, ...]] | None = None,
    retired: Mapping[str, Any] | None = None,
    loss_settings: Mapping[str, Any] | None = None,
) -> None:
    """Make problem ``name`` available to suites (``[problem] name = ...``)."""
    if name in _PROBLEMS:
        raise ValueError(f"problem {name!r} is already registered")
    entry = ProblemEntry(
        config, problem, retired=dict(retired or {}), loss_settings=dict(loss_settings or {})
    )
    _PROBLEMS[name] = entry if archives is None else replace(entry, archives=archives)


def problems() -> dict[str, ProblemEntry]:
    """Every registered problem by name (the package's modules are imported on first use)."""
    global _loaded
    if not _loaded:
        _loaded = True
        package = importlib.import_module("rabo_bench.problems")
        for module in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"rabo_bench.problems.{module.name}")
    return _PROBLEMS


class ParamError(ValueError):
    """A bad problem setting; ``key`` is the parameter's name, () for the settings together."""

    def __init__(self, message: str, key: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.key = key


def _coerce(where: str, key: str, default: Any, value: Any) -> Any:
    """``value`` checked against the type of the field's default (int, float or bool)."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
        kind = "true or false"
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
        kind = "an integer"
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
        kind = "a number"
    else:
        ok, kind = isinstance(value, type(default)), type(default).__name__
    if not ok:
        raise ParamError(f"{where}{key} = {value!r} must be {kind}", (key,))
    return value


def problem_config(name: str, params: Mapping[str, Any], where: str = "") -> Any:
    """The validated config dataclass of problem ``name`` with ``params`` (keys as in the
    dataclass); raises ParamError naming the key (prefixed by ``where``, e.g. "problem.") for
    unknown names, keys or bad values (a value outside the range its field declares:
    :mod:`rabo_bench.problems.ranges`)."""
    if name not in problems():
        raise ParamError(
            f"{where}name = {name!r} is not a problem; choose one of {sorted(_PROBLEMS)}",
            ("name",),
        )
    config_cls = _PROBLEMS[name].config
    defaults = {f.name: f.default for f in fields(config_cls)}
    kwargs = {}
    for key, value in params.items():
        if key not in defaults:
            raise ParamError(
                f"unknown parameter {where}{key} for problem {name!r}; it takes {sorted(defaults)}",
                (key,),
            )
        kwargs[key] = _coerce(where, key, defaults[key], value)
    try:
        return config_cls(**kwargs)
    except RangeError as err:
        raise ParamError(f"{where}{err}", err.key) from None
    except (TypeError, ValueError) as err:
        raise ParamError(f"{where[:-1] or 'problem'} {name!r}: {err}") from None


def resolved_params(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Every setting of the problem, defaults included (for run identity and MLflow)."""
    return asdict(problem_config(name, params))


def identity_params(
    name: str, resolved: Mapping[str, Any], reads_losses: bool = False
) -> dict[str, Any]:
    """The problem's part of a run's identity: its resolved settings and its retired ones,
    without the loss settings (:class:`ProblemEntry`) at their earlier values or, unless the
    run ``reads_losses`` (g and f), at any value. ``reads_losses`` False gives the part of the
    random streams' key."""
    entry = problems()[name]
    dropped = {
        k
        for k, before in entry.loss_settings.items()
        if not reads_losses or resolved.get(k, before) == before
    }
    return {**entry.retired, **{k: v for k, v in resolved.items() if k not in dropped}}


def saved_params(identity: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of a saved run's problem (its config's ``problem`` table: the name and
    :func:`identity_params`), without the name and the retired keys, with the loss settings
    it leaves out at their earlier values, as ``make_problem`` takes them (an unknown problem
    name keeps every key: ``make_problem`` then says so)."""
    entry = problems().get(identity["name"])
    retired = entry.retired if entry is not None else {}
    before = entry.loss_settings if entry is not None else {}
    saved = {k: v for k, v in identity.items() if k != "name" and k not in retired}
    return {**before, **saved}


def make_problem(name: str, params: Mapping[str, Any]) -> BilevelProblem:
    """The problem instance ``name`` built from ``params``."""
    config = problem_config(name, params)
    return _PROBLEMS[name].problem(config)


def archives_needed(name: str, params: Mapping[str, Any]) -> tuple[str, ...]:
    """The data archives problem ``name`` with ``params`` reads (none for synthetic ones)."""
    config = problem_config(name, params)
    return _PROBLEMS[name].archives(config)
