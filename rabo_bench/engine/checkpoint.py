"""Mid-run checkpoints: a killed long run resumes from its last saved round, not from round 0.

A run's state is (x^q, y^q, q), what its parts carry between rounds (momentum, warm starts:
``RoundContext.state``), its cost accumulator and the rows produced so far. Nothing else is
needed: every random stream of round q is derived from a hash of (run key, round, client,
purpose) (``rabo_bench.federated.context.derive_generator``), so there is no generator state, and
a resumed run gives exactly the rows of an uninterrupted one (wall time aside).

The state goes to ``<out>/checkpoints/<run_id>.pt`` atomically (``results.atomic_file``): a
checkpoint that exists is complete. The tensors are saved with ``torch.save``; the rows and
counters as JSON text inside it (exact for floats, NaN included), so loading needs no pickled
Python objects (``weights_only=True``). The runner deletes the checkpoint once the
run's result file is written (``remove_checkpoint``).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rabo_bench.engine.results import atomic_file

if TYPE_CHECKING:  # torch is imported where it is used: the CLI reads the defaults at start-up
    from rabo_bench.params import Params


def checkpoint_file(out: Path, run_id: str) -> Path:
    return out / "checkpoints" / f"{run_id}.pt"


def saved_round(out: Path, run_id: str) -> int:
    """The round a run's checkpoint holds (0: none, or unreadable: the run starts over)."""
    import torch

    path = checkpoint_file(out, run_id)
    if not path.exists():
        return 0
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["round"])
    except Exception:  # Checkpoint.load sets an unreadable one aside and starts over
        return 0


def remove_checkpoint(out: Path, run_id: str) -> None:
    """Delete a finished run's checkpoint and any temporary file a kill left mid-save."""
    path = checkpoint_file(out, run_id)
    for stale in path.parent.glob(f".{path.name}.*"):
        stale.unlink(missing_ok=True)
    path.unlink(missing_ok=True)


@dataclass(frozen=True)
class CheckpointPolicy:
    """Save every ``rounds`` rounds or after ``minutes`` since the last save, whichever comes
    first: the round count bounds the lost work of fast runs, the clock that of slow ones."""

    rounds: int = 50
    minutes: float = 10.0


DEFAULT_CHECKPOINTS = CheckpointPolicy()


@dataclass
class RunState:
    """What a run needs to continue after round ``round``."""

    round: int
    x: Params
    y: Params
    counters: dict[str, Any]  # the runner's cost accumulator
    rows: list[dict[str, Any]]
    # the coordinates some client has held so far (metrics.trained.TrainedCoordinates.state)
    trained: dict[str, Any] | None = None
    carried: dict[str, Any] | None = None  # the parts' state (FederatedRun.state)


@dataclass
class Checkpoint:
    """The checkpoint file of one run and when to write it next."""

    path: Path
    policy: CheckpointPolicy = DEFAULT_CHECKPOINTS
    writable: bool = True  # False on the follower ranks of a torchrun run: they only load
    _last: float = field(default_factory=time.monotonic)

    def due(self, q: int) -> bool:
        if not self.writable:
            return False
        elapsed = time.monotonic() - self._last
        return q % self.policy.rounds == 0 or elapsed >= 60 * self.policy.minutes

    def save(self, state: RunState) -> None:
        import torch

        payload = {
            "round": state.round,
            "x": state.x,
            "y": state.y,
            "json": json.dumps({"counters": state.counters, "rows": state.rows}),
            "trained": state.trained,
            "carried": state.carried,
        }
        with atomic_file(self.path, "wb") as handle:
            torch.save(payload, handle)
        self._last = time.monotonic()

    def load(self) -> RunState | None:
        """The saved state, or None when there is no checkpoint. A checkpoint that cannot be
        read (damaged on disk, or written by an incompatible version) is set aside as
        ``<name>.unreadable`` with a one-line warning, and the run starts from round 0:
        nothing is lost that a checkpoint could have given back."""
        if not self.path.exists():
            return None
        import torch

        try:
            payload = torch.load(self.path, map_location="cpu", weights_only=True)
            text = json.loads(payload["json"])
            # "trained" and "carried" are absent from older checkpoints
            return RunState(
                payload["round"],
                payload["x"],
                payload["y"],
                **text,
                trained=payload.get("trained"),
                carried=payload.get("carried"),
            )
        except Exception as err:  # any failure to read it means: no usable checkpoint
            aside = self.path.with_name(self.path.name + ".unreadable")
            self.path.replace(aside)
            print(
                f"rabo-bench: warning: checkpoint {self.path} is unreadable "
                f"({type(err).__name__}); moved to {aside.name}, the run starts over",
                file=sys.stderr,
            )
            return None
