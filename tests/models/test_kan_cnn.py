"""Convolutional KAN networks (kanvision.models.kan_cnn): Bodner et al.'s KKAN / KANC MLP at the published parameter
counts, the channel-shared KAN conv and the efficient-kan spline scaler against naive formulas, torch-conv-kan's
KACN/KAGN stacks at their published counts, and argument validation."""

import math

import pytest
import timm
import torch
import torch.nn.functional as F

import kanvision  # noqa: F401  (registers the kan_* models)
from kanvision.layers import KANConv2d, KANLinear, list_bases
from kanvision.models.kan_cnn import ChannelSharedKANConv2d, KANConvNet, SmallConvKAN, add_spline_scaler


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _efficient_kan_kernel(k: int, grid: int, order: int = 3) -> int:
    """Parameters of efficient-kan's KANLinear(k*k -> 1): base weight, grid + order coefficients, spline scaler."""
    return k * k * (grid + order + 2)


# -- spline scaler -----------------------------------------------------------------------------------------------


def test_spline_scaler_keeps_the_function_at_init_and_scales_only_basis_coefficients():
    layer = KANLinear(4, 3, basis="bspline", bias=False).double()
    x = torch.rand(5, 4, dtype=torch.float64) * 2 - 1
    before = layer(x)
    raw = layer.weight.detach().clone()  # (3, 4 * m), per input: [base, B_0..B_{n-1}]
    add_spline_scaler(layer)
    assert _count(layer) == 3 * 4 * (layer.num_terms + 1)
    torch.testing.assert_close(layer(x), before, rtol=0, atol=0)

    scale = layer.parametrizations.weight[0].scale
    with torch.no_grad():
        scale.copy_(torch.rand_like(scale) + 0.5)
    # naive: y_j = sum_i w_ji silu(x_i) + s_ji sum_k c_jik B_k(x_i)
    basis = layer.basis(x, -1)  # (5, 4, n)
    m, n = layer.num_terms, layer.basis.num_functions
    w = raw.view(3, 4, m)
    s = scale.view(3, 4)
    expected = torch.einsum("bi,ji->bj", F.silu(x), w[:, :, 0]) + torch.einsum("bik,jik,ji->bj", basis, w[:, :, 1:], s)
    assert n == m - 1
    torch.testing.assert_close(layer(x), expected, rtol=1e-12, atol=1e-12)


def test_spline_scaler_rejects_a_plain_module():
    with pytest.raises(ValueError, match="KANLinear or KANConvNd"):
        add_spline_scaler(torch.nn.Linear(3, 3))


# -- channel-shared KAN conv -------------------------------------------------------------------------------------


def test_channel_shared_kan_conv_matches_unfolded_per_channel_kernels():
    conv = ChannelSharedKANConv2d(kernels=3, kernel_size=3).double()
    with torch.no_grad():
        scale = conv.conv.parametrizations.weight[0].scale
        scale.copy_(torch.rand_like(scale) + 0.5)
    x = torch.randn(2, 4, 7, 6, dtype=torch.float64) * 0.7
    out = conv(x)
    assert out.shape == (2, 12, 5, 4)
    weight = conv.conv.weight.detach()  # (kernels, m, 3, 3), scaler applied
    m = weight.shape[1]
    for c in range(4):
        patches = F.unfold(x[:, c : c + 1], 3)  # (N, 9, L): one KANLinear(9 -> 1) per kernel over the patches
        feats = conv.conv.basis(patches, -1, F.silu)  # (N, 9, L, m)
        for j in range(3):
            kernel = weight[j].reshape(m, 9).t()  # (9 positions, m)
            expected = torch.einsum("bplt,pt->bl", feats, kernel).view(2, 5, 4)
            # output channel c * kernels + j, as the official multiple_convs_kan_conv2d orders them
            torch.testing.assert_close(out[:, c * 3 + j], expected, rtol=1e-12, atol=1e-12)


def test_channel_shared_kan_conv_parameters_do_not_depend_on_channels():
    conv = ChannelSharedKANConv2d(kernels=5)
    assert _count(conv) == 5 * _efficient_kan_kernel(3, 5) == 450
    assert conv(torch.randn(1, 7, 9, 9)).shape == (1, 35, 7, 7)


# -- Bodner et al.: published parameter counts -------------------------------------------------------------------


def test_kkan_mnist_reproduces_the_papers_94650_parameters():
    model = timm.create_model("kan_kkan_mnist")
    # 2 layers x 5 shared 3x3 kernels (grid 5) + efficient-kan KANLinear(625 -> 10, grid 10)
    assert _count(model) == 2 * 5 * _efficient_kan_kernel(3, 5) + 625 * 10 * (10 + 3 + 2) == 94_650
    assert model.pre_logits(model.forward_features(torch.randn(2, 1, 28, 28))).shape == (2, 625)


