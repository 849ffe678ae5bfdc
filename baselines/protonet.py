"""Dist-ProtoNet (SPEC §6, Table II reference row): FedAvg of the episodic prototypical-network
loss, full model. Needs a problem with episodes (the Omniglot suite: ``prototypical_loss``);
the head y is unused."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rabo_bench.algorithms import register, single_level
from rabo_bench.federated.policies import FullModel
from rabo_bench.problems.single_level import SingleLevelLoss


@dataclass(frozen=True)
class PrototypicalLoss(SingleLevelLoss):
    """The problem's prototypical loss over the backbone x (its episodes as the batch)."""

    name: ClassVar[str] = "protonet"

    def supports(self, problem) -> bool:
        return hasattr(problem, "prototypical_loss")

    def __call__(self, problem, client, x, y, batch):
        return problem.prototypical_loss(x, batch)


register(
    single_level(
        "protonet",
        "Dist-ProtoNet: full model, FedAvg of the prototypical loss on episodes",
        FullModel(),
        label="dist-protonet",
        loss=PrototypicalLoss(),
    )
)
