"""GroupKAN's phi_g(x) = w_g b(x) + sum_k c_{g,k} B_k(x) without the (..., C, n) expansion: forward writes phi only,
backward recomputes from x.

``group_kan_fused`` computes what :func:`~kanvision.layers.group_kan.group_kan_reference` computes, as one autograd
Function that saves only ``x`` and the weights. The formulas take x as (R, groups, C/groups), evaluate the basis in
its ``(P, 1, Q)`` form on the rows (R * groups, 1, C/groups) and contract the n values with the group's
coefficients in the same expression, so that compiled code never writes the n values to memory:

* forward ``phi = sum_k c_{g,k} B_k(x) [+ w_g b(x)]``;
* backward ``dx = g (sum_k c_{g,k} B_k'(x) [+ w_g b'(x)])`` by the basis' analytic ``derivative`` and
  ``dL/dc_{g,k} = sum g B_k(x)``, ``dL/dw_g = sum g b(x)`` over the rows and channels of group g, summed over the
  channels of each group in the loop that writes ``dx`` (as :mod:`kanvision.layers.rational_fused` does).

On CPU, for inputs of at least :data:`kanvision.kernels.compiled.MIN_NUMEL` elements, both passes are kernels that
inductor generates from these formulas (:func:`kanvision.kernels.compiled.run`, one copy per basis class); on CUDA
they run under ``torch.compile`` (inductor writes Triton kernels from the same formulas), and under an outer
``torch.compile`` they are traced into the caller's graph. Half precision computes in float32, float64 in float64.

A basis without ``derivative`` gets x's gradient by autograd of ``values`` (plain ops); base activations without a
closed-form gradient, functorch transforms, forward-mode AD, batched gradients and double backward get the
reference ops.

FLOPs: outside ``torch.compile`` both passes are custom ops with FLOP formulas, so that
``torch.utils.flop_counter.FlopCounterMode`` counts them as ``numel(x)`` times :func:`forward_flops_per_element`
(backward: :func:`backward_flops_per_element`). A custom op cannot take the basis module, so each call registers
its basis and base activation under an integer handle (held while the call's autograd graph lives), which the op
and its FLOP formula look up.
"""

from __future__ import annotations

import itertools
import math
import weakref
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.flop_counter import register_flop_formula

from kanvision.kernels import compiled
from kanvision.layers.activations import activation_grad_function, has_closed_form_grad, resolve_activation
from kanvision.layers.bases import (
    Basis,
    BSplineBasis,
    ChebyshevBasis,
    FourierBasis,
    GramBasis,
    RBFBasis,
    ReLUBasis,
)
from kanvision.layers.expansion import has_derivative
from kanvision.layers.helpers import plain_ops_required

__all__ = ["backward_flops_per_element", "forward_flops_per_element", "fused_applies", "group_kan_fused"]

_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


def _compute_dtype(x: Tensor) -> torch.dtype:
    """float32 for half precision (and float32), float64 for float64."""
    return torch.promote_types(x.dtype, torch.float32)


def _rows(x: Tensor, dtype: torch.dtype) -> Tensor:
    """(R, groups, Q) as the basis' (R * groups, 1, Q) form (a merge of axes: compiled code indexes it directly)."""
    return x.to(dtype).reshape(-1, 1, x.shape[-1])


