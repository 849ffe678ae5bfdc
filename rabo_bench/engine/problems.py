"""The problem registry: a suite names a problem and its settings; this builds it.

``problem_config`` only builds (and so validates) the frozen config dataclass, which is cheap;
``make_problem`` builds the problem instance (its data drawn from the config's own ``seed``).
Every error is a ParamError (a ValueError) that names the offending key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, fields
from typing import Any

from rabo_bench.data import cifar, omniglot
from rabo_bench.problems import (
    BilevelProblem,
    LogisticConfig,
    LogisticHyperProblem,
    QuadraticBilevel,
    QuadraticConfig,
)
from rabo_bench.problems.fewshot import FewShotConfig, FewShotProblem
from rabo_bench.problems.loss_tuning import LossTuningConfig, LossTuningProblem

PROBLEMS: dict[str, tuple[type, type]] = {
    "quadratic": (QuadraticConfig, QuadraticBilevel),
    "logistic": (LogisticConfig, LogisticHyperProblem),
    "omniglot": (FewShotConfig, FewShotProblem),
    "cifar_lt": (LossTuningConfig, LossTuningProblem),
}

# The data archives (in the data root) each problem reads, from its config.
ARCHIVES: dict[str, Callable[[Any], tuple[str, ...]]] = {
    "omniglot": lambda config: (omniglot.ARCHIVES[config.image_size],),
    "cifar_lt": lambda config: (cifar.ARCHIVE,),
}


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
    unknown names, keys or bad values."""
    if name not in PROBLEMS:
        raise ParamError(
            f"{where}name = {name!r} is not a problem; choose one of {sorted(PROBLEMS)}", ("name",)
        )
    config_cls = PROBLEMS[name][0]
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
    except (TypeError, ValueError) as err:
        raise ParamError(f"{where[:-1] or 'problem'} {name!r}: {err}") from None


def resolved_params(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Every setting of the problem, defaults included (for run identity and MLflow)."""
    return asdict(problem_config(name, params))


def make_problem(name: str, params: Mapping[str, Any]) -> BilevelProblem:
    """The problem instance ``name`` built from ``params``."""
    config = problem_config(name, params)
    return PROBLEMS[name][1](config)


def archives_needed(name: str, params: Mapping[str, Any]) -> tuple[str, ...]:
    """The data archives problem ``name`` with ``params`` reads (none for synthetic ones)."""
    need = ARCHIVES.get(name)
    return need(problem_config(name, params)) if need else ()
