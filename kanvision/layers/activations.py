"""Base-branch activations b(x) of KAN layers, by name, with their derivatives for the fused expansion."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["resolve_activation", "activation_grad", "activation_grad_function", "has_closed_form_grad"]


def _identity(x: Tensor) -> Tensor:
    return x


_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "silu": F.silu,
    "gelu": F.gelu,
    "relu": F.relu,
    "tanh": torch.tanh,
    "identity": _identity,
}


def resolve_activation(activation: str | Callable[[Tensor], Tensor] | None) -> Callable[[Tensor], Tensor] | None:
    """The base-branch function b(x): a name in ``_ACTIVATIONS``, a callable, or None (or ``"none"``, which survives
    ``timm.create_model``, where None arguments are dropped) for no branch."""
    if activation is None or callable(activation):
        return activation
    if activation == "none":
        return None
    if activation not in _ACTIVATIONS:
        raise ValueError(
            f"unknown base_activation {activation!r}; valid: {sorted(_ACTIVATIONS)}, a callable, None or 'none'"
        )
    return _ACTIVATIONS[activation]


def _silu_grad(x: Tensor, grad: Tensor) -> Tensor:
    s = torch.sigmoid(x)
    return grad * s * (1 + x * (1 - s))


def _gelu_grad(x: Tensor, grad: Tensor) -> Tensor:  # exact (erf) GELU, F.gelu's default
    cdf = 0.5 * (1 + torch.erf(x * (0.5**0.5)))
    pdf = torch.exp(-0.5 * x * x) * (1 / math.sqrt(2 * math.pi))
    return grad * (cdf + x * pdf)


_GRADS: dict[Callable, Callable[[Tensor, Tensor], Tensor]] = {
    F.silu: _silu_grad,
    F.gelu: _gelu_grad,
    F.relu: lambda x, grad: grad * (x > 0),
    torch.tanh: lambda x, grad: grad * (1 - torch.tanh(x).square()),
    _identity: lambda x, grad: grad.clone(),
}


def has_closed_form_grad(activation: Callable[[Tensor], Tensor]) -> bool:
    """True for the named activations; other callables (maybe with parameters) go through autograd."""
    try:
        return activation in _GRADS
    except TypeError:  # unhashable callables
        return False


def activation_grad(activation: Callable[[Tensor], Tensor], x: Tensor, grad: Tensor) -> Tensor:
    """grad * b'(x) for an activation with :func:`has_closed_form_grad`."""
    return activation_grad_function(activation)(x, grad)


def activation_grad_function(activation: Callable[[Tensor], Tensor]) -> Callable[[Tensor, Tensor], Tensor]:
    """The function ``(x, grad) -> grad * b'(x)`` of an activation with :func:`has_closed_form_grad`."""
    return _GRADS[activation]
