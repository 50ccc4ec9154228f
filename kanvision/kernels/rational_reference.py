"""The group rational of GR-KAN as plain PyTorch ops: the reference that every faster path is tested against.

F(x) = P(x) / Q(|x|), P(x) = a_0 + a_1 x + ... + a_m x^m, Q(|x|) = c_0 + c_1 |x| + ... + c_n |x|^n with c_0 = 1 and
c_i = |b_i| (the released form of KAT, Yang & Wang, arXiv 2409.10594), on groups of contiguous channels.

Evaluated as F = sum_k a_k sign(x)^k T_k with the terms T_k = |x|^k / Q(|x|), which are also the numerator's
gradients (the denominator's are -F T_i). For |x| <= 1 they are computed directly. Above 1, Q(|x|) = |x|^d S(1/|x|)
with ``d`` the effective degree of Q (its last non-zero c_d; d = n unless b_n is exactly 0) and S the reversed
polynomial, S(0) = c_d > 0: T_k = |x|^(k - d) / S(1/|x|), reached from 1 / S by multiplying by |x| (k > d) or
1/|x| (k < d) one step at a time. Every step moves monotonically towards T_k, so nothing overflows or underflows
unless T_k itself does; powers of x alone (x^5 overflows float32 from |x| ~ 4e7, x^12 from ~1.6e3) never appear.
A T_k beyond the dtype's range is saturated at its largest finite value, so a zero coefficient times it stays 0.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["check_arguments", "denominator_tables", "group_rational_pytorch", "rational_terms"]


def check_arguments(x: Tensor, weight_numerator: Tensor, weight_denominator: Tensor, groups: int) -> None:
    """The shape checks of the group rational paths (ValueError naming the bad shape)."""
    channels = x.shape[-1] if x.dim() else 0
    if x.dim() == 0 or channels % groups != 0:
        raise ValueError(f"channel count {channels} is not divisible by groups={groups}")
    if weight_denominator.dim() != 2 or weight_denominator.shape[0] != groups or weight_denominator.shape[1] < 1:
        raise ValueError(
            f"weight_denominator must be (groups={groups}, n) with n >= 1, got {tuple(weight_denominator.shape)}"
        )
    if weight_numerator.dim() != 2 or weight_numerator.shape[0] not in (1, groups):
        raise ValueError(f"weight_numerator must be (1, m+1) or ({groups}, m+1), got {tuple(weight_numerator.shape)}")


def denominator_tables(weight_denominator: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """(c, c_reversed, degree) per group in ``dtype``: c = (1, |b_1|, .., |b_n|) and c_reversed[j] = c[d - j] for
    j <= d, else 0, both (groups, n + 1), and the effective degree d (groups, 1) as a float."""
    magnitudes = weight_denominator.to(dtype).abs()
    c = torch.cat([magnitudes.new_ones(magnitudes.shape[0], 1), magnitudes], 1)
    index = torch.arange(c.shape[1], device=c.device)
    degree = torch.where(c != 0, index, 0).amax(1, keepdim=True)  # (groups, 1); c_0 = 1 makes it >= 0
    source = degree - index
    c_reversed = torch.where(source >= 0, c.gather(1, source.clamp(min=0)), 0.0)
    return c, c_reversed, degree.to(dtype)


def rational_terms(
    x: Tensor, c: list[Tensor], c_reversed: list[Tensor], degree: Tensor, count: int
) -> tuple[Tensor, list[Tensor], Callable[[Tensor | float, int], list[Tensor]], tuple[Tensor, ...]]:
    """(sign, terms, ladder, (big, s, d, slope)) for ``x`` in the compute dtype.

    sign = -1 for x < 0 else 1; terms = [T_0, .., T_{count-1}], T_k = |x|^k / Q(|x|) saturated at the dtype's
    largest value (see the module docstring); ``ladder(v, count)`` = [v T_0, .., v T_{count-1}] by the same steps
    from v T_d (e.g. F T_i: F is large exactly where T_i is tiny, and the product may be normal where T_i alone
    underflows); ``big``: |x| > 1; ``s``: 1/|x| there, else |x|; ``d``: the denominator's degree there, else 0;
    ``slope``: S'(s) / S(s) there, Q'(|x|) / Q(|x|) below. ``c[i]``, ``c_reversed[j]`` (i, j = 0..n) and ``degree``
    broadcast against ``x``. Branch-free, so that it compiles to one loop."""
    n = len(c) - 1
    ax = x.abs()
    big = ax > 1
    s = torch.where(big, 1.0 / torch.where(big, ax, 1.0), ax)  # 1/|x| or |x|; the inner where keeps 1/|x| finite
    d = torch.where(big, degree, 0.0)  # T_k = |x|^(k - d) / D below, d = 0 for |x| <= 1
    denominator = torch.where(big, c_reversed[n], c[n])  # S(1/|x|) or Q(|x|), by Horner, with its slope
    slope = torch.zeros_like(denominator)
    for j in range(n - 1, -1, -1):
        slope = slope * s + denominator
        denominator = denominator * s + torch.where(big, c_reversed[j], c[j])
    largest = torch.finfo(x.dtype).max

    def ladder(factor: Tensor | float, count: int) -> list[Tensor]:
        start = factor * base
        below, value = {}, start  # k < d: base / |x|^(d - k), one step down at a time
        for k in range(n - 1, -1, -1):
            value = torch.where(k < d, value * s, value)
            below[k] = value
        steps, value = [], start
        for k in range(count):  # k >= d: base |x|^(k - d), one step up at a time
            if k > 0:
                value = torch.where(k > d, value * ax, value)
            step = torch.where(k >= d, value, below[k]) if k < n else value
            steps.append(step.clamp(-largest, largest))
        return steps

    base = 1.0 / denominator.clamp_min(torch.finfo(x.dtype).tiny)  # T_d
    sign = torch.where(x < 0, -1.0, 1.0).to(x.dtype)
    return sign, ladder(1.0, count), ladder, (big, s, d, slope * base)


def group_rational_pytorch(x: Tensor, weight_numerator: Tensor, weight_denominator: Tensor, groups: int) -> Tensor:
    """Reference PyTorch group rational on channels-last ``x`` (..., C), differentiable (twice) in all three tensors.

    ``weight_numerator`` is (1, m+1) (shared) or (groups, m+1), ``weight_denominator`` is (groups, n); channel c
    belongs to group c // (C / groups). Half-precision inputs are computed in float32 and returned in their dtype.
    Finite wherever F is within the compute dtype's range (|x| up to 1e30 and beyond in float32, any orders).
    """
    check_arguments(x, weight_numerator, weight_denominator, groups)
    if not x.is_floating_point():
        raise TypeError(f"group rational needs a floating-point input, got {x.dtype}")
    num_channels = x.shape[-1]
    dtype = torch.promote_types(x.dtype, torch.float32)
    xg = x.to(dtype).unflatten(-1, (groups, num_channels // groups))  # (..., g, C/g)
    a = weight_numerator.to(dtype).unsqueeze(-1)  # (1 or g, m+1, 1): a[:, k] broadcasts over (..., g, C/g)
    c, c_reversed, degree = (t.unsqueeze(-1) for t in denominator_tables(weight_denominator, dtype))
    m, n = a.shape[1] - 1, c.shape[1] - 1
    sign, terms, _, (big, *_) = rational_terms(
        xg, [c[:, i] for i in range(n + 1)], [c_reversed[:, j] for j in range(n + 1)], degree[:, 0], m + 1
    )
    even = sum(a[:, k] * terms[k] for k in range(0, m + 1, 2))
    # odd powers as x T_{k-1} up to |x| = 1, so that autograd's d|x|/dx = sign(0) = 0 does not drop P'(0)
    odd = [a[:, k] * torch.where(big, sign * terms[k], xg * terms[k - 1]) for k in range(1, m + 1, 2)]
    return (even + sum(odd, torch.zeros_like(xg))).flatten(-2).to(x.dtype)
