"""A small CNN family with a width ratio r, and its channel masks (SPEC §2 Steps 1-2, §8).

``ConvNet(width=r)`` is the physically narrow sub-model: every hidden channel count C becomes
``kept_rows(r, C)`` = ceil(r C) (the rounding the mask policies use), while the input channels
and the classes stay whole. :func:`channel_mask` is the same sub-model seen as a
:class:`StructuredMask` over the full model, so ``extract(full_params, mask)`` has exactly the
narrow model's shapes and computes the full model's function with the other channels zeroed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from rabo_bench.submodel import StructuredMask
from rabo_bench.submodel.channels import kept_rows


class ConvNet(nn.Module):
    """Blocks of conv3x3 (with bias, padding 1) -> ReLU -> 2x2 max-pool, then global average
    pooling and a linear head. No normalisation layers, so a channel's state is its filter and
    bias only. Parameters: ``convs.{l}.weight``, ``convs.{l}.bias``, ``head.weight``,
    ``head.bias``."""

    def __init__(
        self,
        channels: Sequence[int] = (16, 32, 64),
        in_channels: int = 1,
        num_classes: int = 5,
        width: float = 1.0,
        image_size: int = 28,
    ) -> None:
        super().__init__()
        if image_size < 2 ** len(channels):
            raise ValueError(
                f"image_size {image_size} is too small for {len(channels)} 2x2 poolings "
                f"(needs at least {2 ** len(channels)})"
            )
        self.image_size = image_size
        self.full_channels = tuple(channels)
        self.width = width
        hidden = [kept_rows(width, c) for c in channels]
        inputs = [in_channels, *hidden[:-1]]
        self.convs = nn.ModuleList(
            nn.Conv2d(c_in, c_out, kernel_size=3, padding=1)
            for c_in, c_out in zip(inputs, hidden, strict=True)
        )
        self.head = nn.Linear(hidden[-1], num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h = images
        for conv in self.convs:
            h = F.max_pool2d(F.relu(conv(h)), 2)
        return self.head(h.mean(dim=(-2, -1)))


def channel_mask(model_full: ConvNet, kept: Sequence[torch.Tensor]) -> StructuredMask:
    """The sub-model keeping output channels ``kept[l]`` of hidden conv layer l (sorted indices).

    Each conv weight keeps (its kept output channels) x (the previous layer's kept channels as
    input channels; all of them for the first layer); biases follow their channels; the head
    keeps every class (row) and the last layer's kept channels (columns). SPEC §2 Step 1.
    """
    if len(kept) != len(model_full.convs):
        raise ValueError(f"{len(kept)} kept-channel sets for {len(model_full.convs)} conv layers")
    index: dict[str, tuple[torch.Tensor | None, ...]] = {}
    previous = None
    for layer, out_channels in enumerate(kept):
        index[f"convs.{layer}.weight"] = (out_channels, previous, None, None)
        index[f"convs.{layer}.bias"] = (out_channels,)
        previous = out_channels
    index["head.weight"] = (None, previous)
    index["head.bias"] = (None,)
    shapes = {name: p.shape for name, p in model_full.named_parameters()}
    return StructuredMask(index, shapes)


def prefix_channel_mask(model_full: ConvNet, width: float) -> StructuredMask:
    """Channels 0..ceil(r C)-1 of every hidden layer: the HeteroFL-style static sub-model whose
    extracted tensors are exactly ``ConvNet(width=r)``'s (SPEC §6 Static, §8)."""
    kept = [torch.arange(kept_rows(width, conv.out_channels)) for conv in model_full.convs]
    return channel_mask(model_full, kept)
