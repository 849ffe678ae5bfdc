"""Malformed suite files never reach a run: ``rabo-bench run`` answers each with exit code 2 and
one line ``rabo-bench: error: ...`` on stderr, no traceback, and writes no output folder.

Every example starts from a small valid suite (the synthetic smoke setting, three clients) and
applies one mutation that is invalid by construction: a required key deleted, a value of the
wrong type, an unknown key, a capacity outside (0, 1] or a wrong count of them, an unknown
algorithm, preset or problem parameter, broken TOML syntax, contradictory settings. The
unmutated suite runs (exit 0), so the refusals are the mutations' doing. The same kinds of bad
values given with ``--set KEY=VALUE`` are refused alike and blamed on ``(--set)``.
"""

from __future__ import annotations

import copy
import math
import tempfile
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rabo_bench.algorithms import available, groups
from rabo_bench.engine.suite import PRESET_KEYS, TOP_KEYS
from rabo_bench.engine.suite_layers import SETTING_KEYS
from rabo_bench.problems import QuadraticConfig
from rabo_bench.problems.registry import problems
from tests.cli import run_cli
from tests.unit.test_bad_input import assert_refused

VALID: dict[str, Any] = {
    "name": "tiny",
    "rounds": 2,
    "seeds": 1,
    "algorithms": ["fedavg", "rabo"],
    "capacities": [1, 0.5, 0.25],
    "problem": {"name": "quadratic", "dim_x": 3, "dim_y": 3, "num_clients": 3, "noise": 0.1},
    "overrides": {"rabo": {"inner": {"steps": 2, "lr": 0.2}}},
    "presets": {"smoke": {"rounds": 1, "problem": {"dim_x": 2}}},
    "settings": {"wide": {"problem": {"dim_y": 4}}},
}
ALLOWED = {
    (): TOP_KEYS,
    ("presets", "smoke"): PRESET_KEYS,
    ("settings", "wide"): SETTING_KEYS,
    ("problem",): ("name", *(f.name for f in fields(QuadraticConfig))),
    ("overrides", "rabo"): ("policy", "inner", "outer"),
}
HYPOTHESIS = settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


# -- a tiny TOML writer: tables become inline tables, so any nesting is one line -----------
def toml_string(text: str) -> str:
    """A TOML basic string: JSON's escapes would write a character outside the BMP as a
    surrogate pair (\\ud800\\udc00), which TOML refuses; TOML escapes only '"', '\\' and the
    control characters (U+0000-U+001F, U+007F)."""
    escaped = "".join(
        "\\" + c if c in '"\\' else f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F else c
        for c in text
    )
    return f'"{escaped}"'


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(map(toml_value, value)) + "]"
    return "{ " + ", ".join(f"{toml_string(k)} = {toml_value(v)}" for k, v in value.items()) + " }"


def toml_text(suite: dict[str, Any]) -> str:
    return "".join(f"{toml_string(k)} = {toml_value(v)}\n" for k, v in suite.items())


# -- mutations, each invalid by construction -----------------------------------------------
names = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
not_numbers = st.one_of(st.text(max_size=3), st.booleans(), st.lists(st.integers(), max_size=2))
not_positive_int = st.one_of(st.integers(max_value=0), st.floats(), not_numbers)
not_seeds = st.one_of(
    st.integers(max_value=0),
    st.floats(),
    st.text(max_size=3),
    st.booleans(),
    st.sampled_from([[], [0, 0], [-1], [0.5]]),
)
bad_capacity = st.one_of(
    st.floats(max_value=0.0),
    st.floats(min_value=1.0, exclude_min=True),
    st.just(math.nan),
    st.integers(max_value=0),
    st.integers(min_value=2),
    st.text(max_size=2),
    st.booleans(),
)


def _at(suite: dict, path: tuple[str, ...]) -> dict:
    for key in path:
        suite = suite[key]
    return suite


@st.composite
def deleted_required_key(draw, suite):
    path = draw(st.sampled_from([("rounds",), ("algorithms",), ("capacities",), ("problem",)]))
    del suite[path[0]]
    if draw(st.booleans()):  # also from the preset: the base resolution lacks it anyway
        suite["presets"]["smoke"].pop(path[0], None)
    return suite


@st.composite
def wrong_type(draw, suite):
    key = draw(st.sampled_from(["rounds", "eval_every", "seeds", "dim_x", "name", "algorithms"]))
    if key == "dim_x":
        suite["problem"]["dim_x"] = draw(st.one_of(st.text(max_size=3), st.floats(), st.booleans()))
    elif key == "name":
        suite["name"] = draw(st.one_of(st.integers(), st.lists(st.integers(), max_size=1)))
    elif key == "algorithms":
        suite["algorithms"] = draw(st.one_of(st.just([]), st.integers(), st.text(max_size=4)))
    elif key == "seeds":
        suite["seeds"] = draw(not_seeds)
    else:
        suite[key] = draw(not_positive_int)
    return suite


@st.composite
def unknown_key(draw, suite):
    table = draw(st.sampled_from(sorted(ALLOWED)))
    key = draw(names.filter(lambda k, t=table: k not in ALLOWED[t]))
    _at(suite, table)[key] = draw(st.integers(0, 3))
    return suite


@st.composite
def bad_capacities(draw, suite):
    capacities = suite["capacities"]
    if draw(st.booleans()):
        capacities[draw(st.integers(0, len(capacities) - 1))] = draw(bad_capacity)
    elif draw(st.booleans()):
        capacities.pop(draw(st.integers(0, len(capacities) - 1)))
    else:
        capacities.extend(draw(st.lists(st.sampled_from([1, 0.5]), min_size=1, max_size=3)))
    return suite


