"""Univariate bases for KAN layers, one small class each, resolved by name through one registry.

A basis maps every element of ``x`` to ``n`` values B_0(x)..B_{n-1}(x) and inserts them as a new axis
at ``dim``: ``(..., C, ...) -> (..., C, n, ...)``, so that the flattened ``C * n`` features feed ONE
``F.linear`` / ``F.convNd`` (the fast form of a KAN layer, see efficient-kan and torch-conv-kan).

Every basis is elementwise (a sample's features never depend on other samples) and computes in
float32 when given half-precision input, returning the input's dtype.

Adding a basis: subclass :class:`Basis`, implement ``values`` (x as ``(P, 1, Q)`` -> the n values as
``(P, n, Q)``, in one branch-free form: selects instead of data-dependent branches) and, where it pays, the
analytic ``derivative`` in the same form; decorate it with ``@register_basis("name")``. It then works in every
layer, on every path (:mod:`kanvision.layers.expansion`): the fused expansion with compiled CPU kernels,
``torch.compile``, export and autograd of the values wherever a custom backward does not apply.
"""

from __future__ import annotations

import copy
import inspect
import math
import numbers
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from kanvision.layers import expansion
from kanvision.layers.helpers import check_floating, check_int

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


# Upper bounds of the size arguments: far beyond any published KAN, small enough that a typo (1e9 intervals) is an
# error here instead of an allocation failure or a recurrence that runs for minutes.
MAX_GRID_INTERVALS = 4096
MAX_DEGREE = 256
MAX_SPLINE_ORDER = 16


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


def _slots(x: Tensor, n: int, start: int = 0) -> Tensor:
    """start..start+n-1 as ``(n, 1)`` in x's dtype: against x ``(P, 1, Q)`` it broadcasts to the n slots."""
    return torch.arange(start, start + n, dtype=x.dtype, device=x.device).view(n, 1)


# up to this many terms, _stack_slots selects them per slot instead of concatenating them
MAX_SELECTED_SLOTS = 8


def _stack_slots(terms: list[Tensor]) -> Tensor:
    """The ``(P, 1, Q)`` terms as the ``(P, n, Q)`` slots. Compiled, a few terms are selected per slot: one loop over
    the output computes them in registers, where inductor's CPU concatenation writes each term by itself (strided and
    element by element when Q = 1: 2x slower layers). Eager ops concatenate (one pass instead of n - 1 selects)."""
    if not torch.compiler.is_compiling() or len(terms) == 1 or len(terms) > MAX_SELECTED_SLOTS:
        return torch.cat(terms, 1)
    slot = _slots(terms[0], len(terms))
    out = terms[-1].expand(-1, len(terms), -1)
    for k in range(len(terms) - 2, -1, -1):
        out = torch.where(slot == k, terms[k], out)
    return out


