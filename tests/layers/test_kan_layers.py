"""KANLinear / KANConv1d/2d/3d against naive references, gradcheck, additivity, robustness, grid update."""

import copy
import itertools

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from kanvision.layers import KANConv1d, KANConv2d, KANConv3d, KANLinear, create_basis, list_bases
from kanvision.layers.bases import ChebyshevBasis

BASES = list_bases()


def edge_functions(layer, values):
    """phi(v) for every (out, in/groups, kernel position) edge, evaluated naively: (..., O, Cg, K) per value."""
    w = layer.weight.detach().reshape(layer.weight.shape[0], -1, layer.num_terms, layer._kernel_numel)
    feats = layer.basis(values, -1, layer.base_activation)  # (..., m)
    return torch.einsum("...m,ocmk->...ock", feats, w)


def naive_conv2d(layer, x):
    """Unfold the padded input, then sum phi_{o,c,p}(pixel) over (in channel, kernel position) of each window."""
    xp = layer._prepare(x)
    patches = F.unfold(xp, layer.kernel_size, dilation=layer.dilation, stride=layer.stride)  # (B, C*K, L)
    b, _, length = patches.shape
    c, k, g = layer.in_channels, layer._kernel_numel, layer.groups
    patches = patches.view(b, c, k, length)
    og, cg = layer.out_channels // g, c // g
    out = torch.zeros(b, layer.out_channels, length, dtype=x.dtype)
    for o in range(layer.out_channels):
        grp = o // og
        for ci in range(cg):
            vals = patches[:, grp * cg + ci]  # (B, K, L)
            phi = edge_functions(layer, vals)  # (B, K, L, O, Cg, K)
            for p in range(k):
                out[:, o] += phi[:, p, :, o, ci, p]
    if layer.bias is not None:
        out += layer.bias.detach()[None, :, None]
    h_out = (xp.shape[2] - layer.dilation[0] * (layer.kernel_size[0] - 1) - 1) // layer.stride[0] + 1
    return out.view(b, layer.out_channels, h_out, -1)


@pytest.mark.parametrize("name", BASES)
@pytest.mark.parametrize(
    "config",
    [
        dict(kernel_size=3, stride=2, padding=1, dilation=1, groups=1),
        dict(kernel_size=(3, 2), stride=(1, 2), padding=(2, 1), dilation=2, groups=2),
        dict(kernel_size=3, padding="same", groups=2, padding_mode="reflect", bias=False),
    ],
)
def test_conv2d_matches_unfold_reference(name, config):
    layer = KANConv2d(4, 6, basis=name, **config).double()
    x = torch.randn(2, 4, 7, 6, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), naive_conv2d(layer, x), atol=1e-10, rtol=1e-10)


def test_conv1d_and_conv3d_match_naive_sums():
    conv1 = KANConv1d(3, 4, 3, stride=2, padding=1, dilation=1, basis="bspline").double()
    x = torch.randn(2, 3, 9, dtype=torch.float64)
    xp = F.pad(x, (1, 1))
    out = conv1(x)
    for t in range(out.shape[-1]):
        window = xp[:, :, 2 * t : 2 * t + 3]  # (B, C, 3)
        phi = edge_functions(conv1, window)  # (B, C, 3, O, C, K)
        ref = sum(phi[:, c, p, :, c, p] for c in range(3) for p in range(3)) + conv1.bias
        torch.testing.assert_close(out[:, :, t], ref.detach(), atol=1e-10, rtol=1e-10)

    conv3 = KANConv3d(2, 4, (2, 3, 2), stride=(1, 2, 1), padding=(0, 1, 1), groups=2, basis="rbf").double()
    x = torch.randn(1, 2, 3, 5, 4, dtype=torch.float64)
    xp = F.pad(x, (1, 1, 1, 1, 0, 0))
    out = conv3(x)
    for d, h, w in itertools.product(*(range(s) for s in out.shape[2:])):
        window = xp[:, :, d : d + 2, 2 * h : 2 * h + 3, w : w + 2].reshape(1, 2, 12)
        for o in range(4):
            c = o // 2  # one input channel per group
            phi = edge_functions(conv3, window[:, c])  # (1, 12, O, 1, 12)
            ref = phi[0, torch.arange(12), o, 0, torch.arange(12)].sum() + conv3.bias[o]
            torch.testing.assert_close(out[0, o, d, h, w], ref.detach(), atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("name", BASES)
def test_gradcheck_linear_and_conv(name):
    lin = KANLinear(3, 2, basis=name).double()
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, w, b: functional_call(lin, {"weight": w, "bias": b}, (x,)), (x, lin.weight, lin.bias)
    )
    conv = KANConv2d(2, 3, 3, stride=2, padding=1, groups=1, basis=name).double()
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(conv, (x,))
    # through the layer: the weight also enters the zero-padding border term
    assert torch.autograd.gradcheck(
        lambda w, b: functional_call(conv, {"weight": w, "bias": b}, (x.detach(),)), (conv.weight, conv.bias)
    )


