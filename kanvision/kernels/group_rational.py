"""Fused Triton kernels for the group rational activation of KAT (GR-KAN), as a torch custom op.

Kolmogorov-Arnold Transformer, Yang & Wang, ICLR 2025 (arXiv 2409.10594), https://github.com/Adamdad/kat.
The released form, which the official checkpoints were trained with, is

    F(x) = (a_0 + a_1 x + ... + a_m x^m) / (1 + |b_1| |x| + |b_2| |x|^2 + ... + |b_n| |x|^n)

on groups of contiguous channels: channel ``c`` of ``C`` uses group ``c // (C // groups)``. The numerator is either
shared, shape ``(1, m+1)`` (the released layout), or per group ``(groups, m+1)``; the denominator is ``(groups, n)``.

Why a kernel: written in plain PyTorch the unit materialises a dozen full-size intermediates (6x ViT's training
memory in KAT-T) and the official Triton backward does ten global atomic adds per element (~100x slower training
than a ViT). Here:

* The forward reads ``x`` once and writes ``F(x)`` once; arithmetic is fp32 whatever the input dtype (fp32, bf16,
  fp16), the output has x's dtype.
* The backward saves nothing but the inputs and recomputes ``P, P', Q, Q'`` by Horner's rule. The coefficient
  gradients are reduced in fp32 registers over a tile of rows per program and written once per (program, column)
  to a small buffer, then summed over programs and over the channels of each group by one torch reduction (a
  deterministic two-pass reduction, no atomics: repeated runs give identical bits; the tile, autotuned once per
  (C, groups, orders, dtype) on the GPU, sets the summation order).
* Large |x|: the forward always, the backward for tiles with |x| beyond ``direct_limit`` (2^20 at order (5, 4)) or an
  overflowed P or Q, evaluate the safe form of :mod:`kanvision.kernels.rational_reference` (no power of x, so finite
  wherever F is, any supported order). The backward flags such rows and leaves them to a second, separate kernel
  that costs only a read of the flags when there are none, so that its registers do not weigh on the main loop.
* Gradient convention: ``d|b|/db = sign(b)`` and ``d|x|/dx = sign(x)`` with ``sign(0) = 0``, PyTorch's ``abs``
  backward, so the results agree with autograd on the PyTorch formula (a ``b_i`` that is exactly 0, as in the
  identity init, gets zero gradient there too).
* Any leading shape, any ``C`` divisible by ``groups``, non-contiguous inputs (strided rows/columns are read in
  place when ``x`` can be viewed as 2-D, else one copy), numerator order <= 7, denominator order <= 7.

``group_rational`` is ``torch.ops.kanvision.group_rational``: a custom op with a fake (meta) implementation, an
autograd formula (itself the custom op ``kanvision::group_rational_backward``), an autocast rule (under autocast
only ``x`` is cast to the autocast dtype; the coefficients stay fp32) and a FLOP formula for
``torch.utils.flop_counter`` (``2(m+1) + 2n + 1`` per element, 21 for orders (5, 4): a multiply and an add per
coefficient plus the division). ``torch.compile`` treats it as one opaque call.

CUDA tensors run the compiled kernels. CPU tensors run only in Triton's interpreter (slow, for testing), which
``TRITON_INTERPRET=1`` selects when it is set before triton is first imported.
"""

from __future__ import annotations

import contextlib
import functools
import math

import torch
from torch import Tensor
from torch.utils.flop_counter import register_flop_formula

from kanvision.kernels.rational_flops import backward_flops_per_element, forward_flops_per_element
from kanvision.kernels.rational_reference import denominator_tables

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - triton is a Linux-only dependency
    triton = None

__all__ = [
    "MAX_DENOMINATOR_ORDER",
    "MAX_NUMERATOR_ORDER",
    "backward_flops_per_element",
    "forward_flops_per_element",
    "group_rational",
    "is_available",
]

MAX_NUMERATOR_ORDER = 7
MAX_DENOMINATOR_ORDER = 7


def is_available(x: Tensor | None = None) -> bool:
    """True when the fused kernel can run (Triton importable; ``x``, if given, on a CUDA device)."""
    return triton is not None and (x is None or x.is_cuda)


