"""FLOPs per element of the group rational activation, counted from the fused kernels' arithmetic.

The Triton kernel (:mod:`kanvision.kernels.group_rational`) and the fused CPU path
(:mod:`kanvision.layers.rational_fused`) register these as the FLOP formulas of their custom ops; this module has no
triton import, so that CPU use needs none.
"""

from __future__ import annotations

__all__ = ["backward_flops_per_element", "forward_flops_per_element"]


def forward_flops_per_element(numerator_order: int, denominator_order: int) -> int:
    """FLOPs per element of the forward: a multiply-add per coefficient and one division (21 for orders (5, 4))."""
    return 2 * (numerator_order + 1) + 2 * denominator_order + 1


def backward_flops_per_element(numerator_order: int, denominator_order: int) -> int:
    """FLOPs per element of the backward, counted from the kernel's arithmetic.

    |x| (1); P and P' by Horner (2m + 2(m-1)); Q and dQ/d|x| (2n + 2(n-1)); 1/Q and F (2); dx (5); the numerator
    gradient terms x^k/Q with their running sums (2m + 2); the denominator terms -P|x|^i/Q^2 with theirs (2n + 1).
    61 for orders (5, 4).
    """
    m, n = numerator_order, denominator_order
    return 6 * m + 6 * n + 7
