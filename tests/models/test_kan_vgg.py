"""Bottleneck KAN conv and the VGG-11 bottleneck model (kanvision.models.kan_vgg): the squeezed width rule, an
exact equivalence with a plain KAN conv, parameter formulas and torch-conv-kan's published 7.25M parameters."""

import pytest
import timm
import torch

import kanvision  # noqa: F401  (registers the kan_* models)
from kanvision.layers import KANConv2d
from kanvision.models.kan_vgg import KANVGG, VGG_CONFIGS, BottleneckKANConv2d, bottleneck_inner_channels


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(
    "c_in,c_out,reduction,expected",
    [(3, 32, 8, 3), (32, 64, 8, 16), (64, 128, 8, 16), (256, 512, 8, 64), (512, 512, 4, 128), (8, 4, 8, 4)],
)
def test_inner_width_follows_torch_conv_kan(c_in, c_out, reduction, expected):
    # int(max(C_in, C_out) / r), raised to min(16, C_in, C_out) when below 16
    assert bottleneck_inner_channels(c_in, c_out, reduction, 16) == expected
    assert BottleneckKANConv2d(c_in, c_out, dim_reduction=reduction).inner_channels == expected


def test_bottleneck_with_identity_projections_is_a_kan_conv_with_base_branch():
    """inner = C_in = C_out and identity 1x1 convs: base conv + KAN conv = one KANConv2d with a SiLU base branch."""
    torch.manual_seed(0)
    c = 6
    block = BottleneckKANConv2d(c, c, 3, stride=2, dim_reduction=1, norm_layer=None, act_layer=None).double()
    assert block.inner_channels == c
    plain = KANConv2d(c, c, 3, 2, 1, bias=False, basis="gram", base_activation="silu", border="zero").double()
    n = block.kan.basis.num_functions
    with torch.no_grad():
        block.squeeze.weight.copy_(torch.eye(c).view(c, c, 1, 1))
        block.expand.weight.copy_(torch.eye(c).view(c, c, 1, 1))
        w = plain.weight.view(c, c, n + 1, 3, 3)  # per input channel: [base, p_0..p_n-1]
        w[:, :, 0] = block.base_conv.weight
        w[:, :, 1:] = block.kan.weight.view(c, c, n, 3, 3)
    x = torch.randn(2, c, 9, 9, dtype=torch.float64)
    torch.testing.assert_close(block(x), plain(x), rtol=1e-12, atol=1e-12)


def test_bottleneck_parameter_formula_and_stride():
    c_in, c_out, k = 64, 128, 3
    block = BottleneckKANConv2d(c_in, c_out, k, stride=2, basis_kwargs=dict(degree=5))
    inner, n = 16, 6
    assert _count(block) == c_out * c_in * k * k + c_in * inner + inner * inner * n * k * k + inner * c_out + 2 * c_out
    assert block(torch.randn(1, c_in, 10, 10)).shape == (1, c_out, 5, 5)
    no_base = BottleneckKANConv2d(c_in, c_out, k, base_activation=None)
    assert no_base.base_conv is None and _count(no_base) == _count(block) - c_out * c_in * k * k - 16 * 16 * 2 * 9


def _released_vgg_kagn_bn_count(cfg, width_scale, degree, reduction, classes=1000, in_chans=3):
    """torch-conv-kan BottleNeckKAGNConv2DLayer + BatchNorm per layer (incl. degree + 1 beta weights), linear head."""
    total, prev = 0, in_chans
    for v in cfg:
        if v == "M":
            continue
        out = v * width_scale
        inner = int(max(prev / reduction, out / reduction))
        inner = inner if inner >= 16 else min(16, prev, out)
        total += out * prev * 9 + prev * inner + inner * inner * (degree + 1) * 9 + inner * out + (degree + 1)
        total += 2 * out
        prev = out
    return total + prev * classes + classes


def test_vgg11_bottleneck_matches_the_released_7_25m_parameters():
    with torch.device("meta"):
        model = timm.create_model("kan_vgg11_bottleneck")
    released = _released_vgg_kagn_bn_count(VGG_CONFIGS["vgg11v4"], 2, 5, 8)
    assert released == 7_252_115  # the README's "7.25M"
    layers = sum(isinstance(v, int) for v in VGG_CONFIGS["vgg11v4"])
    assert _count(model) == released  # with the KAGN basis' learnable recurrence scales (degree + 1 per layer)
    fixed = timm.create_model("kan_vgg11_bottleneck", basis="gram")  # kanvision's fixed normalised Gram basis
    assert _count(fixed) == released - layers * (5 + 1) == 7_252_055
    assert abs(_count(model) / 7.25e6 - 1) < 0.001


def test_vgg11_bottleneck_feature_map_at_224_px():
    with torch.device("meta"):
        model = timm.create_model("kan_vgg11_bottleneck")
        assert model.forward_features(torch.empty(1, 3, 224, 224)).shape == (1, 512, 7, 7)
    assert [info["reduction"] for info in model.feature_info] == [1, 2, 4, 8, 16, 32]


def test_plain_kan_conv_variant_and_errors():
    model = KANVGG("vgg11", conv_type="kan", num_classes=4, basis="chebyshev")
    assert sum(isinstance(m, KANConv2d) for m in model.modules()) == 8
    out = model(torch.randn(2, 3, 16, 16))
    assert out.shape == (2, 4) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="unknown VGG cfg"):
        KANVGG("vgg19")
    with pytest.raises(ValueError, match="conv_type"):
        KANVGG(conv_type="depthwise")
    with pytest.raises(ValueError, match="positive ints"):
        KANVGG(cfg=(16, "P", 32))
    with pytest.raises(ValueError, match="dim_reduction"):
        BottleneckKANConv2d(8, 8, dim_reduction=0)


def test_timm_api_and_grad_checkpointing():
    torch.manual_seed(0)
    model = KANVGG((8, "M", 16), width_scale=1, num_classes=3).double()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    assert model.forward_head(model.forward_features(x), pre_logits=True).shape == (2, 16)
    grads = []
    for checkpointing in (False, True):
        model.set_grad_checkpointing(checkpointing)
        model.zero_grad()
        model(x).square().sum().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)
    model.reset_classifier(5)
    assert model(x).shape == (2, 5) and model.get_classifier().out_features == 5
