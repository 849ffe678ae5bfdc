"""Calling the ``rabo-bench`` command in-process from tests."""

from __future__ import annotations

from rabo_bench.cli import main


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """``main(args)`` in-process: (exit code, stdout, stderr)."""
    try:
        code = main(list(args))
    except SystemExit as stop:
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, err
