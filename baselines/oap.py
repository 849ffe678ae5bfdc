"""OAP, our interpretation (SPEC §6, §9 item 10): the paper's extraction rule could not be
recovered, so OAP is implemented as online adaptive magnitude pruning: every round each client
keeps the ceil(r C) rows of largest l2 norm in the current global model (RABO's mask rule),
trained single-level and aggregated over holders. Reports must label it "OAP (our
interpretation)"."""

from rabo_bench.algorithms import register, single_level
from rabo_bench.federated.policies import ChannelImportance

register(
    single_level(
        "oap",
        "OAP (our interpretation): per-round top-norm channels, single-level joint SGD",
        ChannelImportance(),
        label="oap (our interpretation)",
    )
)
