"""A suite file as written: reading it, parsing the TOML, the line of every key, and the
checker whose errors name the file and the line (``<file>:<line>: <message>``)."""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


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


class Checker:
    """Raises ``ValueError("<file>:<line>: <message>")``, the line being where the offending key
    is written. A resolved table merges layers (a setting over a preset over the file's top
    level); the key's line is found in the first layer that sets it."""

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
        line = self.line(tuple(key.split(".")) if isinstance(key, str) and key else key)
        where = f"{self.where}:{line}" if line else self.where
        raise ValueError(f"{where}: {self.context}{message}")

    def line(self, path: tuple[str, ...]) -> int | None:
        """The line of ``path`` in the first layer that sets it; a missing key is placed at the
        nearest enclosing table that exists, a key inside an inline table at that table."""
        for n in range(len(path), 0, -1):
            for layer in self.layers:
                if _has(self.source.raw, layer + path[:n]):
                    written = layer + path[:n]
                    return next(
                        self.source.lines[written[:k]]
                        for k in range(len(written), 0, -1)
                        if written[:k] in self.source.lines
                    )
        return None

    def positive_int(self, raw: dict, key: str, default: int | None = None) -> int:
        value = raw.get(key, default)
        if not is_int(value) or value < 1:
            self.fail(f"{key} = {value!r} must be an integer >= 1", key)
        return value

    def table(self, value: Any, key: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            self.fail(f"{'.'.join(key)} must be a table, got {value!r}", key)
        return dict(value)

    def string(self, value: Any, key: str) -> str:
        if not isinstance(value, str):
            self.fail(f"{key} must be a string, got {value!r}", key)
        return value

    def unknown_keys(
        self, raw: Mapping[str, Any], allowed: tuple[str, ...], table: tuple[str, ...] = ()
    ) -> None:
        for key in raw:
            if key not in allowed:
                name = ".".join((*table, key))
                self.fail(f"unknown key {name}; allowed keys are {list(allowed)}", (*table, key))