@pytest.mark.parametrize("name", BASES)
def test_linear_is_additive(name):
    layer = KANLinear(5, 3, basis=name).double()
    x = torch.randn(8, 5, dtype=torch.float64)
    a, b = 0.7, -1.3
    xa, xb, xab = x.clone(), x.clone(), x.clone()
    xa[:, 1] += a
    xb[:, 3] += b
    xab[:, 1] += a
    xab[:, 3] += b
    with torch.no_grad():
        mixed = layer(xab) - layer(xa) - layer(xb) + layer(x)
        single = layer(xa) - layer(x)
    torch.testing.assert_close(mixed, torch.zeros_like(mixed), atol=1e-12, rtol=0)
    assert single.abs().max() > 1e-3  # the test would not notice a constant layer


@pytest.mark.parametrize("name", BASES)
def test_conv_is_additive_within_a_receptive_field(name):
    layer = KANConv2d(2, 3, 3, padding=1, basis=name).double()
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64)
    xa, xb, xab = x.clone(), x.clone(), x.clone()
    xa[0, 0, 2, 2] += 0.9  # two pixels, different channels, both inside the window centred at (2, 2)
    xb[0, 1, 1, 3] -= 1.1
    xab[0, 0, 2, 2] += 0.9
    xab[0, 1, 1, 3] -= 1.1
    with torch.no_grad():
        mixed = layer(xab) - layer(xa) - layer(xb) + layer(x)
        single = layer(xa) - layer(x)
    torch.testing.assert_close(mixed, torch.zeros_like(mixed), atol=1e-12, rtol=0)
    assert single[0, :, 2, 2].abs().max() > 1e-3


@pytest.mark.parametrize("name", BASES)
@pytest.mark.parametrize("autocast", [False, True])
def test_extreme_inputs_give_finite_outputs_and_gradients(name, autocast):
    values = torch.tensor([1e4, -1e4, 1e-30, -1e-7, 0.0, 3.0, -9.5, 1e4])
    for layer, x in (
        (KANLinear(8, 4, basis=name), values.repeat(3, 1)),
        (KANConv2d(2, 3, 3, padding=1, basis=name), values.view(1, 2, 2, 2).repeat(2, 1, 2, 2)),
    ):
        x = x.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            y = layer(x)
        assert torch.isfinite(y).all()
        y.float().square().sum().backward()
        assert torch.isfinite(x.grad).all() and torch.isfinite(layer.weight.grad).all()


def test_chebyshev_gradient_finite_where_acos_form_is_not():
    x = torch.tensor([9.0, 20.0, -50.0], requires_grad=True)
    ChebyshevBasis(degree=5)(x).sum().backward()
    assert torch.isfinite(x.grad).all()
    x2 = x.detach().clone().requires_grad_(True)
    torch.cos(3 * torch.acos(torch.tanh(x2))).sum().backward()
    assert not torch.isfinite(x2.grad).all()  # the failure mode the recurrence avoids


@pytest.mark.parametrize("name", ["bspline", "rbf", "relu"])
def test_update_grid_keeps_function_and_covers_samples(name):
    torch.manual_seed(1)
    layer = KANLinear(4, 3, basis=name).double()
    with torch.no_grad():  # a wiggly learned function: random coefficients
        layer.weight.normal_()
    x = torch.randn(512, 4, dtype=torch.float64) * 1.5 + 0.3  # mostly outside the initial grid
    before = layer(x).detach()
    layer.update_grid(x)
    after = layer(x).detach()
    change = (after - before).norm() / before.norm()
    assert change < 0.01, f"function changed by {change:.2%}"
    lo, hi = layer.basis.grid_range
    assert lo <= x.min().item() and hi >= x.max().item()
    # the layer still trains with the new (re-allocated) weight
    layer(x).sum().backward()
    assert layer.weight.grad is not None and layer.weight.shape[1] == 4 * layer.num_terms


@pytest.mark.parametrize("name", ["bspline", "rbf", "relu"])
def test_update_grid_keep_size_refits_better_than_moving_the_grid_alone(name):
    torch.manual_seed(2)
    layer = KANLinear(3, 2, basis=name).double()
    x = torch.randn(256, 3, dtype=torch.float64) * 0.8 + 0.5
    before = layer(x).detach()
    shape = layer.weight.shape
    moved = copy.deepcopy(layer)
    lo, hi = x.min().item(), x.max().item()
    moved.basis = moved.basis.resized(lo - 0.01 * (hi - lo), hi + 0.01 * (hi - lo), moved.basis.intervals)
    layer.update_grid(x, keep_size=True)
    assert layer.weight.shape == shape and layer.basis.intervals == moved.basis.intervals
    assert layer.basis.grid_range[0] <= x.min() and layer.basis.grid_range[1] >= x.max()
    refit_change = (layer(x).detach() - before).norm()
    assert refit_change < 0.5 * (moved(x).detach() - before).norm()


def test_update_grid_on_conv_with_groups():
    layer = KANConv2d(4, 6, 3, padding=1, groups=2, basis="bspline").double()
    with torch.no_grad():
        layer.weight.normal_()
    x = torch.randn(4, 4, 8, 8, dtype=torch.float64) * 2
    before = layer(x).detach()
    layer.update_grid(x)
    change = (layer(x).detach() - before).norm() / before.norm()
    assert change < 0.01
    assert layer.basis.grid_range[0] <= x.min() and layer.basis.grid_range[1] >= x.max()


def test_update_grid_rejects_gridless_basis():
    with pytest.raises(ValueError, match="grid basis.*'chebyshev'"):
        KANLinear(2, 2, basis="chebyshev").update_grid(torch.randn(4, 2))


