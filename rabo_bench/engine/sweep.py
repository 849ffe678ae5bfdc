"""Where the runs of a sweep execute (DESIGN.md §5): in this process, in N worker processes on
this machine, or on a Ray cluster. Every engine calls the same per-run function and hands its
rows back to the caller, which alone writes the run files, the results table and MLflow, so
all engines give the same layout, and the same rows at the same torch thread count (the order
of floating-point sums follows the threads; docs/scaling.md).

* ``local``, ``jobs=1``: one run after another in this process (progress bars per round).
* ``local``, ``jobs=N``: N 'spawn' worker processes, each with max(1, cores // N) torch threads
  so that they do not oversubscribe the machine. They stop with their parent (``interrupt``):
  a signal or the parent's death ends their current round with a checkpoint.
* ``ray``: one task per run on the cluster at ``ray_address`` (default: start a local Ray), one
  CPU and one torch thread each. Workers return their rows; nothing assumes a shared file system
  (so mid-run checkpoints are off: a killed sweep resumes from its finished runs).
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, TypeVar

from rabo_bench.engine.interrupt import Interrupted, install_in_worker

Spec = TypeVar("Spec")
Rows = list[dict[str, Any]]
ENGINES = ("local", "ray")
RAY_HINT = "pip install rabo-bench[ray]"


def _cores() -> int:
    if hasattr(os, "sched_getaffinity"):  # the cores this process may use (Linux)
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _unreachable(address: str) -> str | None:
    """Why a TCP connection to ``address`` (host:port, or ray://host:port) fails, or None.
    Ray itself retries a wrong address for minutes; this makes it a prompt error. Addresses
    that are not host:port ("auto") are left to Ray."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return None
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as err:
        return err.strerror or str(err)
    return None


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _init_worker(threads: int) -> None:
    install_in_worker()
    _set_threads(threads)


def _ray_task(work: Callable[[Spec], Rows], spec: Spec) -> Rows:
    _set_threads(1)
    return work(spec)


@dataclass(frozen=True)
class Engine:
    """How a sweep's runs are spread: ``kind`` "local" with ``jobs`` processes, or "ray"."""

    kind: str = "local"
    jobs: int = 1
    ray_address: str | None = None

    def check(self) -> None:
        """Raise ValueError for settings that cannot work (before anything runs)."""
        if self.kind not in ENGINES:
            raise ValueError(f"engine {self.kind!r} is not one of {list(ENGINES)}")
        if self.jobs < 1:
            raise ValueError(f"jobs = {self.jobs} must be >= 1")
        if self.kind == "ray" and self.jobs != 1:
            raise ValueError("--jobs is for --engine local; Ray runs a task per cluster CPU")
        if self.kind != "ray" and self.ray_address:
            raise ValueError("--ray-address needs --engine ray")
        if self.kind == "ray" and importlib.util.find_spec("ray") is None:
            raise ValueError(f"--engine ray needs Ray, which is not installed: {RAY_HINT}")
        why = self.kind == "ray" and self.ray_address and _unreachable(self.ray_address)
        if why:
            raise ValueError(f"cannot reach the Ray cluster at {self.ray_address} ({why})")

    @property
    def in_process(self) -> bool:
        return self.kind == "local" and self.jobs == 1

    @property
    def shares_files(self) -> bool:
        """Whether workers see this machine's files (so they may keep checkpoints there)."""
        return self.kind == "local"

    def map(
        self, work: Callable[[Spec], Rows], specs: Sequence[Spec]
    ) -> Iterator[tuple[Spec, Rows]]:
        """(spec, work(spec)) for every spec, in the order the runs finish. ``work`` must be
        picklable (a module-level function or a ``functools.partial`` of one) unless the
        engine runs in process."""
        if not specs:
            return
        if self.in_process:
            yield from ((spec, work(spec)) for spec in specs)
        elif self.kind == "local":
            yield from self._processes(work, specs)
        else:
            yield from self._ray(work, specs)

    def _processes(self, work, specs) -> Iterator[tuple[Spec, Rows]]:
        jobs = min(self.jobs, len(specs))
        pool = ProcessPoolExecutor(
            jobs,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(max(1, _cores() // jobs),),
        )
        try:
            pending = {pool.submit(work, spec): spec for spec in specs}
            stopped = None  # a worker's Interrupted: runs not started are cancelled, runs that
            while pending:  # finish meanwhile are still handed back (nothing computed is lost)
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    spec = pending.pop(future)
                    error = None if future.cancelled() else future.exception()
                    if isinstance(error, Interrupted):
                        stopped = stopped or error
                        for other in pending:
                            other.cancel()
                    elif error is not None:
                        raise error
                    elif not future.cancelled():
                        yield spec, future.result()
            if stopped is not None:
                raise stopped
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _ray(self, work, specs) -> Iterator[tuple[Spec, Rows]]:
        import ray

        started = not ray.is_initialized()
        if started:
            ray.init(address=self.ray_address, include_dashboard=False, log_to_driver=False)
        try:
            task = ray.remote(num_cpus=1)(_ray_task)
            shared = ray.put(work)
            pending = {task.remote(shared, spec): spec for spec in specs}
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                try:
                    rows = ray.get(done[0])
                except ray.exceptions.RayTaskError as err:
                    raise err.cause from err  # the run's own error, not Ray's wrapper
                yield pending.pop(done[0]), rows
        finally:
            if started:
                ray.shutdown()


IN_PROCESS = Engine()
