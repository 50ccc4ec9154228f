"""GroupKAN against a plain per-group float64 formula: values, gradients, paths, inits, variance gain, FLOPs."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from kanvision.kernels import compiled
from kanvision.layers import GroupKAN, KANLinear, list_bases, list_group_kan_inits
from kanvision.layers.bases import ChebyshevBasis
from kanvision.layers.group_kan import GROUP_KAN_INITS, group_kan_reference
from kanvision.layers.group_kan_fused import group_kan_fused

BASES = [b for b in list_bases() if b != "kagn"]
# values and x-derivatives bounded for every input: |x| up to 1e30 gives finite outputs and gradients
BOUNDED = ["bspline", "rbf", "relu", "chebyshev", "gram", "fourier"]
# fewer functions where tracing or a float64 loop over 1e6 points costs seconds per function
SMALL = {"bspline": dict(grid_size=3, spline_order=2), "rbf": dict(num_centers=4), "relu": dict(grid_size=3, order=2)}


def naive(x, weight, base_weight, basis, activation, groups, channel_dim=-1):
    """phi_g by a loop over groups in float64: each group's slice through ``basis.values`` one point at a time."""
    basis = copy.deepcopy(basis).double()
    xl = x.movedim(channel_dim, -1).double()
    width = xl.shape[-1] // groups
    out = []
    for g in range(groups):
        xs = xl[..., g * width : (g + 1) * width]
        values = basis.values(xs.reshape(-1, 1, 1))[:, :, 0]  # (points, n)
        phi = values @ weight[g].double()
        if activation is not None:
            phi = phi + base_weight[g].double() * activation(xs.reshape(-1))
        out.append(phi.reshape(xs.shape))
    return torch.cat(out, -1).movedim(-1, channel_dim)


