"""A suite file as written: reading it, parsing the TOML, the line of every key, and the
checker whose errors name the file and the line (``<file>:<line>: <message>``); and the values
given on the command line (``--set KEY=VALUE``), whose errors say ``<file> (--set): <message>``.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NoReturn

from rabo_bench.problems.ranges import Allowed

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


# Where Source.raw keeps the command line's values: a key no suite file can hold (its top-level
# keys are checked before the command line joins), and the option that sets them.
COMMAND_LINE = "--set"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def show_path(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it (for messages)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def read_toml(path: Path) -> dict[str, Any]:
    return _parse(path, _text(path))


def _text(path: Path) -> str:
    try:
        return path.read_bytes().decode()
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{show_path(path)}: not UTF-8 text ({err.reason} at byte {err.start})"
        ) from None
    except OSError as err:
        raise ValueError(f"{show_path(path)}: cannot read ({err.strerror or err})") from None


def _parse(path: Path, text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{show_path(path)}: invalid TOML: {err}") from None


def parse_assignment(text: str) -> dict[str, Any]:
    """``--set KEY=VALUE`` as the nested table it sets: KEY is a TOML key, dotted into tables
    (``problem.width``, ``settings."5w1s".rounds``), VALUE a TOML value (``8``, ``0.1``,
    ``"conv4"``, ``[1, 0.5]``, ``{ steps = 2 }``); one line, i.e. one TOML key/value pair."""
    if "=" not in text or "\n" in text or "\r" in text:
        raise ValueError(f"{text!r}: give one KEY=VALUE, e.g. --set rounds=5")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(
            f"{text!r} is not KEY=VALUE with a TOML value ({err}); strings need "
            """quotes, e.g. --set 'problem.network="resnet8"'"""
        ) from None


_HEADER = re.compile(r"^\s*\[\[?([^\[\]]+)\]\]?\s*(?:#.*)?$")
_BARE = r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'"""
_KEY = re.compile(rf"^\s*((?:{_BARE})(?:\s*\.\s*(?:{_BARE}))*)\s*=")
_PART = re.compile(_BARE)


def _dotted(text: str) -> tuple[str, ...]:
    return tuple(part.strip("\"'") for part in _PART.findall(text))


def key_lines(text: str) -> dict[tuple[str, ...], int]:
    """The line (1-based) where each key path is first written in TOML ``text``: its ``key =``
    line or its ``[table]`` header. tomllib reports no positions for valid files, and an error
    that says which line to fix is worth this small scanner (a heuristic on valid TOML)."""
    lines: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    for number, line in enumerate(text.splitlines(), 1):
        if header := _HEADER.match(line):
            table = _dotted(header.group(1))
            path = table
        elif key := _KEY.match(line):
            path = table + _dotted(key.group(1))
        else:
            continue
        for n in range(1, len(path) + 1):
            lines.setdefault(path[:n], number)
    return lines


def key_name(path: tuple[str, ...]) -> str:
    """``path`` dotted as its author wrote it (a command-line value without its root)."""
    return ".".join(path[1:] if path[:1] == (COMMAND_LINE,) else path)


def _has(raw: Mapping[str, Any], path: tuple[str, ...]) -> bool:
    for key in path:
        if not isinstance(raw, Mapping) or key not in raw:
            return False
        raw = raw[key]
    return True


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Source:
    """A suite file as written: its path, parsed table and the line of each key."""

    path: Path
    raw: dict[str, Any]
    lines: dict[tuple[str, ...], int]

    @classmethod
    def read(cls, path: Path) -> Source:
        text = _text(path)
        return cls(path, _parse(path, text), key_lines(text))

    def with_command_line(self, values: Mapping[str, Any]) -> Source:
        """The file with the command line's values as one more table, at ``COMMAND_LINE``."""
        return replace(self, raw={**self.raw, COMMAND_LINE: dict(values)})


class Checker:
    """Raises ``ValueError("<file>:<line>: <message>")``, the line being where the offending key
    is written, or ``"<file> (--set): <message>"`` when the command line gives it. A resolved
    table merges layers (the command line over a setting over a preset over the file's top
    level); the key's origin is found in the first layer that sets it."""

    def __init__(
        self, source: Source, context: str = "", layers: tuple[tuple[str, ...], ...] = ((),)
    ) -> None:
        self.source = source
        self.where = show_path(source.path)
        self.context = context  # e.g. "settings.5w1s: " for a setting's resolved table
        self.layers = layers

    def fail(self, message: str, key: str | tuple[str, ...] = ()) -> NoReturn:
        """Fail on ``key`` (dotted, or a tuple when a name may hold a dot), relative to the
        layers."""
        origin = self.origin(tuple(key.split(".")) if isinstance(key, str) and key else key)
        if origin is None:
            where = self.where
        elif origin == COMMAND_LINE:
            where = f"{self.where} ({COMMAND_LINE})"
        else:
            where = f"{self.where}:{origin}"
        raise ValueError(f"{where}: {self.context}{message}")

    def origin(self, path: tuple[str, ...]) -> int | str | None:
        """Where the first layer that sets ``path`` does: its line in the file (a key inside an
        inline table at that table), or ``COMMAND_LINE``. A missing key is placed at the
        nearest enclosing table that exists; None when no layer sets any of it."""
        for n in range(len(path), 0, -1):
            for layer in self.layers:
                written = layer + path[:n]
                if not _has(self.source.raw, written):
                    continue
                if written[0] == COMMAND_LINE:
                    return COMMAND_LINE
                return next(
                    self.source.lines[written[:k]]
                    for k in range(len(written), 0, -1)
                    if written[:k] in self.source.lines
                )
        return None

    def in_range(self, raw: dict, key: str, allowed: Allowed, default: Any = None) -> Any:
        """``raw[key]`` (or ``default``), which must be ``allowed``."""
        value = raw.get(key, default)
        if not allowed.admits(value):
            self.fail(f"{key} = {value!r} must be {allowed}", key)
        return value

    def table(self, value: Any, key: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            self.fail(f"{key_name(key)} must be a table, got {value!r}", key)
        return dict(value)

    def string(self, value: Any, key: str) -> str:
        if not isinstance(value, str):
            self.fail(f"{key} must be a string, got {value!r}", key)
        return value

    def safe_name(self, name: str, what: str, key: str | tuple[str, ...]) -> None:
        """Names that become folder names and run ids: letters, digits, '_', '.', '-'."""
        if not _SAFE_NAME.match(name):
            self.fail(f"{what} {name!r} may use only letters, digits, '_', '.', '-'", key)

    def unknown_keys(
        self, raw: Mapping[str, Any], allowed: tuple[str, ...], table: tuple[str, ...] = ()
    ) -> None:
        for key in raw:
            if key not in allowed:
                name = key_name((*table, key))
                self.fail(f"unknown key {name}; allowed keys are {list(allowed)}", (*table, key))
