"""SharedKANConv2d (Bodner's channel-shared kernels, RKAN's shared kernel) against a naive per-pixel reference written
here, gradcheck, bf16 autocast, torch.compile, the former RKAN checkpoint layout and argument validation."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from kanvision.layers import InputScaledBasis, SharedKANConv2d, create_basis, list_bases
from kanvision.models import kan_cnn, rkan
from tests.layers.test_bases import cox_de_boor

# (name, layer kwargs): RKAN's forms, Bodner's kernels, and the remaining options (no base branch, zero border)
CONFIGS = {
    "rkan_newest": dict(),
    "rkan_first_release": dict(kernel_size=5, stride=2, base_activation="silu", scale_by_input=True),
    "bodner": dict(
        padding=0, basis="bspline", basis_kwargs=dict(grid_size=4, spline_order=2), base_activation="silu", kernels=2
    ),
    "fourier_function_border": dict(basis="fourier", basis_kwargs=dict(num_frequencies=2), kernels=3, init="uniform"),
    "no_base_zero_border": dict(
        basis_kwargs=dict(degree=2), base_activation=None, kernels=2, spline_scaler=False, border="zero", stride=2
    ),
}


def naive_basis(layer: SharedKANConv2d, v: torch.Tensor) -> torch.Tensor:
    """(P,) values -> (P, n) basis values B_d(v) by closed forms / Cox-de Boor, times v with scale_by_input."""
    basis = layer.basis.basis if layer.scale_by_input else layer.basis
    name = basis.registry_name
    if name == "chebyshev":
        values = torch.stack([torch.cos(d * torch.acos(torch.tanh(v))) for d in range(basis.degree + 1)], -1)
    elif name == "fourier":
        k = torch.arange(1, basis.num_frequencies + 1, dtype=v.dtype)
        values = torch.cat([torch.cos(v[:, None] * k), torch.sin(v[:, None] * k)], -1)
    elif name == "bspline":
        lo, hi = (float(b) for b in basis.grid_range)
        grid, order = basis.grid_size, basis.spline_order
        h = (hi - lo) / grid
        knots = [lo + (j - order) * h for j in range(grid + 2 * order + 1)]
        rows = [[cox_de_boor(x, knots, j, order) for j in range(grid + order)] for x in v.tolist()]
        values = torch.tensor(rows, dtype=v.dtype)
    else:
        raise AssertionError(f"no naive form for {name}")
    return values * v[:, None] if layer.scale_by_input else values


BASE_FUNCTIONS = {"identity": lambda t: t, "silu": lambda t: t / (1 + torch.exp(-t)), None: None}


def naive_shared_conv(layer: SharedKANConv2d, x: torch.Tensor, base_activation: str | None) -> torch.Tensor:
    """Every channel's zero-padded k*k windows; output channel c * kernels + j at pixel l is
    sum_p w_jp b(v_p) + s_jp sum_d c_jpd B_d(v_p) (a padded pixel adds phi(0), or 0 with border='zero')."""
    n, c, h, w = x.shape
    k, s, p, kernels = layer.kernel_size, layer.stride, layer.padding, layer.kernels
    patches = F.unfold(x.reshape(n * c, 1, h, w), k, padding=p, stride=s)  # (N*C, k*k, L)
    real = F.unfold(torch.ones(1, 1, h, w, dtype=x.dtype), k, padding=p, stride=s)  # 1 on pixels, 0 on padding
    values = patches.reshape(-1)
    basis = naive_basis(layer, values).reshape(*patches.shape, -1)  # (N*C, k*k, L, n)
    coefficients = layer.coefficients.detach().reshape(-1, kernels, k * k)  # (n, kernels, k*k)
    scale = layer.scale.detach().reshape(kernels, k * k) if layer.scale is not None else torch.ones(kernels, k * k)
    phi = torch.einsum("bpln,njp,jp->bjpl", basis, coefficients, scale.to(x.dtype))  # (N*C, kernels, k*k, L)
    base = BASE_FUNCTIONS[base_activation]
    assert (base is None) == (layer.base_weight is None)
    if base is not None:
        phi = phi + layer.base_weight.detach().reshape(1, kernels, k * k, 1) * base(patches)[:, None]
    if layer.conv.border == "zero":
        phi = phi * real[:, None]
    h_out, w_out = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    return phi.sum(2).reshape(n, c * kernels, h_out, w_out)


def _randomised(layer: SharedKANConv2d) -> SharedKANConv2d:
    """Non-trivial scales and coefficients, written through the layer's views of its weight."""
    with torch.no_grad():
        layer.coefficients.normal_()
        if layer.scale is not None:
            layer.scale.uniform_(0.5, 1.5)
    return layer