def perturbed(module: GroupKAN) -> GroupKAN:
    """Every group a different function (the init makes them equal)."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        module.weight.add_(0.3 * torch.randn(module.weight.shape, generator=gen))
        if module.base_weight is not None:
            module.base_weight.add_(0.3 * torch.randn(module.base_weight.shape, generator=gen))
    return module


def grads(y, module, x, grad):
    params = [x, module.weight] + ([module.base_weight] if module.base_weight is not None else [])
    return torch.autograd.grad(y, params, grad)


def naive_grads(module, x, grad, channel_dim=-1):
    xx = x.detach().double().requires_grad_()
    w = module.weight.detach().double().requires_grad_()
    params = [xx, w]
    bw = None
    if module.base_weight is not None:
        bw = module.base_weight.detach().double().requires_grad_()
        params.append(bw)
    y = naive(xx, w, bw, module.basis, module.base_activation, module.groups, channel_dim)
    return y, torch.autograd.grad(y, params, grad.double())


def close(actual, expected, tol):
    scale = expected.abs().max().clamp_min(1.0)
    return (actual.double() - expected).abs().max().item() <= tol * scale.item()


@pytest.mark.parametrize("basis", BASES)
@pytest.mark.parametrize("channel_dim", [-1, 1])
@pytest.mark.parametrize("base_activation", [None, "silu"])
def test_values_and_gradients_match_the_per_group_formula(basis, channel_dim, base_activation):
    torch.manual_seed(0)
    module = perturbed(GroupKAN(24, groups=4, basis=basis, base_activation=base_activation, channel_dim=channel_dim))
    shape = (2, 5, 24) if channel_dim == -1 else (2, 24, 3, 2)
    x = (torch.randn(shape) * 2).requires_grad_()
    y = module(x)
    grad = torch.randn_like(y)
    expected, expected_grads = naive_grads(module, x, grad, channel_dim)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert close(y, expected, 1e-5)
    for actual, want in zip(grads(y, module, x, grad), expected_grads, strict=True):
        assert close(actual, want, 1e-4)


@pytest.mark.parametrize("basis", BASES)
def test_gradcheck_in_float64(basis):
    torch.manual_seed(0)
    module = perturbed(GroupKAN(8, groups=2, basis=basis)).double()
    # away from the B-spline's and ReLU bumps' knots, where their derivatives jump
    x = (torch.rand(3, 8, dtype=torch.float64) * 5 - 2.5 + 0.0123).requires_grad_()

    def fn(x, weight, base_weight):
        return group_kan_fused(x, weight, base_weight, module.basis, module.base_activation, 2, group_kan_reference)

    assert torch.autograd.gradcheck(fn, (x, module.weight, module.base_weight))


@pytest.mark.parametrize("basis", ["chebyshev", "bspline"])
def test_double_backward_and_forward_mode_take_the_reference_ops(basis):
    module = perturbed(GroupKAN(8, groups=2, basis=basis)).double()
    x = (torch.rand(2, 8, dtype=torch.float64) * 4 - 2 + 0.0123).requires_grad_()
    assert torch.autograd.gradgradcheck(lambda x: module(x), (x,))
    tangent = torch.randn_like(x)
    jvp = torch.func.jvp(lambda x: module(x), (x.detach(),), (tangent,))[1]
    jacobian = torch.autograd.functional.jacobian(lambda x: module(x), x.detach())
    assert torch.allclose(jvp, (jacobian.reshape(16, 16) @ tangent.reshape(16)).reshape(2, 8), atol=1e-10)


def test_bf16_autocast_and_bf16_input_within_1e_2_of_float32():
    torch.manual_seed(0)
    for basis in BASES:
        module = perturbed(GroupKAN(16, groups=4, basis=basis))
        x = torch.randn(4, 16, requires_grad=True)
        y32 = module(x)
        grad = torch.randn_like(y32)
        g32 = grads(y32, module, x, grad)
        # behind a Linear, as in a network: autocast hands the activation a bf16 input
        linear = nn.Linear(16, 16)
        reference = module(linear(x)).double()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y_auto = module(linear(x))
        assert y_auto.dtype == torch.bfloat16
        assert close(y_auto, reference, 1e-2), basis
        xb = x.detach().bfloat16().requires_grad_()
        yb = module(xb)
        assert yb.dtype == torch.bfloat16
        # the error of rounding x to bf16, times the largest slope (about 3), within 1e-2 of the scale
        assert close(yb, y32.detach().double(), 3e-2)
        for actual, want in zip(grads(yb, module, xb, grad.bfloat16()), g32, strict=True):
            assert close(actual, want.double(), 5e-2)


_INDUCTOR = pytest.mark.slow  # a compile each, ~10 s
_COMPILE_CASES = [pytest.param("inductor", b, marks=_INDUCTOR) for b in ("chebyshev", "bspline")]


@pytest.mark.parametrize("backend,basis", _COMPILE_CASES + [("aot_eager", b) for b in BASES])
def test_torch_compile_matches_eager(backend, basis):
    torch.manual_seed(0)
    module = perturbed(GroupKAN(16, groups=4, basis=basis, basis_kwargs=SMALL.get(basis)))
    x = torch.randn(2, 3, 16, requires_grad=True)
    y = module(x)
    grad = torch.randn_like(y)
    eager = grads(y, module, x, grad)
    torch._dynamo.reset()
    compiled_module = torch.compile(module, backend=backend, fullgraph=True)
    yc = compiled_module(x)
    assert torch.allclose(yc, y, atol=1e-5)
    for actual, want in zip(grads(yc, module, x, grad), eager, strict=True):
        assert torch.allclose(actual, want, atol=1e-4)


@pytest.mark.parametrize("basis", BOUNDED)
@pytest.mark.parametrize("base_activation", [None, "silu"])
def test_huge_inputs_give_finite_outputs_and_gradients(basis, base_activation):
    module = perturbed(GroupKAN(8, groups=2, basis=basis, base_activation=base_activation))
    x = torch.tensor([[1e30, -1e30, 1e20, -1e20, 1e6, -1e6, 3.0, 0.0]] * 2, requires_grad=True)
    y = module(x)
    assert all(torch.isfinite(t).all() for t in [y, *grads(y, module, x, torch.ones_like(y))])


@pytest.mark.slow
@pytest.mark.parametrize("basis", ["chebyshev", "rbf"])
def test_compiled_cpu_kernels_match_the_per_group_formula(basis):
    torch.manual_seed(0)
    module = perturbed(GroupKAN(64, groups=8, basis=basis))
    x = (torch.randn(compiled.MIN_NUMEL // 64 + 8, 64) * 2).requires_grad_()
    assert compiled.usable(x)
    y = module(x)
    grad = torch.randn_like(y)
    expected, expected_grads = naive_grads(module, x, grad)
    assert close(y, expected, 1e-5)
    for actual, want in zip(grads(y, module, x, grad), expected_grads, strict=True):
        assert close(actual, want, 1e-4)


def test_only_x_and_the_weights_are_saved_for_backward():
    for basis in BASES:
        module = GroupKAN(16, groups=4, basis=basis)
        x = torch.randn(3, 16, requires_grad=True)
        saved = []

        def pack(t, saved=saved):
            saved.append(t)
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            module(x)
        allowed = {x.data_ptr(), module.weight.data_ptr(), module.base_weight.data_ptr()}
        assert saved and {t.data_ptr() for t in saved} <= allowed
        assert sum(t.numel() for t in saved) == x.numel() + module.weight.numel() + module.base_weight.numel()


def _max_error(module: GroupKAN, function) -> float:
    """Largest |phi_g - function| over init_range, on a grid other than the fit's, for every group."""
    low, high = module.init_range
    points = torch.linspace(low, high, 10007, dtype=torch.float64)
    m64 = copy.deepcopy(module).double()
    phi = naive(points[:, None].expand(-1, module.groups), m64.weight, m64.base_weight, m64.basis,
                m64.base_activation, module.groups)  # fmt: skip
    return (phi - function(points)[:, None]).abs().max().item()


