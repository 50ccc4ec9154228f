"""The fused expansion (values written in place, analytic backward) against plain autograd of the reference ops."""

import warnings

import pytest
import torch
import torch.nn.functional as F

from kanvision.layers import Basis, KANConv2d, KANLinear, create_basis, list_bases, register_basis
from kanvision.layers.bases import _REGISTRY

# variants that exercise every branch of the closed forms: orders 1 and 4, ReLU powers 1 and 4, degree 0/1
CASES = [(name, {}) for name in list_bases()] + [
    ("bspline", dict(grid_size=3, spline_order=1)),
    ("bspline", dict(grid_size=4, spline_order=4, grid_range=(-0.5, 2.0))),
    ("relu", dict(power=1, order=2)),
    ("relu", dict(power=4, grid_range=(-1.0, 1.0))),
    ("rbf", dict(num_centers=5, bandwidth=0.3)),
    ("chebyshev", dict(degree=0)),
    ("chebyshev", dict(degree=6)),
    ("gram", dict(degree=1)),
    ("gram", dict(degree=5, num_points=8)),
    ("fourier", dict(num_frequencies=1)),
]
ACTIVATIONS = [None, F.silu, F.gelu, F.relu, torch.tanh, lambda x: x * torch.sigmoid(2 * x)]


def _inputs(shape=(3, 4, 5, 6)) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    # spread well beyond every grid, away from the kinks (knots, bump ends) where one-sided derivatives differ
    return (torch.rand(shape, generator=g, dtype=torch.float64) * 8 - 4).requires_grad_()


@pytest.mark.parametrize("name,kwargs", CASES, ids=lambda v: str(v))
@pytest.mark.parametrize("dim", [-1, 2, 0])
def test_values_and_gradient_match_reference(name, kwargs, dim):
    basis = create_basis(name, **kwargs)
    x = _inputs()
    for activation in ACTIVATIONS:
        fused, ref = basis(x, dim, activation), basis.reference(x, dim, activation)
        torch.testing.assert_close(fused, ref, atol=1e-12, rtol=0)
        grad = torch.randn_like(ref)
        (g_fused,) = torch.autograd.grad(fused, x, grad)
        # a constant basis (degree 0, no base branch) has no graph: its gradient is 0
        g_ref = torch.autograd.grad(ref, x, grad)[0] if ref.requires_grad else torch.zeros_like(x)
        torch.testing.assert_close(g_fused, g_ref, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("name,kwargs", CASES[:6], ids=lambda v: str(v))
def test_gradcheck_and_double_backward(name, kwargs):
    basis = create_basis(name, **kwargs)
    x = (torch.rand(2, 3, 4, dtype=torch.float64) * 3 - 1.5).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: basis(t, 1, F.silu), (x,))
    assert torch.autograd.gradgradcheck(lambda t: basis(t, 1, F.silu), (x,))


def test_only_the_input_is_saved_for_backward():
    basis = create_basis("bspline")
    x = torch.randn(4, 8, 6, 6, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        basis(x, 2, F.silu)
    assert len(saved) == 1 and saved[0] is x


def test_a_basis_without_closed_forms_is_differentiated_by_autograd():
    @register_basis("_test_poly")
    class Poly(Basis):
        num_functions = 2

        def values(self, x):
            return torch.cat([x * x, torch.sin(x)], 1)

    try:
        x = _inputs((3, 5))
        out = Poly()(x, 1, torch.tanh)
        assert out.shape == (3, 3, 5)
        torch.testing.assert_close(out, torch.stack([torch.tanh(x), x * x, torch.sin(x)], 1))
        grad = torch.randn_like(out)
        (gx,) = torch.autograd.grad(out, x, grad)
        expected = grad[:, 0] * (1 - torch.tanh(x) ** 2) + grad[:, 1] * 2 * x + grad[:, 2] * torch.cos(x)
        torch.testing.assert_close(gx, expected)
    finally:
        del _REGISTRY["_test_poly"]


@pytest.mark.parametrize("name", list_bases())
def test_expansion_follows_the_input_memory_format(name):
    basis = create_basis(name)
    x = torch.randn(2, 5, 4, 3)
    x_cl = x.to(memory_format=torch.channels_last)
    out, out_cl = basis(x, 2, F.silu), basis(x_cl, 2, F.silu)
    torch.testing.assert_close(out_cl, out, atol=1e-6, rtol=1e-6)
    flat = out_cl.flatten(1, 2)  # the (C * m) channels of the convolution
    assert flat.is_contiguous(memory_format=torch.channels_last) and flat.data_ptr() == out_cl.data_ptr()


@pytest.mark.parametrize("name", list_bases())
def test_channels_last_conv_matches_contiguous(name):
    torch.manual_seed(0)
    layer = KANConv2d(4, 6, 3, padding=1, basis=name).double()
    x = torch.randn(2, 4, 7, 7, dtype=torch.float64, requires_grad=True)
    x_cl = x.detach().to(memory_format=torch.channels_last).requires_grad_()
    y, y_cl = layer(x), layer(x_cl)
    torch.testing.assert_close(y_cl, y)
    grad = torch.randn_like(y)
    torch.testing.assert_close(torch.autograd.grad(y_cl, x_cl, grad)[0], torch.autograd.grad(y, x, grad)[0])


@pytest.mark.parametrize("name", list_bases())
def test_bfloat16_gradient_close_to_float32(name):
    basis = create_basis(name)
    x = torch.randn(64) * 2
    xb = x.bfloat16().requires_grad_()
    grad = torch.randn(64, basis.num_functions + 1)
    (gb,) = torch.autograd.grad(basis(xb, -1, F.silu), xb, grad.bfloat16())
    xf = xb.detach().float().requires_grad_()
    (gf,) = torch.autograd.grad(basis(xf, -1, F.silu), xf, grad.bfloat16().float())
    assert gb.dtype == torch.bfloat16
    torch.testing.assert_close(gb.float(), gf, atol=5e-2, rtol=2e-2)


@pytest.mark.parametrize("name,kwargs", CASES, ids=lambda v: str(v))
def test_the_derivative_is_that_of_the_values(name, kwargs):
    basis = create_basis(name, **kwargs)
    x = _inputs((3, 1, 40))
    if basis.derivative is None:
        pytest.skip("no analytic derivative: autograd of the values")
    grad = torch.randn(3, basis.num_functions, 40, dtype=torch.float64)
    values = basis.values(x)  # a constant (degree 0) has no graph
    expected = torch.autograd.grad(values, x, grad)[0] if values.requires_grad else torch.zeros_like(x)
    torch.testing.assert_close((basis.derivative(x.detach()) * grad).sum(1, keepdim=True), expected)


def _reference_linear(layer: KANLinear, x: torch.Tensor) -> torch.Tensor:
    feats = layer.basis.reference(x, -1, layer.base_activation).flatten(-2)
    return F.linear(feats, layer.weight, layer.bias)


def test_a_parametric_base_activation_trains():
    torch.manual_seed(0)
    layer = KANLinear(3, 2, basis="bspline", base_activation=torch.nn.PReLU(init=0.1)).double()
    x = torch.randn(5, 3, dtype=torch.float64)
    params = list(layer.parameters())
    got = torch.autograd.grad(layer(x).square().sum(), params)
    expected = torch.autograd.grad(_reference_linear(layer, x).square().sum(), params)
    assert layer.base_activation.weight.requires_grad and got[-1].abs().item() > 0
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e)


