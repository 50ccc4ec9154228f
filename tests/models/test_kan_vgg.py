"""Bottleneck KAN conv and the VGG-11 bottleneck model (kanvision.models.kan_vgg): the squeezed width rule, an
exact equivalence with a plain KAN conv, parameter formulas and torch-conv-kan's published 7.25M parameters."""

import pytest
import timm
import torch
import torch.nn.functional as F

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


def test_features_only_gives_every_feature_map_as_timm_vgg():
    x = torch.randn(1, 3, 64, 64)
    ours = timm.create_model("kan_vgg11_kagn_v2", features_only=True, width_scale=1, basis_kwargs=dict(degree=1))
    reference = timm.create_model("vgg11_bn", features_only=True)
    assert ours.feature_info.reduction() == reference.feature_info.reduction() == [1, 2, 4, 8, 16, 32]
    assert [f.shape[-1] for f in ours(x)] == [f.shape[-1] for f in reference(x)] == [64, 32, 16, 8, 4, 2]
    assert len(timm.create_model("kan_vgg11_kagn_v2", features_only=True, cfg=[8, "M", 16]).feature_info) == 2


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


# -- torch-conv-kan's released ImageNet VGGs ------------------------------------------------------------------------

# (registered name, torch-conv-kan cfg, bottleneck layers, norm) of its README's three ImageNet checkpoints
RELEASED = [
    ("kan_vgg11_kagn_v2", "vgg11v2", False, "instance"),
    ("kan_vgg11_kagn_v4", "vgg11v4", False, "instance"),
    ("kan_vgg11_bottleneck", "vgg11v4", True, "batch"),
]


def _tck_inner(c_in, c_out):
    inner = int(max(c_in / 8, c_out / 8))  # torch-conv-kan: dim_reduction 8, min_internal 16
    return inner if inner >= 16 else min(16, c_in, c_out)


def _tck_state_dict(cfg, bottleneck, norm, degree=5, width=2, classes=1000, seed=0):
    """Random weights under torch-conv-kan's VGGKAGN / VGGKAGN_BN key names and shapes (groups = 1)."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, fan_in):
        return torch.randn(*shape, generator=g, dtype=torch.float64) / fan_in**0.5

    sd, prev = {}, 3
    for index, v in enumerate(VGG_CONFIGS[cfg]):
        if v == "M":
            continue
        out, p = v * width, f"features.{index}."
        sd[p + "base_conv.0.weight"] = rand(out, prev, 3, 3, fan_in=prev * 9)
        mid_in, mid_out = prev, out
        if bottleneck:
            mid_in = mid_out = _tck_inner(prev, out)
            sd[p + "inner_proj.0.weight"] = rand(mid_in, prev, 1, 1, fan_in=prev)
            sd[p + "out_proj.0.weight"] = rand(out, mid_out, 1, 1, fan_in=mid_out)
        sd[p + "poly_weights"] = rand(1, mid_out, mid_in * (degree + 1), 3, 3, fan_in=mid_in * (degree + 1) * 9)
        sd[p + "beta_weights"] = rand(degree + 1, fan_in=4.0)
        sd[p + "layer_norm.0.weight"] = 1 + 0.1 * rand(out, fan_in=1.0)
        sd[p + "layer_norm.0.bias"] = 0.1 * rand(out, fan_in=1.0)
        if norm == "batch":
            sd[p + "layer_norm.0.running_mean"] = 0.1 * rand(out, fan_in=1.0)
            sd[p + "layer_norm.0.running_var"] = torch.rand(out, generator=g, dtype=torch.float64) + 0.5
            sd[p + "layer_norm.0.num_batches_tracked"] = torch.tensor(7)
        prev = out
    sd["classifier.1.weight"] = rand(classes, prev, fan_in=prev)
    sd["classifier.1.bias"] = 0.1 * rand(classes, fan_in=1.0)
    return sd


def _tck_vgg_reference(x, sd, cfg, bottleneck, norm, degree=5):
    """torch-conv-kan's VGG forward in eval mode, written out in float64 from its layer formulas: per layer
    base = conv3x3(silu(x)); z = inner_proj(x) (bottleneck) or x; Gram values p_0 = 1, p_1 = t, p_i = t p_{i-1} -
    beta(i-1, i) p_{i-2} of t = tanh z with beta(n, m) = w_n (m+n)(m-n) n^2 / (m^2 / (4n^2 - 1)), SiLU on them,
    stacked degree-major, conv3x3 with zero padding of the values, out_proj (bottleneck); silu(norm(y + base));
    2x2 max pools; global average pool and the linear head."""
    for index, v in enumerate(VGG_CONFIGS[cfg]):
        if v == "M":
            x = F.max_pool2d(x, 2)
            continue
        p = f"features.{index}."
        base = F.conv2d(F.silu(x), sd[p + "base_conv.0.weight"], padding=1)
        z = F.conv2d(x, sd[p + "inner_proj.0.weight"]) if bottleneck else x
        t = torch.tanh(z)
        grams, w = [torch.ones_like(t), t], sd[p + "beta_weights"]
        for i in range(2, degree + 1):
            n, m = i - 1, i
            grams.append(t * grams[-1] - ((m + n) * (m - n) * n**2) / (m**2 / (4.0 * n**2 - 1.0)) * w[n] * grams[-2])
        y = F.conv2d(F.silu(torch.cat(grams, dim=1)), sd[p + "poly_weights"][0], padding=1)
        if bottleneck:
            y = F.conv2d(y, sd[p + "out_proj.0.weight"])
        y = y + base
        if norm == "instance":
            mean, var = y.mean((2, 3), keepdim=True), y.var((2, 3), unbiased=False, keepdim=True)
        else:
            mean = sd[p + "layer_norm.0.running_mean"].view(1, -1, 1, 1)
            var = sd[p + "layer_norm.0.running_var"].view(1, -1, 1, 1)
        y = (y - mean) / torch.sqrt(var + 1e-5)
        x = F.silu(y * sd[p + "layer_norm.0.weight"].view(1, -1, 1, 1) + sd[p + "layer_norm.0.bias"].view(1, -1, 1, 1))
    return F.linear(x.mean((2, 3)), sd["classifier.1.weight"], sd["classifier.1.bias"])


def _released_plain_kagn_count(cfg, width_scale, degree, classes=1000, in_chans=3):
    """torch-conv-kan KAGNConv2DLayer (base conv, poly weights, degree + 1 betas, affine norm) per layer + head."""
    total, prev = 0, in_chans
    for v in cfg:
        if v == "M":
            continue
        out = v * width_scale
        total += out * prev * 9 + out * prev * (degree + 1) * 9 + (degree + 1) + 2 * out
        prev = out
    return total + prev * classes + classes


@pytest.mark.parametrize("name,cfg,bottleneck,norm", RELEASED)
def test_released_vgg_parameter_counts(name, cfg, bottleneck, norm):
    with torch.device("meta"):
        model = timm.create_model(name)
    if bottleneck:
        expected = _released_vgg_kagn_bn_count(VGG_CONFIGS[cfg], 2, 5, 8)
    else:
        expected = _released_plain_kagn_count(VGG_CONFIGS[cfg], 2, 5)
    assert _count(model) == expected
    assert _count(model) == sum(t.numel() for k, t in _tck_state_dict_shapes(cfg, bottleneck, norm).items())
    assert model.pretrained_cfg["hf_hub_id"].startswith("brivangl/vgg_kagn")
    assert model.pretrained_cfg["hf_hub_filename"] == "model.safetensors"  # what PyTorchModelHubMixin uploads


def _tck_state_dict_shapes(cfg, bottleneck, norm):
    """The torch-conv-kan checkpoint's learnable tensors (running statistics excluded)."""
    with torch.device("meta"):
        sd = _tck_state_dict(cfg, bottleneck, norm)
    return {k: v for k, v in sd.items() if "running" not in k and "num_batches" not in k}


