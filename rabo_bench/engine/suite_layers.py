"""How a suite's tables stack into the resolved table of one variant (README "Suite files").

The layers, lowest precedence first: the file's top level, the preset, the setting (as the file
writes it, then as the preset does), the command line (``--set`` and the ``--rounds``,
``--seeds``, ``--algorithms`` shorthands; its own ``settings.NAME`` last). Tables deep-merge,
other values replace.

Override groups: in one layer's ``overrides``, a block named for a group (``all``, ``bilevel``,
``single_level``; ``algorithms.groups``) counts as written into the table of each algorithm of
the group, under that algorithm's own table: ``all`` < ``bilevel`` / ``single_level`` < the
algorithm's name. A layer is expanded before it merges, so a preset's group block still
overrides a per-algorithm value of the file's top level.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rabo_bench import algorithms
from rabo_bench.engine.suite_file import COMMAND_LINE, Checker
from rabo_bench.problems.ranges import RangeError

SETTING_KEYS = (
    "problem",
    "capacities",
    "overrides",
    "algorithms",
    "rounds",
    "eval_every",
    "diverge_factor",
)
_NESTED = ("presets", "settings", COMMAND_LINE)  # keys that hold other layers, not values


def deep_merge(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` applied: tables merge recursively, other values replace."""
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _roots(preset: str | None) -> list[tuple[str, ...]]:
    """The file's layers that may hold settings: its top level and the preset."""
    return [(), ("presets", preset)] if preset else [()]


def layer_paths(preset: str | None, setting: str = "") -> list[tuple[str, ...]]:
    """The paths (into ``Source.raw``) of the layers of a variant, lowest precedence first."""
    paths = _roots(preset)
    if setting:
        paths += [(*root, "settings", setting) for root in paths]
    command_line = [(COMMAND_LINE,), (COMMAND_LINE, "settings", setting)]
    return paths + (command_line if setting else command_line[:1])


def setting_names(raw: Mapping[str, Any], preset: str | None) -> list[str]:
    """The settings under ``preset``, in the order the layers first name them."""
    roots = (*_roots(preset), (COMMAND_LINE,))
    return list(dict.fromkeys(name for root in roots for name in _at(raw, (*root, "settings"))))


def merged(raw: Mapping[str, Any], paths: list[tuple[str, ...]]) -> dict[str, Any]:
    """The layers at ``paths`` merged into one table, each with its override groups expanded.
    The layers' structure must have passed ``check_layer``."""
    out: dict[str, Any] = {}
    for path in paths:
        layer = {key: value for key, value in _at(raw, path).items() if key not in _NESTED}
        if "overrides" in layer:
            layer["overrides"] = expand_groups(layer["overrides"])
        out = deep_merge(out, layer)
    return out


def expand_groups(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """One layer's ``overrides`` with each group block written into its members' tables."""
    groups = algorithms.groups()
    out: dict[str, Any] = {}
    for group, members in groups.items():  # "all" first
        for name in members if group in overrides else ():
            out[name] = deep_merge(out.get(name, {}), overrides[group])
    for name, own in overrides.items():
        if name not in groups:
            out[name] = deep_merge(out.get(name, {}), own)
    return out


def check_layer(check: Checker, raw: Mapping[str, Any], at: tuple[str, ...]) -> None:
    """The structure merging relies on, in the layer at ``at`` (the file's top level, a preset,
    the command line) and its settings: tables where tables belong, settings with safe names
    and known keys, overrides that name algorithms or groups, each group block valid for every
    algorithm of the group."""
    layer = _at(raw, at)
    _check_overrides(check, layer, at)
    settings = check.table(layer.get("settings", {}), (*at, "settings"))
    for name, patch in settings.items():
        key = (*at, "settings", name)
        check.safe_name(name, "setting name", key)
        check.unknown_keys(check.table(patch, key), SETTING_KEYS, key)
        _check_overrides(check, patch, key)


def _check_overrides(check: Checker, layer: Mapping[str, Any], at: tuple[str, ...]) -> None:
    overrides = check.table(layer.get("overrides", {}), (*at, "overrides"))
    known, groups = algorithms.available(), algorithms.groups()
    for name, changes in overrides.items():
        key = (*at, "overrides", name)
        if name not in known and name not in groups:
            check.fail(
                f"overrides.{name}: unknown algorithm {name!r}; choose from {sorted(known)} "
                f"or a group {list(groups)}",
                key,
            )
        check.table(changes, key)
        for member in groups.get(name, ()):
            try:
                algorithms.get(member, changes)
            except RangeError as err:  # err.key: (member, part, ..., setting)
                where = RangeError(err.key[1:], err.value, err.allowed).under(key[-2:])
                check.fail(str(where), (*key, *err.key[1:]))
            except ValueError as err:
                check.fail(f"overrides.{name}: {err}", key)


def _at(raw: Mapping[str, Any], path: tuple[str, ...]) -> Mapping[str, Any]:
    """The table at ``path``; empty where a layer is absent."""
    for key in path:
        raw = raw.get(key, {})
    return raw