def test_parameter_count_formula():
    lin = KANLinear(10, 7, basis="bspline")  # n = 8, + base
    assert sum(p.numel() for p in lin.parameters()) == 7 * 10 * 9 + 7
    conv = KANConv2d(8, 12, (3, 5), groups=4, bias=False, basis="chebyshev", base_activation=None)  # n = 4
    assert sum(p.numel() for p in conv.parameters()) == 12 * (8 // 4) * 4 * 15


@pytest.mark.parametrize("padding", [0, 1])
def test_one_conv_call_over_the_expansion_per_forward(monkeypatch, padding):
    calls = []
    original = F.conv2d
    monkeypatch.setattr(KANConv2d, "_conv", lambda x, *a, **k: calls.append(x.shape[1]) or original(x, *a, **k))
    layer = KANConv2d(3, 4, 3, padding=padding, groups=1, basis="rbf")
    layer(torch.randn(1, 3, 6, 6))
    # zero padding adds phi(0)'s border share: a convolution of the 1-channel border mask, independent of x
    assert calls == [3 * layer.num_terms] + ([1] if padding else [])


@pytest.mark.parametrize(
    "build,match",
    [
        (lambda: KANConv2d(6, 4, 3, groups=4), "groups=4 must divide both the input channels \\(6\\)"),
        (lambda: KANConv2d(4, 4, 3, basis="cheby"), "unknown basis 'cheby'; valid names are"),
        (lambda: KANLinear(4, 4, basis="chebyshev", basis_kwargs=dict(degree=-1)), "degree must be .* got -1"),
        (lambda: KANConv2d(4, 4, 3, basis="bspline", basis_kwargs=dict(grid_size=0)), "grid_size must .* got 0"),
        (lambda: KANConv2d(4, 4, 0), "kernel_size must be an integer >= 1"),
        (lambda: KANConv2d(4, 4, 3, padding="full"), "padding must be 'same', 'valid'"),
        (lambda: KANConv2d(4, 4, 3, padding="same", stride=2), "padding='same' needs stride 1"),
        (lambda: KANConv2d(4, 4, 3, padding_mode="mirror"), "padding_mode must be one of"),
        (lambda: KANLinear(4, 4, base_activation="swishy"), "unknown base_activation 'swishy'"),
        (lambda: KANLinear(4, 4, drop_rate=1.0), "drop_rate must be a number in \\[0, 1\\), got 1.0"),
        (lambda: KANLinear(4, 4, bias="no"), "bias must be True or False, got 'no'"),
        (lambda: KANConv2d(4, 4, 3, recompute_basis="yes"), "recompute_basis must be True or False, got 'yes'"),
        (lambda: KANLinear(0, 4), "in_features must be an integer >= 1, got 0"),
        (lambda: KANLinear(4, 4, basis="kagn", basis_kwargs=dict(beta_init_std=float("inf"))), "finite number >= 0"),
    ],
)
def test_bad_arguments(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_wrong_input_rank_or_width():
    conv = KANConv2d(3, 4, 3)
    with pytest.raises(ValueError, match=r"expects a 4-D \(N, 3, ...\) or 3-D .* got shape \(2, 3, 8\)"):
        conv(torch.randn(2, 3, 8))
    with pytest.raises(ValueError, match=r"expects input of shape \(\.\.\., 5\), got \(2, 4\)"):
        KANLinear(5, 2)(torch.randn(2, 4))
    unbatched = torch.randn(3, 6, 6)
    torch.testing.assert_close(conv(unbatched), conv(unbatched[None])[0])


def test_basis_instance_is_copied_per_layer():
    basis = ChebyshevBasis(degree=2)
    a, b = KANLinear(2, 2, basis=basis), KANLinear(2, 2, basis=basis)
    assert a.basis is not b.basis and a.num_terms == 4
    with pytest.raises(ValueError, match="together with a basis instance"):
        KANLinear(2, 2, basis=basis, basis_kwargs=dict(degree=3))


def test_dropkan_drops_whole_inputs_and_keeps_expectation():
    torch.manual_seed(0)
    p = 0.5
    layer = KANLinear(4, 3, basis="chebyshev", drop_rate=p).double()
    x = torch.randn(1, 4, dtype=torch.float64)
    w = layer.weight.detach().view(3, 4, layer.num_terms)
    feats = layer.basis(x, -1, layer.base_activation)[0]  # (4, m)
    contributions = torch.einsum("oim,im->io", w, feats)  # phi_oi(x_i), (I, O)
    allowed = [
        layer.bias + contributions[list(keep)].sum(0) / (1 - p)
        for r in range(5)
        for keep in itertools.combinations(range(4), r)
    ]
    layer.train()
    samples = torch.stack([layer(x)[0].detach() for _ in range(4000)])
    for y in samples[:50]:  # every output is bias + (kept inputs' functions) / (1 - p) for some input subset
        assert min((y - a.detach()).abs().max() for a in allowed) < 1e-12
    layer.eval()
    expected = layer(x)[0].detach()
    assert (samples.mean(0) - expected).abs().max() < 5 * samples.std(0).max() / 4000**0.5
    torch.testing.assert_close(layer(x), layer(x))  # eval is deterministic


@pytest.mark.parametrize("cls", [KANLinear, KANConv2d])
def test_recompute_basis_matches_default(cls):
    args = (3, 4) if cls is KANLinear else (3, 4, 3)
    torch.manual_seed(0)
    ref = cls(*args, basis="bspline").double()
    torch.manual_seed(0)
    low_mem = cls(*args, basis="bspline", recompute_basis=True).double()
    x = torch.randn(2, 3, dtype=torch.float64) if cls is KANLinear else torch.randn(2, 3, 6, 6, dtype=torch.float64)
    grads = []
    for layer in (ref, low_mem):
        xi = x.clone().requires_grad_(True)
        layer(xi).square().sum().backward()
        grads.append((xi.grad, layer.weight.grad))
    torch.testing.assert_close(grads[0], grads[1])


@pytest.mark.parametrize("name", BASES)
def test_bf16_autocast_close_to_float32(name):
    layer = KANConv2d(4, 8, 3, padding=1, basis=name)
    x = torch.randn(2, 4, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
    assert y.dtype == torch.bfloat16
    ref = layer(x)
    assert (y.float() - ref).norm() / ref.norm() < 0.02


@pytest.mark.slow
@pytest.mark.parametrize("name", list_bases())
def test_torch_compile_matches_eager(name):
    # under torch.compile some bases switch to a formulation inductor fuses (B-spline: dense selects)
    torch.compiler.reset()  # each layer here is a recompile of the same forward: stay under dynamo's limit
    torch.manual_seed(0)
    layer = KANConv2d(4, 8, 3, padding=1, basis=name)
    compiled = torch.compile(layer, fullgraph=True)  # no graph break: compiled code runs the reference ops
    x = (torch.randn(2, 4, 8, 8) * 2).requires_grad_()
    y, y_ref = compiled(x), layer(x)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    grad = torch.randn_like(y)
    got = torch.autograd.grad(y, (x, layer.weight), grad)
    expected = torch.autograd.grad(y_ref, (x, layer.weight), grad)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("layer_kwargs", [dict(padding=1), dict(padding=0, base_activation=None, bias=False)])
def test_a_compiled_conv_takes_a_second_image_size(layer_kwargs):
    """A second image size makes dynamo recompile with dynamic sizes, which inductor once failed to compile."""
    torch.compiler.reset()
    torch.manual_seed(0)
    layer = KANConv2d(4, 8, 3, basis="chebyshev", **layer_kwargs)
    compiled = torch.compile(layer)
    for shape in [(2, 4, 8, 8), (3, 4, 10, 10), (1, 4, 7, 9)]:
        x = torch.randn(*shape, requires_grad=True)
        y, y_ref = compiled(x), layer(x)
        torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
        got = torch.autograd.grad(y.sum(), (x, layer.weight))
        expected = torch.autograd.grad(y_ref.sum(), (x, layer.weight))
        for g, e in zip(got, expected, strict=True):
            torch.testing.assert_close(g, e, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_compiled_model_with_layers_on_different_grids_matches_eager():
    # different Python-float grids per layer make dynamo treat them as symbolic: the compiled path must cope
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        KANConv2d(2, 3, 3, padding=1, basis="bspline", basis_kwargs=dict(grid_range=(-2.0, 1.5))),
        KANConv2d(3, 3, 3, padding=1, basis="bspline", basis_kwargs=dict(grid_range=(-1.0, 3.0))),
        KANConv2d(3, 2, 3, padding=1, basis="rbf", basis_kwargs=dict(grid_range=(-3.0, 1.0))),
        KANConv2d(2, 2, 3, padding=1, basis="rbf"),
    )
    x = torch.randn(2, 2, 6, 6)
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True)
    torch.testing.assert_close(compiled(x), model(x), atol=1e-5, rtol=1e-5)
    model[0].update_grid(x * 3)  # a new grid: recompiles
    torch.testing.assert_close(compiled(x * 3), model(x * 3), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "config",
    [
        dict(kernel_size=4, padding="same", dilation=(2, 3)),
        dict(kernel_size=3, padding=2, padding_mode="circular", stride=2),
        dict(kernel_size=(3, 2), padding=(1, 2), padding_mode="reflect", groups=2),
        dict(kernel_size=3, padding=1, padding_mode="replicate", dilation=2),
        dict(kernel_size=3, padding="valid"),
    ],
)
def test_identity_base_branch_reduces_to_nn_conv2d(config):
    """With b(x) = x and zero basis coefficients a KAN conv is an ordinary conv: padding semantics vs torch."""
    kan = KANConv2d(4, 6, basis="rbf", base_activation="identity", **config).double()
    conv = torch.nn.Conv2d(4, 6, **config).double()
    with torch.no_grad():
        w = kan.weight.view(6, 4 // kan.groups, kan.num_terms, *kan.kernel_size)
        w.zero_()
        w[:, :, 0] = conv.weight
        kan.bias.copy_(conv.bias)
    x = torch.randn(2, 4, 9, 8, dtype=torch.float64)
    torch.testing.assert_close(kan(x), conv(x), atol=1e-12, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dtype_casts_keep_the_grid_exact(dtype):
    ref = KANLinear(2, 3, basis="rbf")
    cast = copy.deepcopy(ref).to(dtype)
    assert cast.basis.grid.dtype == torch.float64 and cast.basis.grid_range == ref.basis.grid_range
    x = torch.linspace(-2, 2, 50).unsqueeze(1).expand(-1, 2)
    expected = ref.basis(x.double())
    torch.testing.assert_close(
        cast.basis(x.to(dtype)).double(), expected, atol=1e-2 if dtype != torch.float32 else 1e-6, rtol=0
    )


@pytest.mark.parametrize("name", ["bspline", "rbf", "relu"])
def test_update_grid_in_float32_and_when_samples_shrink(name):
    torch.manual_seed(3)
    layer = KANLinear(3, 4, basis=name)
    with torch.no_grad():
        layer.weight.normal_()
    for x in (torch.randn(256, 3) * 0.1 + 0.1, torch.randn(256, 3) * 2.0):  # inside the grid, then beyond it
        before = layer(x).detach()
        change = layer.update_grid(x)
        assert change < 1e-9
        assert ((layer(x).detach() - before).norm() / before.norm()) < 1e-5


def test_update_grid_checkpoint_loads_into_a_fresh_layer():
    layer = KANConv2d(2, 3, 3, padding=1, basis="bspline")
    x = torch.randn(2, 2, 6, 6) * 3
    layer.update_grid(x)
    fresh = KANConv2d(2, 3, 3, padding=1, basis="bspline")
    fresh.load_state_dict(layer.state_dict())
    assert fresh.basis.grid_range == layer.basis.grid_range and fresh.weight.shape == layer.weight.shape
    torch.testing.assert_close(fresh(x), layer(x))


@pytest.mark.parametrize("keep_size", [False, True])
@pytest.mark.parametrize("layer_type", ["linear", "conv"])
def test_update_grid_on_a_spline_scaled_layer_matches_the_plain_layer_of_its_weight(layer_type, keep_size):
    """A spline scaler multiplies each edge's basis coefficients by one factor, so a grid update of the scaled layer
    must compute what the same update computes on a plain layer holding the scaled weight."""
    from torch.nn.utils import parametrize

    from kanvision.layers import add_spline_scaler

    def make():
        if layer_type == "linear":
            return KANLinear(3, 2, basis="bspline", base_activation="silu", dtype=torch.float64)
        return KANConv2d(2, 3, 3, padding=1, basis="rbf", base_activation="silu", dtype=torch.float64)

    torch.manual_seed(0)
    scaled = add_spline_scaler(make())
    with torch.no_grad():
        scaled.parametrizations.weight[0].scale.uniform_(0.5, 2.0)
    plain = make()
    plain.load_state_dict({**dict(scaled.named_buffers()), "weight": scaled.weight.detach(), "bias": scaled.bias})
    x = torch.randn(8, 3) * 3 if layer_type == "linear" else torch.randn(2, 2, 6, 6, dtype=torch.float64) * 3
    x = x.double()
    before = scaled(x).detach()
    scale = scaled.parametrizations.weight[0].scale.detach().clone()

    change = scaled.update_grid(x, keep_size=keep_size)

    assert change == pytest.approx(plain.update_grid(x, keep_size=keep_size), rel=1e-9, abs=1e-12)
    assert scaled.basis.grid_range == plain.basis.grid_range
    assert parametrize.is_parametrized(scaled, "weight") and scaled.weight.shape == plain.weight.shape
    torch.testing.assert_close(scaled.parametrizations.weight[0].scale, scale, rtol=0, atol=0)  # the scales stay
    torch.testing.assert_close(scaled(x), plain(x), rtol=1e-12, atol=1e-12)
    if not keep_size:  # the grid only grew: the function is unchanged
        assert scaled.basis.num_functions > 8
        torch.testing.assert_close(scaled(x), before, rtol=1e-12, atol=1e-12)
    fresh = add_spline_scaler(make())  # a checkpoint written after the update loads into a fresh scaled layer
    fresh.load_state_dict(scaled.state_dict())
    torch.testing.assert_close(fresh(x), scaled(x), rtol=0, atol=0)


def test_update_grid_refuses_a_parametrisation_it_cannot_carry_over_and_changes_nothing():
    from torch.nn.utils import parametrize

    class Doubled(torch.nn.Module):
        def forward(self, weight):
            return 2 * weight

    layer = KANLinear(2, 2, basis="bspline")
    parametrize.register_parametrization(layer, "weight", Doubled())
    weight, grid = layer.weight.detach().clone(), layer.basis.grid_range
    with pytest.raises(ValueError, match=r"cannot carry the weight's parametrisations \['Doubled'\]"):
        layer.update_grid(torch.randn(4, 2) * 3)
    assert layer.basis.grid_range == grid
    torch.testing.assert_close(layer.weight, weight, rtol=0, atol=0)


def test_update_grid_bounds_growth_and_validates_input():
    layer = KANLinear(2, 2, basis="bspline")
    with pytest.raises(ValueError, match="would need 503 grid intervals .* max_intervals=256"):
        layer.update_grid(torch.tensor([[0.0, 200.0]]))
    with pytest.raises(ValueError, match=r"expects input of shape \(\.\.\., 2\), got \(4, 3\)"):
        layer.update_grid(torch.randn(4, 3))
    with pytest.raises(ValueError, match="1 non-finite values"):
        layer.update_grid(torch.tensor([[0.0, float("nan")]]))
    conv = KANConv2d(3, 2, 3, basis="relu")
    conv.update_grid(torch.rand(3, 5, 5) * 3)  # unbatched (C, H, W) input is accepted like in forward
    assert conv.basis.grid_range[1] >= 2.9


def test_update_grid_keep_size_with_constant_samples_keeps_a_usable_width():
    layer = KANLinear(2, 2, basis="bspline")
    layer.update_grid(torch.full((8, 2), 0.5), keep_size=True)
    lo, hi = layer.basis.grid_range
    assert lo < 0.5 < hi and hi - lo >= 2.0


def test_basis_kwargs_typo_and_bad_drop_rate_are_value_errors():
    with pytest.raises(
        ValueError, match=r"unknown basis_kwargs \['degre'\] for basis 'chebyshev'; valid: \['degree'\]"
    ):
        KANLinear(2, 2, basis="chebyshev", basis_kwargs=dict(degre=3))
    with pytest.raises(ValueError, match="drop_rate must be a number in \\[0, 1\\), got '0.1'"):
        KANLinear(2, 2, drop_rate="0.1")


@pytest.mark.parametrize("mode", ["reflect", "circular"])
def test_dropkan_padded_copies_share_the_draw_of_their_pixel(mode):
    torch.manual_seed(0)
    layer = KANConv2d(1, 2, 3, padding=1, padding_mode=mode, basis="rbf", drop_rate=0.5, bias=False).double()
    x = torch.randn(1, 1, 5, 5, dtype=torch.float64)
    torch.manual_seed(7)
    y = layer.train()(x)
    torch.manual_seed(7)
    keep = F.pad(torch.rand_like(x).ge(0.5).double() / 0.5, (1, 1, 1, 1), mode=mode)
    with torch.no_grad():
        feats = layer.basis(F.pad(x, (1, 1, 1, 1), mode=mode), 2, layer.base_activation) * keep.unsqueeze(2)
        expected = F.conv2d(feats.flatten(1, 2), layer.weight)
    torch.testing.assert_close(y, expected)


def test_layers_pickle_with_every_named_activation(tmp_path):
    for act in ("silu", "gelu", "relu", "tanh", "identity", None):
        layer = KANConv2d(2, 2, 3, base_activation=act)
        torch.save(layer, tmp_path / "layer.pt")
        loaded = torch.load(tmp_path / "layer.pt", weights_only=False)
        x = torch.randn(1, 2, 5, 5)
        torch.testing.assert_close(loaded(x), layer(x))


def test_dropkan_on_conv_masks_pixels_for_all_outputs_and_positions():
    torch.manual_seed(0)
    layer = KANConv2d(1, 2, 3, padding=1, basis="chebyshev", drop_rate=0.5, bias=False).double().train()
    x = torch.randn(1, 1, 5, 5, dtype=torch.float64)
    torch.manual_seed(7)
    y = layer(x)
    torch.manual_seed(7)
    keep = torch.rand_like(x).ge(0.5).double() / 0.5  # the mask the layer drew, over the input pixels
    # padding pixels are not inputs: they are never dropped and always contribute phi(0)
    keep = F.pad(keep, (1, 1, 1, 1), value=1.0)
    reference = layer.eval()
    with torch.no_grad():
        padded = F.pad(x, (1, 1, 1, 1))
        feats = reference.basis(padded, 2, reference.base_activation) * keep.unsqueeze(2)
        expected = F.conv2d(feats.flatten(1, 2), reference.weight)
    torch.testing.assert_close(y, expected)


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: KANConv2d(4, 6, 3.0), TypeError, r"kernel_size must be an integer >= 1 .* got 3\.0"),
        (lambda: KANConv2d(4, 6, "3"), TypeError, r"kernel_size must be an integer"),
        (lambda: KANConv2d(4, 6, (3, 3.5)), TypeError, r"kernel_size .* got \(3, 3\.5\)"),
        (lambda: KANConv2d(4, 6, 3, stride=0), ValueError, r"stride must be an integer >= 1"),
        (
            lambda: KANLinear(4, 6, basis="bspline", basis_kwargs=dict(grid_range=(0, 1, 2))),
            ValueError,
            r"grid_range must be two",
        ),
        (
            lambda: KANLinear(4, 6, basis="bspline", basis_kwargs=dict(grid_range="ab")),
            ValueError,
            r"grid_range must be two .*'ab'",
        ),
        (lambda: KANLinear(4, 6, basis="bspline", basis_kwargs=dict(grid_range=(1, 0))), ValueError, r"low < high"),
        (
            lambda: KANLinear(4, 6, basis="rbf", basis_kwargs=dict(bandwidth="1")),
            ValueError,
            r"bandwidth must be a positive finite number or None, got '1'",
        ),
    ],
)
def test_wrong_argument_types_name_the_parameter(build, error, match):
    with pytest.raises(error, match=match):
        build()


@pytest.mark.parametrize(
    "layer,x",
    [
        (KANLinear(2, 3), torch.tensor([[1, 2]])),
        (KANLinear(2, 3, base_activation=None), torch.tensor([[1, 2]])),
        (KANConv2d(2, 3, 3), torch.ones(1, 2, 4, 4, dtype=torch.long)),
    ],
)
def test_an_integer_input_is_a_type_error_naming_the_layer_and_dtype(layer, x):
    with pytest.raises(TypeError, match=rf"{type(layer).__name__} needs a floating-point input .* got torch.int64"):
        layer(x)


@pytest.mark.parametrize("name", BASES)
def test_a_basis_refuses_an_integer_input(name):
    basis = create_basis(name)
    with pytest.raises(TypeError, match=f"basis '{name}' needs a floating-point input"):
        basis(torch.tensor([1, 0]), -1)
    with pytest.raises(TypeError, match=f"basis '{name}' needs a floating-point input"):
        basis.reference(torch.tensor([1, 0]), -1)


def test_numpy_integers_are_accepted_like_python_ones():
    np = pytest.importorskip("numpy")
    conv = KANConv2d(np.int64(2), np.int64(3), np.int64(3), padding=np.int32(1), groups=np.int64(1))
    reference = KANConv2d(2, 3, 3, padding=1)
    assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.padding) == (2, 3, (3, 3), (1, 1))
    assert type(conv.in_channels) is int and conv.weight.shape == reference.weight.shape
    assert KANLinear(np.int64(3), np.int64(2)).weight.shape == KANLinear(3, 2).weight.shape


