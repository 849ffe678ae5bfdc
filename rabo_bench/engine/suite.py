"""Suite files: load a TOML suite, apply a preset and command-line values, validate it all.

A suite (DESIGN.md §3) is problem setting x algorithms x seeds; the schema is documented in
docs/suites.md ("Suite files"). ``load_suite`` validates the WHOLE resolved suite
before anything runs, and every error is one ValueError line naming the file and the key.
How the file's tables, presets, settings and the command line stack: ``suite_layers``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from rabo_bench import algorithms
from rabo_bench.algorithms import Algorithm
from rabo_bench.data.archives import load_archive
from rabo_bench.engine.devices import DEVICE_CHOICES, is_device_name
from rabo_bench.engine.suite_file import (
    COMMAND_LINE,
    Checker,
    Source,
    is_int,
    is_number,
    read_toml,
)
from rabo_bench.engine.suite_layers import (
    check_layer,
    deep_merge,
    layer_paths,
    merged,
    setting_names,
)
from rabo_bench.models.compute import FULL_PRECISION, PRECISIONS
from rabo_bench.problems.ranges import COUNT, Range, RangeError
from rabo_bench.problems.registry import ParamError, archives_needed, problem_config, problems

# The suites shipped with the package: the top-level suites/ folder, installed as the package
# rabo_bench.suites (pyproject.toml), a folder on disk wherever rabo-bench is installed.
SUITES_DIR = Path(resources.files("rabo_bench.suites"))
TOP_KEYS = (
    "name",
    "description",
    "rounds",
    "seeds",
    "eval_every",
    "diverge_factor",
    "algorithms",
    "capacities",
    "problem",
    "overrides",
    "presets",
    "rates",
    "settings",
    "sized_for_gpu",
    "device",
    "precision",
)
# and --set; sized_for_gpu is about the suite without a preset, so only the file's top sets it
PRESET_KEYS = tuple(k for k in TOP_KEYS if k not in ("name", "presets", "sized_for_gpu"))
REQUIRED = ("rounds", "algorithms", "capacities", "problem")
# A run whose upper_loss, grad_norm_sq or inner_error exceeds this multiple of its round-0 value
# has diverged (engine.run); the default is not part of a run's identity.
DIVERGE_FACTOR = 1e6
# The allowed values of the numeric top-level keys, which presets and settings may set too
# (seeds and capacities, which also take lists, are checked by _seeds and _capacities).
TOP_RANGES = {"rounds": COUNT, "eval_every": COUNT, "diverge_factor": Range(1, low_open=True)}


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
    sized_for_gpu: bool = False  # the setting without a preset needs a GPU (`run` asks first)
    device: str = "auto"  # where the runs compute (engine.devices; not part of their identity)
    precision: str = FULL_PRECISION  # the networks' precision (models.compute; fp32 or identity)
    out_tag: str = ""  # names the command line's changes to the runs' configuration
    diverge_factor: float = DIVERGE_FACTOR

    def only_settings(self, names: list[str]) -> Suite:
        """This suite with only the [settings] variants ``names`` (``--settings``)."""
        known = [variant.setting for variant in self.settings]
        unknown = [name for name in names if name not in known]
        if unknown or not known:
            raise ValueError(
                f"--settings: {', '.join(unknown or names)} not among the suite's settings "
                f"{known or '(it has none)'}"
            )
        return replace(self, settings=tuple(v for v in self.settings if v.setting in names))

    def variants(self) -> tuple[Suite, ...]:
        """The settings to run: the [settings] variants, or the suite itself."""
        return self.settings or (self,)

    @property
    def default_out(self) -> Path:
        """The default output folder: ``out/<suite>`` or ``out/<suite>-<preset>`` under the
        working directory (an installed rabo-bench has no source tree to write into), with
        ``-<out_tag>`` when the command line changed the runs' configuration (``--rounds``,
        ``--set``), so such runs never share a folder, and a table, with the suite's own."""
        parts = [self.name, self.preset or "", self.out_tag]
        return Path.cwd() / "out" / "-".join(p for p in parts if p)

    def algorithm(self, name: str) -> Algorithm:
        return algorithms.get(name, self.overrides.get(name))


def find_suite(name_or_path: str) -> Path:
    """A suite shipped with the package (``SUITES_DIR``) by name, or a path to a .toml file."""
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


def _presets(check: Checker, raw: dict) -> tuple[str, ...]:
    """The preset names, each preset checked for a safe name and known keys."""
    presets = check.table(raw.get("presets", {}), ("presets",))
    for name, body in presets.items():
        check.safe_name(name, "preset name", ("presets", name))
        check.table(body, ("presets", name))
        check.unknown_keys(body, PRESET_KEYS, ("presets", name))
    return tuple(presets)


