"""The fused group rational (eager, compiled CPU kernels, torch.compile) against a direct float64 formula."""

import math

import pytest
import torch

from kanvision.kernels import compiled
from kanvision.layers import GroupRational, rational_fused
from kanvision.layers.rational import RATIONAL_INITS, group_rational_pytorch
from kanvision.layers.rational_fused import group_rational_fused


def direct_rational(x, a, b, groups):
    """F(x) = sum_k a_k x^k / (1 + sum_i |b_i| |x|^i) per group, explicit powers in float64 (moderate |x| only)."""
    x, a, b = x.double(), a.double(), b.double()
    width = x.shape[-1] // groups
    columns = []
    for g in range(groups):
        xs = x[..., g * width : (g + 1) * width]
        ag = a[0] if a.shape[0] == 1 else a[g]
        numerator = sum(ag[k] * xs**k for k in range(ag.shape[0]))
        denominator = 1 + sum(b[g, i - 1].abs() * xs.abs() ** i for i in range(1, b.shape[1] + 1))
        columns.append(numerator / denominator)
    return torch.cat(columns, -1)


def coefficients(groups, shared, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(1 if shared else groups, 6, generator=g, dtype=dtype) * 0.3
    b = torch.randn(groups, 4, generator=g, dtype=dtype) * 0.3
    b[:, 0::2] = -b[:, 0::2].abs() - 0.05  # negative b_1, b_3: the abs must hold
    return a, b


def moderate_inputs(rows, channels, dtype=torch.float64, seed=1):
    x = torch.randn(rows, channels, generator=torch.Generator().manual_seed(seed), dtype=dtype) * 2
    x.view(-1)[:8] = torch.tensor([40.0, -40.0, 3.0, -1.0, 1.0, 0.0, 1e-3, -7.5], dtype=dtype)
    return x


def check_against_direct(x, a, b, groups, rtol):
    inputs = [t.clone().requires_grad_() for t in (x, a, b)]
    direct_inputs = [t.clone().requires_grad_() for t in (x, a, b)]
    out = group_rational_fused(*inputs, groups)
    want = direct_rational(*direct_inputs, groups)
    assert out.dtype == x.dtype and out.shape == x.shape
    torch.testing.assert_close(out.double(), want, rtol=rtol, atol=rtol)
    grad = torch.randn_like(want)
    got = torch.autograd.grad(out, inputs, grad.to(out.dtype))
    expected = torch.autograd.grad(want, direct_inputs, grad)
    for name, g, e in zip(("x", "numerator", "denominator"), got, expected, strict=True):
        e = e.double()
        scale = e.abs().max().clamp_min(1.0)
        torch.testing.assert_close(g.double() / scale, e / scale, rtol=rtol, atol=rtol, msg=f"gradient of {name}")


@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("groups", [1, 8])
def test_eager_values_and_gradients_match_direct_float64(groups, shared):
    a, b = coefficients(groups, shared)
    check_against_direct(moderate_inputs(6, 4 * groups), a, b, groups, rtol=1e-10)


@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("groups", [1, 8])
def test_gradcheck(groups, shared):
    a, b = coefficients(groups, shared)
    x = moderate_inputs(3, 4 * groups)
    x.view(-1)[5] = 0.3  # gradcheck's finite differences straddle the kink of |x| at 0
    inputs = [t.clone().requires_grad_() for t in (x, a, b)]
    assert torch.autograd.gradcheck(lambda *t: group_rational_fused(*t, groups), inputs)


def test_double_backward_matches_reference():
    a, b = coefficients(2, True)
    x = moderate_inputs(3, 4)
    inputs = [t.clone().requires_grad_() for t in (x, a, b)]
    reference_inputs = [t.clone().requires_grad_() for t in (x, a, b)]
    grad = torch.randn(3, 4, dtype=torch.float64)
    first = torch.autograd.grad(group_rational_fused(*inputs, 2), inputs, grad, create_graph=True)
    want = torch.autograd.grad(group_rational_pytorch(*reference_inputs, 2), reference_inputs, grad, create_graph=True)
    second = torch.autograd.grad(first[0].sum(), inputs)
    second_want = torch.autograd.grad(want[0].sum(), reference_inputs)
    for got, expected in zip(second, second_want, strict=True):
        torch.testing.assert_close(got, expected)


@pytest.mark.parametrize(
    ("groups", "shared", "dtype", "channels"),
    [(8, True, torch.float64, 256), (1, False, torch.float32, 256), (8, False, torch.float32, 192)],
)  # 192 / 8: groups of 24 channels, not a multiple of a 512-bit vector of float32
def test_compiled_kernels_match_direct_formula(compiled_calls, groups, shared, dtype, channels):
    a, b = coefficients(groups, shared, dtype=dtype)
    x = moderate_inputs(-(-compiled.MIN_NUMEL // channels), channels, dtype=dtype)
    check_against_direct(x, a, b, groups, rtol=1e-10 if dtype == torch.float64 else 2e-5)
    assert compiled_calls == [("_direct_forward", True), ("_direct_backward", True)]


@pytest.mark.parametrize(
    ("numerator_order", "denominator_order", "shared", "dtype"),
    [(2, 3, False, torch.float64), (0, 1, False, torch.float64), (3, 1, True, torch.float32)],
)
def test_compiled_kernels_at_other_orders(compiled_calls, numerator_order, denominator_order, shared, dtype):
    g = torch.Generator().manual_seed(2)
    a = torch.randn(1 if shared else 2, numerator_order + 1, generator=g, dtype=dtype)
    b = torch.randn(2, denominator_order, generator=g, dtype=dtype)
    x = moderate_inputs(compiled.MIN_NUMEL // 64, 64, dtype=dtype)
    check_against_direct(x, a, b, 2, rtol=1e-10 if dtype == torch.float64 else 2e-5)
    assert compiled_calls == [("_direct_forward", True), ("_direct_backward", True)]


@pytest.mark.parametrize(
    "case",
    [
        "x beyond the direct limit",
        "coefficients that overflow x^5",
        "a denominator that overflows",
        "a NaN input",
        "a NaN and an x beyond the limit",
    ],
)
def test_compiled_kernels_fall_back_to_the_safe_form(compiled_calls, case):
    """Both passes try the direct form P(x) / Q(|x|) first; where a power could overflow float32 the safe form
    runs."""
    a, b = coefficients(2, False, dtype=torch.float32)
    x = moderate_inputs(compiled.MIN_NUMEL // 64, 64, dtype=torch.float32)
    if case == "x beyond the direct limit":
        x.view(-1)[8:12] = torch.tensor([3e6, -1e30, 2e12, -5e6])  # the limit is 2^20 ~ 1.05e6 for order (5, 4)
    elif case == "a NaN input":
        x.view(-1)[9] = float("nan")
    elif case == "a NaN and an x beyond the limit":  # the NaN must not hide the 1e30 from the forward's check
        x.view(-1)[9:11] = torch.tensor([float("nan"), 1e30])
    elif case == "a denominator that overflows":
        b[:, 3] = -1e35  # |b_4| x^4 overflows at |x| = 40 (P / Q would be 0 there), Q~(1/|x|) does not
    else:
        a[:, 5] = 1e31  # a_5 x^5 overflows at |x| = 40, the safe form's |x|^(m - n) P~(1/x) does not
    inputs = [t.clone().requires_grad_() for t in (x, a, b)]
    out = group_rational_fused(*inputs, 2)
    reference_inputs = [t.double().requires_grad_() for t in (x, a, b)]
    want = group_rational_pytorch(*reference_inputs, 2)
    assert torch.isfinite(out).sum() == out.numel() - ("NaN" in case)
    torch.testing.assert_close(out.double(), want, rtol=1e-5, atol=1e-5, equal_nan=True)
    grad = torch.randn_like(x)
    for g, e in zip(
        torch.autograd.grad(out, inputs, grad), torch.autograd.grad(want, reference_inputs, grad.double()), strict=True
    ):
        scale = e.nan_to_num(0.0).abs().max().clamp_min(1.0)
        torch.testing.assert_close(g.double() / scale, e / scale, rtol=1e-5, atol=1e-5, equal_nan=True)
    names = ["_direct_forward", "_rational_forward", "_direct_backward", "_rational_backward"]
    assert compiled_calls == [(name, True) for name in names]


def test_a_nan_coefficient_takes_the_safe_forward(compiled_calls):
    a, b = coefficients(2, False, dtype=torch.float32)
    b[1, 2] = float("nan")
    x = moderate_inputs(compiled.MIN_NUMEL // 64, 64, dtype=torch.float32)
    out = group_rational_fused(x, a, b, 2)
    want = group_rational_pytorch(x.double(), a.double(), b.double(), 2)
    assert out[:, 32:].isnan().all() and torch.isfinite(out[:, :32]).all()
    torch.testing.assert_close(out.double(), want, rtol=1e-5, atol=1e-5, equal_nan=True)
    assert compiled_calls == [("_direct_forward", True), ("_rational_forward", True)]


@pytest.mark.parametrize(("numerator_order", "denominator_order"), [(1, 1), (4, 4), (5, 4)])
def test_float64_direct_form_at_its_limit(compiled_calls, numerator_order, denominator_order):
    """At |x| = the direct limit and coefficient sums of 2^52 (the largest the forward's check lets through), every
    value stays finite in float64 and equals the safe form's."""
    m, n = numerator_order, denominator_order
    limit = rational_fused._direct_limit(torch.float64, m, n)
    a = torch.zeros(1, m + 1, dtype=torch.float64)
    a[0, m] = 2.0**52
    b = torch.full((2, n), 1e-3, dtype=torch.float64)
    x = moderate_inputs(compiled.MIN_NUMEL // 64, 64)
    x.view(-1)[:2] = torch.tensor([limit, -limit], dtype=torch.float64)
    out = group_rational_fused(x, a, b, 2)
    want = group_rational_pytorch(x, a, b, 2)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, want, rtol=1e-12, atol=0)
    assert compiled_calls == [("_direct_forward", True)]  # no fallback: the direct form was exact


def test_module_takes_the_fused_path_on_cpu():
    layer = GroupRational(16, groups=4, init="gelu")
    y = layer(torch.randn(2, 3, 16))
    assert type(y.grad_fn).__name__ == "_GroupRationalBackward"
    assert not layer.uses_kernel(torch.randn(2, 16))


@pytest.mark.parametrize("input_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("rows", [6, compiled.MIN_NUMEL // 64])  # eager ops, compiled kernels
def test_bf16_autocast_computes_in_float32(input_dtype, rows):
    layer = GroupRational(64, groups=8, init="gelu")
    x = moderate_inputs(rows, 64, dtype=torch.float32).clamp(-8, 8).to(input_dtype).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
    assert y.dtype == input_dtype
    want = direct_rational(x.detach(), layer.weight_numerator.detach(), layer.weight_denominator.detach(), 8)
    torch.testing.assert_close(y.double(), want, rtol=1e-2, atol=1e-2)
    y.float().square().sum().backward()
    xd = x.detach().double().requires_grad_()
    a, b = (p.detach().double().requires_grad_() for p in (layer.weight_numerator, layer.weight_denominator))
    out = direct_rational(xd, a, b, 8)
    out.backward(2 * y.detach().double())  # the same upstream gradient, 2 F(x) in the input dtype
    torch.testing.assert_close(x.grad.double(), xd.grad, rtol=1e-2, atol=1e-2)
    for p, want_grad in ((layer.weight_numerator, a.grad), (layer.weight_denominator, b.grad)):
        scale = want_grad.abs().max()
        torch.testing.assert_close(p.grad.double() / scale, want_grad / scale, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("backend", ["eager", "inductor"])
def test_torch_compile_fullgraph_matches_eager(backend):
    torch._dynamo.reset()
    a, b = coefficients(8, True, dtype=torch.float32)
    x = moderate_inputs(4, 32, dtype=torch.float32)
    inputs = [t.clone().requires_grad_() for t in (x, a, b)]
    compiled_inputs = [t.clone().requires_grad_() for t in (x, a, b)]
    compiled = torch.compile(lambda *t: group_rational_fused(*t, 8), backend=backend, fullgraph=True)
    out, got = group_rational_fused(*inputs, 8), compiled(*compiled_inputs)
    torch.testing.assert_close(got, out, rtol=1e-5, atol=1e-5)
    grad = torch.randn_like(out)
    for g, e in zip(
        torch.autograd.grad(got, compiled_inputs, grad), torch.autograd.grad(out, inputs, grad), strict=True
    ):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("rows", [4, compiled.MIN_NUMEL // 32])  # eager ops, compiled kernels
def test_float32_finite_up_to_1e30(rows):
    numerator, denominator = (torch.tensor(c, dtype=torch.float32) for c in RATIONAL_INITS["gelu"])
    a, b = numerator.reshape(1, -1).clone(), denominator.repeat(2, 1)
    x = torch.zeros(rows, 32)
    big = torch.tensor([1e30, -1e30, 3e20, -2e15, 1e8, -1e5, 1e-30, 0.0])
    x[:, :8] = big
    x[:, 16:24] = big
    inputs = [t.clone().requires_grad_() for t in (x, a, b)]
    out = group_rational_fused(*inputs, 2)
    assert torch.isfinite(out).all()
    # F(x) ~ x a_5 / |b_4| for large |x|: the asymptote, in float64
    asymptote = 1e30 * numerator[5].double() / denominator[3].double()
    assert math.isclose(out[0, 0].item(), asymptote, rel_tol=1e-3)
    grads = torch.autograd.grad(out[:, [0, 1, 2, 16]].sum() / rows, inputs)
    assert all(torch.isfinite(g).all() for g in grads)
    torch.testing.assert_close(out, group_rational_pytorch(x, a, b, 2), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rows", [4, compiled.MIN_NUMEL // 32])  # plain ops, compiled kernels
@pytest.mark.parametrize("shared", [True, False])
def test_custom_ops_agree_with_their_fake_implementations(rows, shared):
    """The schema and the fake (meta) implementations that export and compiled autograd rely on: shapes, dtypes
    and strides of every output."""
    from kanvision.layers.rational_fused import _backward_op, _forward_op

    a, b = coefficients(2, shared, dtype=torch.float32)
    x = moderate_inputs(rows, 32, dtype=torch.float32).view(rows, 2, 16)
    grad = torch.randn_like(x)
    torch.library.opcheck(_forward_op, (x, a, b), test_utils=("test_schema", "test_faketensor"))
    torch.library.opcheck(_backward_op, (x, grad, a, b), test_utils=("test_schema", "test_faketensor"))


def test_rational_modules_import_each_other_in_one_direction_and_kernels_import_no_layers():
    """rational.py imports rational_fused.py, never the reverse (also not lazily inside a function); both get the
    reference formula from kanvision.kernels, and no kernels module imports kanvision.layers."""
    import ast
    from pathlib import Path

    import kanvision

    root = Path(kanvision.__file__).parent

    def imported(path: Path) -> set[str]:
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
            elif isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
        return names

    assert "kanvision.layers.rational_fused" in imported(root / "layers" / "rational.py")
    assert not any(
        name.startswith("kanvision.layers.rational") for name in imported(root / "layers" / "rational_fused.py")
    )
    for path in (root / "kernels").glob("*.py"):
        assert not any(name.startswith("kanvision.layers") for name in imported(path)), path.name