def test_kanc_mlp_mnist_reproduces_the_papers_163726_parameters():
    model = timm.create_model("kan_kanc_mlp_mnist")
    assert _count(model) == 2 * 5 * _efficient_kan_kernel(3, 5) + (625 * 256 + 256) + (256 * 10 + 10) == 163_726


# Fashion-MNIST table of the later paper version (README): channels of the two KAN convs, head, params in K
FASHION_TABLE = [
    ("kan_kanc_mlp_small", 10, 5.31),
    ("kan_kanc_mlp_small", 20, 8.01),
    ("kan_kanc_mlp_medium", 10, 9.94),
    ("kan_kanc_mlp_medium", 20, 14.89),
    ("kan_kanc_mlp_big", 10, 33.54),
    ("kan_kanc_mlp_big", 20, 38.48),
    ("kan_kkan_small", 10, 22.80),
    ("kan_kkan_small", 20, 38.00),
    ("kan_kkan_medium", 10, 44.93),
    ("kan_kkan_medium", 20, 74.88),
]


@pytest.mark.parametrize("name,grid,published_k", FASHION_TABLE)
def test_fashion_mnist_family_matches_the_published_table(name, grid, published_k):
    model = timm.create_model(name, grid_size=grid)
    c1, c2 = {"small": (5, 5), "medium": (5, 10), "big": (5, 10)}[name.rsplit("_", 1)[1]]
    flat = c2 * 5 * 5
    convs = (1 * c1 + c1 * c2) * _efficient_kan_kernel(3, grid)
    if "kkan" in name:
        head = flat * 10 * (grid + 3 + 2)
    elif name.endswith("big"):
        head = (flat * 100 + 100) + (100 * 10 + 10)
    else:
        head = flat * 10 + 10
    assert _count(model) == convs + head
    # the table rounds to 10 parameters; 38,485 is printed as 38.48K
    assert abs(_count(model) / 1000 - published_k) <= 0.0051


def test_without_spline_scaler_the_kernels_hold_k2_times_grid_plus_order_plus_1():
    model = timm.create_model("kan_kkan_mnist", spline_scaler=False)
    assert _count(model) == 2 * 5 * 9 * (5 + 3 + 1) + 625 * 10 * (10 + 3 + 1)


def test_small_conv_kan_api_and_errors():
    model = timm.create_model("kan_kanc_mlp_big")
    x = torch.randn(3, 1, 28, 28)
    feats = model.forward_features(x)
    assert feats.shape == (3, model.num_features, 5, 5)
    assert model.forward_head(feats, pre_logits=True).shape == (3, model.head_hidden_size) == (3, 100)
    model.reset_classifier(7)
    assert model(x).shape == (3, 7) and model.get_classifier().out_features == 7
    with pytest.raises(ValueError, match=r"\(5, 5\) feature map"):
        model(torch.randn(1, 1, 32, 32))
    model.reset_classifier(0)  # timm's contract: the pooled features (the flattening head is tied to the classes)
    torch.testing.assert_close(model(x), model.forward_features(x).mean((2, 3)), rtol=0, atol=0)
    with pytest.raises(ValueError, match="head_type"):
        SmallConvKAN(head_type="transformer")
    with pytest.raises(ValueError, match="img_size=8"):
        SmallConvKAN(img_size=8)
    # a different input size is a constructor argument (the head flattens)
    assert timm.create_model("kan_kkan_small", img_size=32)(torch.randn(2, 1, 32, 32)).shape == (2, 10)


def test_kkan_mnist_grids_follow_the_official_code():
    model = timm.create_model("kan_kkan_mnist")
    lo, hi = (float(v) for v in model.fc.basis.grid_range)
    assert (lo, hi) == (0.0, 1.0) and model.fc.basis.grid_size == 10
    conv = model.features[0].conv
    assert tuple(float(v) for v in conv.basis.grid_range) == (-1.0, 1.0) and conv.basis.grid_size == 5


# -- torch-conv-kan's KACN / KAGN stacks --------------------------------------------------------------------------