def test_a_learnable_basis_trains():
    class Scaled(Basis):
        num_functions = 2

        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.tensor([0.5, 2.0], dtype=torch.float64))

        def values(self, x):
            return torch.cat([torch.tanh(self.scale[0] * x), torch.sin(self.scale[1] * x)], 1)

    torch.manual_seed(0)
    layer = KANLinear(3, 2, basis=Scaled()).double()
    x = torch.randn(5, 3, dtype=torch.float64)
    (got,) = torch.autograd.grad(layer(x).sum(), layer.basis.scale)
    (expected,) = torch.autograd.grad(_reference_linear(layer, x).sum(), layer.basis.scale)
    assert got.abs().min() > 0
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("name", list_bases())
def test_torch_func_transforms_and_forward_mode(name):
    torch.manual_seed(0)
    layer = KANLinear(3, 2, basis=name).double()
    x = torch.randn(4, 3, dtype=torch.float64)
    jac = torch.func.jacrev(layer)(x)
    expected = torch.autograd.functional.jacobian(lambda t: _reference_linear(layer, t), x)
    torch.testing.assert_close(jac, expected)
    torch.testing.assert_close(torch.func.vmap(layer)(x.unsqueeze(1)).squeeze(1), layer(x))
    tangent = torch.randn_like(x)
    _, jvp = torch.func.jvp(layer, (x,), (tangent,))
    torch.testing.assert_close(jvp, (expected.reshape(8, 12) @ tangent.reshape(12)).reshape(4, 2))


def test_channels_last_expansion_can_be_modified_in_place():
    basis = create_basis("rbf")
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64).to(memory_format=torch.channels_last).requires_grad_()
    out = basis(x, 2, F.silu)
    out.mul_(2)
    grad = torch.randn_like(out)
    (got,) = torch.autograd.grad(out, x, grad)
    (expected,) = torch.autograd.grad(basis.reference(x, 2, F.silu) * 2, x, grad)
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("name", ["bspline", "chebyshev", "rbf"])
def test_export_and_trace_match_eager(name):
    torch.manual_seed(0)
    layer = KANConv2d(2, 3, 3, padding=1, basis=name).eval()
    x = torch.randn(1, 2, 6, 6) * 2
    torch.testing.assert_close(torch.export.export(layer, (x,)).module()(x), layer(x))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.trace is deprecated, and warns about the shape checks
        traced = torch.jit.trace(layer, (x,))
    torch.testing.assert_close(traced(x * 1.5), layer(x * 1.5))


@pytest.mark.parametrize("in_channels", [1, 3])
def test_compiled_conv_gradients_match_eager_for_single_channel_inputs(in_channels):
    """Under torch.compile a one-channel input (size-1 axis, arbitrary stride) gets eager's input gradient."""
    from kanvision.layers import KANConv2d

    torch.manual_seed(0)
    layer = KANConv2d(in_channels, 2, 3, padding=1, basis="chebyshev", base_activation="identity")
    x = torch.randn(6, in_channels, 9, 9, requires_grad=True)
    y = torch.compile(layer, fullgraph=True)(x)
    grad = torch.randn_like(y)
    got = torch.autograd.grad(y, x, grad)[0]
    expected = torch.autograd.grad(layer(x), x, grad)[0]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
