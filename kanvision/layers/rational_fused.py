"""The group rational of GR-KAN without full-size intermediates: forward writes F(x) only, backward recomputes from x.

``group_rational_fused`` computes what ``group_rational_pytorch`` computes (same safe form, same gradient
convention ``d|b|/db = sign(b)``, ``d|x|/dx = sign(x)`` with ``sign(0) = 0``), as one autograd Function that
saves only ``x`` and the coefficients. Its backward gives ``x``'s gradient and the coefficient gradients from
``x`` in one pass, the latter summed over the channels of each group in that pass and then over rows.

On CPU, for inputs large enough to matter, both passes run as kernels that inductor generates from the formulas
below (:mod:`kanvision.kernels.compiled` compiles them): one loop over ``x`` each, where the
eager ops would make ~30 passes with a fresh x-sized temporary each. Each kernel first tries the direct form
``P(x) / Q(|x|)``, which needs about half the operations (no reciprocal of x, no selects between the two forms
below), and keeps its result when every |x| is at most ``2^((e - d) // max(m, n))`` (``e``, ``d``: the compute
dtype's largest binary exponent and mantissa bits; 2^20 in float32 at order (5, 4)) and no P(x) or Q(|x|) can have
overflowed: the backward counts overflowed values in its loop, the forward checks that every group's sums of
absolute coefficients are at most 2^d, which bounds |P| and |Q| by 2^e. Otherwise (and for a NaN x) the pass runs
again in the safe form. Under ``torch.compile`` the safe formulas are traced into the caller's graph instead,
elsewhere (small inputs, other devices, ``KANVISION_CPU_KERNELS=0``) they run as eager ops.

The safe form is :mod:`kanvision.kernels.rational_reference`'s: F = sum_k a_k sign(x)^k T_k with
``T_k = |x|^k / Q(|x|)`` computed without any power of x (finite wherever F is, any orders, |x| up to 1e30 and
beyond in float32). The gradients come from the same terms: ``dF/da_k = sign(x)^k T_k``, ``dF/dc_i = -F T_i`` and
``dF/dx = sum_k k a_k sign(x)^(k-1) T_(k-1) - sign(x) F sum_i i c_i T_(i-1)`` (``c_i = |b_i|``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.utils.flop_counter import register_flop_formula

from kanvision.kernels import compiled
from kanvision.kernels.rational_flops import backward_flops_per_element, forward_flops_per_element
from kanvision.kernels.rational_reference import check_arguments, denominator_tables, group_rational_pytorch
from kanvision.layers.helpers import plain_ops_required

__all__ = ["check_arguments", "group_rational_fused"]


def _coefficient_table(weight_numerator: Tensor, weight_denominator: Tensor, x: Tensor) -> Tensor:
    """(m + 2n + 3, groups, 1) in x's compute dtype (float32 or float64), per group: a_0..a_m, |b_1|..|b_n|, then the
    safe form's reversed denominator c~_0..c~_n and its degree (see :func:`denominator_tables`)."""
    dtype, groups = torch.promote_types(x.dtype, torch.float32), weight_denominator.shape[0]
    c, c_reversed, degree = denominator_tables(weight_denominator, dtype)
    per_group = torch.cat([weight_numerator.to(dtype).expand(groups, -1), c[:, 1:], c_reversed, degree], 1)
    return per_group.t().unsqueeze(-1).contiguous()