@pytest.mark.parametrize("name", CONFIGS)
def test_matches_naive_per_pixel_reference(name):
    layer = _randomised(SharedKANConv2d(**CONFIGS[name]).double())
    x = torch.randn(2, 3, 9, 8, dtype=torch.float64) * 1.2
    y = layer(x)
    assert y.shape[1] == 3 * layer.kernels
    expected = naive_shared_conv(layer, x, CONFIGS[name].get("base_activation", "identity"))
    torch.testing.assert_close(y, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", CONFIGS)
def test_gradcheck_input_and_parameters(name):
    layer = _randomised(SharedKANConv2d(**dict(CONFIGS[name], kernel_size=3)).double())
    names = [n for n, _ in layer.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in layer.parameters()]
    x = torch.randn(1, 2, 5, 4, dtype=torch.float64, requires_grad=True)

    def run(x, *params):
        return functional_call(layer, dict(zip(names, params, strict=True)), (x,))

    assert torch.autograd.gradcheck(run, (x, *params))


@pytest.mark.parametrize("name", list_bases())
def test_input_scaled_basis_fused_values_and_gradient_match_its_reference(name):
    basis = InputScaledBasis(create_basis(name)).double()
    x = torch.randn(2, 3, 4, dtype=torch.float64) * 1.5
    grads = []
    for path in (basis, basis.reference):
        xi = x.clone().requires_grad_()
        y = path(xi, 1, F.silu)
        (y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)).sum().backward()
        grads.append((y.detach(), xi.grad))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-10, atol=1e-10)
    assert grads[0][0].shape == (2, basis.num_functions + 1, 3, 4)


@pytest.mark.parametrize("name", ["rkan_newest", "bodner"])
def test_bf16_autocast_close_to_float32(name):
    layer = SharedKANConv2d(**CONFIGS[name])
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
    assert y.dtype == torch.bfloat16
    y.float().square().sum().backward()
    assert torch.isfinite(x.grad).all()
    ref = layer(x)
    assert (y.float() - ref).norm() / ref.norm() < 0.02


@pytest.mark.slow
@pytest.mark.parametrize("name", ["rkan_newest", "rkan_first_release", "bodner"])
def test_torch_compile_fullgraph_matches_eager(name):
    layer = _randomised(SharedKANConv2d(**CONFIGS[name]))
    compiled = torch.compile(layer, fullgraph=True)
    x = torch.randn(2, 3, 9, 9, requires_grad=True)
    y, y_ref = compiled(x), layer(x)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    grad = torch.randn_like(y)
    params = list(layer.parameters())
    got = torch.autograd.grad(y, (x, *params), grad)
    expected = torch.autograd.grad(y_ref, (x, *params), grad)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "kwargs,count",
    [
        (dict(basis_kwargs=dict(degree=3)), 54),  # RKAN: k^2 (n + base + scale)
        (dict(basis_kwargs=dict(degree=2)), 45),
        (dict(padding=0, basis="bspline", base_activation="silu", kernels=5, init="uniform"), 450),  # Bodner: 5 x 90
        (dict(base_activation=None, spline_scaler=False, kernels=2), 2 * 9 * 4),
    ],
)
def test_parameter_count_does_not_depend_on_channels(kwargs, count):
    layer = SharedKANConv2d(**kwargs)
    assert sum(p.numel() for p in layer.parameters()) == count
    assert layer(torch.randn(1, 7, 9, 9)).shape[1] == 7 * layer.kernels


