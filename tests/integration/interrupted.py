"""A run stopped at a known round, as a kill would stop it, leaving its checkpoints behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from rabo_bench.engine.checkpoint import Checkpoint, CheckpointPolicy, checkpoint_file
from rabo_bench.engine.run import execute_run


class Killed(Exception):
    """Stands in for a kill at a known round."""


def run_killed_at(spec, problem, folder: Path, kill_round: int) -> Checkpoint:
    """Run ``spec`` with a checkpoint after every round and stop it when round ``kill_round``
    ends (before that round's checkpoint); return its checkpoint."""
    checkpoint = Checkpoint(checkpoint_file(folder, spec.run_id), CheckpointPolicy(rounds=1))

    def kill(q: int) -> None:
        if q == kill_round:
            raise Killed

    with pytest.raises(Killed):
        execute_run(spec, problem, kill, checkpoint=checkpoint)
    return checkpoint