@pytest.mark.parametrize("init", list_group_kan_inits())
def test_named_inits_report_their_fit_error(init):
    module = GroupKAN(8, groups=2, basis="bspline", basis_kwargs=dict(grid_size=8), init=init)
    error = _max_error(module, GROUP_KAN_INITS[init])
    # init_error is that of the float64 fit; the parameters are float32
    assert math.isclose(error, module.init_error, rel_tol=0.05, abs_tol=1e-6)
    assert module.init_error < (0.05 if init == "relu" else 1e-2)


def test_a_callable_init_is_fitted_and_its_error_reported():
    def bump(x):
        return torch.exp(-x * x) * torch.sin(2 * x)

    module = GroupKAN(8, groups=2, basis="chebyshev", basis_kwargs=dict(degree=6), init=bump)
    assert module.init == "bump"
    error = _max_error(module, bump)
    assert 1e-4 < module.init_error < 0.5 and math.isclose(error, module.init_error, rel_tol=0.05, abs_tol=1e-6)


@pytest.mark.parametrize("basis", BASES)
def test_identity_init_with_identity_base_is_exact(basis):
    module = GroupKAN(8, groups=2, basis=basis, base_activation="identity", init="identity")
    x = torch.randn(4, 8) * 10
    assert module.init_error == 0.0 and torch.equal(module(x), x)
    assert module.variance_gain() == pytest.approx(1.0, abs=1e-8)


