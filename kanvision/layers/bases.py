"""Univariate bases for KAN layers, one small class each, resolved by name through one registry.

A basis maps every element of ``x`` to ``n`` values B_0(x)..B_{n-1}(x) and inserts them as a new axis
at ``dim``: ``(..., C, ...) -> (..., C, n, ...)``, so that the flattened ``C * n`` features feed ONE
``F.linear`` / ``F.convNd`` (the fast form of a KAN layer, see efficient-kan and torch-conv-kan).

Every basis is elementwise (a sample's features never depend on other samples) and computes in
float32 when given half-precision input, returning the input's dtype.

Adding a basis: subclass :class:`Basis`, implement ``_expand`` (vectorised) or ``_terms`` (a list, e.g.
a recurrence), and decorate it with ``@register_basis("name")``. It then works in every layer, with autograd
through those ops in backward. For speed, also implement ``_fill`` (values written in place) and ``_grad``
(the analytic derivative from x-sized buffers), as the built-in bases do; with ``_kernel`` (a traceable form of
all n values) it runs inductor-generated kernels on CPU instead (see :mod:`kanvision.kernels.basis_expansion`).
"""

from __future__ import annotations

import copy
import inspect
import math
import numbers
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.autograd import forward_ad

from kanvision.kernels import basis_expansion
from kanvision.layers.activations import activation_grad, activation_grad_function, has_closed_form_grad
from kanvision.layers.helpers import check_int

__all__ = [
    "Basis",
    "GridBasis",
    "BSplineBasis",
    "RBFBasis",
    "ReLUBasis",
    "ChebyshevBasis",
    "FourierBasis",
    "GramBasis",
    "register_basis",
    "basis_parameters",
    "create_basis",
    "list_bases",
]

_REGISTRY: dict[str, type[Basis]] = {}


def register_basis(name: str) -> Callable[[type[Basis]], type[Basis]]:
    """Class decorator that makes a basis available under ``name`` in every layer and config."""

    def wrap(cls: type[Basis]) -> type[Basis]:
        if name in _REGISTRY:
            raise ValueError(f"basis name {name!r} is already registered to {_REGISTRY[name].__name__}")
        _REGISTRY[name] = cls
        cls.registry_name = name
        return cls

    return wrap


def list_bases() -> list[str]:
    """Names accepted by :func:`create_basis`."""
    return sorted(_REGISTRY)


def basis_parameters(basis: str) -> list[str]:
    """The hyper-parameters (``basis_kwargs`` names) that the registered basis ``basis`` accepts."""
    if not isinstance(basis, str) or basis not in _REGISTRY:
        raise ValueError(f"unknown basis {basis!r}; valid names are {list_bases()} or a Basis instance")
    return [name for name in inspect.signature(_REGISTRY[basis].__init__).parameters if name != "self"]


def create_basis(basis: str | Basis, **kwargs) -> Basis:
    """Resolve a registry name (with hyper-parameters ``kwargs``) or pass a basis instance through."""
    if isinstance(basis, Basis):
        if kwargs:
            raise ValueError(
                f"basis_kwargs {sorted(kwargs)} given together with a basis instance; pass one or the other"
            )
        return basis
    valid = basis_parameters(basis)
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(f"unknown basis_kwargs {unknown} for basis {basis!r}; valid: {valid}")
    return _REGISTRY[basis](**kwargs)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_range(grid_range: tuple[float, float]) -> tuple[float, float]:
    pair = isinstance(grid_range, Sequence) and not isinstance(grid_range, str) and len(grid_range) == 2
    if not pair or not all(map(_is_number, grid_range)):
        raise ValueError(f"grid_range must be two finite numbers (low, high) with low < high, got {grid_range!r}")
    lo, hi = (float(v) for v in grid_range)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"grid_range must be two finite numbers (low, high) with low < high, got {grid_range!r}")
    return lo, hi


def _along(t: Tensor, ndim: int, dim: int) -> Tensor:
    """View a 1-D tensor so that it broadcasts along axis ``dim`` of an ``ndim``-D tensor."""
    shape = [1] * ndim
    shape[dim] = -1
    return t.view(shape)