def _safe_parts(x: Tensor, coef: Tensor, m: int, n: int):
    """The safe form's pieces for ``x`` (R, groups, C/groups), in the coefficients' dtype (the Triton kernels'
    ``_safe_denominator`` and ``_safe_numerator``): with D = S(s) above |x| = 1 and Q(|x|) below, d the denominator's
    degree above 1 (0 below) and sign = -1 for x < 0 else 1, F = (A + B) / D where A = sum_{k >= d} a_k sign^k
    |x|^(k - d) and B = sum_{k < d} a_k sign^k s^(d - k), by Horner with dA/d|x| and dB/ds alongside."""
    x = x.to(coef.dtype)
    ax = x.abs()
    big = ax > 1
    s = torch.where(big, 1.0 / torch.where(big, ax, 1.0), ax)
    d = torch.where(big, coef[m + 2 * n + 2], 0.0)

    def c(i: int):  # c_i of Q, c_0 = 1
        return coef[m + i] if i > 0 else 1.0

    q = torch.where(big, coef[m + 2 * n + 1], c(n))
    dq = torch.zeros_like(q)
    for j in range(n - 1, -1, -1):
        dq = dq * s + q
        q = q * s + torch.where(big, coef[m + n + 1 + j], c(j))
    inverse_q = 1.0 / q.clamp_min(torch.finfo(coef.dtype).tiny)
    negative = x < 0

    def signed(k: int) -> Tensor:  # a_k sign^k
        return torch.where(negative, -coef[k], coef[k]) if k % 2 else coef[k]

    a = torch.where(m >= d, signed(m), 0.0)
    da = torch.zeros_like(a)
    for k in range(m - 1, -1, -1):
        take = k >= d
        da = torch.where(take, da * ax + a, da)
        a = torch.where(take, a * ax + signed(k), a)
    b = db = torch.zeros_like(a)
    for k in range(n):  # only k < d <= n take part
        take, coefficient = k < d, signed(k) if k <= m else 0.0
        db = torch.where(take, db * s + b + coefficient, db)
        b = torch.where(take, (b + coefficient) * s, b)
    return x, ax, big, s, d, inverse_q, dq * inverse_q, negative, a, da, b, db


# The kernels take the weights, not a table built from them: building it inside costs nothing there, where eager
# ops would cost more per call than the whole kernel on small inputs.
def _rational_forward(x: Tensor, weight_numerator: Tensor, weight_denominator: Tensor, m: int, n: int) -> Tensor:
    """F(x) in x's dtype for ``x`` (R, groups, C/groups)."""
    coef = _coefficient_table(weight_numerator, weight_denominator, x)
    _, _, _, _, _, inverse_q, _, _, a, _, b, _ = _safe_parts(x, coef, m, n)
    return ((a + b) * inverse_q).to(x.dtype)


def _rational_backward(
    x: Tensor, grad: Tensor, weight_numerator: Tensor, weight_denominator: Tensor, m: int, n: int
) -> tuple[Tensor, Tensor, Tensor]:
    """The gradients of x and of both weights (each in its dtype), for ``x`` and ``grad`` (R, groups, C/groups)."""
    coef = _coefficient_table(weight_numerator, weight_denominator, x)
    x_, ax, big, s, d, inverse_q, slope, negative, a, da, b, db = _safe_parts(x, coef, m, n)
    g = grad.to(coef.dtype)
    f = (a + b) * inverse_q
    sign = torch.where(negative, -1.0, 1.0)
    # |x| <= 1: P'/Q - sign(x) F Q'/Q. Above: s (|x| dA/d|x| - s dB/ds) / D + F s^2 D'/D with s |x| = 1, without
    # the cancellation of P'/Q against F Q'/Q (equal leading terms) and without overflowing |x| dA/d|x|.
    small = inverse_q * sign * da - torch.sign(x_) * f * slope
    large = sign * (inverse_q * (da - s * s * db) + f * s * s * slope)
    gx = g * torch.where(big, large, small)
    # g T_k and -g F T_i, T_k = |x|^k / Q = |x|^(k - d) / D: from T_d one factor of s (down) or |x| (up) at a time
    numerator_terms, denominator_terms = [None] * (m + 1), [None] * (n + 1)
    start, start_f = g * inverse_q, -(g * f * inverse_q)
    v, w = start, start_f
    for k in range(n - 1, -1, -1):
        below = k < d
        v, w = torch.where(below, v * s, v), torch.where(below, w * s, w)
        if k <= m:
            numerator_terms[k] = v
        denominator_terms[k] = w
    v, w = start, start_f
    for k in range(max(m, n) + 1):
        if k > 0:
            up = k > d
            v, w = torch.where(up, v * ax, v), torch.where(up, w * ax, w)
        if k <= m:
            numerator_terms[k] = torch.where(k >= d, v, numerator_terms[k]) if k < n else v
        if k <= n:
            denominator_terms[k] = torch.where(k >= d, w, denominator_terms[k]) if k < n else w
    numerator_terms[1::2] = [sign * t for t in numerator_terms[1::2]]
    denominator_terms = denominator_terms[1:]
    per_group = _sums_per_group(numerator_terms + denominator_terms)
    return (gx.to(x.dtype), *_coefficient_gradients(per_group, weight_numerator, weight_denominator))


