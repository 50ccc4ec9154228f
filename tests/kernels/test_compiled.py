"""The basis expansion on compiled CPU kernels (``kanvision.kernels.compiled``) against autograd of the reference."""

import os
import subprocess
import sys
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch._dynamo.utils import counters
from torch.utils.flop_counter import FlopCounterMode

from kanvision.kernels import compiled
from kanvision.layers import Basis, KANConv2d, create_basis, list_bases

KERNELS = [("_forward", True), ("_backward", True)]


def _x(shape, dtype=torch.float64, layout=None):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(shape, generator=g, dtype=dtype) * 3 - 1.5  # across the grid [-1, 1] and beyond its knots
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "transposed":
        x = x.t()
    return x.requires_grad_()


def _check(basis, x, dim, activation, atol=1e-12):
    """Kernel values and x-gradient against autograd of the reference ops (float64 tolerances by default)."""
    y, ref = basis(x, dim, activation), basis.reference(x, dim, activation)
    torch.testing.assert_close(y, ref, atol=atol, rtol=0)
    grad = torch.randn_like(ref)
    (gx,) = torch.autograd.grad(y, x, grad)
    torch.testing.assert_close(gx, torch.autograd.grad(ref, x, grad)[0], atol=max(atol, 1e-11), rtol=1e-5)
    return y, gx


LAYOUTS = {  # the canonical (P, 1, Q) view of each: P > 1 and Q > 1, Q = 1, P = 1
    "conv": ((4, 16, 24, 24), None, 2),
    "channels_last": ((4, 16, 24, 24), "channels_last", 2),
    "linear": ((512, 96), None, -1),
    "transposed": ((96, 512), "transposed", -1),
    "outermost": ((64, 1024), None, 0),
}


# the layouts of new kernel variants beyond the two common ones compile for seconds each: slow
@pytest.mark.parametrize(
    "layout", [pytest.param(k, marks=pytest.mark.slow) if k in ("transposed", "outermost") else k for k in LAYOUTS]
)
def test_kernels_match_autograd_of_the_reference_in_float64(compiled_calls, layout):
    shape, memory, dim = LAYOUTS[layout]
    basis = create_basis("bspline", grid_size=4, spline_order=3)
    x = _x(shape, layout=memory)
    y, gx = _check(basis, x, dim, F.silu)
    assert y.stride() == basis.reference(x, dim, F.silu).stride() and gx.stride() == x.stride()
    assert compiled_calls == KERNELS


@pytest.mark.parametrize("name", [n for n in list_bases() if n != "kagn"])  # kagn is learnable: the reference
def test_every_basis_takes_the_kernels(compiled_calls, name):
    _check(create_basis(name), _x((4, 16, 24, 24), dtype=torch.float32), 2, F.silu, atol=1e-5)
    assert compiled_calls == KERNELS


@pytest.mark.slow
@pytest.mark.parametrize("activation", [None, F.gelu])
def test_kernels_with_other_base_branches_and_orders(compiled_calls, activation):
    basis = create_basis("bspline", grid_size=7, spline_order=1, grid_range=(-0.5, 2.0))
    _check(basis, _x((8, 16, 16, 16)), 2, activation)
    assert compiled_calls == KERNELS


def test_kernel_output_is_not_a_view_and_can_be_changed_in_place(compiled_calls):
    basis = create_basis("bspline")
    x = _x((4, 16, 24, 24))
    y = basis(x, 2, F.silu)
    assert y._base is None
    y.mul_(2)  # autograd forbids this on a view made inside a custom Function
    grad = torch.randn_like(y)
    (gx,) = torch.autograd.grad(y, x, grad)
    (gref,) = torch.autograd.grad(basis.reference(x, 2, F.silu), x, 2 * grad)
    torch.testing.assert_close(gx, gref)
    assert ("_forward", True) in compiled_calls


def test_conv_layer_on_the_kernels_matches_the_plain_ops(compiled_calls, monkeypatch):
    conv = KANConv2d(16, 8, 3, padding=1, stride=2, basis="bspline")
    x = _x((2, 16, 32, 32), dtype=torch.float32)
    results = []
    for kernels in ("1", "0"):
        monkeypatch.setenv("KANVISION_CPU_KERNELS", kernels)
        out = conv(x)
        results.append((out, *torch.autograd.grad(out.square().sum(), (x, conv.weight))))
    assert compiled_calls == KERNELS + [("_forward", False), ("_backward", False)]
    for fused, plain in zip(*results, strict=True):
        torch.testing.assert_close(fused, plain, atol=1e-5, rtol=1e-5)