def _per_row(weight: Tensor, rows: int, dtype: torch.dtype) -> Tensor:
    """(groups, K) as (rows, K, 1): row p of the (R * groups, 1, Q) form belongs to group p % groups. Expanded
    and merged, not repeated: compiled code reads the (groups, K) table."""
    groups, k = weight.shape
    return weight.to(dtype)[None].expand(rows // groups, groups, k).reshape(rows, k, 1)


def _slots(evaluate: Callable[[Tensor], Tensor], rows: Tensor, n: int) -> list[Tensor]:
    """The n slots (P, 1, Q) of ``evaluate(rows)`` (P, n, Q): the basis' values or derivatives."""
    if torch.compiler.is_compiling():
        # one evaluation per slot, each read by one slice: compiled code computes only that slot of it, and
        # writes nothing to memory (inductor writes a result that several slices read to memory on CPU when it
        # has an exp or tanh in it: the (P, n, Q) expansion)
        return [evaluate(rows)[:, k : k + 1] for k in range(n)]
    values = evaluate(rows)
    return [values[:, k : k + 1] for k in range(n)]


def _bspline_slots(basis: BSplineBasis, rows: Tensor, derivative: bool) -> list[Tensor]:
    """The B-spline's slots as :meth:`BSplineBasis.values` (or ``derivative``) gives them, with its k + 1 polynomial
    pieces evaluated once per element instead of once per slot: slot j is piece i - j at s, where u = (x - t_0) / h,
    i = floor(u) and s = u - i are the same for every slot (the basis computes them per slot, equal up to rounding)."""
    low, h = basis._grid(rows)
    k = basis.spline_order
    margin = (k + 1) * h  # the basis' clamp: the same values for every finite x, finite positions for huge ones
    u = (rows.clamp(low - margin, low + basis.intervals * h + margin) - (low - k * h)) / h
    piece = torch.floor(u)
    s = u - piece
    nan = u * 0  # NaN in every slot for a NaN input
    pieces = []
    for coef in basis._piece_coef:
        if derivative:
            coef = [q * c for q, c in enumerate(coef)][1:]
        value = torch.full_like(s, coef[-1])
        for c in reversed(coef[:-1]):
            value = value * s + c
        pieces.append(value / h if derivative else value)
    slots = []
    for j in range(basis.num_functions):
        out = nan
        for p, value in enumerate(pieces):
            out = torch.where(piece == p + j, value + nan, out)
        slots.append(out)
    return slots


def _rbf_slots(basis: RBFBasis, rows: Tensor, derivative: bool) -> tuple[list[Tensor], list[Tensor] | None]:
    """:meth:`RBFBasis.values` (and ``derivative``) slot by slot, one exp per slot for both."""
    low, h = basis._grid(rows)
    width = basis._width(rows)
    xc = rows.clamp(low - 40 * width, low + basis.intervals * h + 40 * width)
    values, derivatives = [], []
    for j in range(basis.num_functions):
        z = (xc - (low + j * h)) / width
        e = torch.exp(-z * z)
        values.append(e)
        derivatives.append(e * z * (-2 / width))
    return values, derivatives if derivative else None


def _tanh(x: Tensor) -> Tensor:
    """tanh by exp(-x): compiled CPU code evaluates ``torch.tanh`` several times slower than ``exp``, and the same
    exp(-x) serves SiLU and its gradient in the same loop (inductor computes a repeated expression once). Absolute
    error a few float32 ulps of 1 (the polynomials of t need no more); -1 below x = -20, where tanh rounds to -1 even
    in float64 and e^2 would overflow."""
    e = torch.exp(-x)
    e2 = e * e
    return torch.where(x < -20, -1.0, (1 - e2) / (1 + e2))


def _sigmoid(x: Tensor) -> Tensor:
    return 1 / (1 + torch.exp(-x))


def _silu(x: Tensor) -> Tensor:
    """SiLU by one exp (x / (1 + exp(-x)) is -0 for x = -1e30, x for x = 1e30)."""
    return x / (1 + torch.exp(-x))


def _silu_grad(x: Tensor, grad: Tensor) -> Tensor:
    s = _sigmoid(x)
    return grad * s * (1 + x * (1 - s))


def _chebyshev_slots(basis: ChebyshevBasis, rows: Tensor, derivative: bool) -> tuple[list, list | None]:
    """:class:`ChebyshevBasis`' recurrences (T_k, and k U_{k-1} (1 - t^2)) on t = :func:`_tanh` (x)."""
    t = _tanh(rows)
    degree = basis.degree
    values = [torch.ones_like(t), t][: degree + 1]
    for _ in range(2, degree + 1):
        values.append(2 * t * values[-1] - values[-2])
    if not derivative:
        return values, None
    u = [torch.ones_like(t), 2 * t][:degree]
    for _ in range(2, degree):
        u.append(2 * t * u[-1] - u[-2])
    slope = 1 - t * t
    return values, [torch.zeros_like(t)] + [k * u[k - 1] * slope for k in range(1, degree + 1)]


def _gram_slots(basis: GramBasis, rows: Tensor, derivative: bool) -> tuple[list, list | None]:
    """:class:`GramBasis`' recurrences on t = :func:`_tanh` (x)."""
    t = _tanh(rows)
    values = basis._recurrence(t, derivative=False)
    if not derivative:
        return values, None
    slope = 1 - t * t
    return values, [q * slope for q in basis._recurrence(t, derivative=True)]


def _basis_slots(basis: nn.Module, rows: Tensor, derivative: bool) -> tuple[list[Tensor], list[Tensor] | None]:
    """The n values (and with ``derivative`` the n derivatives) of the basis at ``rows`` (P, 1, Q), as n tensors
    (P, 1, Q) each. B-spline, RBF, Chebyshev and Gram (exactly those classes: a subclass may change the values) by
    the formulas above, which share their work between slots and between values and derivatives and take tanh by
    one exp; other bases by theirs."""
    if type(basis) is BSplineBasis:
        return _bspline_slots(basis, rows, False), _bspline_slots(basis, rows, True) if derivative else None
    if type(basis) is RBFBasis:
        return _rbf_slots(basis, rows, derivative)
    if type(basis) is ChebyshevBasis:
        return _chebyshev_slots(basis, rows, derivative)
    if type(basis) is GramBasis:
        return _gram_slots(basis, rows, derivative)
    n = basis.num_functions
    return _slots(basis.values, rows, n), _slots(basis.derivative, rows, n) if derivative else None


def _contract(slots: list[Tensor], coefficients: Tensor) -> Tensor:
    """sum_k c_k V_k for the basis values or derivatives ``slots`` (n of (P, 1, Q)) and ``coefficients``
    (P, n, 1): (P, 1, Q)."""
    # a sum of n products, not a reduction over the slot axis: compiled, the loop then runs in vectors along the
    # channels (a reduction would run in vectors along the n slots)
    out = slots[0] * coefficients[:, 0:1]
    for k in range(1, len(slots)):
        out = out + slots[k] * coefficients[:, k : k + 1]
    return out


def _kan_forward(
    x: Tensor, weight: Tensor, base_weight: Tensor | None, basis: nn.Module, activation: Callable | None
) -> Tensor:
    """phi(x) in x's dtype for ``x`` (R, groups, C/groups)."""
    dtype = _compute_dtype(x)
    rows = _rows(x, dtype)
    # the values are evaluated on the rows and contracted at once: never split back into (R, groups, n, Q), which
    # compiled code with dynamic sizes would write to memory first
    y = _contract(_basis_slots(basis, rows, False)[0], _per_row(weight, rows.shape[0], dtype))
    if activation is not None:
        activation = _silu if activation is F.silu else activation
        y = y + _per_row(base_weight[:, None], rows.shape[0], dtype) * activation(rows)
    return y.reshape(x.shape).to(x.dtype)


def _kan_backward(
    x: Tensor,
    grad: Tensor,
    weight: Tensor,
    base_weight: Tensor | None,
    basis: nn.Module,
    activation: Callable | None,
    activation_grad: Callable | None,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """The gradients of x, ``weight`` and ``base_weight`` (each in its dtype) for ``x`` and ``grad``
    (R, groups, C/groups), by the basis' analytic derivative."""
    dtype = _compute_dtype(x)
    rows, g = _rows(x, dtype), _rows(grad, dtype)
    n = basis.num_functions
    values, derivatives = _basis_slots(basis, rows, True)
    gx = g * _contract(derivatives, _per_row(weight, rows.shape[0], dtype))
    terms = [g * value for value in values]
    if activation is not None:
        if activation is F.silu:  # by exp (see _tanh)
            activation, activation_grad = _silu, _silu_grad
        gx = gx + _per_row(base_weight[:, None], rows.shape[0], dtype) * activation_grad(rows, g)
        terms.append(g * activation(rows))
    per_group = _sums_per_group(terms, x.shape[1])  # (n [+ 1], groups)
    grad_weight = per_group[:n].t().to(weight.dtype).contiguous()
    grad_base = per_group[n].to(base_weight.dtype).contiguous() if activation is not None else None
    return gx.reshape(x.shape).to(x.dtype), grad_weight, grad_base


def _sums_per_group(terms: list[Tensor], groups: int) -> Tensor:
    """(len(terms), groups): each term (R * groups, 1, Q) summed over its channels and the rows of each group."""
    # over the channels of a row first: those reductions then run in the loop that writes dx
    per_row = torch.stack([term.sum((1, 2)) for term in terms], 1)  # (R * groups, K)
    return per_row.reshape(-1, groups, len(terms)).sum(0).t()


def _kan_backward_autograd(
    x: Tensor, grad: Tensor, weight: Tensor, base_weight: Tensor | None, basis: nn.Module, activation: Callable | None
) -> tuple[Tensor, Tensor, Tensor | None]:
    """:func:`_kan_backward` for a basis without ``derivative``: autograd of the forward formula (plain ops)."""
    with torch.enable_grad():
        xx = x.detach().requires_grad_()
        w = weight.detach().requires_grad_()
        inputs = [xx, w]
        bw = None
        if activation is not None:
            bw = base_weight.detach().requires_grad_()
            inputs.append(bw)
        y = _kan_forward(xx, w, bw, basis, activation)
        grads = torch.autograd.grad(y, inputs, grad, allow_unused=True, materialize_grads=True)
    return grads[0], grads[1], grads[2] if activation is not None else None


# ---- the basis and base activation of a call, by handle (a custom op takes no modules) ------------------------------


class _Spec:
    __slots__ = ("basis", "activation", "__weakref__")

    def __init__(self, basis: nn.Module, activation: Callable | None):
        self.basis, self.activation = basis, activation


# The one piece of module state: a custom op (what FlopCounterMode counts) takes tensors and plain values, not the
# basis module, so a call's basis is looked up by handle. Weak values: an entry lives only as long as the call's
# autograd context holds its _Spec, so nothing accumulates and no call sees another's basis.
_specs: weakref.WeakValueDictionary[int, _Spec] = weakref.WeakValueDictionary()
_handles = itertools.count()


def _register(spec: _Spec) -> int:
    handle = next(_handles)
    _specs[handle] = spec
    return handle


def _spec(handle: int) -> _Spec:
    spec = _specs.get(handle)
    if spec is None:
        raise RuntimeError(f"kanvision::group_kan_fused: no basis registered under handle {handle}")
    return spec


# ---- where the formulas run: CPU kernels, CUDA under torch.compile, plain ops elsewhere ------------------------------

# Inductor writes a concatenation (the bases' torch.cat of their slots) to memory, and a pointwise result that several
# consumers read or that has many ops: the consumers here read one slot each, so inlining computes every value once.
_INDUCTOR_OPTIONS = {
    "force_pointwise_cat": True,
    "realize_reads_threshold": 1 << 20,
    "realize_opcount_threshold": 1 << 20,
}


def _run(fn: Callable, x: Tensor, *args, basis: nn.Module):
    """``fn(x, *args)``: compiled by :func:`compiled.run` on CPU and CUDA (large inputs), else plain ops."""
    return compiled.run(
        fn, x, *args, variant=type(basis), dtypes=_DTYPES, options=_INDUCTOR_OPTIONS, devices=("cpu", "cuda")
    )


@torch.library.custom_op("kanvision::group_kan_fused", mutates_args=())
def _forward_op(x: Tensor, weight: Tensor, base_weight: Tensor | None, handle: int) -> Tensor:
    spec = _spec(handle)
    return _run(_kan_forward, x, weight, base_weight, spec.basis, spec.activation, basis=spec.basis)


@_forward_op.register_fake
def _forward_fake(x: Tensor, weight: Tensor, base_weight: Tensor | None, handle: int) -> Tensor:
    return x.new_empty(x.shape)


@torch.library.custom_op("kanvision::group_kan_fused_backward", mutates_args=())
def _backward_op(
    x: Tensor, grad: Tensor, weight: Tensor, base_weight: Tensor | None, handle: int
) -> tuple[Tensor, Tensor, Tensor]:
    spec = _spec(handle)
    basis, activation = spec.basis, spec.activation
    derivative = activation_grad_function(activation) if activation is not None else None
    gx, gw, gb = _run(_kan_backward, x, grad, weight, base_weight, basis, activation, derivative, basis=basis)
    # a custom op returns no None: an empty tensor stands for the missing base weight's gradient
    return gx, gw, gb if gb is not None else weight.new_empty(0)


@_backward_op.register_fake
def _backward_fake(
    x: Tensor, grad: Tensor, weight: Tensor, base_weight: Tensor | None, handle: int
) -> tuple[Tensor, Tensor, Tensor]:
    gb = torch.empty_like(base_weight) if base_weight is not None else weight.new_empty(0)
    return x.new_empty(x.shape), torch.empty_like(weight), gb


# ---- FLOPs --------------------------------------------------------------------------------------------------------

# FLOPs per element of b(x) and of grad * b'(x), as the formulas of kanvision.layers.activations compute them
# (exp, tanh, erf and a division count one each).
_ACTIVATION_FLOPS: dict[Callable, tuple[int, int]] = {
    F.silu: (4, 7),  # x / (1 + exp(-x)); g s (1 + x (1 - s))
    F.gelu: (5, 11),
    F.relu: (1, 2),
    torch.tanh: (1, 4),
}


_ACTIVATION_FLOPS[resolve_activation("identity")] = (0, 1)  # the gradient copies g


def _activation_flops(activation: Callable | None) -> tuple[int, int]:
    """(b(x), g b'(x)) FLOPs per element; 0 for none and for activations not listed."""
    try:
        return _ACTIVATION_FLOPS.get(activation, (0, 0)) if activation is not None else (0, 0)
    except TypeError:  # unhashable callables
        return 0, 0


def _basis_flops(basis: nn.Module) -> tuple[int, int]:
    """(values, derivatives) FLOPs per input element of the registered bases, counted from their formulas in
    :mod:`kanvision.layers.bases` (elementwise functions count one; clamps and selects count none):

    ========== ============================================ ============================================
    basis      values B_0..B_{n-1}                          derivatives B_0'..B_{n-1}'
    ========== ============================================ ============================================
    chebyshev  1 + 3 (n - 2)   (tanh, T_k = 2 t T - T)      4 + 3 (n - 3) + 2 (n - 1)   (U_k, k U, 1 - t^2)
    gram       1 + 4 (n - 1)   (tanh, three-term)           3 + 9 (n - 1)   (p and q together, 1 - t^2)
    fourier    3 n / 2         (k x, cos, sin)              2 n   (k x, cos or sin, times k)
    rbf        5 n             ((x - c) / h, square, exp)   7 n
    relu       n (5 + p)       (x - s, scale, 1 - v^2, ^p)  n (8 + p)
    bspline    n (3 + (k + 1)(2k + 1))   (t, floor,         n (4 + (k + 1)(2k - 1))
               the k + 1 pieces by Horner)
    ========== ============================================ ============================================

    Other bases: 0 (unknown; the contraction is still counted).
    """
    n = basis.num_functions
    if isinstance(basis, ChebyshevBasis):
        return 1 + 3 * max(n - 2, 0), 4 + 3 * max(n - 3, 0) + 2 * max(n - 1, 0)
    if isinstance(basis, GramBasis):
        return 1 + 4 * (n - 1), 3 + 9 * (n - 1)
    if isinstance(basis, FourierBasis):
        return 3 * n // 2, 2 * n
    if isinstance(basis, RBFBasis):
        return 5 * n, 7 * n
    if isinstance(basis, ReLUBasis):
        return n * (5 + basis.power), n * (8 + basis.power)
    if isinstance(basis, BSplineBasis):
        k = basis.spline_order
        return n * (3 + (k + 1) * (2 * k + 1)), n * (4 + (k + 1) * (2 * k - 1))
    return 0, 0


def forward_flops_per_element(basis: Basis, activation: Callable | None = None) -> int:
    """FLOPs per element of the forward: the basis values, a multiply-add per function (2n) and, with a base
    branch, b(x) and its multiply-add (2). Chebyshev of degree 4 with SiLU: 10 + 10 + 4 + 2 = 26."""
    values, _ = _basis_flops(basis)
    act, _ = _activation_flops(activation)
    return values + 2 * basis.num_functions + (act + 2 if activation is not None else 0)


def backward_flops_per_element(basis: Basis, activation: Callable | None = None) -> int:
    """FLOPs per element of the backward: the values and derivatives, their contraction with the coefficients and
    the product with the upstream gradient (2n + 1), the coefficient gradient terms with their sums (2n); with a
    base branch b(x), g b'(x) and w g b'(x) + (2), g b(x) and its sum (2)."""
    values, derivatives = _basis_flops(basis)
    n = basis.num_functions
    flops = values + derivatives + 4 * n + 1
    if activation is not None:
        act, act_grad = _activation_flops(activation)
        flops += act + act_grad + 4
    return flops


@register_flop_formula(torch.ops.kanvision.group_kan_fused)
def _forward_flops(x_shape, weight_shape, base_shape, handle, *args, out_shape=None, **kwargs) -> int:
    spec = _spec(handle)
    return math.prod(x_shape) * forward_flops_per_element(spec.basis, spec.activation)


@register_flop_formula(torch.ops.kanvision.group_kan_fused_backward)
def _backward_flops(x_shape, grad_shape, weight_shape, base_shape, handle, *args, out_shape=None, **kwargs) -> int:
    spec = _spec(handle)
    return math.prod(x_shape) * backward_flops_per_element(spec.basis, spec.activation)


# ---- the autograd Function ---------------------------------------------------------------------------------------


def _grouped(x: Tensor, groups: int) -> Tensor:
    """(..., C) as (R, groups, C/groups), contiguous and not a view (the compiled kernels' input)."""
    return compiled.canonical(x.reshape(-1, groups, x.shape[-1] // groups))


class _GroupKAN(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx, x: Tensor, weight: Tensor, base_weight: Tensor | None, spec: _Spec, groups: int, reference: Callable
    ) -> Tensor:
        ctx.save_for_backward(x, weight, base_weight)
        ctx.spec, ctx.groups, ctx.reference = spec, groups, reference
        base = base_weight.detach() if base_weight is not None else None
        if torch.compiler.is_compiling():
            y = _kan_forward(_grouped(x, groups), weight.detach(), base, spec.basis, spec.activation)
        else:
            ctx.handle = _register(spec)
            y = _forward_op(_grouped(x, groups), weight.detach(), base, ctx.handle)
        return y.reshape(x.shape)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, weight, base_weight = ctx.saved_tensors
        spec, groups = ctx.spec, ctx.groups
        if not torch.compiler.is_compiling() and (torch.is_grad_enabled() or plain_ops_required(grad)):
            # create_graph (double backward) or batched gradients: autograd of the reference ops
            saved = [t for t in (x, weight, base_weight) if t is not None]
            inputs = [t if t.requires_grad else t.detach().requires_grad_() for t in saved]
            with torch.enable_grad():
                base = inputs[2] if base_weight is not None else None
                out = ctx.reference(inputs[0], inputs[1], base, spec.basis, spec.activation, groups)
                grads = torch.autograd.grad(out, inputs, grad, create_graph=True, allow_unused=True)
            return grads[0], grads[1], grads[2] if base_weight is not None else None, None, None, None
        base = base_weight.detach() if base_weight is not None else None
        args = (_grouped(x, groups), _grouped(grad.to(x.dtype), groups), weight.detach(), base)
        if not has_derivative(spec.basis):  # autograd, which does not run inside a custom op
            gx, gw, gb = _kan_backward_autograd(*args, spec.basis, spec.activation)
        elif torch.compiler.is_compiling():
            derivative = activation_grad_function(spec.activation) if spec.activation is not None else None
            gx, gw, gb = _kan_backward(*args, spec.basis, spec.activation, derivative)
        else:
            gx, gw, gb = _backward_op(*args, ctx.handle)
        return (
            gx.reshape(x.shape) if ctx.needs_input_grad[0] else None,
            gw if ctx.needs_input_grad[1] else None,
            gb if base_weight is not None and ctx.needs_input_grad[2] else None,
            None,
            None,
            None,
        )


def fused_applies(basis: nn.Module, activation: Callable | None) -> bool:
    """Whether :func:`group_kan_fused` takes the fused Function for this basis and base activation (a fixed basis, a
    base activation with a closed-form gradient or none), as opposed to the reference ops."""
    return not any(p.requires_grad for p in basis.parameters()) and (
        activation is None or has_closed_form_grad(activation)
    )


def group_kan_fused(
    x: Tensor,
    weight: Tensor,
    base_weight: Tensor | None,
    basis: nn.Module,
    activation: Callable | None,
    groups: int,
    reference: Callable,
) -> Tensor:
    """``reference(x, weight, base_weight, basis, activation, groups)`` by the fused path (module docstring).

    ``x`` is channels-last ``(..., C)``; the result has x's shape and dtype. ``reference`` is the plain-ops form
    (:func:`~kanvision.layers.group_kan.group_kan_reference`), which runs where the fused Function does not apply.
    """
    if not fused_applies(basis, activation) or plain_ops_required():
        return reference(x, weight, base_weight, basis, activation, groups)
    return _GroupKAN.apply(x, weight, base_weight, _Spec(basis, activation), groups, reference)
