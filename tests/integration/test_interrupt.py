"""Ctrl-C and SIGTERM on ``rabo-bench run`` (a real process, a real signal): one line on stderr,
exit 128 + the signal, a checkpoint of each run in progress so the same command resumes, and
no worker process left behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli import run_cli

ROUNDS = 10**6  # far more than a test waits for: only a signal ends these runs


def _start(out: Path, *extra: str) -> tuple[subprocess.Popen, Path]:
    log = out.parent / f"{out.name}.stderr"
    command = [
        sys.executable, "-m", "rabo_bench.cli", "run", "synthetic", "--preset", "smoke",
        "--algorithms", "rabo", "--rounds", str(ROUNDS), "--set", "eval_every=100000",
        "--checkpoint-every", str(ROUNDS), "--checkpoint-minutes", "1000", "--no-mlflow",
        "--out", str(out), *extra,
    ]  # fmt: skip
    handle = log.open("w")
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=handle), log


def _wait_for(condition, what: str, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _last_line(log: Path) -> str:
    return log.read_text().replace("\r", "\n").strip().splitlines()[-1]


def test_ctrl_c_saves_a_checkpoint_exits_130_with_one_line(tmp_path, capsys):
    out = tmp_path / "out"
    process, log = _start(out, "--seeds", "1")
    started = re.compile(rf"\| *[1-9]\d*/{ROUNDS}")
    _wait_for(lambda: started.search(log.read_text()), "the first rounds")
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 130
    text = log.read_text()
    assert "Traceback" not in text and "KeyboardInterrupt" not in text
    assert _last_line(log).startswith("rabo-bench: stopped by SIGINT; finished runs and")
    assert len(list((out / "checkpoints").glob("*.pt"))) == 1
    args = ["run", "synthetic", "--preset", "smoke", "--algorithms", "rabo", "--seeds", "1"]
    args += ["--rounds", str(ROUNDS), "--set", "eval_every=100000", "--out", str(out)]
    code, stdout, _ = run_cli(capsys, *args, "--dry-run")
    assert code == 0 and re.search(r"resume from round [1-9]\d*", stdout), stdout


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT], ids=lambda n: n.name)
def test_a_signal_stops_every_worker_with_a_checkpoint(tmp_path, number):
    """Both workers checkpoint every round here, so that the test knows when both are in their
    round loops; the signal must then end them both and the parent, leaving no process. The
    parent passes SIGTERM on to its workers, and still names (and exits by) its own signal."""
    out = tmp_path / "out"
    process, log = _start(out, "--seeds", "2", "--jobs", "2", "--checkpoint-every", "1")
    checkpoints = out / "checkpoints"
    _wait_for(lambda: len(list(checkpoints.glob("*.pt"))) == 2, "both runs' first rounds")
    found = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True)
    children = [int(pid) for pid in found.stdout.split()]
    assert len(children) >= 2  # the two workers (and multiprocessing's resource tracker)
    process.send_signal(number)
    assert process.wait(timeout=60) == 128 + number
    assert _last_line(log).startswith(f"rabo-bench: stopped by {number.name}")
    assert "Traceback" not in log.read_text()
    assert len(list(checkpoints.glob("*.pt"))) == 2
    for pid in children:
        _wait_for(lambda pid=pid: not _alive(pid), f"worker {pid} to end", seconds=30)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat")
    return not (state.exists() and state.read_text().split()[2] == "Z")  # a zombie has ended
