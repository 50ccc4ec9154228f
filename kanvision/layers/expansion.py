"""The fused basis expansion shared by every basis: one autograd Function, whatever the basis.

``expand(basis, x, dim, b)`` gives b(x), B_0(x)..B_{n-1}(x) on a new axis ``dim`` and saves only ``x`` for
backward, which computes x's gradient from x: the basis' analytic ``derivative`` where it has one, autograd of its
``values`` otherwise. Plain autograd would save the expansion (n times the input) or several temporaries of its size.

A basis gives its values in one branch-free form on x viewed as a contiguous ``(P, 1, Q)``: P the axes outside the
new axis in memory, Q those inside, so that the result ``(P, n, Q)`` is the expansion already in the layout the
layer's GEMM/conv reads (a channels-last input gives a channels-last expansion). On CPU, for inputs large enough to
matter, both passes are kernels that ``torch.compile`` generates from those formulas (:mod:`kanvision.kernels.compiled`:
one loop writes every slot once, one reduction over the slots gives the gradient; the B-spline's values are
selects over its polynomial pieces, which fuse, where a scatter would not). Elsewhere the same formulas run as
plain ops, and an outer ``torch.compile`` traces them into its own graph.

Everything the custom Function cannot do (gradients of learnable bases or base activations, functorch transforms,
forward-mode AD, double backward, ``torch.jit`` tracing) gets :func:`reference`: the same formulas as plain
differentiable ops, same values, same layout.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from kanvision.kernels import compiled
from kanvision.layers.activations import activation_grad_function, has_closed_form_grad
from kanvision.layers.helpers import plain_ops_required

__all__ = ["expand", "has_derivative", "reference"]


def expand(basis: nn.Module, x: Tensor, dim: int, activation: Callable[[Tensor], Tensor] | None) -> Tensor:
    """The expansion ``(..., C, ...) -> (..., C, m, ...)``, m = n (+ 1 with ``activation``), by the fused path where
    it applies (see the module docstring), else by :func:`reference`."""
    dim = dim if dim >= 0 else x.dim() + 1 + dim
    x_gradient_only = not any(p.requires_grad for p in basis.parameters()) and (
        activation is None or has_closed_form_grad(activation)
    )
    # under an outer torch.compile the plain ops run: inductor fuses them, and autograd's backward of them is exact for
    # every layout (traced, this Function's backward mixed up the strides of size-1 channel axes)
    if x_gradient_only and not torch.compiler.is_compiling() and not plain_ops_required():
        return _Expansion.apply(x, basis, dim, activation)
    return reference(basis, x, dim, activation)


def reference(basis: nn.Module, x: Tensor, dim: int, activation: Callable[[Tensor], Tensor] | None) -> Tensor:
    """:func:`expand`'s values and layout through plain differentiable ops (its double backward, and the tests')."""
    dtype = x.dtype
    x = _compute(x)
    dim = dim if dim >= 0 else x.dim() + 1 + dim
    shape = list(x.shape)
    out = _forward(x.reshape(math.prod(shape[:dim]), 1, math.prod(shape[dim:])), basis, activation)
    out = out.reshape(shape[:dim] + [out.shape[1]] + shape[dim:])
    order = _expanded_order(x, dim)  # the fused path's layout; a no-op for contiguous inputs
    return out.permute(order).contiguous().permute([order.index(d) for d in range(out.dim())]).to(dtype)


def has_derivative(basis: nn.Module) -> bool:
    """Whether ``basis.derivative`` belongs to its ``values``: defined by the class that defines ``values`` or by a
    subclass of it (a subclass that changes the values alone is differentiated by autograd)."""
    mro = type(basis).__mro__
    values_owner = next(c for c in mro if "values" in vars(c))
    derivative_owner = next((c for c in mro if "derivative" in vars(c)), None)
    return (
        derivative_owner is not None
        and vars(derivative_owner)["derivative"] is not None
        and issubclass(derivative_owner, values_owner)
    )


def _forward(x: Tensor, basis: nn.Module, activation: Callable[[Tensor], Tensor] | None) -> Tensor:
    """``(P, 1, Q) -> (P, m, Q)``: [b(x),] B_0(x)..B_{n-1}(x)."""
    values = basis.values(x)
    if values.shape != (x.shape[0], basis.num_functions, x.shape[2]):
        raise ValueError(
            f"{type(basis).__name__}.values gave {tuple(values.shape)} for x {tuple(x.shape)}; "
            f"expected {(x.shape[0], basis.num_functions, x.shape[2])} (num_functions = {basis.num_functions})"
        )
    return values if activation is None else torch.cat([activation(x), values], 1)


def _backward(x: Tensor, grad: Tensor, basis: nn.Module, activation_grad: Callable | None) -> Tensor:
    """x's gradient ``(P, 1, Q)`` from the expansion's ``grad`` ``(P, m, Q)`` by the analytic derivatives."""
    n = basis.num_functions
    gx = (basis.derivative(x) * grad.narrow(1, grad.shape[1] - n, n)).sum(1, keepdim=True)
    return gx if activation_grad is None else gx + activation_grad(x, grad.narrow(1, 0, 1))


def _compute(x: Tensor) -> Tensor:
    """Half precision computes in float32 (the basis functions need the mantissa)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _expanded_order(x: Tensor, dim: int) -> list[int]:
    """Axes of x with a new axis at ``dim``, outermost first in memory: the new axis sits right inside axis dim - 1."""
    if dim == 0 or x.is_contiguous():
        return list(range(x.dim() + 1))
    memory = sorted(range(x.dim()), key=lambda d: (-x.stride(d), d))  # x's axes, outermost first
    order = [d + (d >= dim) for d in memory]
    order.insert(order.index(dim - 1) + 1, dim)
    return order


