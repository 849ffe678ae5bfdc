"""Suite files: load a TOML suite, apply a preset and command-line overrides, validate it all.

A suite (DESIGN.md §3) is problem setting x algorithms x seeds; the schema is documented in
the README ("The rabo-bench command"). ``load_suite`` validates the WHOLE resolved suite
before anything runs, and every error is one ValueError line naming the file and the key.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rabo_bench import algorithms
from rabo_bench.algorithms import Algorithm
from rabo_bench.engine.problems import problem_config

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SUITES_DIR = Path(__file__).resolve().parents[2] / "suites"
TOP_KEYS = (
    "name",
    "description",
    "rounds",
    "seeds",
    "eval_every",
    "algorithms",
    "capacities",
    "problem",
    "overrides",
    "presets",
    "rates",
    "settings",
)
SETTING_KEYS = ("problem", "capacities", "overrides", "algorithms", "rounds", "eval_every")
REQUIRED = ("rounds", "algorithms", "capacities", "problem")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class Suite:
    """A validated suite with its preset and command-line overrides applied."""

    name: str
    description: str
    path: Path
    preset: str | None
    rounds: int
    seeds: tuple[int, ...]
    eval_every: int
    algorithms: tuple[str, ...]
    capacities: tuple[float, ...]
    problem: str
    problem_params: dict[str, Any]
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    presets: tuple[str, ...] = ()
    rates: dict[str, Any] = field(default_factory=dict)  # a rate-measurement grid (theory/)
    setting: str = ""  # the name of this variant of a suite with [settings]
    settings: tuple[Suite, ...] = ()  # one validated Suite per [settings.NAME] table

    def variants(self) -> tuple[Suite, ...]:
        """The settings to run: the [settings] variants, or the suite itself."""
        return self.settings or (self,)

    def algorithm(self, name: str) -> Algorithm:
        return algorithms.get(name, self.overrides.get(name))


def show_path(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it (for messages)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def find_suite(name_or_path: str) -> Path:
    """A suite name in the repository's ``suites/`` folder, or a path to a .toml file."""
    if name_or_path.endswith(".toml") or "/" in name_or_path or "\\" in name_or_path:
        path = Path(name_or_path)
        if not path.is_file():
            raise ValueError(f"suite file {name_or_path} does not exist")
        return path
    path = SUITES_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        known = sorted(p.stem for p in SUITES_DIR.glob("*.toml"))
        raise ValueError(
            f"unknown suite {name_or_path!r}; choose one of {known} or give a path to a .toml file"
        )
    return path


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{show_path(path)}: invalid TOML: {err}") from None