def test_half_precision_input_computes_in_float32(compiled_calls):
    basis = create_basis("bspline")
    x = _x((4, 16, 24, 24), dtype=torch.float32)
    xb = x.detach().bfloat16().requires_grad_()
    y = basis(xb, 2, F.silu)
    assert y.dtype == torch.bfloat16
    ref = basis.reference(xb.float(), 2, F.silu)
    torch.testing.assert_close(y.float(), ref, atol=1e-6, rtol=2**-8)  # bf16 rounding of the float32 values
    grad = torch.randn_like(ref)
    y.backward(grad.bfloat16())
    xr = xb.detach().float().requires_grad_()
    basis.reference(xr, 2, F.silu).backward(grad.bfloat16().float())
    assert xb.grad.dtype == torch.bfloat16
    torch.testing.assert_close(xb.grad.float(), xr.grad, atol=1e-5, rtol=2**-8)
    assert compiled_calls == KERNELS


def test_new_sizes_and_grids_reuse_the_compiled_kernels(compiled_calls):
    first = create_basis("bspline", grid_size=5)
    # compiles this variant (or finds it compiled) for rows that are a multiple of the vector width and for others
    for shape in [(4, 16, 24, 24), (4, 16, 24, 25)]:
        first(_x(shape, dtype=torch.float32), 2, F.silu).sum().backward()
    graphs = counters["stats"]["unique_graphs"]
    # P = Q, sizes equal to n, other grids with the same number of functions, other batch sizes and instances
    for shape, basis in [
        ((32, 32, 32, 32), first),
        ((1, 8, 8, 512), first),
        ((3, 5, 7, 1000), first.resized(-3.0, 2.0, 5)),
        ((4, 16, 24, 24), create_basis("bspline", grid_size=5, grid_range=(0.0, 4.0))),
    ]:
        x = _x(shape, dtype=torch.float32)
        y = basis(x, 2, F.silu)
        torch.testing.assert_close(y, basis.reference(x, 2, F.silu), atol=1e-5, rtol=0)  # float32 rounding
        y.sum().backward()
    assert counters["stats"]["unique_graphs"] == graphs
    assert all(ok for _, ok in compiled_calls) and len(compiled_calls) == 12


def _fails_when_called(fn, **kwargs):
    def fail(*args):
        raise RuntimeError("cannot trace this")

    return fail


def _refuses_the_options(fn, **kwargs):  # torch.compile with an option its inductor does not know
    raise RuntimeError("cannot trace this: unexpected optimization option")


@pytest.mark.parametrize("broken", [_fails_when_called, _refuses_the_options])
def test_a_function_that_fails_to_compile_runs_the_plain_ops_with_a_warning(compiled_calls, monkeypatch, broken):
    monkeypatch.setattr(torch, "compile", broken)
    monkeypatch.setattr(compiled, "_compiled", {})
    monkeypatch.setattr(compiled, "_failed", set())
    basis = create_basis("bspline")
    x = _x((4, 16, 24, 24))
    with pytest.warns(UserWarning, match="cannot trace this"):
        y = basis(x, 2, F.silu)
    torch.testing.assert_close(y, basis.reference(x, 2, F.silu), atol=1e-12, rtol=0)
    with pytest.warns(UserWarning, match="cannot trace this"):
        y.sum().backward()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second attempt (and no warning) for the failed functions
        basis(x, 2, F.silu).sum().backward()
    assert compiled_calls == [("_forward", False), ("_backward", False)] * 2


def test_an_inductor_that_refuses_the_tuning_options_compiles_with_its_defaults(compiled_calls, monkeypatch):
    compile_ = torch.compile
    given, refused = [], []

    def strict(fn, **kwargs):  # an inductor that knows none of the options, or only the older ones
        options = kwargs.get("options")
        given.append(options)
        if options and (refused[-1] == "all" or "cpp.enable_floating_point_contract_flag" in options):
            raise RuntimeError("unexpected optimization option")
        return compile_(fn, **kwargs)

    essential = {key: value for key, value in compiled._OPTIONS.items() if key not in compiled._OPTIONAL}
    for which, attempts in (("all", [compiled._OPTIONS, essential, None]), ("newer", [compiled._OPTIONS, essential])):
        given.clear()
        refused.append(which)
        monkeypatch.setattr(torch, "compile", strict)
        monkeypatch.setattr(compiled, "_compiled", {})
        basis = create_basis("bspline")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            _check(basis, _x((4, 16, 24, 24)), 2, F.silu)
        assert given == attempts * 2  # each kernel: refused, then fewer options
    assert compiled_calls == KERNELS * 2


