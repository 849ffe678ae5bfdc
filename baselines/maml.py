"""Dist-MAML (SPEC §6, Table II reference row): FedAvg of first-order MAML on backbone and head
[OURS: first order, ``maml_steps`` = 5 adaptation steps, set by the problem], full model. Needs
a problem with episodes (the Omniglot suite)."""

from rabo_bench.algorithms import register, single_level
from rabo_bench.federated.policies import FullModel

register(
    single_level(
        "maml",
        "Dist-MAML: full model, FedAvg of first-order MAML (support adaptation, query loss)",
        FullModel(),
        label="dist-maml",
        loss="maml",
    )
)