def test_rkan_init_and_views_of_the_weight():
    layer = SharedKANConv2d(3, basis_kwargs=dict(degree=3), kernels=2)
    weight = layer.conv.parametrizations.weight.original  # (kernels, 1 + n, k, k), base branch first
    assert layer.coefficients.shape == (4, 2, 3, 3) and layer.base_weight.shape == layer.scale.shape == (2, 3, 3)
    assert layer.coefficients.data_ptr() == weight[:, 1:].data_ptr() and torch.equal(layer.scale, torch.ones(2, 3, 3))
    assert layer.base_weight.abs().max() <= 1 / 3  # U(-1/k, 1/k), as released
    torch.manual_seed(0)
    big = SharedKANConv2d(3, basis_kwargs=dict(degree=3), kernels=4000)
    assert math.isclose(big.coefficients.std().item(), 1 / (9 * 4), rel_tol=0.02)  # N(0, 1 / (k^2 n))


@pytest.mark.parametrize("scale_by_input,basis", [(False, "chebyshev"), (True, "kagn")])
def test_former_rkan_checkpoint_layout_loads(scale_by_input, basis):
    """The former RKAN-only layer stored c (n, k, k), w (k, k), s (k, k) and its basis next to them."""
    kwargs = dict(basis=basis, scale_by_input=scale_by_input)
    if basis == "kagn":
        kwargs["basis_kwargs"] = dict(beta_init_std=0.5)
    source = torch.nn.Sequential(_randomised(SharedKANConv2d(**kwargs)))
    layer = source[0]
    inner = layer.basis.basis if scale_by_input else layer.basis
    former = {
        "0.coefficients": layer.coefficients[:, 0].detach().clone(),
        "0.base_weight": layer.base_weight[0].detach().clone(),
        "0.scale": layer.scale[0].detach().clone(),
        **{f"0.basis.{k}": v for k, v in inner.state_dict().items()},
    }
    target = torch.nn.Sequential(SharedKANConv2d(**dict(kwargs, basis_kwargs=None)))
    target.load_state_dict(former)  # strict
    x = torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(target(x), source(x), rtol=0, atol=0)


def test_backward_compatible_names_are_the_one_layer():
    assert rkan.SharedKANConv2d is SharedKANConv2d
    bodner = kan_cnn.ChannelSharedKANConv2d(5)  # Bodner's argument order and defaults
    assert isinstance(bodner, SharedKANConv2d) and bodner.kernels == 5 and bodner.padding == 0
    assert bodner.basis.registry_name == "bspline" and bodner.init == "uniform" and bodner.scale is not None


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(kernel_size=0), "kernel_size must be an integer >= 1, got 0"),
        (dict(stride=0), "stride must be an integer >= 1, got 0"),
        (dict(padding=-1), "padding must be an integer >= 0, got -1"),
        (dict(kernels=0), "kernels must be an integer >= 1, got 0"),
        (dict(kernels=2.0), "kernels must be an integer >= 1, got 2.0"),
        (dict(scale_by_input="yes"), "scale_by_input must be True or False, got 'yes'"),
        (dict(spline_scaler=1), "spline_scaler must be True or False, got 1"),
        (dict(init="xavier"), r"init must be one of \('normal', 'uniform'\), got 'xavier'"),
        (dict(border="reflect"), "border must be .*, got 'reflect'"),
        (dict(basis="nope"), "unknown basis 'nope'"),
        (dict(basis_kwargs=dict(degre=3)), r"unknown basis_kwargs \['degre'\]"),
        (dict(base_activation="swishy"), "unknown base_activation 'swishy'"),
    ],
)
def test_bad_arguments_name_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SharedKANConv2d(**kwargs)


def test_wrong_input_rank():
    with pytest.raises(ValueError, match=r"4-D \(N, C, H, W\) input, got shape \(3, 8, 8\)"):
        SharedKANConv2d()(torch.randn(3, 8, 8))