@st.composite
def unknown_names(draw, suite):
    name = draw(names.filter(lambda n: n not in {*available(), *problems(), *groups()}))
    where = draw(st.sampled_from(["algorithms", "overrides", "problem"]))
    if where == "algorithms":
        suite["algorithms"].insert(draw(st.integers(0, 2)), name)
    elif where == "overrides":
        suite["overrides"][name] = {"inner": {"steps": 1}}
    else:
        suite["problem"]["name"] = name
    return suite


@st.composite
def contradictions(draw, suite):
    kind = draw(st.sampled_from(["clients", "setting", "curvature", "duplicate", "preset"]))
    if kind == "clients":
        suite["problem"]["num_clients"] = draw(st.integers(1, 8).filter(lambda m: m != 3))
    elif kind == "setting":
        patch = {"problem": {"num_clients": draw(st.integers(1, 8).filter(lambda m: m != 3))}}
        suite["settings"][draw(names)] = patch
    elif kind == "curvature":  # needs 0 < mu_g <= L_g
        mu_g = draw(st.floats(0.1, 10))
        suite["problem"].update(mu_g=mu_g, L_g=mu_g / draw(st.floats(1.01, 10)))
    elif kind == "duplicate":
        suite["algorithms"].append(draw(st.sampled_from(suite["algorithms"])))
    else:  # a preset that breaks the capacities of the suite
        suite["presets"]["smoke"]["capacities"] = [1.0] * draw(
            st.integers(1, 8).filter(lambda m: m != 3)
        )
    return suite


MUTATIONS = [deleted_required_key, wrong_type, unknown_key, bad_capacities, unknown_names]
MUTATIONS.append(contradictions)

BROKEN_SYNTAX = [
    '"rounds" = 1\n',  # a duplicate key
    "= 1\n",
    "[unclosed\n",
    '"x" = \n',
    '"x" = "unterminated\n',
    '"x" = [1, 2\n',
    '"x" = { a = 1 \n',
    '"x" = 1 2\n',
]


def on_cli(capsys, text: str, *options: str, check: Callable[[int, str, Path], Any]) -> Any:
    """``rabo-bench run`` on the suite ``text`` in a temporary folder; ``check(code, stderr,
    output folder)`` runs before the folder goes."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "suite.toml"
        path.write_text(text)
        out = Path(folder) / "out"
        args = ["run", str(path), *options, "--out", str(out), "--no-mlflow", "--no-progress"]
        code, _, err = run_cli(capsys, *args)
        return check(code, err, out)


def test_the_valid_suite_runs(capsys):
    def ran(code: int, err: str, out: Path) -> None:
        assert code == 0, err
        assert (out / "results.csv").is_file()

    on_cli(capsys, toml_text(VALID), "--preset", "smoke", check=ran)


@HYPOTHESIS
@given(data=st.data(), mutation=st.sampled_from(MUTATIONS), smoke=st.booleans())
def test_a_mutated_suite_is_refused_in_one_line(capsys, data, mutation, smoke):
    suite = data.draw(mutation(copy.deepcopy(VALID)))
    on_cli(capsys, toml_text(suite), *(["--preset", "smoke"] * smoke), check=assert_refused)


@HYPOTHESIS
@given(line=st.sampled_from(BROKEN_SYNTAX), where=st.integers(0, len(VALID)))
def test_broken_toml_is_refused_with_its_line(capsys, line, where):
    lines = toml_text(VALID).splitlines(keepends=True)
    lines.insert(where, line)
    message = on_cli(capsys, "".join(lines), check=assert_refused)
    assert "invalid TOML" in message
    assert "(at line " in message or "(at end of document)" in message


@HYPOTHESIS
@given(preset=names.filter(lambda p: p != "smoke"))
def test_an_unknown_preset_is_refused(capsys, preset):
    message = on_cli(capsys, toml_text(VALID), "--preset", preset, check=assert_refused)
    assert f"unknown preset {preset!r}" in message


@st.composite
def bad_assignment(draw) -> str:
    """One ``--set KEY=VALUE`` that the valid suite must refuse."""
    kind = draw(st.sampled_from(["count", "seeds", "unknown", "capacity", "dim_x", "override"]))
    if kind == "count":
        key, value = draw(st.sampled_from(["rounds", "eval_every"])), draw(not_positive_int)
    elif kind == "seeds":
        key, value = "seeds", draw(not_seeds)
    elif kind == "unknown":
        key, value = draw(names.filter(lambda k: k not in PRESET_KEYS)), draw(st.integers(0, 3))
    elif kind == "capacity":
        key, value = "capacities", [1, draw(bad_capacity), 0.25]
    elif kind == "dim_x":
        key = "problem.dim_x"
        value = draw(st.one_of(st.text(max_size=3), st.floats(), st.booleans()))
    else:
        table = draw(st.sampled_from(["rabo", "all", "single_level"]))
        part = draw(st.sampled_from(["inner", "outer"]))
        setting = draw(st.from_regex(r"[a-z]{1,6}Z", fullmatch=True))  # never a field name
        key, value = f"overrides.{table}.{part}.{setting}", draw(st.integers(0, 3))
    return f"{key}={toml_value(value)}"


@HYPOTHESIS
@given(change=bad_assignment(), smoke=st.booleans())
def test_a_bad_set_is_refused_in_one_line(capsys, change, smoke):
    options = ["--set", change, *(["--preset", "smoke"] * smoke)]
    message = on_cli(capsys, toml_text(VALID), *options, check=assert_refused)
    assert "(--set): " in message