def _check_args(x: Tensor, weight_numerator: Tensor, weight_denominator: Tensor, groups: int) -> tuple[int, int]:
    if x.dim() < 1:
        raise ValueError(f"x must have at least one dimension (channels last), got shape {tuple(x.shape)}")
    if not isinstance(groups, int) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    channels = x.shape[-1]
    if channels % groups != 0:
        raise ValueError(f"the channel count {channels} (last dim of x) is not divisible by groups={groups}")
    if weight_numerator.dim() != 2 or weight_numerator.shape[0] not in (1, groups):
        raise ValueError(
            f"weight_numerator must have shape (1, m+1) (shared) or (groups={groups}, m+1), got "
            f"{tuple(weight_numerator.shape)}"
        )
    if weight_denominator.dim() != 2 or weight_denominator.shape[0] != groups:
        raise ValueError(
            f"weight_denominator must have shape (groups={groups}, n), got {tuple(weight_denominator.shape)}"
        )
    numerator_order = weight_numerator.shape[1] - 1
    denominator_order = weight_denominator.shape[1]
    if not 0 <= numerator_order <= MAX_NUMERATOR_ORDER:
        raise ValueError(f"numerator order {numerator_order} is not in [0, {MAX_NUMERATOR_ORDER}]")
    if not 0 <= denominator_order <= MAX_DENOMINATOR_ORDER:
        raise ValueError(f"denominator order {denominator_order} is not in [0, {MAX_DENOMINATOR_ORDER}]")
    for name, t in (("x", x), ("weight_numerator", weight_numerator), ("weight_denominator", weight_denominator)):
        if t.dtype not in (torch.float32, torch.bfloat16, torch.float16, torch.float64):
            raise ValueError(f"{name} has dtype {t.dtype}; expected float32, bfloat16, float16 or float64")
        if t.device != x.device:
            raise ValueError(f"{name} is on {t.device} but x is on {x.device}")
    return numerator_order, denominator_order