def test_update_grid_on_an_empty_batch():
    layer = KANLinear(4, 3, basis="bspline")
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    with pytest.raises(ValueError, match=r"update_grid needs at least one sample .* \(0, 4\)"):
        layer.update_grid(torch.empty(0, 4))
    for key, value in layer.state_dict().items():  # nothing changed
        assert torch.equal(value, before[key]), key


def _chebyshev_silu_features(x: torch.Tensor, degree: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C * (degree + 2), H, W): [silu(x), T_0..T_D(tanh x)] per channel, written out."""
    t = torch.tanh(x)
    polys = [torch.ones_like(t), t]
    for _ in range(2, degree + 1):
        polys.append(2 * t * polys[-1] - polys[-2])
    feats = torch.stack([F.silu(x), *polys[: degree + 1]], dim=2)  # (N, C, m, H, W)
    return feats.flatten(1, 2)


@pytest.mark.parametrize("border", ["function", "zero"])
@pytest.mark.parametrize(
    ("stride", "padding", "dilation", "groups", "kernel"),
    [(1, 1, 1, 1, 3), (2, 2, 1, 2, 3), (1, 2, 2, 1, 3), (1, "same", 1, 2, 4), (2, (1, 0), 1, 1, (3, 2))],
)
def test_border_conventions_against_unfold_references(border, stride, padding, dilation, groups, kernel):
    """function: unfold of the zero-padded input (phi(0) at padded pixels, Bodner); zero: unfold of the zero-padded
    expansion (padded pixels add nothing, torch-conv-kan). Float64, against the layer."""
    torch.manual_seed(0)
    degree, c_in, c_out = 3, 4, 6
    conv = KANConv2d(
        c_in, c_out, kernel, stride, padding, dilation, groups, basis="chebyshev",
        basis_kwargs=dict(degree=degree), border=border, dtype=torch.float64,
    )  # fmt: skip
    with torch.no_grad():
        conv.weight.normal_()
    x = torch.randn(2, c_in, 9, 8, dtype=torch.float64)
    pads = conv._pad  # F.pad order: (left, right, top, bottom)
    if border == "function":
        feats = _chebyshev_silu_features(F.pad(x, pads), degree)
    else:
        feats = F.pad(_chebyshev_silu_features(x, degree), pads)
    reference = F.conv2d(feats, conv.weight, conv.bias, conv.stride, 0, conv.dilation, groups)
    torch.testing.assert_close(conv(x), reference, rtol=1e-10, atol=1e-10)
    if any(pads):  # the two conventions differ exactly at the border
        other = copy.deepcopy(conv)
        other.border = "zero" if border == "function" else "function"
        other._pad_expansion = other.border == "zero"
        assert not torch.allclose(other(x), reference)


def test_border_zero_needs_zero_padding():
    with pytest.raises(ValueError, match="border='zero' applies to padding_mode='zeros' only"):
        KANConv2d(2, 2, 3, padding=1, padding_mode="reflect", border="zero")
    with pytest.raises(ValueError, match="border must be 'function'"):
        KANConv2d(2, 2, 3, border="zeros")


@pytest.mark.parametrize("layer_type", ["linear", "shared_conv"])
def test_basis_kwargs_must_be_a_mapping(layer_type):
    from kanvision.layers import SharedKANConv2d

    with pytest.raises(TypeError, match=r"basis_kwargs must be a mapping .* got 'degree=3'"):
        if layer_type == "linear":
            KANLinear(2, 2, basis="chebyshev", basis_kwargs="degree=3")
        else:
            SharedKANConv2d(2, 2, 3, basis="chebyshev", basis_kwargs="degree=3")
    assert KANLinear(2, 2, basis="chebyshev", basis_kwargs={"degree": 5}).basis.degree == 5


def test_update_grid_argument_checks():
    layer = KANLinear(2, 2, basis="bspline")
    weight = layer.weight.detach().clone()
    x = torch.randn(16, 2) * 3
    for kwargs, match in [
        (dict(keep_size="false"), "keep_size must be True or False, got 'false'"),
        (dict(max_samples=0), r"max_samples must be an integer >= 1, got 0"),
        (dict(max_intervals=10**9), r"max_intervals must be an integer in \[1, 4096\]"),
        (dict(margin=float("nan")), "margin must be a finite number >= 0"),
    ]:
        with pytest.raises(ValueError, match=match):
            layer.update_grid(x, **kwargs)
    assert torch.equal(layer.weight, weight) and layer.basis.grid_range == (-1.0, 1.0)  # nothing changed


@pytest.mark.parametrize("max_samples", [1, 5, 100000])
def test_update_grid_reports_the_change_on_all_samples(max_samples):
    """With one input and no base branch or bias, each output is one edge function: the returned change must be the
    relative L2 change of the outputs on every sample, measured here in float64, whatever the fit's subsample."""
    torch.manual_seed(0)
    layer = KANLinear(1, 3, basis="bspline", base_activation=None, bias=False).double()
    with torch.no_grad():
        layer.weight.normal_()
    x = torch.randn(3000, 1, dtype=torch.float64) * 2
    before = layer(x).detach()
    change = layer.update_grid(x, keep_size=True, max_samples=max_samples)
    true_change = ((layer(x).detach() - before).norm() / before.norm()).item()
    assert true_change > 1e-3  # the refit does change the function
    assert change == pytest.approx(true_change, rel=1e-6)


