"""Cost accounting (SPEC §8): narrow sub-models are the masked full model, FLOPs measured by
``FlopCounterMode`` match the analytic count, and communication equals the parameter share."""

from __future__ import annotations

from itertools import pairwise

import pytest
import torch
from torch.func import functional_call

from rabo_bench.federated.policies import kept_rows
from rabo_bench.metrics import (
    analytic_flops,
    communication_fraction,
    mean_parameter_fraction,
    measured_flops,
    measured_forward_flops,
    parameter_fraction,
)
from rabo_bench.models import ConvNet, channel_mask, prefix_channel_mask
from rabo_bench.submodel import StructuredMask, embed, extract

WIDTHS = (1.0, 1 / 2, 1 / 4, 1 / 8, 1 / 16)
INPUT_SHAPE = (2, 1, 28, 28)


def _convnet(width: float) -> ConvNet:
    return ConvNet(width=width)


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _params(model: torch.nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """Float64 parameter values from an explicit generator (the module's own init is unused)."""
    gen = torch.Generator().manual_seed(seed)
    return {
        name: 0.3 * torch.randn(p.shape, generator=gen, dtype=torch.float64)
        for name, p in model.named_parameters()
    }


def _full_model() -> ConvNet:
    return ConvNet().double()


def _images(seed: int = 1) -> torch.Tensor:
    return torch.randn(INPUT_SHAPE, generator=torch.Generator().manual_seed(seed)).double()


def _random_kept(model: ConvNet, width: float, seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.sort(
            torch.randperm(c.out_channels, generator=gen)[: kept_rows(width, c.out_channels)]
        ).values
        for c in model.convs
    ]


@pytest.mark.parametrize("width", WIDTHS)
def test_prefix_mask_extracts_exactly_the_narrow_model_shapes(width):
    full = _full_model()
    sub = extract(_params(full), prefix_channel_mask(full, width))
    narrow = {name: p.shape for name, p in ConvNet(width=width).named_parameters()}
    assert {name: t.shape for name, t in sub.items()} == narrow


@pytest.mark.parametrize("width", (1 / 2, 1 / 4, 1 / 16))
@pytest.mark.parametrize("chooser", ("prefix", "random"))
def test_narrow_model_computes_the_masked_full_model(width, chooser):
    """Real width reduction is sound: the dense narrow model = the full model, channels zeroed."""
    full = _full_model()
    params = _params(full)
    if chooser == "prefix":
        mask = prefix_channel_mask(full, width)
    else:
        mask = channel_mask(full, _random_kept(full, width, seed=3))
    sub = extract(params, mask)
    narrow = ConvNet(width=width).double()
    images = _images()
    dense = functional_call(narrow, sub, (images,))
    masked = functional_call(full, embed(mask, sub, params), (images,))
    torch.testing.assert_close(dense, masked, rtol=0, atol=1e-12)


def test_channel_mask_keeps_inputs_classes_and_follows_previous_channels():
    full = _full_model()
    kept = _random_kept(full, 1 / 4, seed=5)
    mask = channel_mask(full, kept)
    assert mask.index["convs.0.weight"][1] is None
    assert torch.equal(mask.index["convs.1.weight"][1], kept[0])
    assert torch.equal(mask.index["convs.2.bias"][0], kept[2])
    assert mask.index["head.weight"][0] is None
    assert torch.equal(mask.index["head.weight"][1], kept[2])
    with pytest.raises(ValueError, match="kept-channel sets"):
        channel_mask(full, kept[:2])


@pytest.mark.parametrize("width", (1.0, 1 / 2, 1 / 4))
def test_measured_flops_match_the_analytic_count(width):
    model = ConvNet(width=width).double()
    params, images = _params(model), _images()
    measured = measured_flops(model, params, images)
    analytic = analytic_flops(_convnet, width, INPUT_SHAPE)
    assert abs(measured - analytic) <= 0.05 * analytic
    assert measured == analytic  # same counting convention: exact
    forward = analytic_flops(_convnet, width, INPUT_SHAPE, include_backward=False)
    assert measured_forward_flops(model, params, images) == forward


def test_analytic_forward_flops_by_hand():
    """Full width, one image: three conv3x3 blocks (28 -> 14 -> 7 spatial) and a 64 x 5 head."""
    conv = 2 * 9 * (16 * 1 * 28 * 28 + 32 * 16 * 14 * 14 + 64 * 32 * 7 * 7)
    head = 2 * 64 * 5
    flops = analytic_flops(_convnet, 1.0, (1, 1, 28, 28), include_backward=False)
    assert flops == conv + head


def test_parameter_fraction_of_the_convnet():
    fractions = parameter_fraction(_convnet, WIDTHS)
    assert fractions[0] == 1.0
    assert all(a > b for a, b in pairwise(fractions))
    assert fractions[1] == _count(ConvNet(width=1 / 2)) / _count(ConvNet())
    mean = mean_parameter_fraction(_convnet, WIDTHS)
    assert mean == pytest.approx(sum(fractions) / len(fractions), rel=1e-15)


def test_communication_fraction_equals_parameter_fraction():
    """SPEC §8 acceptance point: prefix sub-models send exactly their share of parameters."""
    full = _full_model()
    masks = [prefix_channel_mask(full, r) for r in WIDTHS]
    expected = mean_parameter_fraction(_convnet, WIDTHS)
    assert communication_fraction(_params(full), masks) == pytest.approx(expected, rel=1e-15)
    for r, fraction in zip(WIDTHS, parameter_fraction(_convnet, WIDTHS), strict=True):
        assert communication_fraction(_params(full), [prefix_channel_mask(full, r)]) == fraction


def test_communication_fraction_rejects_a_mask_of_other_parameters():
    full = _full_model()
    other = StructuredMask.full(_params(ConvNet(width=1 / 2)))
    with pytest.raises(ValueError, match="client 0"):
        communication_fraction(_params(full), [other])