def _simple_stack_count(widths, in_chans, groups_after_first, m, num_classes):
    convs = in_chans * widths[0] * 9 * m
    convs += sum(a * b // groups_after_first * 9 * m for a, b in zip(widths[:-1], widths[1:], strict=True))
    return convs + 2 * sum(widths) + widths[-1] * num_classes + num_classes


@pytest.mark.parametrize(
    "name,published,basis_functions_plus_base",
    [
        ("kan_kacn_simple4", 394_058, 4),  # reports/mnist_cifar_baseline.md, CIFAR-10, BatchNorm
        ("kan_kacn_simple8", 18_092_202, 4),
        ("kan_kagn_simple8", 22_613_114, 5),  # the KAGN basis: + 4 learnable recurrence scales per layer
    ],
)
def test_torch_conv_kan_stacks_match_published_counts(name, published, basis_functions_plus_base):
    with torch.device("meta"):
        model = timm.create_model(name)
    widths = [mod.out_channels for mod in model.modules() if isinstance(mod, KANConv2d)]
    groups = 4 if name == "kan_kacn_simple4" else 1
    expected = _simple_stack_count(widths, 3, groups, basis_functions_plus_base, 10)
    if name == "kan_kagn_simple8":
        expected += 4 * len(widths)  # beta_weights of each layer's KAGN basis (degree + 1)
    assert _count(model) == expected == published


def test_kan_cnn_tiny_keeps_its_architecture():
    model = timm.create_model("kan_cnn_tiny", in_chans=1, num_classes=10)
    convs = [mod for mod in model.modules() if isinstance(mod, KANConv2d)]
    assert [(c.in_channels, c.out_channels, c.stride) for c in convs] == [
        (1, 16, (1, 1)),
        (16, 32, (2, 2)),
        (32, 64, (2, 2)),
    ]
    assert _count(model) == _simple_stack_count([16, 32, 64], 1, 1, 5, 10)
    assert not any(isinstance(mod, torch.nn.SiLU) for mod in model.modules())


@pytest.mark.parametrize("basis", list_bases())
def test_every_basis_builds_the_bodner_family(basis):
    model = timm.create_model("kan_kanc_mlp_small", basis=basis)
    convs = [mod for mod in model.modules() if isinstance(mod, KANConv2d)]
    assert all(c.basis.registry_name == basis for c in convs)
    m = convs[0].num_terms
    learnable_basis = sum(p.numel() for c in convs for p in c.basis.parameters())  # kagn: its recurrence scales
    assert _count(model) == (1 * 5 + 5 * 5) * 9 * (m + 1) + 125 * 10 + 10 + learnable_basis
    out = model(torch.randn(2, 1, 28, 28) * 0.5)
    out.sum().backward()
    assert torch.isfinite(out).all()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_float64_matches_float32():
    model = timm.create_model("kan_kkan_small")
    x = torch.rand(2, 1, 28, 28)
    y32 = model(x)
    y64 = model.double()(x.double())
    torch.testing.assert_close(y32.double(), y64, rtol=1e-4, atol=1e-4)
    assert math.isfinite(y64.abs().sum().item())


@pytest.mark.parametrize(
    "name,x_shape,expected",
    [
        ("kan_cnn_tiny", (1, 1, 8, 8), [(16, 8), (32, 4), (64, 2)]),
        ("kan_kacn_simple4", (1, 3, 16, 16), [(32, 16), (64, 8), (128, 4), (256, 4)]),
        ("kan_kkan_small", (1, 1, 28, 28), [(5, 13), (5, 5)]),
        ("kan_kanc_mlp_mnist", (1, 1, 28, 28), [(5, 13), (25, 5)]),  # channel-shared: 1 * 5, then 5 * 5 channels
    ],
)
def test_features_only(name, x_shape, expected):
    model = timm.create_model(name, features_only=True)
    feats = model(torch.randn(*x_shape))
    assert [(f.shape[1], f.shape[-1]) for f in feats] == expected
    assert model.feature_info.channels() == [c for c, _ in expected]


def test_flattening_mnist_models_declare_a_fixed_input_size():
    import timm

    model = timm.create_model("kan_kkan_mnist")
    assert model.pretrained_cfg["fixed_input_size"] is True
    square = timm.create_model("kan_kkan_mnist", img_size=(32, 32))  # what timm passes for fixed-size models
    assert square(torch.randn(1, 1, 32, 32)).shape == (1, 10)


@pytest.mark.parametrize("name", ["kan_kkan_mnist", "kan_kanc_mlp_mnist", "kan_kkan_small", "kan_kanc_mlp_big"])
def test_mnist_models_check_the_channel_count_at_the_first_layer(name):
    model = timm.create_model(name)
    assert model.in_chans == 1
    with pytest.raises(ValueError, match=r"in_chans=1 .* got shape \(2, 3, 28, 28\); build it with in_chans=3"):
        model(torch.randn(2, 3, 28, 28))
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def _torch_conv_kan_kagn_reference(x, poly_weights, base_weight, beta_weights, degree, padding, bn):
    """torch-conv-kan's KAGN layer (kan_convs/kagn_conv.py) written out in float64: base = conv(silu(x)), Gram values
    p_0 = 1, p_1 = t, p_i = t p_{i-1} - beta(i-1, i) p_{i-2} of t = tanh x, beta(n, m) = w_n (m+n)(m-n) n^2 /
    (m^2 / (4n^2 - 1)), stacked degree-major, SiLU on them, conv of the zero-padded values, silu(BN(poly + base))."""
    base = F.conv2d(F.silu(x), base_weight, padding=padding)
    t = torch.tanh(x)
    grams = [torch.ones_like(t), t]
    for i in range(2, degree + 1):
        n, m = i - 1, i
        beta = ((m + n) * (m - n) * n**2) / (m**2 / (4.0 * n**2 - 1.0)) * beta_weights[n]
        grams.append(t * grams[-1] - beta * grams[-2])
    values = F.silu(torch.cat(grams[: degree + 1], dim=1))
    y = F.conv2d(values, poly_weights[0], padding=padding)
    return F.silu(bn(y + base))


def test_kagn_layer_equals_torch_conv_kan_formula_in_float64():
    from kanvision.models.kan_cnn import kagn_conv_weight_from_torch_conv_kan

    torch.manual_seed(0)
    degree, c_in, c_out = 3, 5, 7
    poly = torch.randn(1, c_out, c_in * (degree + 1), 3, 3, dtype=torch.float64) * 0.2
    base = torch.randn(c_out, c_in, 3, 3, dtype=torch.float64) * 0.2
    beta = torch.randn(degree + 1, dtype=torch.float64) * 0.3
    conv = KANConv2d(
        c_in, c_out, 3, padding=1, bias=False, basis="kagn", basis_kwargs=dict(degree=degree), border="zero",
        dtype=torch.float64,
    )  # fmt: skip
    bn = torch.nn.BatchNorm2d(c_out, dtype=torch.float64).eval()
    with torch.no_grad():
        conv.weight.copy_(kagn_conv_weight_from_torch_conv_kan(poly, base, degree))
        conv.basis.beta_weights.copy_(beta)
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, c_in, 8, 9, dtype=torch.float64) * 1.5
    ours = F.silu(bn(conv(x)))
    torch.testing.assert_close(ours, _torch_conv_kan_kagn_reference(x, poly, base, beta, degree, 1, bn))
    # the same layer inside kan_kagn_simple8's blocks: KANConv2d (kagn, zero border) -> BN -> SiLU
    model = timm.create_model("kan_kagn_simple8", num_classes=10)
    first = [m for m in model.modules() if isinstance(m, KANConv2d)][0]
    assert first.border == "zero" and first.basis.registry_name == "kagn" and first.basis.activation == "silu"
    beta.requires_grad_(True)
    gradcheck_x = x[:1, :, :4, :4].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: conv(v), (gradcheck_x,))


