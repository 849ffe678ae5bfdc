"""Single-level losses: what a single-level method trains (x, y) on jointly (SPEC §6).

A loss is a small frozen dataclass (serialised into the run's identity like every part of a
recipe), called as ``loss(problem, client, x, y, batch)`` with the problem's task batch.
:class:`TaskLoss` is the problem's own single-level loss (``BilevelProblem.task_loss``); a
baseline that trains on another loss brings it in its own file (Dist-ProtoNet's prototypical
loss, Dist-MAML's first-order MAML) and says which problems it supports.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from rabo_bench.problems.ranges import Checked

if TYPE_CHECKING:
    import torch

    from rabo_bench.params import Params
    from rabo_bench.problems.base import BilevelProblem


class SingleLevelLoss(Checked, ABC):
    name: ClassVar[str]
    # whether it calls the problem's g and f (lower_loss / upper_loss), e.g. MAML's adaptation
    reads_losses: ClassVar[bool] = False

    def supports(self, problem: BilevelProblem | type[BilevelProblem]) -> bool:
        """Whether the loss exists on ``problem`` (an instance or its class)."""
        return True

    @abstractmethod
    def __call__(
        self, problem: BilevelProblem, client: int, x: Params, y: Params, batch
    ) -> torch.Tensor:
        """The loss of client ``client`` at (x, y) on its task batch."""


@dataclass(frozen=True)
class TaskLoss(SingleLevelLoss):
    """The problem's single-level loss (``BilevelProblem.task_loss``)."""

    name: ClassVar[str] = "task"

    def __call__(self, problem, client, x, y, batch):
        return problem.task_loss(client, x, y, batch)


TASK_LOSS = TaskLoss()
