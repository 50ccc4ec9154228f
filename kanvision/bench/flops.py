"""Forward FLOPs of a network, counted by ``torch.utils.flop_counter`` plus the ops it has no formula for.

``torch.utils.flop_counter.FlopCounterMode`` counts matmuls and convolutions. Two things a vision KAN zoo needs are
missing from it: the CPU flash-attention kernel that ``F.scaled_dot_product_attention`` dispatches to on CPU (its
formula is registered here through the public ``register_flop_formula``), and kanvision's group-rational activation
when it runs as plain PyTorch elementwise ops (counted per call with the fused kernel's formula,
``forward_flops_per_element``: 2(m+1) + 2n + 1 FLOPs per element, 21 for KAT's (5, 4)). On CUDA the fused kernel
is a custom op with its own registered formula, so it is not counted twice.
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
    from kanvision.kernels.group_rational import forward_flops_per_element
    from kanvision.layers.rational import GroupRational

    extra = 0

    def count_rational(module: GroupRational, args, output) -> None:
        nonlocal extra
        if not module.uses_kernel(args[0]):  # the kernel's custom op is counted by FlopCounterMode itself
            extra += output.numel() * forward_flops_per_element(*module.order)

    hooks = [m.register_forward_hook(count_rational) for m in model.modules() if isinstance(m, GroupRational)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(example)
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return int(counter.get_total_flops()) + extra