@pytest.mark.parametrize("name,cfg,bottleneck,norm", RELEASED)
def test_torch_conv_kan_checkpoint_loads_through_timm_and_computes_its_function(tmp_path, name, cfg, bottleneck, norm):
    from safetensors.torch import save_file

    sd = _tck_state_dict(cfg, bottleneck, norm)
    path = tmp_path / "model.safetensors"  # what PyTorchModelHubMixin writes
    save_file({k: v.float() for k, v in sd.items()}, str(path))
    model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path))).eval().double()
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    sd64 = {k: v.float().double() if v.is_floating_point() else v for k, v in sd.items()}  # the stored values
    with torch.no_grad():
        ours = model(x)
        reference = _tck_vgg_reference(x, sd64, cfg, bottleneck, norm)
    assert reference.abs().mean() > 1e-2  # a non-degenerate function
    torch.testing.assert_close(ours, reference, rtol=1e-9, atol=1e-9)


def test_checkpoint_filter_passes_kanvision_state_dicts_through_and_rejects_foreign_keys():
    from kanvision.models.kan_vgg import checkpoint_filter_fn

    model = KANVGG((4, "M", 8), conv_type="kan", basis="kagn", num_classes=3)
    own = model.state_dict()
    passed = checkpoint_filter_fn(own, model)
    assert passed.keys() == own.keys() and all(passed[k] is own[k] for k in own)
    with pytest.raises(ValueError, match=r"looks like a torch-conv-kan checkpoint.*not in the model: stem\.weight"):
        checkpoint_filter_fn({"features.0.poly_weights": torch.zeros(1), "stem.weight": torch.zeros(1)}, model)


def test_norm_layer_choice():
    bn = KANVGG((4, "M", 8), conv_type="kan", num_classes=3)
    inst = KANVGG((4, "M", 8), conv_type="kan", num_classes=3, norm_layer="instancenorm", norm_affine=False)
    assert isinstance(bn.features[0][1], torch.nn.BatchNorm2d)
    assert isinstance(inst.features[0][1], torch.nn.InstanceNorm2d) and not inst.features[0][1].affine
    assert _count(bn) - _count(inst) == 2 * (4 + 8)
    bottleneck = KANVGG((4, "M", 8), num_classes=3, norm_layer="instancenorm")
    assert isinstance(bottleneck.features[0].norm, torch.nn.InstanceNorm2d) and bottleneck.features[0].norm.affine
    with pytest.raises(ValueError, match="unknown norm_layer 'layernorm'"):
        KANVGG((4,), norm_layer="layernorm")