if triton is not None:

    @triton.jit
    def _coefficient(coef, k: tl.constexpr, n_cols, cmask):
        """Row ``k`` of the coefficient table as a (1, BLOCK_C) row."""
        return tl.load(coef + k * n_cols, mask=cmask, other=0.0)[None, :]

    @triton.jit
    def _denominator_coefficient(coef, M: tl.constexpr, i: tl.constexpr, n_cols, cmask):
        """c_i of Q(|x|) = sum_i c_i |x|^i: 1 for i = 0, else |b_i| (row M + i)."""
        if i == 0:
            return tl.full((1, cmask.shape[0]), 1.0, tl.float32)
        return tl.load(coef + (M + i) * n_cols, mask=cmask, other=0.0)[None, :]

    @triton.jit
    def _reversed_coefficient(coef, M: tl.constexpr, N: tl.constexpr, j: tl.constexpr, n_cols, cmask):
        """c~_j of S(s) = sum_j c~_j s^j, Q(|x|) = |x|^d S(1/|x|): row M + N + 1 + j of the table."""
        return tl.load(coef + (M + N + 1 + j) * n_cols, mask=cmask, other=0.0)[None, :]

    @triton.jit
    def _safe_denominator(ax, big, coef, M: tl.constexpr, N: tl.constexpr, n_cols, cmask):
        """s (1/|x| for |x| > 1, else |x|), d (Q's degree for |x| > 1, else 0), 1/D and D'/D, where D = S(s) above 1
        and Q(|x|) below (kanvision.kernels.rational_reference: Q(|x|) = |x|^d S(1/|x|), S(0) = c_d > 0)."""
        s = tl.where(big, 1.0 / tl.where(big, ax, 1.0), ax)
        degree = tl.load(coef + (M + 2 * N + 2) * n_cols, mask=cmask, other=0.0)[None, :]
        d = tl.where(big, degree, 0.0)
        direct = _denominator_coefficient(coef, M, N, n_cols, cmask)
        q = tl.where(big, _reversed_coefficient(coef, M, N, N, n_cols, cmask), direct)
        dq = tl.zeros_like(q)
        for j in tl.static_range(N - 1, -1, -1):
            dq = dq * s + q
            direct = _denominator_coefficient(coef, M, j, n_cols, cmask)
            q = q * s + tl.where(big, _reversed_coefficient(coef, M, N, j, n_cols, cmask), direct)
        inverse_q = 1.0 / tl.maximum(q, 1.1754943508222875e-38)
        return s, d, inverse_q, dq * inverse_q

    @triton.jit
    def _safe_numerator(x, ax, s, d, coef, M: tl.constexpr, N: tl.constexpr, n_cols, cmask):
        """A = sum_{k >= d} a_k sign^k |x|^(k - d) and B = sum_{k < d} a_k sign^k s^(d - k) by Horner (sign = -1 for
        x < 0, else 1), with dA/d|x| and dB/ds: F = (A + B) / D, no power of x (that would overflow) needed."""
        negative = x < 0
        top = _coefficient(coef, M, n_cols, cmask)
        if M % 2 == 1:
            top = tl.where(negative, -top, top)
        a = tl.where(M >= d, top, 0.0)
        da = tl.zeros_like(a)
        for k in tl.static_range(M - 1, -1, -1):
            coefficient = _coefficient(coef, k, n_cols, cmask)
            if k % 2 == 1:
                coefficient = tl.where(negative, -coefficient, coefficient)
            take = k >= d
            da = tl.where(take, da * ax + a, da)
            a = tl.where(take, a * ax + coefficient, a)
        b = tl.zeros_like(a)
        db = tl.zeros_like(a)
        for k in tl.static_range(N):  # only k < d <= N take part
            coefficient = tl.zeros_like(a)
            if k <= M:
                coefficient = coefficient + _coefficient(coef, k, n_cols, cmask)
            if k % 2 == 1:
                coefficient = tl.where(negative, -coefficient, coefficient)
            take = k < d
            db = tl.where(take, db * s + b + coefficient, db)
            b = tl.where(take, (b + coefficient) * s, b)
        return a, da, b, db

    @triton.jit
    def _safe_value(x, coef, M: tl.constexpr, N: tl.constexpr, n_cols, cmask):
        ax = tl.abs(x)
        big = ax > 1.0
        s, d, inverse_q, _ = _safe_denominator(ax, big, coef, M, N, n_cols, cmask)
        a, _, b, _ = _safe_numerator(x, ax, s, d, coef, M, N, n_cols, cmask)
        return (a + b) * inverse_q

    @triton.jit
    def _safe_backward(x, g, coef, M: tl.constexpr, N: tl.constexpr, n_cols, cmask, acc):
        """dx and ``acc`` with the coefficient terms added, by the safe form: dF/da_k = sign^k T_k and
        dF/d|b_i| = -F T_i, T_k = |x|^k / Q(|x|) = |x|^(k - d) / D, each reached from 1 / D one factor of |x| (or
        1/|x|) at a time; dF/dx as in kanvision.layers.rational_fused (no cancellation of leading terms)."""
        ax = tl.abs(x)
        big = ax > 1.0
        s, d, inverse_q, slope = _safe_denominator(ax, big, coef, M, N, n_cols, cmask)
        a, da, b, db = _safe_numerator(x, ax, s, d, coef, M, N, n_cols, cmask)
        f = (a + b) * inverse_q
        negative = x < 0
        sign = tl.where(negative, -1.0, 1.0)
        sign_x = tl.where(x > 0, 1.0, tl.where(negative, -1.0, 0.0))
        # above 1, s (|x| dA/d|x| - s dB/ds) with s |x| = 1: no overflowing |x| dA/d|x| where F' is finite
        if N == 0:  # a polynomial: F may overflow where F' does not
            small = sign * da
            large = sign * (da - s * s * db)
        else:
            small = inverse_q * sign * da - sign_x * f * slope
            large = sign * (inverse_q * (da - s * s * db) + f * s * s * slope)
        dx = g * tl.where(big, large, small)
        start = g * inverse_q  # g T_d
        start_f = -(start * f)  # -g F T_d
        v = start
        w = start_f
        for k in tl.static_range(N - 1, -1, -1):  # T_k for k < d: down from T_d
            below = k < d
            v = tl.where(below, v * s, v)
            w = tl.where(below, w * s, w)
            if k <= M:
                term = tl.where(below, v, 0.0)
                if k % 2 == 1:
                    term = tl.where(negative, -term, term)
                acc = _add_to_slot(acc, k, term)
            if k >= 1:
                acc = _add_to_slot(acc, M + k, tl.where(below, w, 0.0))
        v = start
        w = start_f
        for k in tl.static_range(M + 1 if M >= N else N + 1):  # T_k for k >= d: up from T_d
            if k > 0:
                v = tl.where(k > d, v * ax, v)
                w = tl.where(k > d, w * ax, w)
            if k <= M:
                term = tl.where(k >= d, v, 0.0)
                if k % 2 == 1:
                    term = tl.where(negative, -term, term)
                acc = _add_to_slot(acc, k, term)
            if k >= 1:
                if k <= N:
                    acc = _add_to_slot(acc, M + k, tl.where(k >= d, w, 0.0))
        return dx, acc

    def _group_rational_forward_kernel(
        x_ptr,
        stride_xr,
        stride_xc,
        y_ptr,
        coef_ptr,
        n_rows,
        n_cols,
        M: tl.constexpr,
        N: tl.constexpr,
        TILE: tl.constexpr,
        BLOCK_C: tl.constexpr,
    ):
        BLOCK_R: tl.constexpr = TILE // BLOCK_C
        # One (BLOCK_R, BLOCK_C) tile per program; each coefficient is loaded once per column (a contiguous,
        # vectorisable row of the table) and broadcast over the rows. The constexpr orders prune unused ones.
        pid_r = tl.program_id(0)
        pid_c = tl.program_id(1)
        rows = pid_r * BLOCK_R + tl.arange(0, BLOCK_R)
        cols = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
        rmask = rows < n_rows
        cmask = cols < n_cols
        mask = rmask[:, None] & cmask[None, :]
        # coef is (M + 1 + N, n_cols) fp32: row k < M+1 holds a_k of each column's group, row M + i holds |b_i|.
        coef = coef_ptr + cols

        x = tl.load(
            x_ptr + rows.to(tl.int64)[:, None] * stride_xr + cols.to(tl.int64)[None, :] * stride_xc,
            mask=mask,
            other=0.0,
        ).to(tl.float32)
        y = _safe_value(x, coef, M, N, n_cols, cmask)
        out = y_ptr + rows.to(tl.int64)[:, None] * n_cols + cols[None, :]
        tl.store(out, y.to(y_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _slot(tile, k: tl.constexpr):
        """Slot ``k`` of a (slots, BLOCK_R, BLOCK_C) tile, bit for bit: the other slots add -0.0, the additive identity
        of every float (negated zeros, as a -0.0 literal compiles to +0.0). A thread holds all the slots of its
        elements, so with ``k`` a constant this compiles to a plain register read."""
        index = tl.arange(0, tile.shape[0])[:, None, None]
        return tl.sum(tl.where(index == k, tile, -tl.zeros_like(tile)), axis=0)

    @triton.jit
    def _add_to_slot(tile, k: tl.constexpr, term):
        """``tile`` with the (BLOCK_R, BLOCK_C) ``term`` added to slot ``k``; a register add with ``k`` a constant."""
        index = tl.arange(0, tile.shape[0])[:, None, None]
        # A reshape, unlike term[None], keeps term's register layout: no shuffle through shared memory per step.
        return tl.where(index == k, tile + tl.reshape(term, (1, term.shape[0], term.shape[1])), tile)

    @triton.jit
    def _denominator_slot(table, M: tl.constexpr, i: tl.constexpr):
        """c_i of Q(|x|) = sum_i c_i |x|^i: 1 for i = 0, else |b_i| (slot M + i of the coefficient table)."""
        if i == 0:
            return tl.full(table.shape[1:], 1.0, tl.float32)
        return _slot(table, M + i)

    def _group_rational_backward_kernel(
        go_ptr,
        stride_gr,
        stride_gc,
        x_ptr,
        stride_xr,
        stride_xc,
        dx_ptr,
        coef_ptr,
        partial_ptr,
        flag_ptr,
        n_rows,
        n_cols,
        M: tl.constexpr,
        N: tl.constexpr,
        TILE: tl.constexpr,
        BLOCK_C: tl.constexpr,
        DIRECT_LIMIT: tl.constexpr,
    ):
        BLOCK_R: tl.constexpr = TILE // BLOCK_C
        K: tl.constexpr = M + 1 + N  # coefficients: a_0..a_M, then |b_1|..|b_N|
        SLOTS: tl.constexpr = 16  # a power of two (tl.arange) >= MAX_NUMERATOR_ORDER + 1 + MAX_DENOMINATOR_ORDER
        tl.static_assert(K <= SLOTS)
        # Each program owns a column block and a strided set of row blocks (pid_r, pid_r + programs, ...). It
        # writes dx, and accumulates the per-element coefficient-gradient terms in fp32 registers, slot k of a
        # (SLOTS, BLOCK_R, BLOCK_C) tile for coefficient k; at the end it reduces them over rows and stores one
        # value per (coefficient, column) to partial[pid_r, k, col]. The host sums partial over programs and the
        # columns of each group. Slots past K are never touched and compile away.
        pid_r = tl.program_id(0)
        pid_c = tl.program_id(1)
        cols = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
        cmask = cols < n_cols
        # The coefficients of this column block, loaded once, slot k holding row k of the coefficient table. They
        # are broadcast over the rows of a tile (a (SLOTS, 1, BLOCK_C) tile would spread its slots over threads
        # when BLOCK_C is small, and taking one out would then be a reduction across threads).
        slot = tl.arange(0, SLOTS)[:, None, None]
        table = tl.zeros([SLOTS, BLOCK_R, BLOCK_C], dtype=tl.float32)
        for k in tl.static_range(K):
            row = tl.load(coef_ptr + k * n_cols + cols, mask=cmask, other=0.0)
            table = tl.where(slot == k, row[None, None, :], table)
        acc = tl.zeros([SLOTS, BLOCK_R, BLOCK_C], dtype=tl.float32)
        zero = tl.zeros([BLOCK_R, BLOCK_C], dtype=tl.float32)

        # Software prefetch: the loads of the next row block are issued before this block's arithmetic, which
        # doubles the bytes in flight per thread (the loop is not pipelined by the compiler).
        row_step = tl.num_programs(0) * BLOCK_R
        cols64 = cols.to(tl.int64)[None, :]
        rows = pid_r * BLOCK_R + tl.arange(0, BLOCK_R)
        mask = (rows < n_rows)[:, None] & cmask[None, :]
        x_next = tl.load(x_ptr + rows.to(tl.int64)[:, None] * stride_xr + cols64 * stride_xc, mask=mask, other=0.0)
        g_next = tl.load(go_ptr + rows.to(tl.int64)[:, None] * stride_gr + cols64 * stride_gc, mask=mask, other=0.0)
        for r0 in range(pid_r * BLOCK_R, n_rows, row_step):
            rows = r0 + tl.arange(0, BLOCK_R)
            mask = (rows < n_rows)[:, None] & cmask[None, :]
            rows64 = rows.to(tl.int64)[:, None]
            x = x_next.to(tl.float32)
            g = g_next.to(tl.float32)
            next_rows = rows + row_step
            next_mask = (next_rows < n_rows)[:, None] & cmask[None, :]
            next_rows64 = next_rows.to(tl.int64)[:, None]
            x_next = tl.load(x_ptr + next_rows64 * stride_xr + cols64 * stride_xc, mask=next_mask, other=0.0)
            g_next = tl.load(go_ptr + next_rows64 * stride_gr + cols64 * stride_gc, mask=next_mask, other=0.0)
            ax = tl.abs(x)

            # P, P' and Q(|x|), dQ/d|x| together by Horner (the derivative picks up the value before each step).
            p = zero
            dp = zero
            for k in tl.static_range(M + 1):
                dp = dp * x + p
                p = p * x + _slot(table, M - k)
            q = zero
            dq = zero
            for k in tl.static_range(N + 1):
                dq = dq * ax + q
                q = q * ax + _denominator_slot(table, M, N - k)

            inv_q = 1.0 / q
            f = p * inv_q
            sign_x = tl.where(x > 0, 1.0, tl.where(x < 0, -1.0, 0.0))
            t = g * inv_q  # dL/da_0 term: g / Q
            dx = t * (dp - sign_x * dq * f)
            # Beyond DIRECT_LIMIT, or where P or Q overflowed, the direct form is inexact (P'/Q and F Q'/Q cancel
            # their leading terms) or not finite: such a tile's rows are flagged for the safe-form kernel (a
            # separate kernel, so that its registers do not weigh on this loop) and left to it.
            unsafe = mask & ((ax > DIRECT_LIMIT) | ~(tl.abs(dx) < float("inf")))
            if tl.max(tl.max(unsafe.to(tl.int32), 1), 0) > 0:
                flags = flag_ptr + rows.to(tl.int64) * tl.num_programs(1) + pid_c
                tl.store(flags, tl.full(rows.shape, 1, tl.int8), mask=rows < n_rows)
            else:
                u = -t * f  # -g P / Q^2; times |x|^i gives the |b_i| term (sign(b_i) is applied on the host)
                for k in tl.static_range(M + 1):
                    acc = _add_to_slot(acc, k, t)
                    t = t * x
                for i in tl.static_range(1, N + 1):
                    u = u * ax
                    acc = _add_to_slot(acc, M + i, u)
                tl.store(
                    dx_ptr + rows64 * n_cols + cols[None, :],
                    dx.to(dx_ptr.dtype.element_ty),
                    mask=mask,
                )

        # partial has shape (programs along rows, M + 1 + N, n_cols).
        out = partial_ptr + pid_r.to(tl.int64) * (K * n_cols) + cols
        for k in tl.static_range(K):
            tl.store(out + k * n_cols, tl.sum(_slot(acc, k), axis=0), mask=cmask)

    def _group_rational_safe_backward_kernel(
        go_ptr,
        stride_gr,
        stride_gc,
        x_ptr,
        stride_xr,
        stride_xc,
        dx_ptr,
        coef_ptr,
        partial_ptr,
        flag_ptr,
        n_rows,
        n_cols,
        M: tl.constexpr,
        N: tl.constexpr,
        TILE: tl.constexpr,
        BLOCK_C: tl.constexpr,
    ):
        """The backward kernel's work for the rows it flagged, by the safe form; the same grid and partial layout.
        Programs whose rows carry no flag only read the flags."""
        BLOCK_R: tl.constexpr = TILE // BLOCK_C
        K: tl.constexpr = M + 1 + N
        SLOTS: tl.constexpr = 16
        pid_r = tl.program_id(0)
        pid_c = tl.program_id(1)
        cols = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
        cmask = cols < n_cols
        cols64 = cols.to(tl.int64)[None, :]
        acc = tl.zeros([SLOTS, BLOCK_R, BLOCK_C], dtype=tl.float32)
        for r0 in range(pid_r * BLOCK_R, n_rows, tl.num_programs(0) * BLOCK_R):
            rows = r0 + tl.arange(0, BLOCK_R)
            flagged = tl.load(flag_ptr + rows.to(tl.int64) * tl.num_programs(1) + pid_c, mask=rows < n_rows, other=0)
            if tl.max(flagged.to(tl.int32), 0) > 0:
                mask = (flagged != 0)[:, None] & cmask[None, :]
                rows64 = rows.to(tl.int64)[:, None]
                x = tl.load(x_ptr + rows64 * stride_xr + cols64 * stride_xc, mask=mask, other=0.0).to(tl.float32)
                g = tl.load(go_ptr + rows64 * stride_gr + cols64 * stride_gc, mask=mask, other=0.0).to(tl.float32)
                dx, acc = _safe_backward(x, g, coef_ptr + cols, M, N, n_cols, cmask, acc)
                tl.store(dx_ptr + rows64 * n_cols + cols[None, :], dx.to(dx_ptr.dtype.element_ty), mask=mask)
        out = partial_ptr + pid_r.to(tl.int64) * (K * n_cols) + cols
        for k in tl.static_range(K):
            tl.store(out + k * n_cols, tl.sum(_slot(acc, k), axis=0), mask=cmask)

    _safe_backward_jit = triton.jit(_group_rational_safe_backward_kernel)
    _forward_jit = triton.jit(_group_rational_forward_kernel)
    _backward_jit = triton.jit(_group_rational_backward_kernel)
    # On the GPU the tile (elements per program per step) and warp count are tuned once per (C, groups, orders,
    # dtype); the Triton interpreter runs the fixed defaults below. Every config writes all of its outputs, so the
    # benchmarking runs need no reset.
    _TUNE_KEY = ["n_cols", "M", "N", "BLOCK_C"]
    _forward_tuned = triton.autotune(
        [triton.Config({"TILE": t}, num_warps=w) for t, w in ((1024, 4), (2048, 4), (2048, 8), (4096, 8))],
        key=_TUNE_KEY,
    )(_forward_jit)
    _backward_tuned = triton.autotune(
        [triton.Config({"TILE": t}, num_warps=w) for t, w in ((512, 2), (512, 4), (1024, 4), (1024, 8), (2048, 8))],
        key=_TUNE_KEY,
    )(_backward_jit)

_FORWARD_TILE = 2048
_BACKWARD_TILE = 1024


def _launcher(x: Tensor, jitted, tuned, default_tile: int) -> tuple:
    """(kernel, launch kwargs): the autotuned kernel on CUDA, the fixed default tile in the interpreter."""
    if triton is None:
        raise RuntimeError("group_rational's kernel needs triton (pip install triton)")
    if _interpreting():
        return jitted, {"TILE": default_tile, "num_warps": 4}
    if not x.is_cuda:
        raise RuntimeError(
            "group_rational's Triton kernel runs on CUDA tensors; CPU tensors need Triton's interpreter, "
            "TRITON_INTERPRET=1 set before triton is first imported"
        )
    return tuned, {}


def _interpreting() -> bool:
    """True when these kernels run in Triton's interpreter (TRITON_INTERPRET=1 was set before triton's import)."""
    from triton.language import standard
    from triton.runtime.interpreter import InterpretedFunction

    ours = isinstance(_forward_jit, InterpretedFunction)
    if ours and not isinstance(standard.zeros_like, InterpretedFunction):
        # The kernels were defined in interpreter mode but triton's own library was not: they cannot run here.
        raise RuntimeError(
            "TRITON_INTERPRET=1 was set after triton was imported but before kanvision.kernels.group_rational: "
            "set it before anything imports triton (importing torch's compiler does) or not at all"
        )
    return ours


def _on_device(x: Tensor):
    # Triton launches on the current CUDA device: make it x's (e.g. x on cuda:1 while cuda:0 is current).
    return torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext()


def _device_index(x: Tensor) -> int:
    return x.device.index if x.device.index is not None else torch.cuda.current_device()


@functools.cache
def _multiprocessor_count(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def _block_cols(n_cols: int) -> int:
    """Largest power-of-two column block in [16, 256] that pads the row by at most 1/8 (fewer idle lanes)."""
    for block in (256, 128, 64, 32):
        if triton.cdiv(n_cols, block) * block * 8 <= n_cols * 9:
            return block
    return 16


def _coefficient_table(weight_numerator: Tensor, weight_denominator: Tensor, groups: int, n_cols: int) -> Tensor:
    """(m + 2n + 3, C) fp32: a_0..a_m and |b_1|..|b_n| of each channel's group, then the reversed denominator
    c~_0..c~_n and its degree (:func:`~kanvision.kernels.rational_reference.denominator_tables`), one contiguous row
    per coefficient, so that the kernels load them as vectors instead of gathering per column."""
    c, c_reversed, degree = denominator_tables(weight_denominator, torch.float32)
    per_group = torch.cat(
        [weight_numerator.float().expand(groups, -1), c[:, 1:], c_reversed, degree], dim=1
    )  # (groups, m + 2n + 3)
    return per_group.repeat_interleave(n_cols // groups, dim=0).t().contiguous()


def direct_limit(numerator_order: int, denominator_order: int) -> float:
    """|x| up to which the backward kernel uses the direct form P(x) / Q(|x|): |x|^max(m, n) <= 2^104 (float32's
    largest binary exponent less its mantissa bits, so that moderate coefficient sums keep P and Q finite)."""
    return 2.0 ** (104 // max(numerator_order, denominator_order, 1))


def _as_rows(t: Tensor) -> Tensor:
    """(..., C) -> (rows, C), a view whenever possible (strided rows and columns are read in place)."""
    return t.reshape(-1, t.shape[-1])


def _forward_impl(x: Tensor, weight_numerator: Tensor, weight_denominator: Tensor, groups: int) -> Tensor:
    numerator_order, denominator_order = _check_args(x, weight_numerator, weight_denominator, groups)
    if x.dtype == torch.float64:
        raise ValueError("the Triton kernel computes in fp32: use the PyTorch path for float64 inputs")
    kernel, launch_kwargs = _launcher(x, _forward_jit, _forward_tuned, _FORWARD_TILE)
    x2 = _as_rows(x)
    n_rows, n_cols = x2.shape
    y = torch.empty((n_rows, n_cols), dtype=x.dtype, device=x.device)
    if y.numel() == 0:
        return y.view(x.shape)
    coef = _coefficient_table(weight_numerator, weight_denominator, groups, n_cols)
    block_c = _block_cols(n_cols)
    col_blocks = triton.cdiv(n_cols, block_c)
    with _on_device(x):
        kernel[lambda meta: (triton.cdiv(n_rows, meta["TILE"] // block_c), col_blocks)](
            x2,
            x2.stride(0),
            x2.stride(1),
            y,
            coef,
            n_rows,
            n_cols,
            M=numerator_order,
            N=denominator_order,
            BLOCK_C=block_c,
            **launch_kwargs,
        )
    return y.view(x.shape)


def _backward_impl(
    grad_output: Tensor, x: Tensor, weight_numerator: Tensor, weight_denominator: Tensor, groups: int
) -> tuple[Tensor, Tensor, Tensor]:
    numerator_order, denominator_order = _check_args(x, weight_numerator, weight_denominator, groups)
    kernel, launch_kwargs = _launcher(x, _backward_jit, _backward_tuned, _BACKWARD_TILE)
    x2 = _as_rows(x)
    g2 = _as_rows(grad_output)
    n_rows, n_cols = x2.shape
    dx = torch.empty((n_rows, n_cols), dtype=x.dtype, device=x.device)
    num_coefficients = numerator_order + 1 + denominator_order
    if dx.numel() == 0:
        return (
            dx.view(x.shape),
            torch.zeros_like(weight_numerator),
            torch.zeros_like(weight_denominator),
        )
    coef = _coefficient_table(weight_numerator, weight_denominator, groups, n_cols)
    block_c = _block_cols(n_cols)
    col_blocks = triton.cdiv(n_cols, block_c)
    # Enough row programs to fill the GPU a few times over; each then loops over many row blocks, so the partial
    # buffer (row programs x coefficients x C, fp32) stays a few percent of the traffic of x. The count does not
    # depend on the tuned tile (programs left without rows write zeros), so the buffer is sized before launch.
    target = 4 * _multiprocessor_count(_device_index(x)) if x.is_cuda else 3
    row_programs = max(1, min(n_rows, triton.cdiv(target, col_blocks)))
    partial = torch.empty((row_programs, num_coefficients, n_cols), dtype=torch.float32, device=x.device)
    safe_partial = torch.empty_like(partial)
    flags = torch.zeros((n_rows, col_blocks), dtype=torch.int8, device=x.device)  # rows left to the safe form
    with _on_device(x):
        kernel[(row_programs, col_blocks)](
            g2,
            g2.stride(0),
            g2.stride(1),
            x2,
            x2.stride(0),
            x2.stride(1),
            dx,
            coef,
            partial,
            flags,
            n_rows,
            n_cols,
            M=numerator_order,
            N=denominator_order,
            BLOCK_C=block_c,
            DIRECT_LIMIT=direct_limit(numerator_order, denominator_order),
            **launch_kwargs,
        )
        # the rows flagged above (|x| beyond the direct form's limit): rare, a fixed small tile
        _safe_backward_jit[(row_programs, col_blocks)](
            g2,
            g2.stride(0),
            g2.stride(1),
            x2,
            x2.stride(0),
            x2.stride(1),
            dx,
            coef,
            safe_partial,
            flags,
            n_rows,
            n_cols,
            M=numerator_order,
            N=denominator_order,
            TILE=max(block_c, 256),
            BLOCK_C=block_c,
            num_warps=4,
        )
        partial += safe_partial
    # Second pass: sum over row programs and over the channels of each group in one deterministic reduction.
    per_group = partial.view(row_programs, num_coefficients, groups, n_cols // groups).sum(dim=(0, 3))  # (K, groups)
    grad_numerator = per_group[: numerator_order + 1].t()  # (groups, m+1)
    if weight_numerator.shape[0] == 1:
        grad_numerator = grad_numerator.sum(0, keepdim=True)
    # an exact zero b_i gets 0 (sign(0) = 0), also where its sum of terms overflowed (0 * inf would be NaN)
    grad_denominator = torch.where(
        weight_denominator == 0, 0.0, per_group[numerator_order + 1 :].t() * torch.sign(weight_denominator.float())
    )
    return (
        dx.view(x.shape),
        grad_numerator.to(weight_numerator.dtype).contiguous(),
        grad_denominator.to(weight_denominator.dtype).contiguous(),
    )


# ---- torch.library registration ----------------------------------------------------------------------------------


@torch.library.custom_op("kanvision::group_rational", mutates_args=())
def _group_rational_op(x: Tensor, weight_numerator: Tensor, weight_denominator: Tensor, groups: int) -> Tensor:
    return _forward_impl(x, weight_numerator, weight_denominator, groups)


@_group_rational_op.register_fake
def _group_rational_fake(x: Tensor, weight_numerator: Tensor, weight_denominator: Tensor, groups: int) -> Tensor:
    _check_args(x, weight_numerator, weight_denominator, groups)
    return x.new_empty(x.shape)


@torch.library.custom_op("kanvision::group_rational_backward", mutates_args=())
def _group_rational_backward_op(
    grad_output: Tensor, x: Tensor, weight_numerator: Tensor, weight_denominator: Tensor, groups: int
) -> tuple[Tensor, Tensor, Tensor]:
    return _backward_impl(grad_output, x, weight_numerator, weight_denominator, groups)


@_group_rational_backward_op.register_fake
def _group_rational_backward_fake(
    grad_output: Tensor, x: Tensor, weight_numerator: Tensor, weight_denominator: Tensor, groups: int
) -> tuple[Tensor, Tensor, Tensor]:
    return (
        x.new_empty(x.shape),
        weight_numerator.new_empty(weight_numerator.shape),
        weight_denominator.new_empty(weight_denominator.shape),
    )


def _setup_context(ctx, inputs, output) -> None:
    x, weight_numerator, weight_denominator, groups = inputs
    ctx.save_for_backward(x, weight_numerator, weight_denominator)  # inputs only: the backward recomputes
    ctx.groups = groups


def _backward(ctx, grad_output: Tensor):
    x, weight_numerator, weight_denominator = ctx.saved_tensors
    dx, da, db = _group_rational_backward_op(grad_output, x, weight_numerator, weight_denominator, ctx.groups)
    return dx, da, db, None


_group_rational_op.register_autograd(_backward, setup_context=_setup_context)

_LIBRARY = torch.library.Library("kanvision", "FRAGMENT")


def _make_autocast_kernel(device_type: str):
    # Cast only x (to the autocast dtype of this device); the coefficients stay in their own (fp32) precision, a
    # bf16 rounding of b_4 ~ 5e-4 would change the function. Then run the op with autocast off. Private API on
    # purpose: the public torch.library.register_autocast casts every floating input, coefficients included; the
    # names are checked by tests/test_private_torch_apis.py, which fails loudly when a torch release moves them.
    autocast_key = torch._C.DispatchKeySet(getattr(torch._C.DispatchKey, "Autocast" + device_type.upper()))

    def kernel(_keyset, x: Tensor, weight_numerator: Tensor, weight_denominator: Tensor, groups: int) -> Tensor:
        with torch._C._ExcludeDispatchKeyGuard(autocast_key):
            if x.is_floating_point() and x.dtype != torch.float64 and x.device.type == device_type:
                x = x.to(torch.get_autocast_dtype(device_type))
            return _group_rational_op(x, weight_numerator, weight_denominator, groups)

    return kernel


for _device_type in ("cpu", "cuda"):
    _LIBRARY.impl(
        "group_rational", _make_autocast_kernel(_device_type), "Autocast" + _device_type.upper(), with_keyset=True
    )


@register_flop_formula(torch.ops.kanvision.group_rational)
def _group_rational_flops(x_shape, numerator_shape, denominator_shape, groups, *args, out_shape=None, **kwargs) -> int:
    return math.prod(x_shape) * forward_flops_per_element(numerator_shape[1] - 1, denominator_shape[1])


@register_flop_formula(torch.ops.kanvision.group_rational_backward)
def _group_rational_backward_flops(
    grad_shape, x_shape, numerator_shape, denominator_shape, groups, *args, out_shape=None, **kwargs
) -> int:
    return math.prod(x_shape) * backward_flops_per_element(numerator_shape[1] - 1, denominator_shape[1])


def group_rational(x: Tensor, weight_numerator: Tensor, weight_denominator: Tensor, groups: int) -> Tensor:
    """Group rational activation F(x) = P(x) / (1 + sum_i |b_i| |x|^i) on channels-last ``x`` by the fused kernel.

    Args:
        x: ``(..., C)``, float32/bfloat16/float16 (any strides); ``C`` divisible by ``groups``.
        weight_numerator: ``(1, m+1)`` shared by all groups (released KAT layout) or ``(groups, m+1)``; a_0..a_m.
        weight_denominator: ``(groups, n)``; b_1..b_n.
        groups: number of groups of ``C // groups`` contiguous channels.

    Returns:
        ``F(x)``, contiguous, same shape and dtype as ``x`` (computed in fp32). Differentiable in all three tensors.
    """
    _check_args(x, weight_numerator, weight_denominator, groups)
    return _group_rational_op(x, weight_numerator, weight_denominator, groups)
