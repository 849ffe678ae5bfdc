"""An algorithm is a recipe, not a loop (DESIGN.md §1): a frozen, serialisable set of parts.

``Algorithm.to_dict()`` gives a JSON-able description (each part as ``{"type": name, ...}``),
used for the run id and MLflow params. ``with_overrides`` changes settings by nested mapping,
e.g. ``{"inner": {"steps": 5}, "outer": {"estimator": {"terms": 3}}}``; an estimator's type may
be swapped with ``{"outer": {"estimator": {"type": "cg", "iterations": 5}}}``. Unknown keys and
values of the wrong type raise ValueError naming the key; a value outside the range its field
declares (:mod:`rabo_bench.problems.ranges`) raises RangeError with the whole key path, e.g.
``rabo.inner.steps = -5 must be an integer >= 1``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, is_dataclass, replace
from typing import Any

from rabo_bench.federated.inner import InnerSolver, JointLocalSGD
from rabo_bench.federated.outer import NoOuterStep, OuterStep
from rabo_bench.federated.policies import MaskPolicy
from rabo_bench.hypergrad import HypergradientEstimator, make_estimator
from rabo_bench.problems.ranges import RangeError
from rabo_bench.problems.single_level import TASK_LOSS, SingleLevelLoss


def part_to_dict(part: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": part.name}
    for f in fields(part):
        value = getattr(part, f.name)
        if is_dataclass(value):  # a nested part; one without settings is just its name
            out[f.name] = part_to_dict(value) if fields(value) else value.name
        else:
            out[f.name] = value
    return out


def _check_value(path: str, current: Any, value: Any) -> Any:
    if isinstance(current, bool) or current is None:
        ok = current is None or isinstance(value, bool)
    elif isinstance(current, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(current, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, type(current))
    if not ok:
        raise ValueError(f"setting {path} must be like {current!r}, got {value!r}")
    return value


def _policy_type(name: str, path: str) -> type[MaskPolicy]:
    """The mask policy class called ``name`` (policies are defined across modules)."""
    known, todo = {}, list(MaskPolicy.__subclasses__())
    while todo:
        cls = todo.pop()
        known[cls.name] = cls
        todo.extend(cls.__subclasses__())
    if name not in known:
        raise ValueError(
            f"{path}.type = {name!r} is not a mask policy; choose from {sorted(known)}"
        )
    return known[name]


def _nested_setting(part: Any, key: str, path: str) -> list[str]:
    """Where ``key`` is a setting of one of ``part``'s nested parts (e.g. FedMBO's Neumann depth,
    once ``outer.terms``, is ``outer.estimator.terms`` like every other algorithm's)."""
    return [
        f"{path}.{f.name}.{key}"
        for f in fields(part)
        if is_dataclass(getattr(part, f.name))
        and key in {g.name for g in fields(getattr(part, f.name))}
    ]


def _built(path: str, build: Callable[[], Any]) -> Any:
    """``build()``, a part at ``path``; a setting outside its range is named by its whole path."""
    try:
        return build()
    except RangeError as err:
        raise err.under(path) from None


def override_part(part: Any, changes: Mapping[str, Any], path: str) -> Any:
    """A copy of ``part`` with ``changes`` applied (recursively into nested parts)."""
    if not isinstance(changes, Mapping):
        raise ValueError(f"setting {path} must be a table of settings, got {changes!r}")
    settings = {k: v for k, v in changes.items() if k != "type"}
    if "type" in changes and changes["type"] != part.name:
        if isinstance(part, HypergradientEstimator):
            return _built(path, lambda: make_estimator(changes["type"], **settings))
        if isinstance(part, MaskPolicy):
            return override_part(_policy_type(changes["type"], path)(), settings, path)
        raise ValueError(f"{path}.type cannot change from {part.name!r} to {changes['type']!r}")
    names = {f.name for f in fields(part)}
    kwargs = {}
    for key, value in settings.items():
        if key not in names:
            raise ValueError(
                f"unknown setting {path}.{key}; {part.name!r} takes {sorted(names)}"
                + "".join(f"; use {where}" for where in _nested_setting(part, key, path))
            )
        current = getattr(part, key)
        if is_dataclass(current):
            kwargs[key] = override_part(current, value, f"{path}.{key}")
        else:
            kwargs[key] = _check_value(f"{path}.{key}", current, value)
    return _built(path, lambda: replace(part, **kwargs))


@dataclass(frozen=True)
class Algorithm:
    """A named configuration of the round loop's parts."""

    name: str
    description: str
    policy: MaskPolicy
    inner: InnerSolver
    outer: OuterStep
    label: str | None = None  # how reports name it, e.g. "OAP (our interpretation)"

    @property
    def bilevel(self) -> bool:
        """Whether it has an outer step on x (the single-level baselines train x in the inner
        phase and have none)."""
        return not isinstance(self.outer, NoOuterStep)

    @property
    def reads_losses(self) -> bool:
        """Whether it reads the problem's g and f: the bilevel methods and Dist-MAML (a run's
        identity holds the problem's loss settings only then: problems.registry)."""
        return self.inner.reads_losses

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "policy": part_to_dict(self.policy),
            "inner": part_to_dict(self.inner),
            "outer": part_to_dict(self.outer),
        }

    def supports(self, problem) -> bool:
        """Whether this algorithm runs on ``problem`` (an instance or its class): a baseline's
        single-level loss may need what only some problems have (episodes)."""
        return self.inner.supports(problem)

    def with_overrides(self, overrides: Mapping[str, Any] | None) -> Algorithm:
        if not overrides:
            return self
        unknown = set(overrides) - {"policy", "inner", "outer"}
        if unknown:
            raise ValueError(
                f"unknown algorithm setting(s) {sorted(unknown)} for {self.name!r}; "
                "use the tables policy, inner and outer"
            )
        parts = {
            key: override_part(getattr(self, key), value, f"{self.name}.{key}")
            for key, value in overrides.items()
        }
        return replace(self, **parts)


def single_level(
    name: str,
    description: str,
    policy: MaskPolicy,
    label: str | None = None,
    loss: SingleLevelLoss = TASK_LOSS,
) -> Algorithm:
    """A single-level baseline (SPEC §6): ``policy`` picks the sub-models, clients train (x, y)
    jointly on the single-level ``loss`` (the problem's task loss by default) with 10 local
    SGD steps at lr 0.01, and there is no outer step. Only the mask rule differs between
    Static, FedRolex, FIARSE, OAP and FedAvg; Dist-ProtoNet and Dist-MAML are FedAvg with
    another loss."""
    inner = JointLocalSGD(steps=10, lr=0.01, loss=loss)
    return Algorithm(name, description, policy, inner, NoOuterStep(), label)