@pytest.mark.parametrize(
    "grid", [[float("nan"), 1.0, 5.0], [1.0, -1.0, 5.0], [-1.0, 1.0, 0.0], [-1.0, 1.0, 1e9], [-1.0, 1.0, 2.5]]
)
@pytest.mark.parametrize("layer_type", ["linear", "conv"])
def test_a_broken_grid_in_a_state_dict_is_refused_naming_the_key(grid, layer_type):
    layer = KANLinear(2, 2, basis="bspline") if layer_type == "linear" else KANConv2d(2, 2, 3, basis="bspline")
    state = layer.state_dict()
    state["basis.grid"] = torch.tensor(grid, dtype=torch.float64)
    fresh = copy.deepcopy(layer)
    with pytest.raises(ValueError, match=r"state dict entry 'basis.grid' must be \(low, high, intervals\)"):
        fresh.load_state_dict(state)
    torch.testing.assert_close(fresh.state_dict(), layer.state_dict())  # nothing half-loaded
    basis = create_basis("rbf")
    with pytest.raises(ValueError, match=r"state dict entry 'grid'"):
        basis.load_state_dict({"grid": torch.tensor(grid, dtype=torch.float64)})


@pytest.mark.parametrize(
    ("basis", "kwargs", "match"),
    [
        ("bspline", dict(grid_size=0), r"grid_size must be an integer in \[1, 4096\], got 0"),
        ("bspline", dict(grid_size=10**9), r"grid_size must be an integer in \[1, 4096\], got 1000000000"),
        ("bspline", dict(spline_order=100), r"spline_order must be an integer in \[1, 16\]"),
        ("rbf", dict(num_centers=10**9), r"num_centers must be an integer in \[2, 4097\]"),
        ("relu", dict(grid_size=10**9), r"grid_size must be an integer in \[1, 4096\]"),
        ("chebyshev", dict(degree=10**6), r"degree must be an integer in \[0, 256\]"),
        ("fourier", dict(num_frequencies=10**9), r"num_frequencies must be an integer in \[1, 4096\]"),
    ],
)
def test_size_arguments_have_a_sane_range(basis, kwargs, match):
    with pytest.raises(ValueError, match=match):
        KANLinear(2, 2, basis=basis, basis_kwargs=kwargs)


