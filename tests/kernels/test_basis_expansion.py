"""The compiled CPU kernels of grid bases (``kanvision.kernels.basis_expansion``) against autograd of the reference."""

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch._dynamo.utils import counters
from torch.utils.flop_counter import FlopCounterMode

from kanvision.kernels import basis_expansion
from kanvision.layers import Basis, KANConv2d, create_basis
from kanvision.layers.bases import _empty_expanded


def _reset_if_spent():
    """Fresh kernel state when earlier tests left failures or too few free variants (a test needs at most 2)."""
    spent = max(*map(len, basis_expansion._variants.values()), *_entries()) > basis_expansion.MAX_VARIANTS - 2
    if spent or basis_expansion._failed or basis_expansion._broken:
        basis_expansion.reset()  # recompiling costs seconds, so not before every test


@pytest.fixture
def calls(monkeypatch):
    """(kernel, whether it returned a result) for every kernel call."""
    record = []
    run = basis_expansion._run

    def spy(fn, key, *args):
        out = run(fn, key, *args)
        record.append((fn.__name__, out is not None))
        return out

    _reset_if_spent()
    monkeypatch.setattr(basis_expansion, "_run", spy)
    monkeypatch.delenv("KANVISION_CPU_KERNELS", raising=False)
    yield record
    _reset_if_spent()


def _x(shape, dtype=torch.float64, layout=None):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(shape, generator=g, dtype=dtype) * 3 - 1.5  # across the grid [-1, 1] and beyond its knots
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "transposed":
        x = x.t()
    return x.requires_grad_()


def _check(basis, x, dim, activation):
    """Kernel values and x-gradient against autograd of the reference ops, float64 tolerances."""
    y, ref = basis(x, dim, activation), basis.reference(x, dim, activation)
    torch.testing.assert_close(y, ref, atol=1e-12, rtol=0)
    grad = torch.randn_like(ref)
    torch.testing.assert_close(torch.autograd.grad(y, x, grad)[0], torch.autograd.grad(ref, x, grad)[0])
    return y


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
def test_kernels_match_autograd_of_the_reference_in_float64(calls, layout):
    shape, memory, dim = LAYOUTS[layout]
    basis = create_basis("bspline", grid_size=4, spline_order=3)
    x = _x(shape, layout=memory)
    y, ref = basis(x, dim, F.silu), basis.reference(x, dim, F.silu)
    assert y.stride() == _empty_expanded(x, dim if dim >= 0 else x.dim() + 1 + dim, 8).stride()
    torch.testing.assert_close(y, ref, atol=1e-12, rtol=0)
    grad = torch.randn_like(ref)
    (gx,) = torch.autograd.grad(y, x, grad)
    (gref,) = torch.autograd.grad(ref, x, grad)
    assert gx.stride() == x.stride()
    torch.testing.assert_close(gx, gref, atol=1e-11, rtol=1e-11)
    assert calls == [("_forward", True), ("_backward", True)]


@pytest.mark.slow
@pytest.mark.parametrize("activation", [None, F.gelu])
def test_kernels_with_other_base_branches_and_orders(calls, activation):
    basis = create_basis("bspline", grid_size=7, spline_order=1, grid_range=(-0.5, 2.0))
    x = _x((8, 16, 16, 16))
    _check(basis, x, 2, activation)
    assert calls == [("_forward", True), ("_backward", True)]


def test_kernel_output_is_not_a_view_and_can_be_changed_in_place(calls):
    basis = create_basis("bspline")
    x = _x((4, 16, 24, 24))
    y = basis(x, 2, F.silu)
    assert y._base is None
    y.mul_(2)  # autograd forbids this on a view made inside a custom Function
    grad = torch.randn_like(y)
    (gx,) = torch.autograd.grad(y, x, grad)
    (gref,) = torch.autograd.grad(basis.reference(x, 2, F.silu), x, 2 * grad)
    torch.testing.assert_close(gx, gref)
    assert ("_forward", True) in calls