def _seeds(check: Checker, value: Any) -> tuple[int, ...]:
    if is_int(value) and value >= 1:
        return tuple(range(value))
    if isinstance(value, list) and value and all(is_int(s) and s >= 0 for s in value):
        if len(set(value)) != len(value):
            check.fail(f"seeds = {value!r} has duplicates", "seeds")
        return tuple(value)
    check.fail(f"seeds = {value!r} must be a count >= 1 or a non-empty list of seeds >= 0", "seeds")


def _algorithms(check: Checker, value: Any) -> tuple[str, ...]:
    known = algorithms.available()
    if not isinstance(value, list) or not value:
        check.fail(f"algorithms must be a non-empty list of names, got {value!r}", "algorithms")
    for k, name in enumerate(value):
        if name not in known:
            check.fail(
                f"algorithms[{k}] = {name!r} is not an algorithm; choose from {sorted(known)}",
                "algorithms",
            )
    if len(set(value)) != len(value):
        check.fail(f"algorithms = {value!r} has duplicates", "algorithms")
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


def _capacities(check: Checker, value: Any, num_clients: int) -> tuple[float, ...]:
    """One capacity per client: a list of them, or ``{ repeat = [...] }``, a pattern that client
    i takes entry i mod len of (for suites with thousands of clients)."""
    if isinstance(value, Mapping):
        check.unknown_keys(value, ("repeat",), ("capacities",))
        pattern = value.get("repeat")
        if not isinstance(pattern, list) or not pattern:
            check.fail(f"capacities.repeat must be a non-empty list, got {pattern!r}", "capacities")
        value = [pattern[i % len(pattern)] for i in range(num_clients)]
    if not isinstance(value, list) or not value:
        check.fail(f"capacities must be a non-empty list of numbers, got {value!r}", "capacities")
    for k, r in enumerate(value):
        if not is_number(r):
            check.fail(f"capacities[{k}] = {r!r} is not a number", "capacities")
        if not (math.isfinite(r) and 0 < r <= 1):
            check.fail(f"capacities[{k}] = {r!r} is outside (0, 1]", "capacities")
    if len(value) != num_clients:
        origin = check.origin(("problem", "num_clients"))
        at = f", line {origin}" if isinstance(origin, int) else f", {origin or 'its default'}"
        check.fail(
            f"capacities has {len(value)} entries but the problem has {num_clients} clients "
            f"(problem.num_clients{at}); give one capacity per client",
            "capacities",
        )
    return tuple(float(r) for r in value)