class Basis(nn.Module):
    """A fixed univariate basis B_0..B_{n-1}; ``num_functions`` is n.

    ``basis(x, dim)`` runs the fused path: the expansion is written in place into one output tensor and
    only ``x`` is saved; backward recomputes what it needs from ``x`` in x-sized buffers (``_grad``, the
    analytic derivative). Eager PyTorch would allocate several expansion-sized temporaries instead, and on
    CPU every fresh tensor of that size costs page faults that take longer than the arithmetic.
    ``basis.reference(x, dim)`` computes the same values with plain differentiable ops (double backward,
    tests).
    """

    registry_name: str = ""
    num_functions: int

    def forward(self, x: Tensor, dim: int = -1, base_activation: Callable[[Tensor], Tensor] | None = None) -> Tensor:
        """Basis values of every element of ``x`` stacked on a new axis ``dim``.

        With ``base_activation`` its value b(x) is prepended as one more function (index 0), so the
        layer's base branch rides in the same GEMM/conv. The new axis sits right inside axis ``dim - 1`` in
        memory, so a channels-last input gives a channels-last expansion.
        """
        dim = dim if dim >= 0 else x.dim() + 1 + dim
        if self._x_gradient_only(base_activation):
            if torch.compiler.is_compiling():
                if self._traceable_grad:  # inductor fuses the reference ops; the analytic backward beats autograd's
                    return _TracedExpansion.apply(x, self, dim, base_activation)
            elif not (
                torch._C._are_functorch_transforms_active()
                or forward_ad._current_level >= 0
                or torch.jit.is_tracing()  # traced graphs (e.g. ONNX export) get the plain ops
            ):
                return _Expansion.apply(x, self, dim, base_activation)
        return self.reference(x, dim, base_activation)

    # True where ``_grad`` only uses ops dynamo traces inside an autograd.Function (no strided ``out=``, no floats
    # that may turn symbolic): then compiled code gets the analytic backward too
    _traceable_grad: bool = False

    def _x_gradient_only(self, activation: Callable[[Tensor], Tensor] | None) -> bool:
        """Whether x is the only thing to differentiate: the custom Functions give x's gradient only (not a
        learnable basis' or activation's), and have no forward-mode rule or torch.func support."""
        if activation is not None and not has_closed_form_grad(activation):
            return False
        return not any(p.requires_grad for p in self.parameters())

    def reference(self, x: Tensor, dim: int = -1, base_activation: Callable[[Tensor], Tensor] | None = None) -> Tensor:
        """The values of ``forward`` through plain differentiable tensor ops (``forward``'s double backward)."""
        dtype = x.dtype
        x = _compute(x)
        dim = dim if dim >= 0 else x.dim() + 1 + dim
        out = self._values(x, dim)
        if base_activation is not None:
            out = torch.cat([base_activation(x).unsqueeze(dim), out], dim)
        # the fused path's layout (the new axis right inside axis dim - 1 in memory, e.g. channels-last convs);
        # a no-op for contiguous inputs
        order = _expanded_order(x, dim)
        if order != sorted(order):
            out = out.permute(order).contiguous().permute([order.index(d) for d in range(out.dim())])
        return out.to(dtype)

    def _values(self, x: Tensor, dim: int) -> Tensor:
        terms = self._terms(x)
        return torch.stack(terms, dim) if terms is not None else self._expand(x, dim)

    def _terms(self, x: Tensor) -> list[Tensor] | None:
        """The basis values as a list of x-shaped tensors (override this or ``_expand``)."""
        return None

    def _expand(self, x: Tensor, dim: int) -> Tensor:
        """The basis values on a new axis ``dim``, differentiable (override this or ``_terms``)."""
        raise NotImplementedError

    def _fill(self, x: Tensor, out: Tensor, dim: int) -> None:
        """Write the basis values into ``out`` (x's shape with n slots at ``dim``, any strides), no autograd."""
        out.copy_(self._values(x, dim))

    def _grad(self, x: Tensor, grad: Tensor, dim: int) -> Tensor | None:
        """sum_k grad_k B_k'(x) (``grad`` has n slots at ``dim``), or None to differentiate ``_values`` instead."""
        return None

    def _kernel(self, x: Tensor) -> tuple | None:
        """``(phi, tensors, params)`` for the compiled CPU kernels of :mod:`kanvision.kernels.basis_expansion`, or
        None (default: the eager ``_fill``/``_grad``).

        ``phi(x, tensors, n, params, derivative)`` maps x as ``(P, 1, Q)`` to the n values (or their x-derivatives)
        as ``(P, n, Q)`` with traceable ops. ``phi`` is a module-level function and ``params`` a tuple of its
        constants; both key the compiled variant, so they must not change from call to call (put values that do,
        such as the grid, in ``tensors``: 0-d tensors of x's dtype).
        """
        return None


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


def _dense_strides(shape: list[int], order: list[int]) -> list[int]:
    """Strides of a dense tensor of ``shape`` whose axes lie in memory as ``order`` (outermost first)."""
    strides = [0] * len(shape)
    step = 1
    for d in reversed(order):
        strides[d] = step
        step *= shape[d]
    return strides


def _empty_expanded(x: Tensor, dim: int, n: int) -> Tensor:
    """Uninitialised x-like tensor with a new axis of n slots at ``dim``, stored right inside axis dim - 1."""
    shape = list(x.shape)
    shape.insert(dim, n)
    # empty_strided, not a permuted view: autograd forbids in-place changes of views made inside a Function
    return torch.empty_strided(shape, _dense_strides(shape, _expanded_order(x, dim)), dtype=x.dtype, device=x.device)


def _canonical(x: Tensor, dim: int) -> tuple[Tensor, list[int], list[int]]:
    """x as the kernels' contiguous ``(P, 1, Q)``: P the axes outside the new axis ``dim`` in memory, Q those inside.

    Returns it with the expanded tensor's axis order (``_expanded_order``) and x's axes in memory order.
    """
    order = _expanded_order(x, dim)
    memory = [d - (d > dim) for d in order if d != dim]
    inner = order.index(dim)
    outer_size = math.prod(x.shape[d] for d in memory[:inner])
    return _unviewed(x.detach().permute(memory).reshape(outer_size, 1, -1), canonical=True), order, memory


def _unviewed(t: Tensor, canonical: bool = False) -> Tensor:
    """``t`` as a fresh tensor on the same storage, not a view: compiled code would guard on (and recompile for) the
    sizes of a view's base, and autograd forbids in-place changes of views made inside a Function. ``canonical``:
    contiguous with the standard strides, also on size-1 axes (which ``contiguous()`` leaves as they are)."""
    if canonical:
        t = t.contiguous()
        strides = [1] * t.dim()
        for d in range(t.dim() - 2, -1, -1):
            strides[d] = strides[d + 1] * t.shape[d + 1]
        return t.new_empty(0).set_(t.untyped_storage(), t.storage_offset(), t.shape, strides)
    return t.new_empty(0).set_(t.untyped_storage(), t.storage_offset(), t.shape, t.stride())


