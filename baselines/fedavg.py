"""FedAvg (SPEC §6): the full model trained single-level on the task loss, plain mean of the
client models (on loss-tuning problems: FedAvg without tuning)."""

from rabo_bench.algorithms import register, single_level
from rabo_bench.federated.policies import FullModel

register(
    single_level(
        "fedavg",
        "FedAvg: full model, single-level local SGD on the task loss, plain mean",
        FullModel(),
    )
)
