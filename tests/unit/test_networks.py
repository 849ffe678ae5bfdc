"""Functional width-parametric networks (rabo_bench.models.networks): channel sub-models are
sound, prefix sub-models are the narrow networks, and SPEC §8's ResNet-12 parameter shares."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from rabo_bench.federated.policies import kept_rows, layer_masks, prefix_channels
from rabo_bench.models.compute import Compute
from rabo_bench.models.networks import (
    NetSpec,
    channel_layers,
    conv4,
    feature_dim,
    forward,
    init,
    param_shapes,
    resnet12,
    resnet18_cifar,
    resnet_cifar,
)
from rabo_bench.submodel.channels import ChannelLayers

# Narrow networks so float64 runs stay fast; resnet_cifar has 2 blocks per stage so that
# identity blocks in a later stage (sharing the stage's projection layer) are exercised.
SMALL = {
    "conv4": (NetSpec("conv4", (5, 7, 6, 8), in_channels=1), 28),
    "resnet12": (resnet12((5, 7, 6, 8), in_channels=1), 28),
    "resnet_cifar": (resnet_cifar((4, 6, 8), blocks=2, in_channels=3), 32),
}


def _setup(kind: str, seed: int = 0):
    spec, size = SMALL[kind]
    rng = torch.Generator().manual_seed(seed)
    params = init(spec, rng, torch.float64)
    images = torch.randn(2, spec.in_channels, size, size, generator=rng, dtype=torch.float64)
    return spec, params, images, rng


@pytest.mark.parametrize("kind", list(SMALL))
def test_structure_covers_every_parameter_once(kind):
    spec, params, _, _ = _setup(kind)
    assert {n: t.shape for n, t in params.items()} == param_shapes(spec)
    layers = channel_layers(spec)
    ChannelLayers(tuple(layers))  # no (side, name, dim) in two layers
    claimed = {(name, dim) for layer in layers for _, name, dim in layer.members}
    for name, t in params.items():
        assert (name, 0) in claimed  # every parameter's rows are some layer's channels
        if t.dim() == 4 and t.shape[1] != spec.in_channels:
            assert (name, 1) in claimed
        for layer in layers:
            for _, member, dim in layer.members:
                assert params[member].shape[dim] == layer.size
    assert layers[-1].size == feature_dim(spec)


def test_layer_counts_and_identity_sharing():
    assert len(channel_layers(conv4(8))) == 4
    assert len(channel_layers(resnet12((4, 5, 6, 7)))) == 12  # mid1, mid2, out per block
    # ResNet-20: stem shared by stage-0 blocks, 9 hidden layers, 2 projection layers.
    layers = channel_layers(resnet_cifar((16, 32, 64), blocks=3))
    assert len(layers) == 1 + 9 + 2
    stem = next(layer for layer in layers if layer.name == "stem")
    producers = {name for _, name, dim in stem.members if dim == 0}
    assert {f"stages.0.{b}.c2.conv.weight" for b in range(3)} <= producers
    assert layers[-1].name == "stages.2.0.out"
    assert ("x", "stages.2.2.c2.norm.bias", 0) in layers[-1].members
    assert resnet18_cifar() == resnet_cifar((64, 128, 256, 512), 2, 3)


@pytest.mark.parametrize("kind", list(SMALL))
def test_random_channel_submodel_is_the_zero_embedded_model(kind):
    spec, params, images, rng = _setup(kind, seed=1)
    layers = channel_layers(spec)
    kept = []
    for layer in layers:
        keep = int(torch.randint(1, layer.size, (1,), generator=rng))
        kept.append(torch.sort(torch.randperm(layer.size, generator=rng)[:keep]).values)
    m, _ = ChannelLayers(tuple(layers)).masks(params, {}, kept)
    sub = m.extract(params)
    assert m.numel() < sum(t.numel() for t in params.values())
    narrow = forward(spec, sub, images)
    embedded = forward(spec, m.embed(sub, params), images)
    assert narrow.shape == (2, len(kept[-1]))
    torch.testing.assert_close(embedded[:, kept[-1]], narrow, rtol=0, atol=1e-10)
    dropped = torch.ones(feature_dim(spec), dtype=torch.bool)
    dropped[kept[-1]] = False
    assert torch.equal(embedded[:, dropped], torch.zeros_like(embedded[:, dropped]))
    assert bool((narrow != 0).any())  # the comparison above is not vacuous


@pytest.mark.parametrize("kind", list(SMALL))
@pytest.mark.parametrize("width", [1.0, 0.5, 1 / 3, 0.125])
def test_prefix_submodel_is_the_narrow_network(kind, width):
    spec, _ = SMALL[kind]
    meta = {n: torch.empty(s, device="meta") for n, s in param_shapes(spec).items()}
    layers = ChannelLayers(tuple(channel_layers(spec)))
    masks = layer_masks(layers, meta, {}, width, prefix_channels)
    assert masks.x.sub_shapes() == param_shapes(spec.scaled(width))
    assert spec.scaled(width).channels == tuple(kept_rows(width, c) for c in spec.channels)


def test_resnet12_prefix_parameter_fractions():
    """P(r) / P(1) of ResNet-12 (64, 160, 320, 640), 1 input channel, with a 5-way linear head
    (head.weight [5, 640] columns coupled to the feature layer, head.bias [5] whole); P(1) =
    12,426,245. Measured: r = 1, 1/2, 1/4, 1/8, 1/16 -> 1, 0.250268, 0.062701, 0.015743,
    0.003969, mean 0.266536; SPEC §8: 1, 0.25027, 0.0627, 0.01574, 0.00397, mean 0.2665."""
    spec = resnet12()
    x = {n: torch.empty(s, device="meta") for n, s in param_shapes(spec).items()}
    y = {"head.weight": torch.empty(5, 640, device="meta"), "head.bias": torch.empty(5)}
    layers = channel_layers(spec)
    layers[-1] = dataclasses.replace(
        layers[-1], members=(*layers[-1].members, ("y", "head.weight", 1))
    )
    structure = ChannelLayers(tuple(layers))
    total = sum(math.prod(t.shape) for t in (*x.values(), *y.values()))
    assert total == 12_426_245
    fractions = []
    for width in (1, 1 / 2, 1 / 4, 1 / 8, 1 / 16):
        masks = layer_masks(structure, x, y, width, prefix_channels)
        fractions.append((masks.x.numel() + masks.y.numel()) / total)
    expected = [1.0, 0.25027, 0.0627, 0.01574, 0.00397]
    assert fractions == pytest.approx(expected, abs=5e-5)
    assert sum(fractions) / 5 == pytest.approx(0.2665, abs=0.005)
    assert sum(fractions) / 5 == pytest.approx(0.266536, abs=1e-6)


@pytest.mark.parametrize("kind", list(SMALL))
def test_importance_per_channel(kind):
    spec, params, _, _ = _setup(kind)
    for layer in channel_layers(spec):
        scores = layer.importance(params, {})
        assert scores.shape == (layer.size,)
        assert bool((scores > 0).all())


@pytest.mark.parametrize("kind", list(SMALL))
def test_gradients_reach_every_extracted_tensor(kind):
    spec, params, images, _ = _setup(kind, seed=2)
    kept = [torch.arange(kept_rows(0.5, layer.size)) for layer in channel_layers(spec)]
    m, _ = ChannelLayers(tuple(channel_layers(spec))).masks(params, {}, kept)
    sub = {n: t.detach().requires_grad_() for n, t in m.extract(params).items()}
    loss = forward(spec, sub, images).pow(2).sum()
    grads = torch.autograd.grad(loss, list(sub.values()), allow_unused=True)
    for name, g in zip(sub, grads, strict=True):
        assert g is not None, name
        assert bool(torch.isfinite(g).all()), name


def test_init_is_seeded_and_shaped():
    spec = conv4(6)
    a = init(spec, torch.Generator().manual_seed(3))
    b = init(spec, torch.Generator().manual_seed(3))
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert torch.equal(a["blocks.2.norm.weight"], torch.ones(6))
    assert torch.equal(a["blocks.2.norm.bias"], torch.zeros(6))
    assert a["blocks.0.conv.weight"].dtype == torch.float32
    with pytest.raises(ValueError, match="unknown network kind"):
        NetSpec("vgg", (4,))  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", list(SMALL))
def test_grouped_forward_normalises_each_group_alone(kind):
    """groups = 3: the features of three separate forwards, bit for bit (the same batch-norm
    kernel reduces each group's channel over its own images), in float64 and float32
    channels-last; gradients agree to round-off."""
    spec, params, _, rng = _setup(kind)
    images = torch.randn(3, 2, spec.in_channels, 16, 16, generator=rng, dtype=torch.float64)
    for compute, ps, ims in (
        (None, params, images),
        (
            Compute(channels_last=True),
            {k: t.float() for k, t in params.items()},
            images.float(),
        ),
    ):
        alone = torch.cat([forward(spec, ps, group, compute) for group in ims])
        assert torch.equal(forward(spec, ps, ims.flatten(0, 1), compute, groups=3), alone)
    leaves = {k: t.clone().requires_grad_() for k, t in params.items()}
    grouped = forward(spec, leaves, images.flatten(0, 1), groups=3).pow(2).sum()
    separate = sum(forward(spec, leaves, group).pow(2).sum() for group in images)
    names = list(leaves)
    first = torch.autograd.grad(grouped, [leaves[n] for n in names])
    second = torch.autograd.grad(separate, [leaves[n] for n in names])
    for a, b in zip(first, second, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", list(SMALL))
def test_the_forward_pass_in_bf16_and_channels_last(kind):
    """bf16 autocast computes the convolutions in bfloat16 and hands float32 features back
    (8 significant bits through 4-12 layers normalised over two images: measured 0.8-4.9 % of
    the largest feature); channels-last (NHWC) is the same function up to float32 round-off
    (measured 4e-7-2e-6 relative); bf16 differentiates, also under vmap (forward only for
    channels-last: on the CPU its strided 1x1 backward corrupts the heap, docs/scaling.md)."""
    spec, params, images, _ = _setup(kind)
    params = {k: t.float().requires_grad_() for k, t in params.items()}
    images = images.float()
    reference = forward(spec, params, images)
    scale = float(reference.detach().abs().max())
    half = forward(spec, params, images, Compute(precision="bf16"))
    assert half.dtype == torch.float32
    assert 0 < float((half - reference).detach().abs().max()) < 0.1 * scale
    nhwc = forward(spec, params, images, Compute(channels_last=True))
    assert float((nhwc - reference).detach().abs().max()) < 1e-5 * scale
    (grad,) = torch.autograd.grad(half.pow(2).sum(), params[next(iter(params))])
    assert grad.dtype == torch.float32 and bool(torch.isfinite(grad).all())

    def loss(p):
        return forward(spec, p, images, Compute(precision="bf16")).pow(2).sum()

    # the finite-difference estimators differentiate perturbed copies under vmap
    stacked = {k: torch.stack([t.detach(), 1.01 * t.detach()]) for k, t in params.items()}
    grads = torch.func.vmap(torch.func.grad(loss))(stacked)
    assert all(g.dtype == torch.float32 and bool(torch.isfinite(g).all()) for g in grads.values())