def _powers(t: Tensor, k: int) -> list[Tensor]:
    """t^0 .. t^k."""
    powers = [torch.ones_like(t)]
    for _ in range(k):
        powers.append(powers[-1] * t)
    return powers


def _sums_per_group(terms: list[Tensor]) -> Tensor:
    """(len(terms), groups): each term (R, groups, C/groups) summed over rows and the channels of each group."""
    # summed over the channels of a group first: the reductions then run in the loop that writes gx (R, K, groups)
    return torch.stack([term.sum(-1) for term in terms], 1).sum(0)


def _coefficient_gradients(per_group: Tensor, weight_numerator: Tensor, weight_denominator: Tensor):
    """The weights' gradients (each in its dtype) from the sums per group of dF/dA_k and dF/dC_i, already multiplied
    by the upstream gradient."""
    m = weight_numerator.shape[1] - 1
    grad_numerator = per_group[: m + 1].t()
    if weight_numerator.shape[0] == 1:
        grad_numerator = grad_numerator.sum(0, keepdim=True)
    # an exact zero b_i gets 0 (sign(0) = 0), also where its sum of terms overflowed (0 * inf would be NaN)
    sign = torch.sign(weight_denominator).to(per_group.dtype)
    grad_denominator = torch.where(sign == 0, 0.0, per_group[m + 1 :].t() * sign)
    # contiguous, as the custom op's fake implementation says (they are tiny)
    return (
        grad_numerator.to(weight_numerator.dtype).contiguous(),
        grad_denominator.to(weight_denominator.dtype).contiguous(),
    )