def test_conv_layer_on_the_kernels_matches_the_eager_ops(calls, monkeypatch):
    conv = KANConv2d(16, 8, 3, padding=1, stride=2, basis="bspline")
    x = _x((2, 16, 32, 32), dtype=torch.float32)
    results = []
    for kernels in ("1", "0"):
        monkeypatch.setenv("KANVISION_CPU_KERNELS", kernels)
        out = conv(x)
        results.append((out, *torch.autograd.grad(out.square().sum(), (x, conv.weight))))
    assert calls == [("_forward", True), ("_backward", True)]  # the second pass never called them
    for fused, eager in zip(*results, strict=True):
        torch.testing.assert_close(fused, eager, atol=1e-5, rtol=1e-5)


def test_half_precision_input_computes_in_float32(calls):
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
    assert calls == [("_forward", True), ("_backward", True)]


def test_new_sizes_and_grids_reuse_the_compiled_kernels(calls):
    first = create_basis("bspline", grid_size=5)
    x = _x((4, 16, 24, 24), dtype=torch.float32)
    first(x, 2, F.silu).sum().backward()  # compiles this variant (or finds it compiled)
    graphs = counters["stats"]["unique_graphs"]
    # P = Q (duck sizing would specialise on it), sizes equal to n, another grid and size n, other batch sizes
    for shape, basis in [
        ((32, 32, 32, 32), first),
        ((1, 8, 8, 512), first),
        ((3, 5, 7, 1000), first.resized(-3.0, 2.0, 9)),
        ((4, 16, 24, 24), create_basis("bspline", grid_size=12, grid_range=(0.0, 4.0))),
    ]:
        x = _x(shape, dtype=torch.float32)
        y = basis(x, 2, F.silu)
        torch.testing.assert_close(y, basis.reference(x, 2, F.silu), atol=1e-5, rtol=0)  # float32 rounding
        y.sum().backward()
    assert counters["stats"]["unique_graphs"] == graphs
    assert all(ok for _, ok in calls) and len(calls) == 10


def test_a_variant_that_fails_to_compile_runs_the_eager_ops_with_a_warning(calls, monkeypatch):
    def broken(fn):
        def fail(*args):
            raise RuntimeError("cannot trace this")

        return fail

    monkeypatch.setattr(basis_expansion, "_compiled", broken)
    basis = create_basis("bspline")
    x = _x((4, 16, 24, 24))
    with pytest.warns(UserWarning, match="cannot trace this"):
        y = basis(x, 2, F.silu)
    torch.testing.assert_close(y, basis.reference(x, 2, F.silu), atol=1e-12, rtol=0)
    assert basis_expansion.usable(x.detach())  # other variants are still tried
    with pytest.warns(UserWarning, match="cannot trace this"):
        y.sum().backward()
    basis(x, 2, F.silu).sum().backward()  # no second attempt (and no warning) for the failed variants
    assert calls == [("_forward", False), ("_backward", False)] * 2


def test_without_a_cpp_compiler_the_kernels_switch_off(tmp_path):
    """A real failed compile: no C++ compiler, and inductor's cache empty so that it must compile."""
    script = """
import warnings, torch, torch.nn.functional as F
torch._inductor.config.cpp.cxx = ("no-such-cxx",)
from kanvision.kernels import basis_expansion
from kanvision.layers import create_basis
basis = create_basis("bspline")
x = torch.randn(4, 16, 24, 24, requires_grad=True)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    y = basis(x, 2, F.silu)
    y.sum().backward()
assert any("compiler" in str(w.message) for w in caught), [str(w.message) for w in caught]
assert basis_expansion._broken and not basis_expansion.usable(x.detach())
torch.testing.assert_close(y, basis.reference(x, 2, F.silu), atol=1e-6, rtol=0)
print("fallback ok")
"""
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "inductor"), KANVISION_CPU_KERNELS="1")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "fallback ok" in done.stdout, done.stderr[-3000:]


