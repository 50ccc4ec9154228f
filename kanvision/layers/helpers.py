"""Argument checks and small module factories shared by the layers and the models."""

from __future__ import annotations

import numbers
from collections.abc import Mapping

import torch
from timm.layers import get_act_layer
from torch import Tensor, nn
from torch.autograd import forward_ad

__all__ = [
    "check_bool",
    "check_floating",
    "check_int",
    "check_kwargs",
    "create_activation",
    "create_norm",
    "is_int",
    "plain_ops_required",
    "NORM_LAYERS",
]

NORM_LAYERS = ("batchnorm", "instancenorm")


def is_int(value) -> bool:
    """Whether ``value`` is an integer: a Python or NumPy int, not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(name: str, value: int, minimum: int, maximum: int | None = None) -> int:
    """``value`` as an int if it is an integer (:func:`is_int`) in [``minimum``, ``maximum``], else a ValueError
    naming ``name``."""
    if not is_int(value) or value < minimum or (maximum is not None and value > maximum):
        valid = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{name} must be an integer {valid}, got {value!r}")
    return int(value)


def check_kwargs(name: str, value: Mapping | None) -> dict:
    """``value`` as a dict if it is a mapping with string keys (None: empty), else a TypeError naming ``name``."""
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(key, str) for key in value):
        raise TypeError(f"{name} must be a mapping of argument names to values (e.g. dict(degree=3)), got {value!r}")
    return dict(value)


def check_bool(name: str, value: bool) -> bool:
    """``value`` if it is a bool, else a ValueError naming ``name``."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def check_floating(owner: str, x: Tensor) -> Tensor:
    """``x`` if it is a floating-point tensor, else a TypeError naming ``owner`` and x's dtype."""
    if not x.is_floating_point():
        raise TypeError(f"{owner} needs a floating-point input (float32, float64, bfloat16, float16), got {x.dtype}")
    return x


def create_activation(act_layer: str | None) -> nn.Module:
    """A fresh activation module by timm name (``"silu"``, ``"gelu"``, ``"relu"``, ...), nn.Identity for None."""
    if not act_layer:
        return nn.Identity()
    try:
        return get_act_layer(act_layer)()
    except KeyError:
        raise ValueError(
            f"unknown activation {act_layer!r}; use a timm activation name such as 'silu', 'gelu', 'relu', or None"
        ) from None


def create_norm(norm_layer: str | None, channels: int, affine: bool = True) -> nn.Module:
    """A 2-D norm by name: ``batchnorm`` (running statistics), ``instancenorm`` (per-image statistics, no running
    ones, as torch-conv-kan's KAN layers use it), or None (nn.Identity). ``affine``: learnable scale and shift."""
    if norm_layer is None:
        return nn.Identity()
    if norm_layer == "batchnorm":
        return nn.BatchNorm2d(channels, affine=affine)
    if norm_layer == "instancenorm":
        return nn.InstanceNorm2d(channels, affine=affine)
    raise ValueError(f"unknown norm_layer {norm_layer!r}; valid: {list(NORM_LAYERS)} or None")


def plain_ops_required(*tensors: Tensor) -> bool:
    """Whether a custom autograd Function (x's gradient by a hand-written backward) must give way to plain
    differentiable ops: under functorch transforms and forward-mode AD (it has no rules for them), for batched
    gradients (``is_grads_batched``: ``tensors`` batched by autograd's own vmap; torch has no public query for any of
    the three, hence the private queries, checked by tests/test_private_torch_apis.py) and while ``torch.jit``
    traces (ONNX export wants the plain ops). False inside compiled code."""
    return not torch.compiler.is_compiling() and (
        torch._C._are_functorch_transforms_active()
        or forward_ad._current_level >= 0
        or torch.jit.is_tracing()
        or any(torch._C._functorch.is_legacy_batchedtensor(t) for t in tensors)
    )