def _kernel_expansion(basis: Basis, x: Tensor, dim: int, activation: Callable | None) -> Tensor | None:
    """The expansion by the compiled CPU kernels, laid out as ``_empty_expanded``; None where they do not apply."""
    spec = basis._kernel(x) if basis_expansion.usable(x) else None
    if spec is None:
        return None
    x3, order, _ = _canonical(x, dim)
    n = basis.num_functions
    out = basis_expansion.expand(x3, spec[0], spec[1], n, spec[2], activation)
    if out is None:
        return None
    m = n + int(activation is not None)
    if out.shape != (x3.shape[0], m, x3.shape[2]):
        raise ValueError(
            f"{type(basis).__name__}._kernel's phi gave {tuple(out.shape)} for x {tuple(x3.shape)}; "
            f"expected {(x3.shape[0], m, x3.shape[2])} (n = {n} slots + the base branch)"
        )
    shape = list(x.shape)
    shape.insert(dim, m)
    return _unviewed(out.contiguous().as_strided(shape, _dense_strides(shape, order)))


def _kernel_gradient(basis: Basis, x: Tensor, grad: Tensor, dim: int, activation: Callable | None) -> Tensor | None:
    """x's gradient by the compiled CPU kernels, base branch included; None where they do not apply."""
    spec = basis._kernel(x) if basis_expansion.usable(x) else None
    if spec is None:
        return None
    x3, order, memory = _canonical(x, dim)
    grad3 = grad.permute(order).reshape(x3.shape[0], grad.shape[dim], x3.shape[2])
    grad3 = _unviewed(grad3.to(x.dtype), canonical=True)  # e.g. the expanded (stride 0) gradient of a sum
    derivative = None if activation is None else activation_grad_function(activation)
    gx = basis_expansion.expand_grad(x3, grad3, spec[0], spec[1], basis.num_functions, spec[2], derivative)
    if gx is None:
        return None
    if gx.shape != x3.shape:
        raise ValueError(
            f"{type(basis).__name__}._kernel's derivative gave x's gradient the shape "
            f"{tuple(gx.shape)}, expected {tuple(x3.shape)}"
        )
    return gx.reshape([x.shape[d] for d in memory]).permute([memory.index(d) for d in range(x.dim())])


def _grad_of(out: Tensor, x: Tensor, grad: Tensor, create_graph: bool = False) -> Tensor:
    """Vector-Jacobian product by autograd; zero when ``out`` does not depend on ``x`` (constant functions)."""
    if not out.requires_grad:
        return torch.zeros_like(x)
    return torch.autograd.grad(out, x, grad, create_graph=create_graph, allow_unused=True, materialize_grads=True)[0]


class _Expansion(torch.autograd.Function):
    """The fused expansion of :meth:`Basis.forward`: values written in place, analytic backward from x."""

    @staticmethod
    def forward(ctx, x: Tensor, basis: Basis, dim: int, activation: Callable[[Tensor], Tensor] | None) -> Tensor:
        ctx.save_for_backward(x)
        ctx.basis, ctx.dim, ctx.activation = basis, dim, activation
        xc = _compute(x)
        out = _kernel_expansion(basis, xc, dim, activation)
        if out is None:
            first = int(activation is not None)
            out = _empty_expanded(xc, dim, basis.num_functions + first)
            if activation is not None:
                out.select(dim, 0).copy_(activation(xc))
            basis._fill(xc, out.narrow(dim, first, basis.num_functions), dim)
        return out.to(x.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, None, None, None]:
        (x,) = ctx.saved_tensors
        basis, dim, activation = ctx.basis, ctx.dim, ctx.activation
        # create_graph=True needs a differentiable gradient, batched gradients (vmap) ops that support batching:
        # both get autograd of the reference ops
        if torch.is_grad_enabled() or basis_expansion.is_wrapped(grad):
            xx = x if x.requires_grad else x.detach().requires_grad_()
            create_graph = torch.is_grad_enabled()
            with torch.enable_grad():
                gx = _grad_of(basis.reference(xx, dim, activation), xx, grad, create_graph=create_graph)
            return gx, None, None, None
        return _analytic_grad(basis, x, grad, dim, activation), None, None, None


class _TracedExpansion(torch.autograd.Function):
    """Under torch.compile: the reference values (inductor fuses them) with the analytic backward."""

    @staticmethod
    def forward(ctx, x: Tensor, basis: Basis, dim: int, activation: Callable[[Tensor], Tensor] | None) -> Tensor:
        ctx.save_for_backward(x)
        ctx.basis, ctx.dim, ctx.activation = basis, dim, activation
        return basis.reference(x, dim, activation)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None]:
        (x,) = ctx.saved_tensors
        return _analytic_grad(ctx.basis, x, grad, ctx.dim, ctx.activation), None, None, None


def _analytic_grad(basis: Basis, x: Tensor, grad: Tensor, dim: int, activation: Callable | None) -> Tensor:
    """x's gradient from the expansion's: the basis' ``_grad`` (autograd of ``_values`` without one) + b'(x)."""
    xc = _compute(x)
    gx = _kernel_gradient(basis, xc, grad, dim, activation)
    if gx is not None:
        return gx.to(x.dtype)
    first = int(activation is not None)
    values_grad = grad.narrow(dim, first, basis.num_functions)
    gx = basis._grad(xc, values_grad, dim)
    if gx is None:
        with torch.enable_grad():
            xx = xc.detach().requires_grad_()
            gx = _grad_of(basis._values(xx, dim), xx, values_grad)
    if activation is not None:
        gx = gx + activation_grad(activation, xc, grad.select(dim, 0))
    return gx.to(x.dtype)