# The direct form P(x) / Q(|x|), exact while no power of x overflows (see the module docstring).
def _direct_limit(dtype: torch.dtype, m: int, n: int) -> float:
    """|x| up to which P(x) and Q(|x|) cannot overflow for moderate coefficients: |x|^max(m, n) <= 2^(e - d) (``e``,
    ``d``: the largest binary exponent and the mantissa bits), so sums of absolute coefficients up to 2^d (~8.4e6 in
    float32) keep every Horner step within 2^e; the callers check larger ones (the forward by the sums themselves,
    the backward by an overflowed P or Q)."""
    info = torch.finfo(dtype)
    max_exponent, mantissa_bits = math.frexp(info.max)[1] - 1, round(-math.log2(info.eps))
    return 2.0 ** ((max_exponent - mantissa_bits) // max(m, n, 1))


def _horner(t: Tensor, coefficients: list) -> tuple[Tensor, Tensor | float]:
    """sum_k c_k t^k (t's shape) and its derivative by Horner's rule, for c_0..c_K (floats or tensors that broadcast
    with ``t``)."""
    if len(coefficients) == 1:
        return coefficients[0] + torch.zeros_like(t), 0.0
    value, slope = coefficients[-1] * t + coefficients[-2], coefficients[-1]
    for c in reversed(coefficients[:-2]):
        slope = slope * t + value
        value = value * t + c
    return value, slope


def _direct_polynomials(x: Tensor, coef: Tensor, m: int, n: int):
    """x and |x| in the coefficients' dtype, P(x), P'(x), Q(|x|) and Q'(|x|), for ``x`` (R, groups, C/groups)."""
    x_ = x.to(coef.dtype)
    ax = x_.abs()
    p, dp = _horner(x_, [coef[k] for k in range(m + 1)])
    q, dq = _horner(ax, [1.0] + [coef[m + i] for i in range(1, n + 1)])
    return x_, ax, p, dp, q, dq


def _direct_forward(x: Tensor, weight_numerator: Tensor, weight_denominator: Tensor, m: int, n: int):
    """:func:`_rational_forward` by the direct form, and whether a P(x) or Q(|x|) may have overflowed: False only if
    every |x| is within :func:`_direct_limit` and every group's sums of absolute coefficients (``c_0 = 1`` included)
    are at most 2^(mantissa bits), so that |P|, |Q| <= 2^(largest binary exponent). (Checking P and Q themselves
    would make inductor write both to memory for a second loop; this check reads only x.)"""
    coef = _coefficient_table(weight_numerator, weight_denominator, x)
    _, ax, p, _, q, _ = _direct_polynomials(x, coef, m, n)
    sums = torch.stack([coef[: m + 1].abs().sum(0), 1.0 + coef[m + 1 : m + 1 + n].sum(0)])
    large = ~(sums <= 1.0 / torch.finfo(coef.dtype).eps).all()  # NaN coefficients too
    # a NaN in x makes the max NaN and the check fail: the other elements might be beyond the limit
    return (p / q).to(x.dtype), large | ~(ax.amax() <= _direct_limit(coef.dtype, m, n))


def _direct_backward(x: Tensor, grad: Tensor, weight_numerator: Tensor, weight_denominator: Tensor, m: int, n: int):
    """:func:`_rational_backward` by the direct form, and the number of elements where it was not exact (NaN if P(x)
    or Q(|x|) overflowed), counted in the loop that sums the coefficient terms."""
    coef = _coefficient_table(weight_numerator, weight_denominator, x)
    x_, ax, p, dp, q, dq = _direct_polynomials(x, coef, m, n)
    g = grad.to(coef.dtype)
    inverse_q = 1.0 / q
    r = p * inverse_q
    u = g * inverse_q  # dF/da_k = u x^k
    gx = u * (dp - torch.sign(x_) * r * dq)  # g / Q first: g P' alone could overflow
    v = -(u * r)  # dF/d|b_i| = v |x|^i
    powers_x, powers_ax = _powers(x_, m), _powers(ax, n)
    terms = [u * powers_x[k] for k in range(m + 1)] + [v * powers_ax[i] for i in range(1, n + 1)]
    inexact = (ax > _direct_limit(coef.dtype, m, n)).to(coef.dtype) + (p + q) * 0.0  # 0 * inf = NaN
    per_group = _sums_per_group([*terms, inexact])
    return gx.to(x.dtype), *_coefficient_gradients(per_group[:-1], weight_numerator, weight_denominator), per_group[-1]


_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


def _orders(weight_numerator: Tensor, weight_denominator: Tensor) -> tuple[int, int]:
    """(m, n): the numerator and denominator orders."""
    return weight_numerator.shape[1] - 1, weight_denominator.shape[1]


def _grouped(x: Tensor, groups: int) -> Tensor:
    """(..., C) as (R, groups, C/groups), contiguous and not a view (the compiled kernels' input)."""
    return compiled.canonical(x.reshape(-1, groups, x.shape[-1] // groups))


# Outside torch.compile both passes are custom ops, so that torch.utils.flop_counter (and with it Lightning's model
# summary) counts them by the formulas above; under torch.compile the formulas are traced into the caller's graph.
@torch.library.custom_op("kanvision::group_rational_fused", mutates_args=())
def _forward_op(x: Tensor, weight_numerator: Tensor, weight_denominator: Tensor) -> Tensor:
    m, n = _orders(weight_numerator, weight_denominator)
    args = (x, weight_numerator, weight_denominator, m, n)
    if compiled.compiles(_direct_forward, x, dtypes=_DTYPES):
        y, may_overflow = compiled.run(_direct_forward, *args, dtypes=_DTYPES)
        if not may_overflow.item():
            return y
    return compiled.run(_rational_forward, *args, dtypes=_DTYPES)


@_forward_op.register_fake
def _forward_fake(x: Tensor, weight_numerator: Tensor, weight_denominator: Tensor) -> Tensor:
    return x.new_empty(x.shape)


@torch.library.custom_op("kanvision::group_rational_fused_backward", mutates_args=())
def _backward_op(
    x: Tensor, grad: Tensor, weight_numerator: Tensor, weight_denominator: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    m, n = _orders(weight_numerator, weight_denominator)
    args = (x, grad, weight_numerator, weight_denominator, m, n)
    if compiled.compiles(_direct_backward, x, dtypes=_DTYPES):
        *grads, inexact = compiled.run(_direct_backward, *args, dtypes=_DTYPES)
        if inexact.sum().item() == 0:  # False for NaN
            return tuple(grads)
    return compiled.run(_rational_backward, *args, dtypes=_DTYPES)


@_backward_op.register_fake
def _backward_fake(
    x: Tensor, grad: Tensor, weight_numerator: Tensor, weight_denominator: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    return x.new_empty(x.shape), torch.empty_like(weight_numerator), torch.empty_like(weight_denominator)


@register_flop_formula(torch.ops.kanvision.group_rational_fused)
def _forward_flops(x_shape, numerator_shape, denominator_shape, *args, out_shape=None, **kwargs) -> int:
    return math.prod(x_shape) * forward_flops_per_element(numerator_shape[1] - 1, denominator_shape[1])


@register_flop_formula(torch.ops.kanvision.group_rational_fused_backward)
def _backward_flops(x_shape, grad_shape, numerator_shape, denominator_shape, *args, out_shape=None, **kwargs) -> int:
    return math.prod(x_shape) * backward_flops_per_element(numerator_shape[1] - 1, denominator_shape[1])


class _GroupRational(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight_numerator: Tensor, weight_denominator: Tensor, groups: int) -> Tensor:
        ctx.save_for_backward(x, weight_numerator, weight_denominator)
        ctx.groups = groups
        weights = (weight_numerator.detach(), weight_denominator.detach())
        if torch.compiler.is_compiling():
            m, n = _orders(weight_numerator, weight_denominator)
            y = _rational_forward(_grouped(x, groups), *weights, m, n)
        else:
            y = _forward_op(_grouped(x, groups), *weights)
        return y.reshape(x.shape)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None, None]:
        x, weight_numerator, weight_denominator = ctx.saved_tensors
        groups = ctx.groups
        if not torch.compiler.is_compiling() and (torch.is_grad_enabled() or plain_ops_required(grad)):
            # create_graph (double backward) or batched gradients: autograd of the reference ops
            inputs = [t if t.requires_grad else t.detach().requires_grad_() for t in ctx.saved_tensors]
            with torch.enable_grad():
                out = group_rational_pytorch(*inputs, groups)
                grads = torch.autograd.grad(out, inputs, grad, create_graph=True, allow_unused=True)
            return (*grads, None)
        args = (_grouped(x, groups), _grouped(grad.to(x.dtype), groups), weight_numerator, weight_denominator)
        if torch.compiler.is_compiling():
            m, n = _orders(weight_numerator, weight_denominator)
            gx, grad_numerator, grad_denominator = _rational_backward(*args, m, n)
        else:
            gx, grad_numerator, grad_denominator = _backward_op(*args)
        return (
            gx.reshape(x.shape) if ctx.needs_input_grad[0] else None,
            grad_numerator if ctx.needs_input_grad[1] else None,
            grad_denominator if ctx.needs_input_grad[2] else None,
            None,
        )


def group_rational_fused(x: Tensor, weight_numerator: Tensor, weight_denominator: Tensor, groups: int) -> Tensor:
    """``group_rational_pytorch(x, weight_numerator, weight_denominator, groups)`` by the fused path.

    ``x`` is channels-last ``(..., C)``; the result has x's shape and dtype (contiguous), computed in float32 for
    half-precision inputs (also under autocast) and in float64 for float64 ones. Forward-mode AD, functorch
    transforms and traced graphs get the reference ops.
    """
    if not x.is_floating_point() or plain_ops_required():
        return group_rational_pytorch(x, weight_numerator, weight_denominator, groups)
    check_arguments(x, weight_numerator, weight_denominator, groups)
    return _GroupRational.apply(x, weight_numerator, weight_denominator, groups)