def test_bspline_grid_options_are_refused_for_other_bases():
    from kanvision.models.kan_cnn import SmallConvKAN

    with pytest.raises(ValueError, match=r"\['grid_size'\] apply to basis='bspline' only, got basis='chebyshev'"):
        SmallConvKAN(basis="chebyshev", grid_size=10)
    with pytest.raises(ValueError, match="head_grid_range"):
        SmallConvKAN(basis="rbf", head_grid_range=(0.0, 2.0))
    # a preset's B-spline grid goes with its B-splines when the basis is overridden
    cheb = timm.create_model("kan_kkan_small", basis="chebyshev", basis_kwargs=dict(degree=4))
    assert {m.basis.registry_name for m in cheb.modules() if hasattr(m, "basis")} == {"chebyshev"}
    assert timm.create_model("kan_kkan_small").fc.basis.grid_size == 10
    with pytest.raises(ValueError, match="apply to basis='bspline' only"):
        timm.create_model("kan_kkan_small", basis="chebyshev", grid_size=10)  # given by the user: refused


@pytest.mark.parametrize(("norm_layer", "affine", "kind"), [
    ("batchnorm", True, torch.nn.BatchNorm2d), ("instancenorm", True, torch.nn.InstanceNorm2d),
    ("instancenorm", False, torch.nn.InstanceNorm2d), (None, True, None),
])  # fmt: skip
def test_kan_conv_net_norm_layer_choice(norm_layer, affine, kind):
    model = KANConvNet(widths=(4, 8), num_classes=3, norm_layer=norm_layer, norm_affine=affine)
    norms = [m for m in model.modules() if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.InstanceNorm2d))]
    assert [type(m) for m in norms] == ([kind] * 2 if kind else [])
    assert all(m.affine == affine for m in norms)
    plain = sum(p.numel() for p in KANConvNet(widths=(4, 8), num_classes=3, norm_layer=None).parameters())
    assert sum(p.numel() for p in model.parameters()) - plain == (2 * (4 + 8) if kind and affine else 0)
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 3)