def deep_merge(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` applied: tables merge recursively, other values replace."""
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _Checker:
    """Raises ``ValueError("<file>: <message>")``."""

    def __init__(self, path: Path, context: str = "") -> None:
        self.where = show_path(path)
        self.context = context  # e.g. "settings.5w1s: " for a setting's resolved table

    def fail(self, message: str) -> None:
        raise ValueError(f"{self.where}: {self.context}{message}")

    def positive_int(self, raw: dict, key: str, default: int | None = None) -> int:
        value = raw.get(key, default)
        if not _is_int(value) or value < 1:
            self.fail(f"{key} = {value!r} must be an integer >= 1")
        return value

    def table(self, value: Any, key: str) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            self.fail(f"{key} must be a table, got {value!r}")
        return dict(value)

    def string(self, value: Any, key: str) -> str:
        if not isinstance(value, str):
            self.fail(f"{key} must be a string, got {value!r}")
        return value

    def unknown_keys(self, raw: Mapping[str, Any], allowed: tuple[str, ...], prefix: str) -> None:
        for key in raw:
            if key not in allowed:
                self.fail(f"unknown key {prefix}{key}; allowed keys are {list(allowed)}")


def _apply_preset(check: _Checker, raw: dict, preset: str | None) -> dict:
    presets = check.table(raw.get("presets", {}), "presets")
    for name, body in presets.items():
        if not _SAFE_NAME.match(name):
            check.fail(f"preset name {name!r} may use only letters, digits, '_', '.', '-'")
        check.table(body, f"presets.{name}")
        allowed = tuple(k for k in TOP_KEYS if k not in ("name", "presets"))
        check.unknown_keys(body, allowed, f"presets.{name}.")
    if preset is None:
        return raw
    if preset not in presets:
        check.fail(f"unknown preset {preset!r}; choose one of {sorted(presets)}")
    return deep_merge(raw, presets[preset])


def _seeds(check: _Checker, value: Any) -> tuple[int, ...]:
    if _is_int(value) and value >= 1:
        return tuple(range(value))
    if isinstance(value, list) and value and all(_is_int(s) and s >= 0 for s in value):
        if len(set(value)) != len(value):
            check.fail(f"seeds = {value!r} has duplicates")
        return tuple(value)
    check.fail(f"seeds = {value!r} must be a count >= 1 or a non-empty list of seeds >= 0")
    raise AssertionError  # unreachable


def _algorithms(check: _Checker, value: Any, source: str) -> tuple[str, ...]:
    known = algorithms.available()
    if not isinstance(value, list) or not value:
        check.fail(f"{source} must be a non-empty list of algorithm names, got {value!r}")
    for k, name in enumerate(value):
        if name not in known:
            check.fail(f"{source}[{k}] = {name!r} is not an algorithm; choose from {sorted(known)}")
    if len(set(value)) != len(value):
        check.fail(f"{source} = {value!r} has duplicates")
    return tuple(value)


def _check_cli_algorithms(names: list[str]) -> None:
    known = algorithms.available()
    for name in names:
        if name not in known:
            raise ValueError(
                f"--algorithms: {name!r} is not an algorithm; choose from {sorted(known)}"
            )
    if len(set(names)) != len(names):
        raise ValueError(f"--algorithms: {','.join(names)} has duplicates")


def _capacities(check: _Checker, value: Any, num_clients: int) -> tuple[float, ...]:
    if not isinstance(value, list) or not value:
        check.fail(f"capacities must be a non-empty list of numbers, got {value!r}")
    for k, r in enumerate(value):
        if not _is_number(r):
            check.fail(f"capacities[{k}] = {r!r} is not a number")
        if not (math.isfinite(r) and 0 < r <= 1):
            check.fail(f"capacities[{k}] = {r!r} is outside (0, 1]")
    if len(value) != num_clients:
        check.fail(
            f"capacities has {len(value)} entries but the problem has {num_clients} clients "
            "(problem.num_clients); give one capacity per client"
        )
    return tuple(float(r) for r in value)


def _overrides(check: _Checker, value: Any) -> dict[str, dict[str, Any]]:
    table = check.table(value, "overrides")
    known = algorithms.available()
    for name, changes in table.items():
        if name not in known:
            check.fail(f"overrides.{name}: unknown algorithm {name!r}; choose from {sorted(known)}")
        check.table(changes, f"overrides.{name}")
        try:
            algorithms.get(name, changes)
        except ValueError as err:
            check.fail(f"overrides.{name}: {err}")
    return table


def load_suite(
    name_or_path: str,
    preset: str | None = None,
    *,
    rounds: int | None = None,
    seeds: int | None = None,
    algorithm_names: list[str] | None = None,
) -> Suite:
    """The suite ``name_or_path`` with ``preset`` and the command-line overrides applied,
    validated; raises ValueError (one line, naming file and key) on any problem."""
    path = find_suite(name_or_path)
    check = _Checker(path)
    raw = read_toml(path)
    check.unknown_keys(raw, TOP_KEYS, "")
    presets = tuple(check.table(raw.get("presets", {}), "presets"))
    raw = _apply_preset(check, raw, preset)
    cli = {"rounds": rounds, "seeds": seeds, "algorithms": algorithm_names}
    raw = deep_merge(raw, {k: v for k, v in cli.items() if v is not None})
    for key in REQUIRED:
        if key not in raw:
            check.fail(f"missing key {key}")

    name = check.string(raw.get("name", path.stem), "name")
    if not _SAFE_NAME.match(name):
        check.fail(f"name = {name!r} may use only letters, digits, '_', '.', '-'")
    if algorithm_names is not None:
        _check_cli_algorithms(algorithm_names)
    settings = check.table(raw.pop("settings", {}), "settings")
    base = _build(check, raw, name, path, preset, presets, "")
    variants = []
    for setting, patch in settings.items():
        if not _SAFE_NAME.match(setting):
            check.fail(f"setting name {setting!r} may use only letters, digits, '_', '.', '-'")
        patch = check.table(patch, f"settings.{setting}")
        check.unknown_keys(patch, SETTING_KEYS, f"settings.{setting}.")
        if algorithm_names is not None:
            patch.pop("algorithms", None)
        sub = _Checker(path, f"settings.{setting}: ")
        variants.append(_build(sub, deep_merge(raw, patch), name, path, preset, presets, setting))
    return replace(base, settings=tuple(variants))


def _build(
    check: _Checker,
    raw: dict[str, Any],
    name: str,
    path: Path,
    preset: str | None,
    presets: tuple[str, ...],
    setting: str,
) -> Suite:
    """One validated Suite from the resolved table ``raw``."""
    problem = check.table(raw["problem"], "problem")
    problem_name = check.string(problem.pop("name", None), "problem.name")
    try:
        config = problem_config(problem_name, problem, where="problem.")
    except ValueError as err:
        check.fail(str(err))
    return Suite(
        name=name,
        description=check.string(raw.get("description", ""), "description"),
        path=path,
        preset=preset,
        rounds=check.positive_int(raw, "rounds"),
        seeds=_seeds(check, raw.get("seeds", 1)),
        eval_every=check.positive_int(raw, "eval_every", 1),
        algorithms=_algorithms(check, raw["algorithms"], "algorithms"),
        capacities=_capacities(check, raw["capacities"], config.num_clients),
        problem=problem_name,
        problem_params=problem,
        overrides=_overrides(check, raw.get("overrides", {})),
        presets=presets,
        rates=check.table(raw.get("rates", {}), "rates"),
        setting=setting,
    )


def available_suites() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Suite name -> (description, preset names) for every file in ``suites/``; a file that
    does not parse is listed with its error as description."""
    out = {}
    for path in sorted(SUITES_DIR.glob("*.toml")):
        try:
            raw = read_toml(path)
            presets = raw.get("presets", {})
            names = tuple(presets) if isinstance(presets, Mapping) else ()
            out[path.stem] = (str(raw.get("description", "")), names)
        except (OSError, ValueError) as err:
            out[path.stem] = (f"(unreadable: {err})", ())
    return out