class GridBasis(Basis):
    """A basis on a uniform grid of ``intervals`` cells over ``grid_range``; layers move it with ``update_grid``.

    The grid is kept as Python floats (no device syncs, constants under torch.compile) and mirrored in the
    float64 buffer ``grid`` = (low, high, intervals) for state dicts; dtype casts of the module never round it.
    """

    grid: Tensor

    def __init__(self, grid_range: tuple[float, float], intervals: int):
        super().__init__()
        self.register_buffer("grid", torch.zeros(3, dtype=torch.float64))
        self._set_grid(*_check_range(grid_range), intervals)

    @property
    def grid_range(self) -> tuple[float, float]:
        return self.low, self.high

    @property
    def spacing(self) -> float:
        return (self.high - self.low) / self.intervals

    def _set_grid(self, low: float, high: float, intervals: int) -> None:
        """Subclasses extend this to update what depends on the number of cells (``num_functions``)."""
        self.low, self.high, self.intervals = float(low), float(high), int(intervals)
        self.grid.copy_(torch.tensor([self.low, self.high, self.intervals], dtype=torch.float64))

    def resized(self, low: float, high: float, intervals: int) -> GridBasis:
        """A copy of this basis on ``intervals`` cells over [low, high]."""
        other = copy.deepcopy(self)
        other._set_grid(*_check_range((low, high)), intervals)
        return other

    def extended(self, low: float, high: float) -> tuple[GridBasis, int]:
        """This grid grown along its own lattice (same spacing) until it covers [low, high].

        Returns the new basis and the number of cells added below. Old function j is new function
        j + cells_below, exactly, so coefficients move over without any fitting.
        """
        h = self.spacing
        below = max(0, math.ceil((self.low - low) / h - 1e-9))
        above = max(0, math.ceil((high - self.high) / h - 1e-9))
        return self.resized(self.low - below * h, self.high + above * h, self.intervals + below + above), below

    def _apply(self, fn, recurse=True):
        grid = self.grid
        super()._apply(fn, recurse)
        self.grid = grid.to(device=self.grid.device, dtype=torch.float64)  # keep the grid exact under dtype casts
        return self

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        grid = state_dict.get(prefix + "grid")
        if grid is not None:
            low, high, intervals = grid.tolist()
            self._set_grid(low, high, round(intervals))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # True where ``_dense`` gives the values and derivative in a form torch.compile fuses (see ``_DenseGrid``)
    _dense_form: bool = False

    def _values(self, x: Tensor, dim: int) -> Tensor:
        if self._dense_form and torch.compiler.is_compiling():
            return _DenseGrid.apply(x, self, dim)
        return super()._values(x, dim)

    def _dense(self, x: Tensor, dim: int, derivative: bool = False) -> Tensor:
        """The basis values (or their x-derivatives) on a new axis ``dim``, grid from ``_grid_tensors``."""
        raise NotImplementedError

    def _grid_tensors(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(low, spacing) as 0-d tensors from the ``grid`` buffer: compiled code would turn the Python floats into
        symbolic floats, which an autograd.Function body cannot hold."""
        low, high, intervals = self.grid  # float64: the spacing is computed before rounding to x's dtype
        return low.to(x.dtype), ((high - low) / intervals).to(x.dtype)

    def _arange(self, x: Tensor, dim: int) -> Tensor:
        """0..n-1 along axis ``dim`` of the expanded tensor."""
        return _along(torch.arange(self.num_functions, dtype=x.dtype, device=x.device), x.dim() + 1, dim)

    def extra_repr(self) -> str:
        return f"grid_range=({self.low:g}, {self.high:g})"


class _DenseGrid(torch.autograd.Function):
    """Under torch.compile: a grid basis' dense values and dense derivative (inductor fuses both passes)."""

    @staticmethod
    def forward(ctx, x: Tensor, basis: GridBasis, dim: int) -> Tensor:
        ctx.save_for_backward(x)
        ctx.basis, ctx.dim = basis, dim
        return basis._dense(x, dim)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        (x,) = ctx.saved_tensors
        return (ctx.basis._dense(x, ctx.dim, derivative=True) * grad).sum(ctx.dim), None, None


def _cardinal_bspline(t: Tensor, pieces: tuple[tuple[float, ...], ...], derivative: bool) -> Tensor:
    """N_k(t) (or dN_k/dt) of the cardinal B-spline as branch-free selects over its k + 1 polynomial pieces
    (``pieces[p]``: coefficients of N_k(s + p) on s in [0, 1), lowest power first); 0 outside [0, k + 1)."""
    piece = torch.floor(t)
    s = t - piece
    out = torch.zeros_like(t)
    for p, coef in enumerate(pieces):
        if derivative:
            coef = [q * c for q, c in enumerate(coef)][1:]
        value = torch.full_like(s, coef[-1])
        for c in reversed(coef[:-1]):
            value = value * s + c
        out = torch.where(piece == p, value, out)
    return out + t * 0  # NaN in every slot for a NaN or infinite input (the eager path gives NaN in some)


def _bspline_slots(x: Tensor, grid: tuple[Tensor, Tensor], n: int, pieces: tuple, derivative: bool) -> Tensor:
    """B_j(x) = N_k((x - t_0) / h - j), j < n, on ``(P, 1, Q) -> (P, n, Q)`` (or d/dx); ``grid`` = (t_0, h)."""
    first, h = grid
    t = (x - first) / h - torch.arange(n, dtype=x.dtype, device=x.device).view(1, n, 1)
    out = _cardinal_bspline(t, pieces, derivative)
    return out / h if derivative else out


@register_basis("bspline")
class BSplineBasis(GridBasis):
    """B-splines of order k on G uniform intervals of ``grid_range`` (pykan, Liu et al. arXiv 2404.19756).

    n = G + k functions. The knots extend k intervals beyond the range on each side, so the functions sum
    to 1 on ``grid_range``; they fall to 0 within k intervals outside it, and are exactly 0 beyond
    (only a layer's base branch responds there: call the layer's ``update_grid``).

    Closed form on the uniform grid: with u = (x - t_0) / h = i + s (cell i, fraction s), the only non-zero
    functions are B_{i-p}(x) = N_k(s + p), p = 0..k, where N_k is the cardinal B-spline; its k + 1 polynomial
    pieces are precomputed, so each input costs k + 1 small polynomials and one scatter into the n slots,
    instead of n evaluations of N_k.
    """

    def __init__(self, grid_size: int = 5, spline_order: int = 3, grid_range: tuple[float, float] = (-1.0, 1.0)):
        self.spline_order = check_int("spline_order", spline_order, 1)
        super().__init__(grid_range, check_int("grid_size", grid_size, 1))
        k = spline_order
        # N_k(s + p) = sum_q pieces[q][p] s^q on s in [0, 1), from the truncated-power form
        # N_k(t) = sum_l (-1)^l C(k+1, l) (t - l)_+^k / k!
        pieces = [
            [
                sum((-1) ** l * math.comb(k + 1, l) * math.comb(k, q) * (p - l) ** (k - q) for l in range(p + 1))
                / math.factorial(k)
                for p in range(k + 1)
            ]
            for q in range(k + 1)
        ]
        self.register_buffer("_pieces", torch.tensor(pieces, dtype=torch.float64), persistent=False)
        self._piece_coef = tuple(tuple(pieces[q][p] for q in range(k + 1)) for p in range(k + 1))  # lowest power first

    def _set_grid(self, low: float, high: float, intervals: int) -> None:
        super()._set_grid(low, high, intervals)
        self.grid_size = intervals
        self.num_functions = intervals + self.spline_order

    def _expand(self, x: Tensor, dim: int) -> Tensor:
        k, h, n = self.spline_order, self.spacing, self.num_functions
        u = (x - (self.low - k * h)) / h  # position in knot intervals from the first knot
        cell = u.floor().detach()
        s = u - cell
        powers = [torch.ones_like(s), s]
        for _ in range(k - 1):
            powers.append(powers[-1] * s)
        with torch.autocast(x.device.type, enabled=False):  # the basis is computed in float32 or better
            values = torch.stack(powers, -1) @ self._pieces.to(s.dtype)  # (..., k+1): N_k(s + p)
        slot = cell.clamp(-1, n + k).long().unsqueeze(-1) - torch.arange(k + 1, device=x.device)  # B_{i-p}
        valid = (slot >= 0) & (slot < n)  # pieces of functions beyond either end of the grid
        values = (values * valid).movedim(-1, dim)
        slot = slot.clamp(0, n - 1).movedim(-1, dim)
        shape = list(x.shape)
        shape.insert(dim, n)
        return x.new_zeros(shape).scatter_add(dim, slot, values)

    # fused path: per piece p, x-sized buffers and one scatter (forward) or gather (backward) of the n slots
    def _locate(self, x: Tensor, derivative: bool) -> tuple[list[Tensor], Tensor, Tensor]:
        """Powers 1..k (k-1 for the derivative) of the fraction s in [0, 1), knot interval (clamped to
        [-1, n + k]) of every input as float and as int64."""
        k, h = self.spline_order, self.spacing
        u = torch.sub(x, self.low - k * h).div_(h)
        cell = torch.floor(u).clamp_(-1, self.num_functions + k)
        s = u.sub_(torch.floor(u))  # before the clamp: s stays in [0, 1) for any finite input
        powers = [s]
        for _ in range(k - 1 - int(derivative)):
            powers.append(powers[-1] * s)
        return powers, cell, cell.long()

    def _piece(self, powers: list[Tensor], p: int, cell: Tensor, out: Tensor, mask: Tensor, derivative: bool):
        """``out`` = N_k(s + p) (or its x-derivative) where B_{cell - p} exists (0 <= cell - p < n), else 0."""
        coef = self._piece_coef[p]
        if derivative:
            coef = [q * c / self.spacing for q, c in enumerate(coef)][1:]
        out.fill_(coef[0])
        for power, c in zip(powers[: len(coef) - 1], coef[1:], strict=True):
            out.add_(power, alpha=c)
        half = (self.num_functions - 1) / 2  # |cell - p - half| <= half for valid (integer) cells, >= half + 1 not
        out.mul_(torch.sub(cell, p + half, out=mask).abs_().neg_().add_(half + 1).clamp_(0, 1))

    _dense_form = True

    def _dense(self, x: Tensor, dim: int, derivative: bool = False) -> Tensor:
        """N_k(u - j) (or its x-derivative) for every slot j as branch-free selects, which torch.compile fuses
        into one loop (scatter/gather would not fuse)."""
        k = self.spline_order
        low, h = self._grid_tensors(x)
        t = ((x - (low - k * h)) / h).unsqueeze(dim) - self._arange(x, dim)
        out = _cardinal_bspline(t, self._piece_coef, derivative)
        return out / h if derivative else out

    def _kernel(self, x: Tensor) -> tuple | None:
        if type(self)._fill is not BSplineBasis._fill or type(self)._expand is not BSplineBasis._expand:
            return None  # a subclass that changes the values keeps its own eager path
        low, h = self._grid_tensors(x)
        pieces = tuple(map(tuple, self._piece_coef))  # hashable, also for modules pickled when it was a list
        return _bspline_slots, (low - self.spline_order * h, h), pieces

    def _fill(self, x: Tensor, out: Tensor, dim: int) -> None:
        powers, cell, cell_index = self._locate(x, derivative=False)
        work, mask, index = torch.empty_like(x), torch.empty_like(x), torch.empty_like(cell_index)
        out.zero_()
        for p in range(self.spline_order + 1):
            self._piece(powers, p, cell, work, mask, derivative=False)
            torch.sub(cell_index, p, out=index).clamp_(0, self.num_functions - 1)
            out.scatter_add_(dim, index.unsqueeze(dim), work.unsqueeze(dim))

    def _grad(self, x: Tensor, grad: Tensor, dim: int) -> Tensor:
        powers, cell, cell_index = self._locate(x, derivative=True)
        work, mask, index = torch.empty_like(x), torch.empty_like(x), torch.empty_like(cell_index)
        gx = torch.zeros_like(x)
        for p in range(self.spline_order + 1):
            self._piece(powers, p, cell, work, mask, derivative=True)
            torch.sub(cell_index, p, out=index).clamp_(0, self.num_functions - 1)
            gx.addcmul_(work, grad.gather(dim, index.unsqueeze(dim)).squeeze(dim))
        return gx

    def extra_repr(self) -> str:
        return f"grid_size={self.grid_size}, spline_order={self.spline_order}, {super().extra_repr()}"


@register_basis("rbf")
class RBFBasis(GridBasis):
    """Gaussian radial basis of FastKAN (Li, arXiv 2405.06721): exp(-((x - c_k) / h)^2).

    ``num_centers`` centres spaced evenly over ``grid_range`` (FastKAN: 8 on [-2, 2]); the width h
    defaults to the spacing (4/7 there). Any finite input; the values vanish far outside the range.
    FastKAN's LayerNorm is not part of the basis: normalisation belongs to the block using the layer.
    """

    def __init__(
        self, num_centers: int = 8, grid_range: tuple[float, float] = (-2.0, 2.0), bandwidth: float | None = None
    ):
        if bandwidth is not None and not (_is_number(bandwidth) and math.isfinite(bandwidth) and bandwidth > 0):
            raise ValueError(f"bandwidth must be a positive finite number or None, got {bandwidth!r}")
        self.bandwidth = bandwidth
        super().__init__(grid_range, check_int("num_centers", num_centers, 2) - 1)

    def _set_grid(self, low: float, high: float, intervals: int) -> None:
        super()._set_grid(low, high, intervals)
        self.num_centers = self.num_functions = intervals + 1

    @property
    def width(self) -> float:
        return self.bandwidth if self.bandwidth is not None else self.spacing

    def _expand(self, x: Tensor, dim: int) -> Tensor:
        z = (x / self.width).unsqueeze(dim) - (self.low + self.spacing * self._arange(x, dim)) / self.width
        return torch.exp(-torch.square(z))

    def _fill(self, x: Tensor, out: Tensor, dim: int) -> None:
        centers = (self.low + self.spacing * self._arange(x, dim)) / self.width
        torch.sub((x / self.width).unsqueeze(dim), centers, out=out)
        out.square_().neg_().exp_()

    def _grad(self, x: Tensor, grad: Tensor, dim: int) -> Tensor:
        # d/dx exp(-z^2) = -2 z exp(-z^2) / width, z = (x - c_k) / width
        xs, gx = x / self.width, torch.zeros_like(x)
        z, e = torch.empty_like(x), torch.empty_like(x)
        for k in range(self.num_functions):
            torch.sub(xs, (self.low + self.spacing * k) / self.width, out=z)
            torch.mul(z, z, out=e).neg_().exp_()
            gx.addcmul_(z.mul_(e), grad.select(dim, k))
        return gx.mul_(-2 / self.width)

    def extra_repr(self) -> str:
        return f"num_centers={self.num_centers}, bandwidth={self.bandwidth}, {super().extra_repr()}"


@register_basis("relu")
class ReLUBasis(GridBasis):
    """ReLU bumps of ReLU-KAN (Qiu et al., arXiv 2406.02075) and HRKAN (So & Yung, arXiv 2409.07044).

    B_i(x) = [ReLU(e_i - x) ReLU(x - s_i) / ((e_i - s_i) / 2)^2]^p with s_i = lo + (i - k) h,
    e_i = s_i + (k + 1) h, h = (hi - lo) / G, i = 0..G+k-1, so n = G + k and every bump peaks at exactly 1.
    ``power`` p = 2 is ReLU-KAN; p = 2m is HRKAN of order m. Zero (value and gradient) outside
    [s_0, e_last] = [lo - k h, hi + k h].
    """

    def __init__(
        self, grid_size: int = 5, order: int = 3, power: int = 2, grid_range: tuple[float, float] = (0.0, 1.0)
    ):
        self.order = check_int("order", order, 0)
        self.power = check_int("power", power, 1)
        super().__init__(grid_range, check_int("grid_size", grid_size, 1))

    def _set_grid(self, low: float, high: float, intervals: int) -> None:
        super()._set_grid(low, high, intervals)
        self.grid_size = intervals
        self.num_functions = intervals + self.order

    def _expand(self, x: Tensor, dim: int) -> Tensor:
        h = self.spacing
        width = (self.order + 1) * h
        start = self.low + (self._arange(x, dim) - self.order) * h
        xe = x.unsqueeze(dim)
        bump = torch.relu(start + width - xe) * torch.relu(xe - start) * (4.0 / width**2)
        out = bump
        for _ in range(self.power - 1):  # repeated products: faster than pow, and so is their backward
            out = out * bump
        return out

    # fused path: with d = x - s_i clamped to [0, w], the bump is 1 - v^2, v = 2 d / w - 1 in [-1, 1]
    def _fill(self, x: Tensor, out: Tensor, dim: int) -> None:
        h = self.spacing
        width = (self.order + 1) * h
        torch.sub(x.unsqueeze(dim), self.low + (self._arange(x, dim) - self.order) * h, out=out)
        out.clamp_(0, width).mul_(2 / width).sub_(1).square_().neg_().add_(1)
        if self.power > 1:
            out.pow_(self.power)

    def _grad(self, x: Tensor, grad: Tensor, dim: int) -> Tensor:
        # d/dx (1 - v^2)^p = -4 p v (1 - v^2)^(p-1) / w inside the bump, 0 outside (and on its ends)
        h, p = self.spacing, self.power
        width = (self.order + 1) * h
        v, bump, gx = torch.empty_like(x), torch.empty_like(x), torch.zeros_like(x)
        for i in range(self.num_functions):
            torch.sub(x, self.low + (i - self.order) * h, out=v).clamp_(0, width).mul_(2 / width).sub_(1)
            if p == 1:  # (1 - v^2)^0 does not vanish outside the bump
                torch.lt(v.abs(), 1, out=bump)
            else:
                torch.mul(v, v, out=bump).neg_().add_(1).pow_(p - 1)
            gx.addcmul_(v.mul_(bump), grad.select(dim, i))
        return gx.mul_(-4 * p / width)

    def extra_repr(self) -> str:
        return f"grid_size={self.grid_size}, order={self.order}, power={self.power}, {super().extra_repr()}"


@register_basis("chebyshev")
class ChebyshevBasis(Basis):
    """Chebyshev polynomials T_0..T_D of tanh(x) (ChebyKAN; Sidharth & Gokul, arXiv 2405.07200).

    Any finite input (tanh maps it into (-1, 1)). Computed by the recurrence
    T_n = 2 t T_{n-1} - T_{n-2}, whose gradient is finite everywhere, unlike cos(n acos t)
    (infinite once tanh rounds to +-1). n = D + 1 functions.
    """

    _traceable_grad = True

    def __init__(self, degree: int = 3):
        super().__init__()
        self.degree = check_int("degree", degree, 0)
        self.num_functions = degree + 1

    def _terms(self, x: Tensor) -> list[Tensor]:
        t = torch.tanh(x)
        terms = [torch.ones_like(t), t][: self.degree + 1]
        for _ in range(2, self.degree + 1):
            terms.append(2 * t * terms[-1] - terms[-2])
        return terms

    def _fill(self, x: Tensor, out: Tensor, dim: int) -> None:
        t = torch.tanh(x)
        out.select(dim, 0).fill_(1)
        if self.degree >= 1:
            out.select(dim, 1).copy_(t)
        for k in range(2, self.degree + 1):
            torch.mul(t, out.select(dim, k - 1), out=out.select(dim, k)).mul_(2).sub_(out.select(dim, k - 2))

    def _grad(self, x: Tensor, grad: Tensor, dim: int) -> Tensor:
        # dT_k/dx = k U_{k-1}(t) (1 - t^2), U the Chebyshev polynomials of the second kind
        t = torch.tanh(x)
        acc = torch.zeros_like(x)
        u_prev, u = torch.zeros_like(x), torch.ones_like(x)  # U_{-1}, U_0
        for k in range(1, self.degree + 1):
            acc.addcmul_(grad.select(dim, k), u, value=k)
            u_prev, u = u, u_prev.neg_().addcmul_(t, u, value=2)
        return acc.mul_(t.square_().neg_().add_(1))

    def extra_repr(self) -> str:
        return f"degree={self.degree}"


@register_basis("fourier")
class FourierBasis(Basis):
    """Fourier features cos(k x), sin(k x), k = 1..G (FourierKAN), ordered cos_1..cos_G, sin_1..sin_G.

    Any finite input; the functions are 2*pi-periodic, so inputs should be normalised to a few radians.
    n = 2G functions (the constant is the layer's bias).
    """

    def __init__(self, num_frequencies: int = 4):
        super().__init__()
        self.num_frequencies = check_int("num_frequencies", num_frequencies, 1)
        self.num_functions = 2 * num_frequencies

    def _frequencies(self, x: Tensor, dim: int) -> Tensor:
        return _along(torch.arange(1, self.num_frequencies + 1, dtype=x.dtype, device=x.device), x.dim() + 1, dim)

    def _expand(self, x: Tensor, dim: int) -> Tensor:
        kx = x.unsqueeze(dim) * self._frequencies(x, dim)
        return torch.cat([torch.cos(kx), torch.sin(kx)], dim)

    def _fill(self, x: Tensor, out: Tensor, dim: int) -> None:
        g = self.num_frequencies
        for part, fn in ((out.narrow(dim, 0, g), torch.Tensor.cos_), (out.narrow(dim, g, g), torch.Tensor.sin_)):
            fn(torch.mul(x.unsqueeze(dim), self._frequencies(x, dim), out=part))

    def _grad(self, x: Tensor, grad: Tensor, dim: int) -> Tensor:
        # d/dx [a cos(kx) + b sin(kx)] = k (b cos(kx) - a sin(kx))
        g = self.num_frequencies
        kx, sin, gx = torch.empty_like(x), torch.empty_like(x), torch.zeros_like(x)
        for k in range(1, g + 1):
            torch.sin(torch.mul(x, k, out=kx), out=sin)
            kx.cos_().mul_(grad.select(dim, g + k - 1)).sub_(sin.mul_(grad.select(dim, k - 1)))
            gx.add_(kx, alpha=k)
        return gx

    def extra_repr(self) -> str:
        return f"num_frequencies={self.num_frequencies}"


@register_basis("gram")
class GramBasis(Basis):
    """Gram polynomials p_0..p_D of tanh(x) (KAGN of torch-conv-kan; Drokin, arXiv 2407.01092).

    The discrete orthogonal polynomials of ``num_points`` (m) equispaced points x_i = -1 + (2i + 1)/m
    in [-1, 1], normalised so that (1/m) sum_i p_a(x_i) p_b(x_i) = delta_ab (so p_0 = 1); they tend to
    sqrt(2n + 1) P_n (Legendre) as m grows. Three-term recurrence (Barnabei et al. 1998):
    p_{n+1} = alpha_n t p_n - (alpha_n / alpha_{n-1}) p_{n-1},
    alpha_n = (m / (n + 1)) sqrt((4 (n + 1)^2 - 1) / (m^2 - (n + 1)^2)). Any finite input.
    """

    def __init__(self, degree: int = 3, num_points: int = 64):
        super().__init__()
        self.degree = check_int("degree", degree, 0)
        self.num_points = check_int("num_points", num_points, degree + 1)
        self.num_functions = degree + 1
        m = num_points
        self._alpha = [(m / (n + 1)) * math.sqrt((4 * (n + 1) ** 2 - 1) / (m**2 - (n + 1) ** 2)) for n in range(degree)]

    def _terms(self, x: Tensor) -> list[Tensor]:
        t = torch.tanh(x)
        terms = [torch.ones_like(t)]
        for n in range(self.degree):
            nxt = self._alpha[n] * t * terms[-1]
            if n > 0:
                nxt = nxt - (self._alpha[n] / self._alpha[n - 1]) * terms[-2]
            terms.append(nxt)
        return terms

    def _fill(self, x: Tensor, out: Tensor, dim: int) -> None:
        t = torch.tanh(x)
        out.select(dim, 0).fill_(1)
        for n in range(self.degree):
            nxt = torch.mul(t, out.select(dim, n), out=out.select(dim, n + 1)).mul_(self._alpha[n])
            if n > 0:
                nxt.sub_(out.select(dim, n - 1), alpha=self._alpha[n] / self._alpha[n - 1])

    def _grad(self, x: Tensor, grad: Tensor, dim: int) -> Tensor:
        # q_n = dp_n/dt by the differentiated recurrence q_{n+1} = alpha_n (p_n + t q_n) - r_n q_{n-1};
        # dp_n/dx = q_n (1 - t^2)
        t = torch.tanh(x)
        acc = torch.zeros_like(x)
        p_prev, p = torch.zeros_like(x), torch.ones_like(x)  # p_{-1} (unused), p_0
        q_prev, q = torch.zeros_like(x), torch.zeros_like(x)  # q_{-1}, q_0
        for n in range(self.degree):
            a, r = self._alpha[n], (self._alpha[n] / self._alpha[n - 1] if n > 0 else 0.0)
            q_prev.mul_(-r).add_(p, alpha=a).addcmul_(t, q, value=a)
            p_prev.mul_(-r).addcmul_(t, p, value=a)
            p_prev, p, q_prev, q = p, p_prev, q, q_prev
            acc.addcmul_(grad.select(dim, n + 1), q)
        return acc.mul_(t.square_().neg_().add_(1))

    def extra_repr(self) -> str:
        return f"degree={self.degree}, num_points={self.num_points}"


@register_basis("kagn")
class KAGNGramBasis(Basis):
    """torch-conv-kan's KAGN basis (Drokin, arXiv 2407.01092, ``kan_convs/kagn_conv.py``): Gram-type polynomials of
    t = tanh(x) with learnable recurrence scales, optionally passed through an activation.

    p_0 = 1, p_1 = t, p_i = t p_{i-1} - beta_{i-1, i} p_{i-2} with
    beta_{n, m} = w_n (m + n)(m - n) n^2 (4 n^2 - 1) / m^2 and ``degree + 1`` learnable weights w (``beta_weights``,
    as torch-conv-kan stores them; w_0 and w_D are never used, like there). ``activation="silu"`` applies SiLU to
    every value, as torch-conv-kan's KAGN layers do. ``beta_init_std`` draws w from N(0, std^2) (torch-conv-kan:
    1 / (k^2 C_in (D + 1))); the default 0 starts from p_i = t^i. Any finite input. ``learnable=False`` keeps w
    fixed (a buffer).
    """

    def __init__(
        self, degree: int = 3, activation: str | None = "silu", learnable: bool = True, beta_init_std: float = 0.0
    ):
        super().__init__()
        self.degree = check_int("degree", degree, 0)
        if activation not in (None, "silu"):
            raise ValueError(f"activation must be None or 'silu', got {activation!r}")
        if not (_is_number(beta_init_std) and beta_init_std >= 0):
            raise ValueError(f"beta_init_std must be a number >= 0, got {beta_init_std!r}")
        self.activation = activation
        self.num_functions = degree + 1
        weights = torch.randn(degree + 1) * beta_init_std if beta_init_std > 0 else torch.zeros(degree + 1)
        if learnable:
            self.beta_weights = nn.Parameter(weights)
        else:
            self.register_buffer("beta_weights", weights)

    def _beta(self, n: int) -> Tensor:
        m = n + 1
        return self.beta_weights[n] * ((m + n) * (m - n) * n**2 * (4.0 * n**2 - 1.0) / m**2)

    def _terms(self, x: Tensor) -> list[Tensor]:
        t = torch.tanh(x)
        terms = [torch.ones_like(t)]
        if self.degree >= 1:
            terms.append(t)
        for i in range(2, self.degree + 1):
            terms.append(t * terms[-1] - self._beta(i - 1).to(t.dtype) * terms[-2])
        return [torch.nn.functional.silu(v) for v in terms] if self.activation == "silu" else terms

    def extra_repr(self) -> str:
        return f"degree={self.degree}, activation={self.activation!r}"
