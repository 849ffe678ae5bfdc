"""FedAvg (SPEC §6): the full model trained single-level on the task loss, plain mean of the
client models (on loss-tuning problems: FedAvg without tuning)."""

from rabo_bench.algorithms import Algorithm, register
from rabo_bench.federated.inner import JointLocalSGD
from rabo_bench.federated.outer import NoOuterStep
from rabo_bench.federated.policies import FullModel

register(
    Algorithm(
        name="fedavg",
        description="FedAvg: full model, single-level local SGD on the task loss, plain mean",
        policy=FullModel(),
        inner=JointLocalSGD(steps=10, lr=0.01),
        outer=NoOuterStep(),
    )
)