class Basis(nn.Module):
    """A fixed univariate basis B_0..B_{n-1}; ``num_functions`` is n.

    A subclass gives ``values`` and, optionally, ``derivative`` (see the module docstring). ``basis(x, dim)``
    runs the fused expansion (only ``x`` saved for backward); ``basis.reference(x, dim)`` computes the same values
    with plain differentiable ops (double backward, tests).
    """

    registry_name: str = ""
    num_functions: int

    def forward(self, x: Tensor, dim: int = -1, base_activation: Callable[[Tensor], Tensor] | None = None) -> Tensor:
        """Basis values of every element of ``x`` stacked on a new axis ``dim``.

        With ``base_activation`` its value b(x) is prepended as one more function (index 0), so the
        layer's base branch rides in the same GEMM/conv. The new axis sits right inside axis ``dim - 1`` in
        memory, so a channels-last input gives a channels-last expansion.
        """
        check_floating(f"basis {self.registry_name or type(self).__name__!r}", x)
        return expansion.expand(self, x, dim, base_activation)

    def reference(self, x: Tensor, dim: int = -1, base_activation: Callable[[Tensor], Tensor] | None = None) -> Tensor:
        """The values of ``forward`` through plain differentiable tensor ops (``forward``'s double backward)."""
        check_floating(f"basis {self.registry_name or type(self).__name__!r}", x)
        return expansion.reference(self, x, dim, base_activation)

    def values(self, x: Tensor) -> Tensor:
        """B_0(x)..B_{n-1}(x) of x ``(P, 1, Q)`` as ``(P, n, Q)``, differentiable, in one branch-free form."""
        raise NotImplementedError

    # the x-derivatives dB_k/dx as ``(P, n, Q)`` (same form), or None: autograd of ``values`` instead
    derivative: Callable[[Tensor], Tensor] | None = None


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
        super()._apply(fn, recurse)
        # rebuilt from the Python floats: exact under dtype casts, and real after ``to_empty`` of a meta-built model
        self.grid = torch.tensor([self.low, self.high, self.intervals], dtype=torch.float64, device=self.grid.device)
        return self

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        grid = state_dict.get(prefix + "grid")
        if grid is not None:
            self._set_grid(*check_grid_state(grid, prefix + "grid"))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _grid(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(low, spacing) as 0-d tensors of x's dtype, from the float64 ``grid`` (the spacing rounded once): the Python
        floats would enter compiled graphs as symbolic floats, which a custom autograd Function cannot hold."""
        low, high, intervals = self.grid
        return low.to(x.dtype), ((high - low) / intervals).to(x.dtype)

    def _knots(self, x: Tensor, offset: int = 0) -> Tensor:
        """low + (k - offset) * spacing for the n slots k, ``(n, 1)``."""
        low, h = self._grid(x)
        return low + (_slots(x, self.num_functions) - offset) * h

    def extra_repr(self) -> str:
        return f"grid_range=({self.low:g}, {self.high:g})"


def check_grid_state(grid, key: str) -> tuple[float, float, int]:
    """(low, high, intervals) of a state dict's ``grid`` entry ``key``, else a ValueError naming the key: three finite
    numbers with low < high and a whole number of intervals in [1, MAX_GRID_INTERVALS]."""
    values = grid.tolist() if isinstance(grid, Tensor) and grid.shape == (3,) else None
    if values is not None and all(math.isfinite(v) for v in values):
        low, high, intervals = values
        if low < high and intervals == round(intervals) and 1 <= intervals <= MAX_GRID_INTERVALS:
            return low, high, round(intervals)
    raise ValueError(
        f"state dict entry {key!r} must be (low, high, intervals): finite, low < high, a whole number of intervals "
        f"in [1, {MAX_GRID_INTERVALS}], got {grid.tolist() if isinstance(grid, Tensor) else grid!r}"
    )


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
    return out + t * 0  # NaN in every slot for a NaN input


@register_basis("bspline")
class BSplineBasis(GridBasis):
    """B-splines of order k on G uniform intervals of ``grid_range`` (pykan, Liu et al. arXiv 2404.19756).

    n = G + k functions. The knots extend k intervals beyond the range on each side, so the functions sum
    to 1 on ``grid_range``; they fall to 0 within k intervals outside it, and are exactly 0 beyond
    (only a layer's base branch responds there: call the layer's ``update_grid``). That border value holds for
    every input beyond, up to +-inf: values and x-gradients there are 0 (NaN stays NaN).

    Closed form on the uniform grid: B_j(x) = N_k(u - j) with u = (x - t_0) / h, where N_k is the cardinal
    B-spline, evaluated from its k + 1 precomputed polynomial pieces.
    """

    def __init__(self, grid_size: int = 5, spline_order: int = 3, grid_range: tuple[float, float] = (-1.0, 1.0)):
        self.spline_order = check_int("spline_order", spline_order, 1, MAX_SPLINE_ORDER)
        super().__init__(grid_range, check_int("grid_size", grid_size, 1, MAX_GRID_INTERVALS))
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
        self._piece_coef = tuple(tuple(pieces[q][p] for q in range(k + 1)) for p in range(k + 1))  # lowest power first

    def _set_grid(self, low: float, high: float, intervals: int) -> None:
        super()._set_grid(low, high, intervals)
        self.grid_size = intervals
        self.num_functions = intervals + self.spline_order

    # N_k(u - j) for every slot j as selects over the pieces: compiled, they fuse into one loop (a scatter of the
    # k + 1 non-zero values of each input would not)
    def values(self, x: Tensor) -> Tensor:
        return _cardinal_bspline(self._position(x), self._piece_coef, derivative=False)

    def derivative(self, x: Tensor) -> Tensor:
        return _cardinal_bspline(self._position(x), self._piece_coef, derivative=True) / self._grid(x)[1]

    def _position(self, x: Tensor) -> Tensor:
        """u - j: x in knot intervals from the first knot of slot j, ``(P, n, Q)``."""
        low, h = self._grid(x)
        # x clamped to one interval beyond the outermost knots, where every function is 0 with slope 0: the same
        # values for every finite x, and finite positions for huge and infinite ones (inf - inf would give NaN)
        margin = (self.spline_order + 1) * h
        x = x.clamp(low - margin, low + self.intervals * h + margin)
        return (x - self._knots(x, self.spline_order)) / h

    def extra_repr(self) -> str:
        return f"grid_size={self.grid_size}, spline_order={self.spline_order}, {super().extra_repr()}"


@register_basis("rbf")
class RBFBasis(GridBasis):
    """Gaussian radial basis of FastKAN (Li, arXiv 2405.06721): exp(-((x - c_k) / h)^2).

    ``num_centers`` centres spaced evenly over ``grid_range`` (FastKAN: 8 on [-2, 2]); the width h
    defaults to the spacing (4/7 there). Any input: the values (and x-gradients) underflow to exactly 0 far outside
    the range, which is also their value at +-inf (NaN stays NaN).
    FastKAN's LayerNorm is not part of the basis: normalisation belongs to the block using the layer.
    """

    def __init__(
        self, num_centers: int = 8, grid_range: tuple[float, float] = (-2.0, 2.0), bandwidth: float | None = None
    ):
        if bandwidth is not None and not (_is_number(bandwidth) and math.isfinite(bandwidth) and bandwidth > 0):
            raise ValueError(f"bandwidth must be a positive finite number or None, got {bandwidth!r}")
        self.bandwidth = bandwidth
        super().__init__(grid_range, check_int("num_centers", num_centers, 2, MAX_GRID_INTERVALS + 1) - 1)

    def _set_grid(self, low: float, high: float, intervals: int) -> None:
        super()._set_grid(low, high, intervals)
        self.num_centers = self.num_functions = intervals + 1

    @property
    def width(self) -> float:
        return self.bandwidth if self.bandwidth is not None else self.spacing

    def values(self, x: Tensor) -> Tensor:
        return torch.exp(-self._z(x).square())

    def derivative(self, x: Tensor) -> Tensor:
        z = self._z(x)
        return torch.exp(-z * z) * z * (-2 / self._width(x))

    def _z(self, x: Tensor) -> Tensor:
        """(x - c_k) / h, ``(P, n, Q)``, with x clamped to 40 widths beyond the outermost centres: exp(-40^2)
        underflows to 0 even in float64, so finite inputs keep their values, and huge or infinite ones give 0
        instead of exp(-inf) * inf = NaN in the derivative."""
        low, h = self._grid(x)
        width = self._width(x)
        x = x.clamp(low - 40 * width, low + self.intervals * h + 40 * width)
        return (x - self._knots(x)) / width

    def _width(self, x: Tensor) -> Tensor | float:
        return self.bandwidth if self.bandwidth is not None else self._grid(x)[1]

    def extra_repr(self) -> str:
        return f"num_centers={self.num_centers}, bandwidth={self.bandwidth}, {super().extra_repr()}"


@register_basis("relu")
class ReLUBasis(GridBasis):
    """ReLU bumps of ReLU-KAN (Qiu et al., arXiv 2406.02075) and HRKAN (So & Yung, arXiv 2409.14248).

    B_i(x) = [ReLU(e_i - x) ReLU(x - s_i) / ((e_i - s_i) / 2)^2]^p with s_i = lo + (i - k) h,
    e_i = s_i + (k + 1) h, h = (hi - lo) / G, i = 0..G+k-1, so n = G + k and every bump peaks at exactly 1.
    ``power`` p = 2 is ReLU-KAN; p = 2m is HRKAN of order m. Zero (value and gradient) outside
    [s_0, e_last] = [lo - k h, hi + k h].
    """

    def __init__(
        self, grid_size: int = 5, order: int = 3, power: int = 2, grid_range: tuple[float, float] = (0.0, 1.0)
    ):
        self.order = check_int("order", order, 0, MAX_SPLINE_ORDER)
        self.power = check_int("power", power, 1, MAX_SPLINE_ORDER)
        super().__init__(grid_range, check_int("grid_size", grid_size, 1, MAX_GRID_INTERVALS))

    def _set_grid(self, low: float, high: float, intervals: int) -> None:
        super()._set_grid(low, high, intervals)
        self.grid_size = intervals
        self.num_functions = intervals + self.order

    # with d = x - s_i clamped to [0, w], the bump is 1 - v^2, v = 2 d / w - 1 in [-1, 1]
    def values(self, x: Tensor) -> Tensor:
        v = self._v(x)
        return (1 - v * v) ** self.power

    def derivative(self, x: Tensor) -> Tensor:
        # d/dx (1 - v^2)^p = -4 p v (1 - v^2)^(p-1) / w inside the bump, 0 outside (and on its ends)
        v = self._v(x)
        width = (self.order + 1) * self._grid(x)[1]
        return (1 - v * v) ** (self.power - 1) * (v.abs() < 1) * v * (-4 * self.power / width)

    def _v(self, x: Tensor) -> Tensor:
        width = (self.order + 1) * self._grid(x)[1]
        return (x - self._knots(x, self.order)).clamp(min=0).minimum(width) * (2 / width) - 1

    def extra_repr(self) -> str:
        return f"grid_size={self.grid_size}, order={self.order}, power={self.power}, {super().extra_repr()}"


@register_basis("chebyshev")
class ChebyshevBasis(Basis):
    """Chebyshev polynomials T_0..T_D of tanh(x) (ChebyKAN; Sidharth & Gokul, arXiv 2405.07200).

    Any finite input (tanh maps it into (-1, 1)). Computed by the recurrence
    T_n = 2 t T_{n-1} - T_{n-2}, whose gradient is finite everywhere, unlike cos(n acos t)
    (infinite once tanh rounds to +-1). n = D + 1 functions.
    """

    def __init__(self, degree: int = 3):
        super().__init__()
        self.degree = check_int("degree", degree, 0, MAX_DEGREE)
        self.num_functions = degree + 1

    def values(self, x: Tensor) -> Tensor:
        t = torch.tanh(x)
        terms = [torch.ones_like(t), t][: self.degree + 1]
        for _ in range(2, self.degree + 1):
            terms.append(2 * t * terms[-1] - terms[-2])
        return _stack_slots(terms)

    def derivative(self, x: Tensor) -> Tensor:
        # dT_k/dx = k U_{k-1}(t) (1 - t^2), U the Chebyshev polynomials of the second kind
        t = torch.tanh(x)
        u = [torch.ones_like(t), 2 * t][: self.degree]
        for _ in range(2, self.degree):
            u.append(2 * t * u[-1] - u[-2])
        return _stack_slots([torch.zeros_like(t)] + [k * u[k - 1] for k in range(1, self.degree + 1)]) * (1 - t * t)

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
        self.num_frequencies = check_int("num_frequencies", num_frequencies, 1, MAX_GRID_INTERVALS)
        self.num_functions = 2 * num_frequencies

    def values(self, x: Tensor) -> Tensor:
        cosines, sines = self._harmonics(x)
        return _stack_slots(cosines + sines)

    def derivative(self, x: Tensor) -> Tensor:
        cosines, sines = self._harmonics(x)
        return _stack_slots([-k * s for k, s in enumerate(sines, 1)] + [k * c for k, c in enumerate(cosines, 1)])

    def _harmonics(self, x: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """cos(k x) and sin(k x), k = 1..G, from one cos and one sin by the Chebyshev recurrences
        cos((k + 1) x) = 2 cos(x) cos(k x) - cos((k - 1) x) (and the same for sin): trigonometric functions cost
        several times a multiply-add, and the terms stay in [-1, 1] for every input."""
        c, s = torch.cos(x), torch.sin(x)
        cosines, sines = [c], [s]
        previous_cos, previous_sin = torch.ones_like(x), torch.zeros_like(x)
        for _ in range(1, self.num_frequencies):
            cosines.append(2 * c * cosines[-1] - previous_cos)
            sines.append(2 * c * sines[-1] - previous_sin)
            previous_cos, previous_sin = cosines[-2], sines[-2]
        return cosines, sines

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
        self.degree = check_int("degree", degree, 0, MAX_DEGREE)
        self.num_points = check_int("num_points", num_points, degree + 1, 1 << 20)
        self.num_functions = degree + 1
        m = num_points
        self._alpha = [(m / (n + 1)) * math.sqrt((4 * (n + 1) ** 2 - 1) / (m**2 - (n + 1) ** 2)) for n in range(degree)]

    def values(self, x: Tensor) -> Tensor:
        return _stack_slots(self._recurrence(torch.tanh(x), derivative=False))

    def derivative(self, x: Tensor) -> Tensor:
        t = torch.tanh(x)
        return _stack_slots(self._recurrence(t, derivative=True)) * (1 - t * t)

    def _recurrence(self, t: Tensor, derivative: bool) -> list[Tensor]:
        """p_0..p_D of t, or their t-derivatives q_n by the differentiated recurrence
        q_{n+1} = alpha_n (p_n + t q_n) - (alpha_n / alpha_{n-1}) q_{n-1}."""
        p, q = [torch.ones_like(t)], [torch.zeros_like(t)]
        for n in range(self.degree):
            a, r = self._alpha[n], (self._alpha[n] / self._alpha[n - 1] if n > 0 else 0.0)
            p.append(a * t * p[-1] - (r * p[-2] if n > 0 else 0))
            if derivative:
                q.append(a * (p[-2] + t * q[-1]) - (r * q[-2] if n > 0 else 0))
        return q if derivative else p

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
        self.degree = check_int("degree", degree, 0, MAX_DEGREE)
        if activation not in (None, "silu"):
            raise ValueError(f"activation must be None or 'silu', got {activation!r}")
        if not (_is_number(beta_init_std) and math.isfinite(beta_init_std) and beta_init_std >= 0):
            raise ValueError(f"beta_init_std must be a finite number >= 0, got {beta_init_std!r}")
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

    def values(self, x: Tensor) -> Tensor:
        t = torch.tanh(x)
        terms = [torch.ones_like(t)]
        if self.degree >= 1:
            terms.append(t)
        for i in range(2, self.degree + 1):
            terms.append(t * terms[-1] - self._beta(i - 1).to(t.dtype) * terms[-2])
        # SiLU of each term, not of their concatenation: autograd then saves the terms once, not twice
        return torch.cat([torch.nn.functional.silu(v) for v in terms] if self.activation == "silu" else terms, 1)

    def extra_repr(self) -> str:
        return f"degree={self.degree}, activation={self.activation!r}"