def test_the_installed_inductor_takes_the_tuning_options():
    torch.compile(lambda x: x + 1, dynamic=True, options=compiled._OPTIONS)  # raises on an option it does not know


def test_without_a_cpp_compiler_the_plain_ops_run(tmp_path):
    """A real failed compile: no C++ compiler, and inductor's cache empty so that it must compile."""
    script = """
import warnings, torch, torch.nn.functional as F
torch._inductor.config.cpp.cxx = ("no-such-cxx",)
from kanvision.layers import create_basis
basis = create_basis("bspline")
x = torch.randn(4, 16, 24, 24, requires_grad=True)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    y = basis(x, 2, F.silu)
    y.sum().backward()
assert any("compiler" in str(w.message).lower() for w in caught), [str(w.message) for w in caught]
with warnings.catch_warnings():
    warnings.simplefilter("error")
    z = basis(x, 2, F.silu)
torch.testing.assert_close(y, basis.reference(x, 2, F.silu), atol=1e-6, rtol=0)
torch.testing.assert_close(z, y)
print("fallback ok")
"""
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "inductor"), KANVISION_CPU_KERNELS="1")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "fallback ok" in done.stdout, done.stderr[-3000:]


def test_which_inputs_take_the_kernels(monkeypatch):
    monkeypatch.delenv("KANVISION_CPU_KERNELS", raising=False)
    big = torch.empty(compiled.MIN_NUMEL)
    assert compiled.usable(big) and compiled.usable(big.double())
    assert not compiled.usable(big[1:])  # small: the eager ops are fast and need no compile
    assert not compiled.usable(big.bfloat16())  # callers pass the float32 compute copy
    assert compiled.usable(big.bfloat16(), dtypes=(torch.bfloat16,))
    assert not compiled.usable(torch.empty(compiled.MIN_NUMEL, device="meta"))
    monkeypatch.setenv("KANVISION_CPU_KERNELS", "0")
    assert not compiled.usable(big)


def test_flop_counting_force_eager_and_batched_gradients_give_the_same_values(compiled_calls):
    basis = create_basis("bspline")
    x = _x((4, 16, 24, 24))
    expected = basis.reference(x, 2, F.silu)
    with FlopCounterMode(display=False) as flops:  # dynamo runs the formulas as plain ops: they are counted
        y = basis(x, 2, F.silu)
    torch.testing.assert_close(y, expected, atol=1e-12, rtol=0)
    assert flops.get_total_flops() == 0  # elementwise ops count no FLOPs, and nothing failed
    with torch.compiler.set_stance("force_eager"):
        torch.testing.assert_close(basis(x, 2, F.silu), expected, atol=1e-12, rtol=0)
    grads = torch.randn(2, *y.shape, dtype=y.dtype)
    (batched,) = torch.autograd.grad(y, x, grads, is_grads_batched=True)
    assert not batched.requires_grad  # no graph kept without create_graph
    for g, gb in zip(grads, batched, strict=True):
        torch.testing.assert_close(gb, torch.autograd.grad(expected, x, g, retain_graph=True)[0])
    assert ("_backward", True) not in compiled_calls and not compiled._failed


def test_small_inputs_take_the_plain_ops(compiled_calls):
    create_basis("bspline")(_x((2, 3, 4, 5)), 2, F.silu).sum().backward()
    assert compiled_calls == []  # none large enough


def test_inference_mode_and_no_grad_give_the_training_values(compiled_calls, monkeypatch):
    conv = KANConv2d(16, 8, 3, padding=1, basis="bspline")
    x = _x((4, 16, 32, 32), dtype=torch.float32).detach()
    with torch.inference_mode():  # Lightning evaluates under inference mode
        inference = conv(x)
    with torch.no_grad():
        plain = conv(x)
    torch.testing.assert_close(inference, plain, atol=0, rtol=0)
    torch.testing.assert_close(plain, conv(x), atol=0, rtol=0)
    assert compiled_calls == [("_forward", True)] * 3
    monkeypatch.setenv("KANVISION_CPU_KERNELS", "0")
    torch.testing.assert_close(conv(x), plain, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "make",
    [
        lambda: _x((4, 16, 24, 48))[..., ::2],  # not dense
        lambda: _x((3, 4, 16, 24, 24))[1],  # a storage offset
        lambda: _x((4, 16, 24, 24)).permute(0, 2, 1, 3),  # permuted
        lambda: _x((4, 4096, 3)),  # small Q
    ],
    ids=["strided", "offset", "permuted", "small_q"],
)
def test_unusual_layouts_match_the_reference(compiled_calls, make):
    basis = create_basis("bspline")
    x = make()
    y, _ = _check(basis, x, 2, F.silu)
    assert y._base is None and y.stride() == basis.reference(x, 2, F.silu).stride()
    assert compiled_calls == KERNELS