@pytest.mark.parametrize("basis,init", [("chebyshev", "gelu"), ("rbf", "swish"), ("bspline", "relu")])
def test_variance_gain_matches_monte_carlo(basis, init):
    module = perturbed(GroupKAN(4, groups=2, basis=basis, basis_kwargs=SMALL.get(basis), init=init)).double()
    x = torch.randn(1_000_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        phi = naive(x[:, None].expand(-1, 2), module.weight, module.base_weight, module.basis, F.silu, 2)
    square = phi.square().mean(1)  # per sample, over the groups (the gain averages E[phi^2] over them)
    monte_carlo = 1.0 / square.mean().item()
    # within 4 standard errors of the estimate (delta method: se(1/m) = se(m) / m^2)
    standard_error = (square.std() / math.sqrt(square.numel())).item() * monte_carlo**2
    assert abs(module.variance_gain() - monte_carlo) <= 4 * standard_error
    assert standard_error < 0.02 * monte_carlo


def test_argument_errors_name_the_value():
    with pytest.raises(ValueError, match="groups=5"):
        GroupKAN(16, groups=5)
    with pytest.raises(ValueError, match="'tanhh'"):
        GroupKAN(16, init="tanhh")
    with pytest.raises(ValueError, match=r"\(3.0, -3.0\)"):
        GroupKAN(16, init_range=(3.0, -3.0))
    with pytest.raises(ValueError, match="'kagn' has learnable parameters"):
        GroupKAN(16, basis="kagn")
    with pytest.raises(ValueError, match="expects 16 channels"):
        GroupKAN(16)(torch.randn(2, 8))


def test_flop_counter_counts_the_documented_formula():
    # chebyshev degree 4 (n = 5) with SiLU: forward tanh + 3 x 3 recurrence steps + 2n + SiLU 4 + 2 = 26; backward
    # values 10, derivatives 4 + 3 x 2 + 2 x 4 = 18, 4n + 1 = 21, SiLU 4 + 7 + 4 = 15: 64
    # rbf, 8 centres, no base branch: forward 5n + 2n = 56; backward 5n + 7n + 4n + 1 = 129
    for basis, kwargs, base, forward, backward in [
        ("chebyshev", dict(degree=4), "silu", 26, 64),
        ("rbf", dict(num_centers=8), None, 56, 129),
    ]:
        module = GroupKAN(16, groups=4, basis=basis, basis_kwargs=kwargs, base_activation=base)
        x = torch.randn(3, 5, 16, requires_grad=True)
        with FlopCounterMode(display=False) as counter:
            y = module(x)
        assert counter.get_total_flops() == forward * x.numel()
        with FlopCounterMode(display=False) as counter:
            y.sum().backward()
        assert counter.get_total_flops() == backward * x.numel()


def test_a_basis_without_derivative_and_a_custom_base_activation_match_the_formula():
    class NoDerivative(ChebyshevBasis):  # values changed alone: autograd of the values
        def values(self, x):
            return super().values(x) * 1.5

    torch.manual_seed(0)
    for basis, base in [(NoDerivative(degree=3), "silu"), ("rbf", nn.Softplus())]:
        module = perturbed(GroupKAN(8, groups=2, basis=basis, base_activation=base))
        x = torch.randn(3, 8, requires_grad=True)
        y = module(x)
        grad = torch.randn_like(y)
        expected, expected_grads = naive_grads(module, x, grad)
        assert close(y, expected, 1e-5)
        for actual, want in zip(grads(y, module, x, grad), expected_grads, strict=True):
            assert close(actual, want, 1e-4)


@pytest.mark.parametrize("layer", ["group_kan", "kan_linear"])
def test_built_on_meta_then_materialised_computes_like_a_cpu_build(layer):
    # timm builds models under torch.device("meta") before loading weights; the init fit runs on the CPU regardless
    def make():
        if layer == "group_kan":
            return GroupKAN(16, groups=4, basis="bspline", init="gelu")
        return KANLinear(16, 4, basis="bspline")

    with torch.device("meta"):
        lazy = make()
    assert all(p.is_meta for p in lazy.parameters())
    torch.manual_seed(0)
    built = make()
    lazy.to_empty(device="cpu")
    lazy.load_state_dict(built.state_dict())
    x = torch.randn(5, 16)
    torch.testing.assert_close(lazy(x), built(x), rtol=0, atol=0)
