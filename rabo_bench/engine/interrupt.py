"""Stopping a sweep without losing work: Ctrl-C (SIGINT) or SIGTERM ends the current round,
saves the run's checkpoint and stops, so the same command resumes where it stopped.

* The ``run`` command runs its sweep within :func:`handled`. The first signal only sets a flag
  (and is passed on, as SIGTERM, to the sweep's worker processes); the round loop
  (``run.execute_run``, ``batches.execute_batch``) polls :func:`requested` after every round,
  saves its checkpoints and raises :class:`Interrupted`. A second signal stops at once: it kills
  the workers and raises ``KeyboardInterrupt`` (the runs then resume from their last periodic
  checkpoint).
* Worker processes call :func:`install_in_worker`: they ignore SIGINT (the terminal sends
  Ctrl-C to the whole process group; the parent decides), stop like the parent on SIGTERM,
  and also stop when their parent has died, so that a killed sweep leaves no orphaned worker
  computing runs that nobody will write.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

_state = {"signal": 0, "parent": 0}


class Interrupted(Exception):
    """The sweep was asked to stop; the current run saved its checkpoint."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)  # the args pickle it back from a worker process
        self.signum = signum

    def __str__(self) -> str:
        return signal.Signals(self.signum).name


def requested() -> bool:
    """Whether this process was asked to stop (or, in a worker, lost its parent)."""
    orphaned = _state["parent"] and os.getppid() != _state["parent"]
    return bool(_state["signal"] or orphaned)


def signum() -> int:
    """The signal that asked for the stop (SIGTERM for a worker whose parent died)."""
    return _state["signal"] or signal.SIGTERM


def _on_signal(number: int, _frame: FrameType | None) -> None:
    children = multiprocessing.active_children()
    if _state["signal"]:  # the second signal: stop now
        for child in children:
            child.kill()
        raise KeyboardInterrupt
    _state["signal"] = number
    for child in children:
        if child.pid is not None:
            os.kill(child.pid, signal.SIGTERM)


@contextmanager
def handled() -> Iterator[None]:
    """Within: SIGINT and SIGTERM stop this process at the end of the current round, and the
    :class:`Interrupted` that leaves names the signal this process received (its workers were
    passed SIGTERM). The previous handlers come back on exit."""
    previous = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    _state["signal"] = 0
    for number in previous:
        signal.signal(number, _on_signal)
    try:
        yield
    except Interrupted as stop:  # a worker reports the SIGTERM it was passed: name ours
        if _state["signal"] and stop.signum != _state["signal"]:
            raise Interrupted(_state["signal"]) from None
        raise
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        _state["signal"] = 0


def install_in_worker() -> None:
    """A sweep's worker process: SIGINT ignored, SIGTERM and the parent's death stop it at the
    end of the current round."""
    _state["signal"], _state["parent"] = 0, os.getppid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_signal)