def _canonical(x: Tensor, dim: int) -> tuple[Tensor, list[int], list[int]]:
    """x as the contiguous ``(P, 1, Q)`` of the module docstring, the expansion's axis order (``_expanded_order``)
    and x's axes in memory order."""
    order = _expanded_order(x, dim)
    memory = [d - (d > dim) for d in order if d != dim]
    inner = order.index(dim)
    outer_size = math.prod([x.shape[d] for d in memory[:inner]])
    inner_size = math.prod([x.shape[d] for d in memory[inner:]])
    return compiled.canonical(x.detach().permute(memory).reshape(outer_size, 1, inner_size)), order, memory


def _grad_of(out: Tensor, x: Tensor, grad: Tensor, create_graph: bool = False) -> Tensor:
    """Vector-Jacobian product by autograd; zero when ``out`` does not depend on ``x`` (constant functions)."""
    if not out.requires_grad:
        return torch.zeros_like(x)
    return torch.autograd.grad(out, x, grad, create_graph=create_graph, allow_unused=True, materialize_grads=True)[0]


class _Expansion(torch.autograd.Function):
    """The fused expansion: values in one tensor laid out for the layer, only x saved, x's gradient from x."""

    @staticmethod
    def forward(ctx, x: Tensor, basis: nn.Module, dim: int, activation: Callable[[Tensor], Tensor] | None) -> Tensor:
        ctx.save_for_backward(x)
        ctx.basis, ctx.dim, ctx.activation = basis, dim, activation
        xc = _compute(x)
        x3, order, _ = _canonical(xc, dim)
        out = compiled.run(_forward, x3, basis, activation, variant=type(basis))  # (P, m, Q)
        shape = list(xc.shape)
        shape.insert(dim, out.shape[1])
        strides = [0] * len(shape)  # dense, axes in memory as ``order``
        step = 1
        for d in reversed(order):
            strides[d] = step
            step *= shape[d]
        return compiled.unviewed(out.contiguous().as_strided(shape, strides)).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, None, None, None]:
        (x,) = ctx.saved_tensors
        basis, dim, activation = ctx.basis, ctx.dim, ctx.activation
        # create_graph=True needs a differentiable gradient, batched gradients (vmap) ops that support batching:
        # both get autograd of the reference ops
        if not torch.compiler.is_compiling() and (torch.is_grad_enabled() or plain_ops_required(grad)):
            xx = x if x.requires_grad else x.detach().requires_grad_()
            create_graph = torch.is_grad_enabled()
            with torch.enable_grad():
                gx = _grad_of(reference(basis, xx, dim, activation), xx, grad, create_graph=create_graph)
            return gx, None, None, None
        xc = _compute(x)
        x3, order, memory = _canonical(xc, dim)
        grad3 = compiled.canonical(grad.to(xc.dtype).permute(order).reshape(x3.shape[0], grad.shape[dim], x3.shape[2]))
        if has_derivative(basis):
            derivative = None if activation is None else activation_grad_function(activation)
            gx = compiled.run(_backward, x3, grad3, basis, derivative, variant=type(basis))
        else:
            with torch.enable_grad():
                xx = x3.detach().requires_grad_()
                gx = _grad_of(_forward(xx, basis, activation), xx, grad3)
        gx = gx.reshape([x.shape[d] for d in memory]).permute([memory.index(d) for d in range(x.dim())])
        return gx.to(x.dtype), None, None, None