def test_non_finite_inputs_give_nan_and_infinite_ones_the_border_value(compiled_calls):
    """NaN stays NaN; +-inf (and the largest finite values) get the B-splines' value far outside the grid, 0."""
    basis = create_basis("bspline")
    x = _x((4, 16, 24, 24)).detach()
    big = torch.finfo(x.dtype).max
    x[0, 0, 0, :5] = torch.tensor([float("nan"), float("inf"), -float("inf"), big, -big], dtype=x.dtype)
    y = basis(x.requires_grad_(), 2, None)
    assert y[0, 0, :, 0, 0].isnan().all() and y[0, 0, :, 0, 1:].isfinite().all()
    assert (y[0, 0, :, 0, 1:5] == 0).all()
    assert compiled_calls == [("_forward", True)]


@pytest.mark.slow
def test_an_outer_compile_neither_calls_nor_guards_on_the_kernels(monkeypatch):
    monkeypatch.delenv("KANVISION_CPU_KERNELS", raising=False)
    basis = create_basis("chebyshev")
    outer = torch.compile(lambda t: basis(t, 1, F.silu), dynamic=True)
    for shape in [(64, 1024), (4, 8)]:  # above and below MIN_NUMEL: one graph for both
        outer(_x(shape, dtype=torch.float32)).sum().backward()
    graphs = counters["stats"]["unique_graphs"]
    outer(_x((64, 2048), dtype=torch.float32)).sum().backward()
    assert counters["stats"]["unique_graphs"] == graphs
    spline = create_basis("bspline")
    x = _x((64, 1024), dtype=torch.float32)
    y = torch.compile(lambda t: spline(t, 1, F.silu))(x)
    torch.testing.assert_close(y, spline.reference(x, 1, F.silu), atol=1e-5, rtol=0)


class _PowerBasis(Basis):
    """(s x)^0..(s x)^(n-1) with its derivative j s (s x)^(j-1) (0 for j = 0, also at x = 0)."""

    def __init__(self, n=4, scale=0.5):
        super().__init__()
        self.scale, self.num_functions = scale, n

    def values(self, x):
        return (self.scale * x) ** torch.arange(self.num_functions, dtype=x.dtype).view(-1, 1)

    def derivative(self, x):
        j = torch.arange(self.num_functions, dtype=x.dtype).view(-1, 1)
        return torch.where(j > 0, j * self.scale * (self.scale * x) ** (j - 1).clamp(min=0), 0.0)


def test_a_new_basis_gets_the_kernels_through_its_values_and_derivative(compiled_calls):
    x = _x((4, 16, 24, 24))
    for n in (4, 6):
        _check(_PowerBasis(n), x, 2, F.silu)
    assert compiled_calls == KERNELS * 2


class _WrongBasis(_PowerBasis):
    def values(self, x):
        return torch.cat([x] * (self.num_functions + 1), 1)


def test_values_with_the_wrong_number_of_slots_are_an_error(compiled_calls):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the compiled attempt fails first
        with pytest.raises(ValueError, match=r"values gave \(64, 5, 576\).*expected \(64, 4, 576\)"):
            _WrongBasis(4)(_x((4, 16, 24, 24)), 2, F.silu)


def test_size_one_axes_and_thread_counts_give_the_same_values(compiled_calls):
    basis = create_basis("bspline")
    x = _x((4, 16, 24, 24), dtype=torch.float32)
    basis(x, 2, F.silu).sum().backward()
    odd = torch.randn(1, 40000).t().requires_grad_()  # size-1 axis with a stride contiguous() keeps
    y = basis(odd, 1, F.silu)
    torch.testing.assert_close(y, basis.reference(odd, 1, F.silu), atol=1e-5, rtol=0)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        _check(basis, x, 2, F.silu, atol=1e-5)
    finally:
        torch.set_num_threads(threads)
    assert all(ok for _, ok in compiled_calls)


@pytest.mark.parametrize(("capability", "last", "dtype", "bits"), [
    ("AVX512", 24, torch.float32, 256), ("AVX512", 96, torch.float32, None), ("AVX512", 12, torch.float64, 256),
    ("AVX512", 24, torch.float64, None), ("AVX2", 24, torch.float32, None), ("DEFAULT", 7, torch.float32, None),
])  # fmt: skip
def test_rows_off_the_widest_vector_get_half_width_vectors(monkeypatch, capability, last, dtype, bits):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    assert compiled._vector_bits(torch.empty(3, last, dtype=dtype)) == bits
