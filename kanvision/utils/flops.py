"""Forward FLOPs of a network, counted by ``torch.utils.flop_counter`` plus the ops it has no formula for.

``torch.utils.flop_counter.FlopCounterMode`` counts matmuls and convolutions, and kanvision's group-rational
activation through the formulas its custom ops register (``forward_flops_per_element``: 2(m+1) + 2n + 1 FLOPs per
element, 21 for KAT's (5, 4)). One op it has no formula for is the flash-attention kernel that
``F.scaled_dot_product_attention`` dispatches to on CPU; its formula is registered here through the public
``register_flop_formula``. Lightning's model summary uses the same counter, so it shows the same totals once this
module is imported (kanvision's training callbacks import it).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode, register_flop_formula

__all__ = ["count_forward_flops"]


def _attention_flops(query_shape, key_shape, value_shape) -> int:
    """QK^T and (softmax) V of scaled dot-product attention: 2 B H L S E + 2 B H L S Ev."""
    batch, heads, length, embed = query_shape
    source = key_shape[-2]
    return 2 * batch * heads * length * source * embed + 2 * batch * heads * length * source * value_shape[-1]


_CPU_ATTENTION = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
if _CPU_ATTENTION is not None:
    try:

        @register_flop_formula(_CPU_ATTENTION)
        def _cpu_attention_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
            return _attention_flops(query_shape, key_shape, value_shape)

    except (ValueError, RuntimeError):  # a torch release that already counts it
        pass


def count_forward_flops(model: nn.Module, example: Tensor) -> int:
    """FLOPs of one forward pass of ``model`` on ``example`` (no gradients, eval mode, restored afterwards)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(example)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())
