"""Every numeric setting has a declared range (issue 17): each numeric field of a problem config
and of every part a suite can reach (mask policies, inner solvers and their single-level losses,
outer steps, hypergradient estimators) declares its allowed values beside the field
(``rabo_bench.problems.ranges.setting``), the defaults satisfy them, and a value outside them is
refused with the whole key path and the range.

docs/suites.md lists them in the table between ``BEGIN`` and ``END``, which must be
:func:`range_table` exactly; after a deliberate change rewrite it with
``python -m tests.unit.test_setting_ranges``.
"""

from __future__ import annotations

import math
import re
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rabo_bench.algorithms import available, get
from rabo_bench.engine.suite import TOP_RANGES
from rabo_bench.federated.policies import MaskPolicy
from rabo_bench.hypergrad import available_estimators, make_estimator
from rabo_bench.problems.ranges import OneOf, Range, RangeError, allowed_values
from rabo_bench.problems.registry import ParamError, problem_config, problems

DOCS = Path(__file__).resolve().parents[2] / "docs" / "suites.md"
BEGIN = "<!-- allowed values: python -m tests.unit.test_setting_ranges -->"
END = "<!-- end of allowed values -->"


# -- what a suite can reach ---------------------------------------------------------------
def _policy_classes() -> list[type[MaskPolicy]]:
    """Every mask policy of the package (a suite may swap any in by ``type``)."""
    found, todo = [], list(MaskPolicy.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__module__.startswith("rabo_bench."):  # not the templates' (tests define some)
            found.append(cls)
    return sorted(found, key=lambda cls: cls.name)


def reachable_parts() -> list[tuple[tuple[str, ...], str, Any]]:
    """(table, algorithm, part) for every part a suite can set, each nested part under its
    field: the registered algorithms' parts, every estimator at ``outer.estimator`` and every
    mask policy at ``policy`` (swapped into RABO by ``type``, with their defaults)."""
    found = []

    def walk(table: tuple[str, ...], algorithm: str, part: Any) -> None:
        found.append((table, algorithm, part))
        for f in fields(part):
            if is_dataclass(getattr(part, f.name)):
                walk((*table, f.name), algorithm, getattr(part, f.name))

    for name in available():
        for table in ("policy", "inner", "outer"):
            walk((table,), name, getattr(get(name), table))
    for name in available_estimators():
        walk(("outer", "estimator"), "rabo", make_estimator(name))
    for cls in _policy_classes():
        walk(("policy",), "rabo", cls())
    return found


def config_classes() -> dict[str, type]:
    return {name: entry.config for name, entry in sorted(problems().items())}


def is_numeric(f) -> bool:
    return re.search(r"\b(int|float)\b", str(f.type)) is not None


def ranged_fields(obj: Any) -> list[tuple[str, Range | OneOf]]:
    return [(f.name, allowed_values(f)) for f in fields(obj) if allowed_values(f) is not None]


# -- the docs table -----------------------------------------------------------------------
def range_table() -> str:
    """The markdown table of every declared range: key, allowed values, where it applies."""
    top = [
        (f"`{key}`", str(allowed), "the suite, a preset or a setting")
        for key, allowed in TOP_RANGES.items()
    ]
    rows: dict[tuple[str, str], set[str]] = {}
    for name, config in config_classes().items():
        for field_name, allowed in ranged_fields(config):
            rows.setdefault((f"`problem.{field_name}`", str(allowed)), set()).add(f"`{name}`")
    for table, _, part in reachable_parts():
        for field_name, allowed in ranged_fields(part):
            key = f"`{'.'.join((*table, field_name))}`"
            rows.setdefault((key, str(allowed)), set()).add(f"`{part.name}`")
    lines = ["| key | allowed | in |", "| --- | --- | --- |"]
    lines += [f"| {key} | {allowed} | {where} |" for key, allowed, where in top]
    lines += [f"| {k} | {a} | {', '.join(sorted(rows[k, a]))} |" for k, a in sorted(rows)]
    return "\n".join(lines)


def docs_with_table(text: str) -> str:
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{range_table()}\n{END}{tail}"


def test_the_docs_list_every_range():
    text = DOCS.read_text()
    assert docs_with_table(text) == text, "rewrite: python -m tests.unit.test_setting_ranges"


# -- declarations and defaults ------------------------------------------------------------
def test_every_numeric_setting_declares_its_range():
    undeclared = [
        f"{'.'.join(table)}.{f.name} ({part.name})"
        for table, _, part in reachable_parts()
        for f in fields(part)
        if is_numeric(f) and allowed_values(f) is None
    ]
    undeclared += [
        f"problem.{f.name} ({name})"
        for name, config in config_classes().items()
        for f in fields(config)
        if is_numeric(f) and allowed_values(f) is None
    ]
    assert not undeclared, f"numeric settings without a range: {undeclared}"


def test_every_default_satisfies_its_range():
    """The registered algorithms' values and the classes' own defaults alike."""
    outside = [
        f"{'.'.join(table)}.{name} = {value!r} ({part.name})"
        for table, _, part in reachable_parts()
        for f in fields(part)
        for name, value in ((f.name, getattr(part, f.name)), (f.name, f.default))
        if allowed_values(f) is not None and not allowed_values(f).admits(value)
    ]
    for problem, config in config_classes().items():
        built = config()
        outside += [
            f"problem.{name} ({problem})"
            for name, allowed in ranged_fields(built)
            if not allowed.admits(getattr(built, name))
        ]
    assert not outside, outside


# -- values outside are refused -----------------------------------------------------------
def outside(allowed: Range | OneOf) -> st.SearchStrategy:
    """Values of the setting's type that ``allowed`` refuses."""
    if isinstance(allowed, OneOf):
        kind = type(allowed.choices[0])
        values = st.integers() if kind is int else st.text(max_size=8)
        return values.filter(lambda v: v not in allowed.choices)
    options = []
    if allowed.integer:
        if allowed.low is not None:
            options.append(st.integers(max_value=int(allowed.low) - (not allowed.low_open)))
        if allowed.high is not None:
            options.append(st.integers(min_value=int(allowed.high) + (not allowed.high_open)))
    else:
        options.append(st.sampled_from([math.nan, math.inf, -math.inf]))
        if allowed.low is not None:
            below = st.floats(max_value=allowed.low, exclude_max=not allowed.low_open)
            options.append(below.filter(math.isfinite))
        if allowed.high is not None:
            above = st.floats(min_value=allowed.high, exclude_min=not allowed.high_open)
            options.append(above.filter(math.isfinite))
    return st.one_of(options)


def nested(keys: tuple[str, ...], value: Any) -> dict[str, Any]:
    return value if not keys else {keys[0]: nested(keys[1:], value)}


PART_CASES = [
    (algorithm, table, part, name, allowed)
    for table, algorithm, part in reachable_parts()
    for name, allowed in ranged_fields(part)
]
PROBLEM_CASES = [
    (problem, name, allowed)
    for problem, config in config_classes().items()
    for name, allowed in ranged_fields(config)
]


@given(case=st.sampled_from(PART_CASES), data=st.data())
def test_a_part_setting_outside_its_range_is_refused_with_its_key_path(case, data):
    algorithm, table, part, name, allowed = case
    value = data.draw(outside(allowed))
    changes = nested(table, {"type": part.name, name: value})
    with pytest.raises(RangeError) as err:
        get(algorithm, changes)
    assert err.value.key == (algorithm, *table, name)
    assert str(err.value).startswith(f"{'.'.join(err.value.key)} = ")
    assert str(err.value).endswith(f" must be {allowed}")


@given(case=st.sampled_from(PROBLEM_CASES), data=st.data())
def test_a_problem_setting_outside_its_range_is_refused_with_its_key(case, data):
    problem, name, allowed = case
    value = data.draw(outside(allowed))
    with pytest.raises(ParamError) as err:
        problem_config(problem, {name: value}, where="problem.")
    assert err.value.key == (name,)
    assert str(err.value).startswith(f"problem.{name} = ")
    assert str(err.value).endswith(f" must be {allowed}")


@pytest.mark.parametrize(
    ("allowed", "text"),
    [
        (Range(1, integer=True), "an integer >= 1"),
        (Range(0, low_open=True), "a finite number > 0"),
        (Range(0, 1, low_open=True), "a number in (0, 1]"),
        (Range(0, 1, high_open=True), "a number in [0, 1)"),
        (Range(1, 19, integer=True), "an integer in [1, 19]"),
        (Range(high=0, high_open=True), "a finite number < 0"),
        (Range(), "a finite number"),
        (OneOf(("a", "b")), "one of ['a', 'b']"),
    ],
)
def test_ranges_say_what_they_allow(allowed, text):
    assert str(allowed) == text


@pytest.mark.parametrize(
    ("allowed", "inside", "outside_values"),
    [
        (Range(1, integer=True), [1, 7], [0, -5, 1.0, True, None, "3"]),
        (Range(0, low_open=True), [1e-300, 2, 0.5], [0, -0.05, math.inf, math.nan, False]),
        (Range(0, 1, high_open=True), [0, 0.999], [1, 1.0, -1e-9]),
        (Range(1, integer=True, optional=True), [None, 3], [0]),
        (OneOf((28, 105)), [28, 105], [32, True, "28"]),
    ],
)
def test_ranges_admit_exactly_their_values(allowed, inside, outside_values):
    assert all(allowed.admits(v) for v in inside)
    assert not any(allowed.admits(v) for v in outside_values)


if __name__ == "__main__":
    DOCS.write_text(docs_with_table(DOCS.read_text()))
    print(f"wrote the table of allowed values in {DOCS}")
