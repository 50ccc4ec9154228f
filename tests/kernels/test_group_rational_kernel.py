"""The fused GroupRational Triton kernel, run on CPU by Triton's interpreter, against a float64 formula.

Triton's interpreter must be selected before triton is first imported. This module sets ``TRITON_INTERPRET=1`` at
import; when something earlier in the session had already imported triton (torch._dynamo does), the interpreter
tests are run by ``test_interpreter_suite_in_fresh_process`` in a fresh process instead of in this one.
"""

import os
import re

os.environ.setdefault("TRITON_INTERPRET", "1")

import subprocess  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from kanvision.kernels import group_rational as kernel_module  # noqa: E402
from kanvision.kernels.group_rational import group_rational  # noqa: E402

try:
    INTERPRETING = kernel_module._interpreting()
except RuntimeError:  # triton was imported before this module set TRITON_INTERPRET
    INTERPRETING = False
needs_interpreter = pytest.mark.skipif(
    not INTERPRETING,
    reason="triton was imported before TRITON_INTERPRET=1; test_interpreter_suite_in_fresh_process runs these",
)
REPO_ROOT = Path(__file__).resolve().parents[2]


def reference(x, weight_numerator, weight_denominator, groups):
    """F(x) = P(x) / (1 + sum_i |b_i| |x|^i) per channel group, written out in float64."""
    channels = x.shape[-1]
    x = x.double()
    a = weight_numerator.double().expand(groups, -1).repeat_interleave(channels // groups, 0)  # (C, m+1)
    b = weight_denominator.double().repeat_interleave(channels // groups, 0)  # (C, n)
    numerator = sum(a[:, k] * x**k for k in range(a.shape[1]))
    denominator = 1 + sum(b[:, i - 1].abs() * x.abs() ** i for i in range(1, b.shape[1] + 1))
    return numerator / denominator


def reference_with_grads(x, a, b, groups, grad_output):
    xr, ar, br = (t.detach().double().requires_grad_() for t in (x, a, b))
    y = reference(xr, ar, br, groups)
    return (y.detach(), *torch.autograd.grad(y, (xr, ar, br), grad_output.double(), materialize_grads=True))


def make_coefficients(groups, order=(5, 4), shared=True, dtype=torch.float32):
    m, n = order
    a = torch.randn(1 if shared else groups, m + 1, dtype=dtype) / torch.arange(1, m + 2) ** 1.5
    b = torch.randn(groups, n, dtype=dtype) / torch.arange(1, n + 1) ** 1.5  # negative b's included
    if n >= 3:
        b[0, 0], b[-1, 2] = 0.0, -0.7  # an exact zero (sign(0) = 0) and a negative odd-power coefficient
    return a.requires_grad_(), b.requires_grad_()


def scaled_error(actual, expected):
    """max |actual - expected| / (|expected| + 1e-3 max|expected|): relative, with a floor for entries near 0."""
    expected = expected.double()
    scale = expected.abs() + expected.abs().max() * 1e-3
    return ((actual.double() - expected).abs() / scale).max().item()


def assert_close_scaled(actual, expected, rtol):
    err = scaled_error(actual, expected)
    assert err <= rtol, f"max scaled error {err:.3g} > {rtol}"


def fp32_formula_error(x, a, b, groups, grad_output):
    """How far plain fp32 evaluation of the formula (autograd) lands from float64: the problem's own conditioning.
    dF/dx = (P' - sign(x) Q' F) / Q cancels for |x| ~ 1e3, so fp32 itself is only good to ~1e-5 there."""
    xr, ar, br = (t.detach().float().requires_grad_() for t in (x, a, b))
    y = _formula_fp32(xr, ar, br, groups)
    dx = torch.autograd.grad(y, xr, grad_output.float())[0]
    _, dx_ref, _, _ = reference_with_grads(x, a, b, groups, grad_output)
    return scaled_error(dx, dx_ref)


def _formula_fp32(x, weight_numerator, weight_denominator, groups):
    channels = x.shape[-1]
    a = weight_numerator.expand(groups, -1).repeat_interleave(channels // groups, 0)
    b = weight_denominator.repeat_interleave(channels // groups, 0)
    numerator = sum(a[:, k] * x**k for k in range(a.shape[1]))
    denominator = 1 + sum(b[:, i - 1].abs() * x.abs() ** i for i in range(1, b.shape[1] + 1))
    return numerator / denominator


def strided_view(kind, rows, channels):
    """x of shape (rows, channels) or (b, t, channels) in different memory layouts."""
    if kind == "contiguous":
        return torch.randn(2, rows, channels)
    if kind == "sliced_rows":  # rows of stride 2C, read in place
        return torch.randn(rows, 2 * channels)[:, :channels]
    if kind == "transposed":  # column stride = rows, read in place
        return torch.randn(channels, rows).t()
    if kind == "permuted":  # NCHW -> NHWC view; reshape to rows must copy
        return torch.randn(2, channels, 3, rows).permute(0, 2, 3, 1)
    raise AssertionError(kind)


CASES = [
    # (x layout, rows, channels, groups, shared numerator, order)
    ("contiguous", 5, 24, 8, True, (5, 4)),  # KAT layout, C/g = 3
    ("contiguous", 1, 8, 8, True, (5, 4)),  # one row, one channel per group
    ("contiguous", 7, 21, 3, False, (5, 4)),  # odd C, smaller than one column block, per-group numerator
    ("contiguous", 33, 200, 8, True, (5, 4)),  # several column blocks and row programs
    ("sliced_rows", 9, 48, 4, False, (3, 2)),
    ("transposed", 11, 40, 2, True, (5, 4)),
    ("permuted", 4, 30, 5, False, (7, 7)),  # highest supported orders
    ("contiguous", 6, 16, 1, True, (0, 1)),  # constant numerator, one group
    ("contiguous", 6, 16, 16, False, (2, 0)),  # no denominator: a polynomial
]


@needs_interpreter
@pytest.mark.parametrize(("layout", "rows", "channels", "groups", "shared", "order"), CASES)
def test_fp32_values_and_gradients_match_float64_formula(layout, rows, channels, groups, shared, order):
    x = strided_view(layout, rows, channels)
    x.mul_(3)
    x[(0,) * (x.dim() - 1)][:3] = 0.0  # exact zeros, where d|x|/dx = sign(0) = 0
    x[..., -1] = 1e3 * torch.sign(x[..., -1])  # |x| up to 1e3
    x.requires_grad_()
    a, b = make_coefficients(groups, order, shared)
    y = group_rational(x, a, b, groups)
    assert y.shape == x.shape and y.dtype == x.dtype and y.is_contiguous()
    grad_output = torch.randn_like(y)
    dx, da, db = torch.autograd.grad(y, (x, a, b), grad_output)
    y_ref, dx_ref, da_ref, db_ref = reference_with_grads(x, a, b, groups, grad_output)
    assert_close_scaled(y, y_ref, 1e-5)
    # dx at |x| = 1e3 is as ill-conditioned in fp32 as the formula itself makes it (up to ~3e-5 for order (7, 7)).
    assert_close_scaled(dx, dx_ref, max(1e-5, 3 * fp32_formula_error(x, a, b, groups, grad_output)))
    # Coefficient gradients are sums over many terms of both signs: relative to their norm.
    for got, ref in ((da, da_ref), (db, db_ref)):
        assert got.shape == ref.shape and got.dtype == torch.float32
        assert (got.double() - ref).norm() <= 1e-5 * ref.norm() + 1e-12, (got, ref)


@needs_interpreter
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inputs_compute_in_fp32(dtype):
    groups = 8
    x = (torch.randn(3, 10, 64) * 2).to(dtype).requires_grad_()
    a, b = make_coefficients(groups)
    y = group_rational(x, a, b, groups)
    assert y.dtype == dtype
    grad_output = torch.randn_like(y)
    dx, da, db = torch.autograd.grad(y, (x, a, b), grad_output)
    assert dx.dtype == dtype and da.dtype == db.dtype == torch.float32
    y_ref, dx_ref, da_ref, db_ref = reference_with_grads(x, a, b, groups, grad_output)
    assert_close_scaled(y, y_ref, 1e-2)
    assert_close_scaled(dx, dx_ref, 1e-2)
    # Only the outputs are rounded to half precision: the fp32 coefficient gradients are nearly exact.
    for got, ref in ((da, da_ref), (db, db_ref)):
        assert (got.double() - ref).norm() <= 1e-4 * ref.norm()


@needs_interpreter
@pytest.mark.parametrize("shared", [True, False])
def test_matches_group_rational_pytorch(shared):
    from kanvision.layers.rational import group_rational_pytorch

    groups = 4
    x = (torch.randn(2, 5, 36) * 2).requires_grad_()
    a, b = make_coefficients(groups, shared=shared)
    y = group_rational(x, a, b, groups)
    grad_output = torch.randn_like(y)
    grads = torch.autograd.grad(y, (x, a, b), grad_output)
    y_pt = group_rational_pytorch(x, a, b, groups)
    grads_pt = torch.autograd.grad(y_pt, (x, a, b), grad_output)
    torch.testing.assert_close(y, y_pt, rtol=1e-5, atol=1e-5)
    for got, ref in zip(grads, grads_pt, strict=True):
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())


@needs_interpreter
@pytest.mark.parametrize("channel_dim", [-1, 1])
def test_layer_uses_kernel_when_forced(channel_dim):
    from kanvision.layers.rational import GroupRational

    layer = GroupRational(32, groups=4, init="swish", channel_dim=channel_dim, use_kernel=True)
    pytorch_layer = GroupRational(32, groups=4, init="swish", channel_dim=channel_dim, use_kernel=False)
    x = torch.randn(3, 7, 32) if channel_dim == -1 else torch.randn(2, 32, 3, 5)  # tokens or NCHW
    with FlopCounterMode(display=False) as counter:
        y = layer(x)
    assert counter.get_flop_counts()["Global"].get(torch.ops.kanvision.group_rational, 0) == 21 * x.numel()
    torch.testing.assert_close(y, pytorch_layer(x), rtol=1e-5, atol=1e-6)


@needs_interpreter
def test_coefficient_gradient_is_deterministic():
    x = torch.randn(64, 48)
    a, b = make_coefficients(8)
    grads = [torch.autograd.grad(group_rational(x, a, b, 8).square().sum(), (a, b)) for _ in range(2)]
    assert all(torch.equal(g0, g1) for g0, g1 in zip(*grads, strict=True))


@needs_interpreter
def test_broadcast_grad_output():
    # y.sum() hands the backward an expanded gradient with stride 0 in every dimension.
    groups = 4
    x = (torch.randn(3, 4, 20) * 2).requires_grad_()
    a, b = make_coefficients(groups, shared=False)
    grads = torch.autograd.grad(group_rational(x, a, b, groups).sum(), (x, a, b))
    _, *grads_ref = reference_with_grads(x, a, b, groups, torch.ones(x.shape))
    for got, ref in zip(grads, grads_ref, strict=True):
        assert (got.double() - ref).norm() <= 1e-5 * ref.norm()


@needs_interpreter
def test_empty_input():
    a, b = make_coefficients(8)
    x = torch.randn(0, 16, requires_grad=True)
    y = group_rational(x, a, b, 8)
    assert y.shape == (0, 16)
    da, db = torch.autograd.grad(y.sum(), (a, b))
    assert not da.any() and not db.any()


@needs_interpreter
def test_autocast_casts_only_x():
    groups = 8
    x = torch.randn(4, 32, requires_grad=True)
    a, b = make_coefficients(groups)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = group_rational(x, a, b, groups)
    assert y.dtype == torch.bfloat16
    # Same as the kernel on the bf16-rounded input with the fp32 coefficients (not bf16-rounded ones).
    torch.testing.assert_close(y, group_rational(x.detach().bfloat16(), a, b, groups), rtol=0, atol=0)
    dx, da = torch.autograd.grad(y.float().sum(), (x, a))
    assert dx.dtype == torch.float32 and da.dtype == torch.float32


@needs_interpreter
def test_flop_counter_counts_forward_and_backward():
    groups = 4
    x = torch.randn(3, 5, 16, requires_grad=True)
    a, b = make_coefficients(groups)
    with FlopCounterMode(display=False) as counter:
        group_rational(x, a, b, groups).sum().backward()
    counts = counter.get_flop_counts()["Global"]
    assert counts[torch.ops.kanvision.group_rational] == 21 * x.numel()
    assert counts[torch.ops.kanvision.group_rational_backward] == 61 * x.numel()
    assert kernel_module.forward_flops_per_element(3, 2) == 2 * 4 + 2 * 2 + 1


@needs_interpreter
def test_opcheck_registrations():
    # Schema, fake (meta) implementation, autograd registration and AOT dispatch, as torch.library checks them.
    a, b = make_coefficients(4)
    x = torch.randn(3, 16, requires_grad=True)
    torch.library.opcheck(torch.ops.kanvision.group_rational.default, (x, a, b, 4))
    g = torch.randn(3, 16)
    torch.library.opcheck(
        torch.ops.kanvision.group_rational_backward.default, (g, x.detach(), a.detach(), b.detach(), 4)
    )


@needs_interpreter
def test_torch_compile_aot_eager_matches_eager():
    groups = 4
    a, b = make_coefficients(groups)
    x = torch.randn(2, 6, 32, requires_grad=True)

    def f(x, a, b):
        return group_rational(x * 2 + 1, a, b, groups).sin()

    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)
    y_eager, y_compiled = f(x, a, b), compiled(x, a, b)
    torch.testing.assert_close(y_compiled, y_eager)
    grads_eager = torch.autograd.grad(y_eager.sum(), (x, a, b))
    grads_compiled = torch.autograd.grad(y_compiled.sum(), (x, a, b))
    for got, ref in zip(grads_compiled, grads_eager, strict=True):
        torch.testing.assert_close(got, ref)


@needs_interpreter
@pytest.mark.slow
def test_torch_compile_inductor_with_autocast_matches_eager():
    groups = 4
    a, b = make_coefficients(groups)
    linear = torch.nn.Linear(32, 32)
    x = torch.randn(2, 6, 32)

    def f(x):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return linear(group_rational(torch.nn.functional.layer_norm(x, (32,)), a, b, groups))

    y_eager = f(x)
    y_compiled = torch.compile(f, fullgraph=True)(x)
    assert y_compiled.dtype == y_eager.dtype == torch.bfloat16
    torch.testing.assert_close(y_compiled.float(), y_eager.float(), rtol=2e-2, atol=2e-2)
    ga = torch.autograd.grad(y_eager.float().sum(), a)[0]
    ga_compiled = torch.autograd.grad(torch.compile(f)(x).float().sum(), a)[0]
    torch.testing.assert_close(ga_compiled, ga, rtol=2e-2, atol=1e-3 * ga.abs().max().item())


@pytest.mark.parametrize(
    ("shape", "numerator_shape", "denominator_shape", "groups", "match"),
    [
        ((4, 30), (1, 6), (8, 4), 8, "30.*groups=8"),
        ((4, 32), (2, 6), (8, 4), 8, "weight_numerator"),
        ((4, 32), (1, 6), (4, 4), 8, "weight_denominator"),
        ((4, 32), (1, 9), (8, 4), 8, "numerator order 8"),
        ((4, 32), (1, 6), (8, 8), 8, "denominator order 8"),
        ((4, 32), (1, 6), (8, 4), 0, "groups"),
    ],
)
def test_bad_arguments_raise_value_error(shape, numerator_shape, denominator_shape, groups, match):
    with pytest.raises(ValueError, match=match):
        group_rational(torch.randn(shape), torch.randn(numerator_shape), torch.randn(denominator_shape), groups)


def test_float64_is_refused():
    with pytest.raises(ValueError, match="float64"):
        group_rational(torch.randn(2, 8, dtype=torch.float64), torch.randn(1, 6), torch.randn(8, 4), 8)


@pytest.mark.skipif(INTERPRETING, reason="this process already runs the interpreter tests")
def test_interpreter_suite_in_fresh_process():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", __file__, "-q", "-m", "not slow", "-p", "no:cacheprovider"]
        + ["-k", "not compile_for_hopper"],  # that one runs here already
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    summary = result.stdout.strip().splitlines()[-1]
    # Only the fresh-process test itself may skip there: everything else ran in the interpreter.
    assert "passed" in summary and re.search(r"\b([2-9]|\d\d+) skipped", summary) is None, summary


def test_kernels_compile_for_hopper_without_a_gpu():
    """The real (non-interpreted) path: Triton -> PTX -> cubin for sm_90 with the ptxas bundled in triton; no
    register spills, and 16-byte vector loads/stores where the runtime would see aligned, contiguous rows."""
    script = textwrap.dedent(
        """
        import os, re, subprocess, tempfile
        import triton
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource
        from kanvision.kernels import group_rational as gr

        target = GPUTarget("cuda", 90, 32)
        ptxas = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
        for dt, (m, n), contiguous, warps in (("*bf16", (5, 4), True, 4), ("*fp32", (7, 7), False, 8),
                                              ("*fp16", (3, 0), True, 2)):
            col = "constexpr" if contiguous else "i32"
            fwd = dict(x_ptr=dt, stride_xr="i32", stride_xc=col, y_ptr=dt, coef_ptr="*fp32")
            bwd = dict(go_ptr=dt, stride_gr="i32", stride_gc=col, x_ptr=dt, stride_xr="i32", stride_xc=col,
                       dx_ptr=dt, coef_ptr="*fp32", partial_ptr="*fp32", flag_ptr="*i8")
            tail = dict(n_rows="i32", n_cols="i32", M="constexpr", N="constexpr", TILE="constexpr",
                        BLOCK_C="constexpr")
            limit = dict(DIRECT_LIMIT="constexpr")
            for fn, sig in ((gr._forward_jit, {**fwd, **tail}), (gr._backward_jit, {**bwd, **tail, **limit}),
                            (gr._safe_backward_jit, {**bwd, **tail})):
                consts = dict(M=m, N=n, TILE=1024, BLOCK_C=128)
                if "DIRECT_LIMIT" in sig:
                    consts["DIRECT_LIMIT"] = gr.direct_limit(m, n)
                consts.update({k: 1 for k in ("stride_xc", "stride_gc") if k in sig and contiguous})
                # What triton's launcher specialises for 16-byte aligned pointers and multiples of 16.
                aligned = [k for k in sig if k.endswith("_ptr") or (contiguous and k in ("stride_xr", "stride_gr",
                                                                                         "n_cols"))]
                attrs = {(list(sig).index(k),): [["tt.divisibility", 16]] for k in aligned}
                compiled = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=consts, attrs=attrs),
                                          target=target, options={"num_warps": warps})
                assert compiled.asm["cubin"], "no cubin"
                ptx = compiled.asm["ptx"]
                with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as f:
                    f.write(ptx)
                info = subprocess.run([ptxas, "-v", "--gpu-name", "sm_90a", f.name, "-o", os.devnull],
                                      capture_output=True, text=True, check=True).stderr
                # (a "0 bytes" substring test would pass "660 bytes spill stores"); the safe-form kernel runs only
                # for tiles with |x| beyond the direct form's limit, where spills do not matter
                if fn is not gr._safe_backward_jit:
                    assert re.search(r"\\b0 bytes spill stores", info), (fn, dt, info)
                if contiguous:
                    assert "ld.global.v4" in ptx and "st.global.v4" in ptx, (fn, dt, "no vector access")
                    # Coefficients come as vectors too: no per-column scalar gathers beyond a handful (the rarely
                    # run safe-form kernel loads its coefficient rows per tile).
                    if fn is not gr._safe_backward_jit:
                        assert ptx.count("ld.global.b32") <= 16, (fn, dt, ptx.count("ld.global.b32"))
        print("ok")
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stdout[-2000:] + result.stderr[-4000:]


@needs_interpreter
def test_forward_is_finite_and_exact_up_to_1e30():
    """The kernel divides by the leading powers for |x| > 1, as the PyTorch path: no float32 overflow up to 1e30."""
    from kanvision.layers.rational import GroupRational

    layer = GroupRational(16, groups=2, init="swish")
    magnitudes = torch.tensor([1e30, 1e20, 1e12, 4.5e7, 1e4, 1.5, 1.0, 0.5, 0.0])
    x = torch.cat([magnitudes, -magnitudes[:7]]).view(1, 16)
    a, b = layer.weight_numerator.detach(), layer.weight_denominator.detach()
    y = group_rational(x, a, b, 2)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y.double(), reference(x, a, b, 2), rtol=2e-5, atol=1e-20)


def exact_rational(x, a, b):
    """F, dF/dx, dF/da_k, dF/db_i at one x in exact rational arithmetic, rounded to float64 (+-inf beyond it)."""
    from fractions import Fraction

    def rounded(value):
        try:
            return float(value)
        except OverflowError:
            return float("inf") if value > 0 else float("-inf")

    X = Fraction(x)
    A, C = [Fraction(v) for v in a], [Fraction(1)] + [abs(Fraction(v)) for v in b]
    sign = (X > 0) - (X < 0)
    p = sum(ak * X**k for k, ak in enumerate(A))
    q = sum(ci * abs(X) ** i for i, ci in enumerate(C))
    dp = sum(k * ak * X ** (k - 1) for k, ak in enumerate(A) if k > 0)
    dq = sum(i * ci * abs(X) ** (i - 1) for i, ci in enumerate(C) if i > 0)
    f = p / q
    grad_a = [rounded(X**k / q) for k in range(len(A))]
    grad_b = [rounded(-f * abs(X) ** i / q * ((v > 0) - (v < 0))) for i, v in enumerate(b, 1)]
    return rounded(f), rounded((dp - sign * f * dq) / q), grad_a, grad_b


@needs_interpreter
@pytest.mark.parametrize(
    ("order", "init"),
    [((5, 4), "identity"), ((5, 4), "random"), ((7, 1), "identity"), ((7, 1), "random"), ((3, 6), "random"),
     ((7, 7), "random"), ((2, 0), "random"), ((4, 3), "top denominator coefficients 0")],
)  # fmt: skip
def test_every_order_is_finite_and_exact_beyond_the_direct_form(order, init):
    """|x| from 0 to 1e30, one group per input (so the coefficient gradients are per input): values and every
    gradient against exact arithmetic wherever that is within float32's range. The backward's direct form gives
    way to the safe one in tiles with |x| > direct_limit (2^14 at order (7, 7)), where x^7 would overflow and
    P'/Q, F Q'/Q would cancel their leading terms ((7, 1) identity: F' ~ 1e-24 at 1e20 from terms ~ 1e-12)."""
    magnitudes = [0.0, 1e-3, 0.5, 1.0, 1.5, 10.0, 1e3, 1e6, 1e12, 1e20, 1e30]
    values = [v for m in magnitudes for v in (m, -m)]
    groups, (m, n) = len(values), order
    generator = torch.Generator().manual_seed(0)
    if init == "identity":
        a, b = torch.zeros(groups, m + 1), torch.full((groups, n), 1e-8)  # GroupRational's tie-broken identity
        a[:, 1] = 1.0
    else:
        a, b = torch.randn(groups, m + 1, generator=generator), torch.randn(groups, n, generator=generator)
    if init == "top denominator coefficients 0":
        b[:, 1:] = 0.0
    x = torch.tensor(values).view(1, groups).requires_grad_()
    a.requires_grad_()
    b.requires_grad_()
    y = group_rational(x, a, b, groups)
    y.sum().backward()
    exact = [exact_rational(v, a[g].tolist(), b[g].tolist()) for g, v in enumerate(values)]
    got = [y[0], x.grad[0], a.grad, b.grad]
    for index, name in enumerate(["F", "dF/dx", "dF/da", "dF/db"]):
        expected = torch.tensor([e[index] for e in exact], dtype=torch.float64)
        actual = got[index].double()
        representable = expected.abs() < torch.finfo(torch.float32).max / 2
        assert torch.isfinite(actual[representable]).all(), name
        # the float32 rounding of the direct form's cancellations in dF/dx below |x| = 1 (terms of size ~10)
        atol = 1e-5 if name == "dF/dx" else 1e-30
        small = torch.tensor(values).abs().view(-1, *[1] * (expected.dim() - 1)) <= 1
        close = (actual - expected).abs() <= 2e-5 * expected.abs() + torch.where(small, atol, 1e-30)
        assert close[representable].all(), (name, actual[~close], expected[~close])