def _overrides(check: Checker, table: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The merged per-algorithm overrides (names and tables were checked layer by layer)."""
    for name, changes in table.items():
        try:
            algorithms.get(name, changes)
        except RangeError as err:  # err.key: (name, part, ..., setting)
            check.fail(f"overrides.{err}", ("overrides", *err.key))
        except ValueError as err:
            check.fail(f"overrides.{name}: {err}", ("overrides", name))
    return table


def load_suite(
    name_or_path: str,
    preset: str | None = None,
    *,
    rounds: int | None = None,
    seeds: int | None = None,
    algorithm_names: list[str] | None = None,
    changes: Iterable[Mapping[str, Any]] = (),
    device: str | None = None,
    precision: str | None = None,
) -> Suite:
    """The suite ``name_or_path`` with ``preset`` and the command-line values applied (each of
    ``changes`` is one ``--set``, merged in order; ``rounds``, ``seeds``, ``algorithm_names``,
    ``device`` and ``precision`` over them), validated; raises ValueError (one line, naming
    file, line and key) on any problem."""
    file = Source.read(find_suite(name_or_path))
    check = Checker(file)  # the file as written
    check.unknown_keys(file.raw, TOP_KEYS)
    presets = _presets(check, file.raw)
    if preset is not None and preset not in presets:
        check.fail(f"unknown preset {preset!r}; choose one of {sorted(presets)}", "presets")
    if algorithm_names is not None:
        _check_cli_algorithms(algorithm_names)
    for at in ((), *(("presets", other) for other in presets)):
        check_layer(check, file.raw, at)
    # The whole file, so that a typo in a preset nobody runs today cannot wait for hour five.
    suite = _resolve(file, presets, preset, "")
    for other in (None, *presets):
        if other != preset:
            _resolve(file, presets, other, f"preset {other}: " if other else "no preset: ")
    given: dict[str, Any] = {}
    for change in changes:
        given = deep_merge(given, change)
    flags = {
        "rounds": rounds,
        "seeds": seeds,
        "algorithms": algorithm_names,
        "device": device,
        "precision": precision,
    }
    given = deep_merge(given, {k: v for k, v in flags.items() if v is not None})
    if not given:
        return suite
    # The file passed alone, so what fails from here on is the command line's doing.
    source = file.with_command_line(given)
    check = Checker(source)
    check.unknown_keys(given, PRESET_KEYS, (COMMAND_LINE,))
    check_layer(check, source.raw, (COMMAND_LINE,))
    return replace(_resolve(source, presets, preset, ""), out_tag=_out_tag(given))


def _out_tag(given: Mapping[str, Any]) -> str:
    """A folder-name tag for the command line's changes to the runs' configuration: ""
    when it only chose among the suite's runs (--seeds, --algorithms) or where they compute
    (--device), ``rounds<Q>`` for --rounds alone, the precision for --precision alone, else
    ``set-<hash>`` of every change."""
    changes = {k: v for k, v in given.items() if k not in ("seeds", "algorithms", "device")}
    if not changes:
        return ""
    if list(changes) == ["rounds"]:
        return f"rounds{changes['rounds']}"
    if list(changes) == ["precision"]:
        return str(changes["precision"])
    text = json.dumps(changes, sort_keys=True, default=str)
    return "set-" + hashlib.sha256(text.encode()).hexdigest()[:8]


def _resolve(source: Source, presets: tuple[str, ...], preset: str | None, context: str) -> Suite:
    """The suite of ``source`` (with its command-line values, if any) under ``preset``."""
    paths = layer_paths(preset)
    check = Checker(source, context, tuple(reversed(paths)))
    raw = merged(source.raw, paths)
    for key in REQUIRED:
        if key not in raw:
            check.fail(f"missing key {key} (required: {', '.join(REQUIRED)})")
    name = check.string(raw.get("name", source.path.stem), "name")
    check.safe_name(name, "name =", "name")
    base = _build(check, raw, name, source.path, preset, presets, "")
    variants = []
    for setting in setting_names(source.raw, preset):
        paths = layer_paths(preset, setting)
        sub = Checker(source, f"{context}settings.{setting}: ", tuple(reversed(paths)))
        variant = merged(source.raw, paths)
        variants.append(_build(sub, variant, name, source.path, preset, presets, setting))
    return replace(base, settings=tuple(variants))


def _build(
    check: Checker,
    raw: dict[str, Any],
    name: str,
    path: Path,
    preset: str | None,
    presets: tuple[str, ...],
    setting: str,
) -> Suite:
    """One validated Suite from the resolved table ``raw``."""
    problem = check.table(raw["problem"], ("problem",))
    problem_name = check.string(problem.pop("name", None), "problem.name")
    try:
        config = problem_config(problem_name, problem, where="problem.")
    except ParamError as err:
        check.fail(str(err), ("problem", *err.key))
    return Suite(
        name=name,
        description=check.string(raw.get("description", ""), "description"),
        path=path,
        preset=preset,
        rounds=check.in_range(raw, "rounds", TOP_RANGES["rounds"]),
        seeds=_seeds(check, raw.get("seeds", 1)),
        eval_every=check.in_range(raw, "eval_every", TOP_RANGES["eval_every"], 1),
        algorithms=_algorithms(check, raw["algorithms"]),
        capacities=_capacities(check, raw["capacities"], config.num_clients),
        problem=problem_name,
        problem_params=problem,
        overrides=_overrides(check, raw.get("overrides", {})),
        presets=presets,
        rates=check.table(raw.get("rates", {}), ("rates",)),
        setting=setting,
        sized_for_gpu=_flag(check, raw, "sized_for_gpu"),
        diverge_factor=float(
            check.in_range(raw, "diverge_factor", TOP_RANGES["diverge_factor"], DIVERGE_FACTOR)
        ),
        device=_device(check, raw),
        precision=_precision(check, raw, problem_name),
    )


def _device(check: Checker, raw: dict[str, Any]) -> str:
    value = raw.get("device", "auto")
    if not is_device_name(value):
        check.fail(f"device = {value!r} must be one of {DEVICE_CHOICES}", "device")
    return value


def _precision(check: Checker, raw: dict[str, Any], problem: str) -> str:
    """One of PRECISIONS that the problem supports (the device is checked when a run starts)."""
    value = raw.get("precision", FULL_PRECISION)
    if value not in PRECISIONS:
        check.fail(f"precision = {value!r} must be one of {list(PRECISIONS)}", "precision")
    why = problems()[problem].problem.unsupported(value)
    if why is not None:
        check.fail(why, "precision")
    return value


def _flag(check: Checker, raw: dict[str, Any], key: str) -> bool:
    value = raw.get(key, False)
    if not isinstance(value, bool):
        check.fail(f"{key} = {value!r} must be true or false", key)
    return value


def check_data(suite: Suite) -> None:
    """Load and verify every data archive the suite reads (raises DataError), so that missing
    or corrupt data stop the command before anything is written, not after the first runs.
    This reads each archive once more than the runs do (about 1.5 s for CIFAR-10)."""
    needed = {a for v in suite.variants() for a in archives_needed(v.problem, v.problem_params)}
    for archive in sorted(needed):
        load_archive(archive)


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