@pytest.mark.parametrize("name", ["bspline", "rbf"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_grid_bases_without_base_branch_are_finite_for_huge_and_infinite_inputs(name, dtype):
    """Far outside the grid every function is 0 (documented as the value at +-inf too): the layer gives its bias
    there, with zero x-gradient, for 3e38, the largest finite value and +-inf."""
    torch.manual_seed(0)
    layer = KANLinear(2, 3, basis=name, base_activation=None).to(dtype)
    big = torch.finfo(dtype).max
    x = torch.tensor([[3e38, -3e38], [big, -big], [float("inf"), -float("inf")], [0.3, -0.2]], dtype=dtype)
    x.requires_grad_(True)
    y = layer(x)
    y.sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()
    bias = layer.bias.detach().expand(3, -1)
    assert torch.equal(y[:3].detach(), bias) and torch.equal(x.grad[:3], torch.zeros(3, 2, dtype=dtype))
    # finite inputs keep their values: the float64 reference far inside agrees
    far = torch.tensor([[1e30, 0.3]], dtype=torch.float64)
    ref = layer.double()(far)
    assert torch.isfinite(ref).all()
    nan = layer(torch.tensor([[float("nan"), 0.0]], dtype=torch.float64))
    assert torch.isnan(nan).all()  # NaN stays NaN


def test_base_activation_none_as_a_string_drops_the_base_branch():
    # "none" is the spelling that survives timm.create_model, which drops None keyword arguments
    torch.manual_seed(0)
    with_string, with_none = KANLinear(3, 2, base_activation="none"), KANLinear(3, 2, base_activation=None)
    assert with_string.base_activation is None and with_string.num_terms == with_none.num_terms
    with_string.load_state_dict(with_none.state_dict())
    x = torch.randn(5, 3)
    torch.testing.assert_close(with_string(x), with_none(x), rtol=0, atol=0)