def test_past_the_variant_limit_the_eager_ops_run(calls, monkeypatch):
    monkeypatch.setattr(basis_expansion, "MAX_VARIANTS", 0)
    basis = create_basis("bspline")
    x = _x((4, 16, 24, 24))
    _check(basis, x, 2, None)
    assert calls == [("_forward", False), ("_backward", False)]


def test_which_inputs_take_the_kernels(monkeypatch):
    monkeypatch.setattr(basis_expansion, "_broken", False)
    monkeypatch.delenv("KANVISION_CPU_KERNELS", raising=False)
    big = torch.empty(basis_expansion.MIN_NUMEL)
    assert basis_expansion.usable(big) and basis_expansion.usable(big.double())
    assert not basis_expansion.usable(big[1:])  # small: the eager ops are fast and need no compile
    assert not basis_expansion.usable(big.bfloat16())  # callers pass the float32 compute copy
    assert not basis_expansion.usable(torch.empty(basis_expansion.MIN_NUMEL, device="meta"))
    with torch.device("cpu"):  # a function mode: compiled code would guard on it
        assert not basis_expansion.usable(big)
    with FlopCounterMode(display=False):  # a dispatch mode: fullgraph compile refuses to run under it
        assert not basis_expansion.usable(big)
    monkeypatch.setenv("KANVISION_CPU_KERNELS", "0")
    assert not basis_expansion.usable(big)


def test_flop_counting_and_batched_gradients_take_the_eager_ops(calls):
    basis = create_basis("bspline")
    x = _x((4, 16, 24, 24))
    with FlopCounterMode(display=False):
        y = basis(x, 2, F.silu)
    torch.testing.assert_close(y, basis.reference(x, 2, F.silu), atol=1e-12, rtol=0)
    grads = torch.randn(2, *y.shape, dtype=y.dtype)
    (batched,) = torch.autograd.grad(y, x, grads, is_grads_batched=True)
    assert not batched.requires_grad  # no graph kept without create_graph
    for g, gb in zip(grads, batched, strict=True):
        torch.testing.assert_close(gb, torch.autograd.grad(basis.reference(x, 2, F.silu), x, g)[0])
    assert calls == []


def test_other_bases_and_small_inputs_keep_the_eager_ops(calls):
    x = _x((4, 16, 24, 24))
    create_basis("chebyshev")(x, 2, F.silu).sum().backward()  # no _kernel: its eager path is as fast
    create_basis("bspline")(_x((2, 3, 4, 5)), 2, F.silu).sum().backward()
    assert calls == []


def test_inference_mode_and_no_grad_give_the_training_values(calls, monkeypatch):
    conv = KANConv2d(16, 8, 3, padding=1, basis="bspline")
    x = _x((4, 16, 32, 32), dtype=torch.float32).detach()
    with torch.inference_mode():  # Lightning evaluates under inference mode
        inference = conv(x)
    with torch.no_grad():
        plain = conv(x)
    torch.testing.assert_close(inference, plain, atol=0, rtol=0)
    torch.testing.assert_close(plain, conv(x), atol=0, rtol=0)
    assert calls == [("_forward", True)] * 3
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
def test_unusual_layouts_match_the_reference(calls, make):
    basis = create_basis("bspline")
    x = make()
    y = _check(basis, x, 2, F.silu)
    assert y._base is None and y.stride() == _empty_expanded(x, 2, 9).stride()
    assert calls == [("_forward", True), ("_backward", True)]


def test_non_finite_inputs_give_nan(calls):
    basis = create_basis("bspline")
    x = _x((4, 16, 24, 24)).detach()
    x[0, 0, 0, :3] = torch.tensor([float("nan"), float("inf"), -float("inf")], dtype=x.dtype)
    y = basis(x.requires_grad_(), 2, None)
    assert y[0, 0, :, 0, :3].isnan().all() and y[0, 0, :, 0, 3:].isfinite().all()
    assert calls == [("_forward", True)]


