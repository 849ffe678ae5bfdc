"""Networks written for ``torch.func.functional_call``: plain modules whose named parameters
are the model's state, with the structured masks that map a full-width model onto its
width-r sub-models (SPEC §2, Steps 1-2); and functional, width-parametric networks
(:mod:`rabo_bench.models.networks`) whose forward runs any extracted channel sub-model."""

from rabo_bench.models.cnn import ConvNet, channel_mask, prefix_channel_mask
from rabo_bench.models.networks import (
    NetSpec,
    channel_layers,
    conv4,
    feature_dim,
    forward,
    head_logits,
    init,
    init_head,
    linear_head,
    param_shapes,
    resnet12,
    resnet18_cifar,
    resnet_cifar,
)

__all__ = [
    "ConvNet",
    "NetSpec",
    "channel_layers",
    "channel_mask",
    "conv4",
    "feature_dim",
    "forward",
    "head_logits",
    "init",
    "init_head",
    "linear_head",
    "param_shapes",
    "prefix_channel_mask",
    "resnet12",
    "resnet18_cifar",
    "resnet_cifar",
]
