"""Functional, width-parametric networks: Conv-4, ResNet-12 and CIFAR ResNets (SPEC §8).

Parameters are a plain ``dict[str, Tensor]`` (:data:`~rabo_bench.params.Params`).
:func:`forward` reads every channel width from the tensor shapes, so the one function runs the
full model and any physically narrow channel sub-model ``mask.extract(params)`` (SPEC §2 Step 2,
eq. 4). :func:`channel_layers` is the coupling such masks must respect (SPEC §2 Step 1).

Every convolution is a *unit* ``P``: ``P.conv.weight`` [C_out, C_in, k, k] (no bias, padding
k // 2) followed by a normalisation with scale ``P.norm.weight`` and shift ``P.norm.bias`` [C_out].
:func:`forward` ends with global average pooling and returns features [B, C_last]; a head is
the caller's.

Normalisation: BatchNorm with the statistics of the batch at hand and no running statistics
(HeteroFL's "static" BN idea, without its post-hoc statistics pass). For channel c,

    out[n, c] = w[c] (h[n, c] - mean_{n,h,w} h[:, c]) / sqrt(var_{n,h,w} h[:, c] + eps) + b[c].

A channel's normalisation depends on that channel alone, so (a) every channel sub-model
computes exactly the full model's function on its channels: no statistic is shared across
channels or clients, and no running statistic has to be averaged over sub-models of different
widths; (b) a pruned channel (zero filter, zero scale and shift) outputs exactly 0, so the
zero-embedded sub-model x ⊙ m (eq. 5) equals the narrow one padded with zeros. Evaluation
uses the statistics of the evaluated batch (a few-shot episode's support or query set, a
chunk of test images). We first used per-sample instance normalisation; it removes each
channel's spatial mean, which global average pooling then reads, and a ResNet8 did not learn
CIFAR-10 at all (training loss 2.29 after 300 steps at lr 0.1, measured).

Coupling: a unit's output dim (0 of the conv weight, and the norm scale and shift: the
*producers*) belongs to its output channel layer; its input dim (1) to the layer that produced
its input; the network's input channels are held whole. In a residual block the block output
(last unit and projection shortcut) is one layer; an identity shortcut makes the block's output
layer its input layer, so the stem and the identity blocks after it share one channel set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import partial
from typing import Literal

import torch
from torch.nn import functional as F

from rabo_bench.models.compute import Compute
from rabo_bench.params import Params
from rabo_bench.submodel.channels import ChannelLayer, Member, kept_rows

Kind = Literal["conv4", "resnet12", "resnet_cifar"]
_KINDS = ("conv4", "resnet12", "resnet_cifar")
_NORM_EPS = 1e-5
_LEAKY_SLOPE = 0.1  # ResNet-12 (MetaOptNet / learn2learn)
_FP32_CPU = Compute()


@dataclass(frozen=True)
class NetSpec:
    """A network's architecture: ``kind``, the channels of its blocks (conv4, resnet12) or
    stages (resnet_cifar), the basic blocks per stage (resnet_cifar only) and input channels."""

    kind: Kind
    channels: tuple[int, ...]
    in_channels: int = 1
    blocks_per_stage: int = 1

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"unknown network kind {self.kind!r}; expected one of {_KINDS}")
        if not self.channels or any(int(c) != c or c < 1 for c in self.channels):
            raise ValueError(f"channels must be positive integers, got {self.channels}")
        if self.in_channels < 1 or self.blocks_per_stage < 1:
            raise ValueError(
                f"in_channels ({self.in_channels}) and blocks_per_stage "
                f"({self.blocks_per_stage}) must be at least 1"
            )
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))

    def scaled(self, width: float) -> NetSpec:
        """The width-r network: every channel count C becomes ceil(r C), at least 1 (the
        rounding of the mask policies, so it has the prefix sub-model's shapes)."""
        return replace(self, channels=tuple(kept_rows(width, c) for c in self.channels))


def conv4(width: int = 64, in_channels: int = 1) -> NetSpec:
    """Four blocks of conv3x3 -> norm -> ReLU -> 2x2 max-pool, all ``width`` channels."""
    return NetSpec("conv4", (width,) * 4, in_channels)


def resnet12(channels: tuple[int, ...] = (64, 160, 320, 640), in_channels: int = 1) -> NetSpec:
    """ResNet-12 (MetaOptNet / learn2learn, without DropBlock): per block three conv3x3 + norm
    (LeakyReLU(0.1) after the first two), a conv1x1 + norm shortcut, add, LeakyReLU(0.1),
    2x2 max-pool."""
    return NetSpec("resnet12", channels, in_channels)


def resnet_cifar(
    channels: tuple[int, ...] = (16, 32, 64), blocks: int = 1, in_channels: int = 3
) -> NetSpec:
    """He et al.'s CIFAR ResNet: conv3x3 stem + norm + ReLU, then stages of basic blocks
    (conv3x3 + norm + ReLU, conv3x3 + norm, add shortcut, ReLU); the first block of every stage
    after the first has stride 2 and a conv1x1 + norm shortcut, the others an identity.
    (16, 32, 64) with 1 block per stage is ResNet-8, with 3 ResNet-20."""
    return NetSpec("resnet_cifar", channels, in_channels, blocks)


def resnet18_cifar(in_channels: int = 3) -> NetSpec:
    """ResNet-18 for 32x32 images: 3x3 stem, no max-pool, (64, 128, 256, 512) x 2 blocks."""
    return resnet_cifar((64, 128, 256, 512), 2, in_channels)


@dataclass(frozen=True)
class _Unit:
    """One conv + norm: its parameter prefix, shape, stride and input / output channel layers
    (``source`` None: the network input, held whole)."""

    prefix: str
    c_in: int
    c_out: int
    kernel: int
    stride: int
    source: str | None
    layer: str


def _projects(stage: int, block: int) -> bool:
    """Whether a CIFAR ResNet block changes shape (stride 2, conv1x1 shortcut)."""
    return stage > 0 and block == 0


def _units(spec: NetSpec) -> list[_Unit]:
    """Every unit, in parameter order."""
    units: list[_Unit] = []
    source, c_prev = None, spec.in_channels
    if spec.kind == "conv4":
        for i, c in enumerate(spec.channels):
            units.append(_Unit(f"blocks.{i}", c_prev, c, 3, 1, source, f"blocks.{i}"))
            source, c_prev = f"blocks.{i}", c
    elif spec.kind == "resnet12":
        for i, c in enumerate(spec.channels):
            p = f"blocks.{i}"
            units += [
                _Unit(f"{p}.c1", c_prev, c, 3, 1, source, f"{p}.mid1"),
                _Unit(f"{p}.c2", c, c, 3, 1, f"{p}.mid1", f"{p}.mid2"),
                _Unit(f"{p}.c3", c, c, 3, 1, f"{p}.mid2", f"{p}.out"),
                _Unit(f"{p}.shortcut", c_prev, c, 1, 1, source, f"{p}.out"),
            ]
            source, c_prev = f"{p}.out", c
    else:
        units.append(_Unit("stem", c_prev, spec.channels[0], 3, 1, None, "stem"))
        source, c_prev = "stem", spec.channels[0]
        for s, c in enumerate(spec.channels):
            for b in range(spec.blocks_per_stage):
                p = f"stages.{s}.{b}"
                stride, out = (2, f"{p}.out") if _projects(s, b) else (1, source)
                units += [
                    _Unit(f"{p}.c1", c_prev, c, 3, stride, source, f"{p}.mid"),
                    _Unit(f"{p}.c2", c, c, 3, 1, f"{p}.mid", out),
                ]
                if _projects(s, b):
                    units.append(_Unit(f"{p}.shortcut", c_prev, c, 1, stride, source, out))
                source, c_prev = out, c
    return units


def param_shapes(spec: NetSpec) -> dict[str, torch.Size]:
    """Name -> shape of every parameter of the full-width network."""
    shapes = {}
    for u in _units(spec):
        shapes[f"{u.prefix}.conv.weight"] = torch.Size((u.c_out, u.c_in, u.kernel, u.kernel))
        shapes[f"{u.prefix}.norm.weight"] = torch.Size((u.c_out,))
        shapes[f"{u.prefix}.norm.bias"] = torch.Size((u.c_out,))
    return shapes


def init(spec: NetSpec, rng: torch.Generator, dtype: torch.dtype = torch.float32) -> Params:
    """Full-width parameters on ``rng``'s device: conv weights Kaiming-normal drawn from ``rng``,
    N(0, 2 / fan_in) with fan_in = C_in k^2; norm scales 1, shifts 0."""
    params = {}
    for name, shape in param_shapes(spec).items():
        if name.endswith(".conv.weight"):
            std = math.sqrt(2.0 / math.prod(shape[1:]))
            params[name] = std * torch.randn(shape, generator=rng, dtype=dtype, device=rng.device)
        else:
            fill = 1.0 if name.endswith(".norm.weight") else 0.0
            params[name] = torch.full(shape, fill, dtype=dtype, device=rng.device)
    return params


def feature_dim(spec: NetSpec) -> int:
    """C_last, the width of :func:`forward`'s output."""
    return spec.channels[-1]


def channel_layers(
    spec: NetSpec, side: str = "x", readers: tuple[Member, ...] = ()
) -> list[ChannelLayer]:
    """The channel layers of the network's parameters (on ``side``), in the order in which
    their last producing unit runs, so the last entry is the layer of the output features;
    ``readers`` are the members that read the features (e.g. ``("y", "head.weight", 1)``, a
    head's columns) and join that last layer."""
    members: dict[str, list[tuple[str, str, int]]] = {}
    sizes: dict[str, int] = {}
    last_producer: dict[str, int] = {}
    for i, u in enumerate(_units(spec)):
        members.setdefault(u.layer, []).extend(
            (side, f"{u.prefix}.{name}", 0) for name in ("conv.weight", "norm.weight", "norm.bias")
        )
        sizes[u.layer] = u.c_out
        last_producer[u.layer] = i
        if u.source is not None:
            members[u.source].append((side, f"{u.prefix}.conv.weight", 1))
    order = sorted(members, key=last_producer.__getitem__)
    members[order[-1]].extend(readers)
    return [ChannelLayer(name, sizes[name], tuple(members[name])) for name in order]


def init_head(
    spec: NetSpec, classes: int, rng: torch.Generator, dtype: torch.dtype, name: str
) -> Params:
    """A linear head on the features, on ``rng``'s device: ``name.weight`` [classes, d] uniform
    in +-1/sqrt(d) (PyTorch's default for nn.Linear) drawn from ``rng``, ``name.bias`` zero."""
    d, device = feature_dim(spec), rng.device
    uniform = torch.rand(classes, d, generator=rng, dtype=dtype, device=device)
    bias = torch.zeros(classes, dtype=dtype, device=device)
    return {f"{name}.weight": (uniform * 2 - 1) * (1.0 / math.sqrt(d)), f"{name}.bias": bias}


def head_logits(
    spec: NetSpec,
    body: Params,
    head: Params,
    images: torch.Tensor,
    name: str,
    compute: Compute | None = None,
):
    """Logits of the head ``name`` (in ``head``) on the features of ``images`` (``body``); the
    head computes in the parameters' precision."""
    return linear_head(head, forward(spec, body, images, compute), name)


def linear_head(head: Params, features: torch.Tensor, name: str) -> torch.Tensor:
    """features @ W^T + b with W = ``head[name.weight]`` [classes, d], b = ``head[name.bias]``."""
    return features @ head[f"{name}.weight"].T + head[f"{name}.bias"]


def _unit(
    params: Params, prefix: str, h: torch.Tensor, stride: int = 1, groups: int = 1
) -> torch.Tensor:
    """conv (padding k // 2) then batch-statistics BatchNorm, at whatever widths ``params``
    have, with statistics per group of the batch (:func:`forward`). The normalisation runs in
    the parameters' dtype (a no-op cast unless autocast made the convolution bfloat16: its
    statistics then stay float32, and under vmap a bfloat16 batch norm's backward refuses the
    float32 scale)."""
    weight = params[f"{prefix}.conv.weight"]
    h = F.conv2d(h, weight, stride=stride, padding=weight.shape[-1] // 2)
    scale, shift = params[f"{prefix}.norm.weight"], params[f"{prefix}.norm.bias"]
    h = h.to(scale.dtype)
    if groups == 1:
        return F.batch_norm(h, None, None, scale, shift, training=True, eps=_NORM_EPS)
    # group g's channel c becomes channel g C + c of one batch of n, in the input's memory
    # format: the same kernel then reduces each over its own n samples, as separate calls do
    fmt = torch.channels_last if _nhwc(h) else torch.contiguous_format
    n, (c, height, width) = h.shape[0] // groups, h.shape[1:]
    h = h.view(groups, n, c, height, width).transpose(0, 1).reshape(n, groups * c, height, width)
    scale, shift = scale.repeat(groups), shift.repeat(groups)
    h = F.batch_norm(
        h.contiguous(memory_format=fmt), None, None, scale, shift, training=True, eps=_NORM_EPS
    )
    h = h.view(n, groups, c, height, width).transpose(0, 1).reshape(groups * n, c, height, width)
    return h.contiguous(memory_format=fmt)


def _nhwc(h: torch.Tensor) -> bool:
    """Whether ``h`` is laid out channels-last (and not also plain contiguous)."""
    return h.is_contiguous(memory_format=torch.channels_last) and not h.is_contiguous()


def forward(
    spec: NetSpec,
    params: Params,
    images: torch.Tensor,
    compute: Compute | None = None,
    groups: int = 1,
) -> torch.Tensor:
    """Features [B, C_last'] of ``images`` [B, in_channels, H, W], where C_last' is the width of
    ``params`` (full or extracted sub-model): the network, then global average pooling.
    ``groups`` > 1: the batch is that many independent batches of B / groups images one after
    the other (few-shot episodes' support or query sets), each normalised with its own
    statistics: the features of ``groups`` separate forwards (bit-identical on the CPU,
    measured), in one. With
    ``compute``, in its precision (a bf16 forward hands back features in the images' dtype)
    and memory format: channels-last gives the images NHWC strides, so the convolutions run
    NHWC (their outputs follow their inputs' format; the weights stay as they are, since
    they may be batched by vmap, where a channels-last copy is not implemented)."""
    compute = compute or _FP32_CPU
    if compute.channels_last:  # empty_like: NHWC strides even for one channel (Omniglot)
        images = torch.empty_like(images, memory_format=torch.channels_last).copy_(images)
    with compute.autocast():
        features = _features(spec, params, images, partial(_unit, groups=groups))
    return features.to(images.dtype)


def _features(spec: NetSpec, params: Params, images: torch.Tensor, unit) -> torch.Tensor:
    """The layers, each conv + norm a ``unit`` (:func:`_unit` with the forward's groups)."""
    h = images
    if spec.kind == "conv4":
        for i in range(len(spec.channels)):
            h = F.max_pool2d(F.relu(unit(params, f"blocks.{i}", h)), 2)
    elif spec.kind == "resnet12":
        for i in range(len(spec.channels)):
            p = f"blocks.{i}"
            out = F.leaky_relu(unit(params, f"{p}.c1", h), _LEAKY_SLOPE)
            out = F.leaky_relu(unit(params, f"{p}.c2", out), _LEAKY_SLOPE)
            out = unit(params, f"{p}.c3", out) + unit(params, f"{p}.shortcut", h)
            h = F.max_pool2d(F.leaky_relu(out, _LEAKY_SLOPE), 2)
    else:
        h = F.relu(unit(params, "stem", h))
        for s in range(len(spec.channels)):
            for b in range(spec.blocks_per_stage):
                p, stride = f"stages.{s}.{b}", 2 if _projects(s, b) else 1
                out = unit(params, f"{p}.c2", F.relu(unit(params, f"{p}.c1", h, stride)))
                short = unit(params, f"{p}.shortcut", h, stride) if _projects(s, b) else h
                h = F.relu(out + short)
    return h.mean(dim=(-2, -1))