@pytest.mark.slow
def test_an_outer_compile_neither_calls_nor_guards_on_the_kernels(calls):
    basis = create_basis("chebyshev")
    compiled = torch.compile(lambda t: basis(t, 1, F.silu), dynamic=True)
    for shape in [(64, 1024), (4, 8)]:  # above and below MIN_NUMEL: one graph for both
        compiled(_x(shape, dtype=torch.float32)).sum().backward()
    graphs = counters["stats"]["unique_graphs"]
    compiled(_x((64, 2048), dtype=torch.float32)).sum().backward()
    assert counters["stats"]["unique_graphs"] == graphs
    spline = create_basis("bspline")
    x = _x((64, 1024), dtype=torch.float32)
    y = torch.compile(lambda t: spline(t, 1, F.silu))(x)
    torch.testing.assert_close(y, spline.reference(x, 1, F.silu), atol=1e-5, rtol=0)
    assert calls == []


def _entries():
    return [basis_expansion.compiled_entries(f) for f in (basis_expansion._forward, basis_expansion._backward)]


def _power_slots(x, tensors, n, params, derivative):
    """(s x)^j, j < n, or their x-derivatives j s (s x)^(j-1) (0 for j = 0, also at x = 0)."""
    (scale,) = tensors
    j = torch.arange(n, dtype=x.dtype, device=x.device).view(1, n, 1)
    sx = scale * x
    if derivative:
        return torch.where(j > 0, j * scale * sx ** (j - 1).clamp(min=0), 0.0)
    return sx**j


class _PowerBasis(Basis):
    """(s x)^0..(s x)^(n-1) through the kernel interface only (``_terms`` is the reference)."""

    def __init__(self, n=4, scale=0.5, slots=None):
        super().__init__()
        self.scale, self.num_functions, self.slots = scale, n, slots

    def _terms(self, x):
        return [(self.scale * x) ** j for j in range(self.num_functions)]

    def _kernel(self, x):
        return _power_slots, (torch.tensor(self.scale, dtype=x.dtype),), ()


def test_a_new_basis_gets_the_kernels_through_its_kernel_method(calls):
    x = _x((4, 16, 24, 24))
    for n in (4, 6, 3):  # n is a dynamic size: the same compiled kernels
        basis = _PowerBasis(n)
        _check(basis, x, 2, F.silu)
        if n == 4:
            entries = _entries()
    assert _entries() == entries
    assert calls == [("_forward", True), ("_backward", True)] * 3


def _wrong_slots(x, tensors, n, params, derivative):
    return torch.cat([x] * (n + 1), 1)


class _WrongBasis(_PowerBasis):
    def _kernel(self, x):
        return _wrong_slots, (), ()


def test_a_kernel_with_the_wrong_number_of_slots_is_an_error(calls):
    with pytest.raises(ValueError, match=r"phi gave \(64, 6, 576\).*expected \(64, 5, 576\)"):
        _WrongBasis(4)(_x((4, 16, 24, 24)), 2, F.silu)


def test_size_one_strides_and_thread_counts_are_accounted_for(calls):
    basis = create_basis("bspline")
    x = _x((4, 16, 24, 24), dtype=torch.float32)
    basis(x, 2, F.silu).sum().backward()
    before = basis_expansion.compiled_entries(basis_expansion._forward)
    odd = torch.randn(1, 40000).t().requires_grad_()  # size-1 axis with a stride contiguous() keeps
    y = basis(odd, 1, F.silu)
    torch.testing.assert_close(y, basis.reference(odd, 1, F.silu), atol=1e-5, rtol=0)
    assert basis_expansion.compiled_entries(basis_expansion._forward) == before + 1  # Q = 1: one new variant
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # dynamo recompiles for a new thread count: the bookkeeping must count it
        basis(x, 2, F.silu).sum().backward()
    finally:
        torch.set_num_threads(threads)
    for fn in (basis_expansion._forward, basis_expansion._backward):
        assert basis_expansion.compiled_entries(fn) == len(basis_expansion._variants[fn.__name__])
    assert all(ok for _, ok in calls)
