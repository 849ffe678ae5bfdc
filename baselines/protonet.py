"""Dist-ProtoNet (SPEC §6, Table II reference row): FedAvg of the episodic prototypical-network
loss, full model. Needs a problem with episodes (the Omniglot suite); the head y is unused."""

from rabo_bench.algorithms import register, single_level
from rabo_bench.federated.policies import FullModel

register(
    single_level(
        "protonet",
        "Dist-ProtoNet: full model, FedAvg of the prototypical loss on episodes",
        FullModel(),
        label="dist-protonet",
        loss="protonet",
    )
)
