"""Symbolic formulas for learned univariate functions: pykan's ``suggest_symbolic`` (Liu et al., "KAN:
Kolmogorov-Arnold Networks", arXiv 2404.19756, section 2.5.1; github.com/KindXiaoming/pykan).

Every library function f is fitted as ``a * f(b * x + c) + d``: (b, c) by a grid search refined with
``scipy.optimize.least_squares``, (a, d) by linear least squares given (b, c) (variable projection), all in float64.
Parameters that a function's symmetries make redundant are fixed (``b = 1`` for powers, ``|x|``, ``sqrt``, ``log``;
``c = 0`` for ``exp``). Fits are ranked by R^2 on the sampled range, preferring simplicity as pykan's
``weight_simple`` does: among the fits within ``r2_tolerance`` (default ``1e-3``) of the best R^2, the simplest
function comes first (its ``complexity``, classes like pykan's: 0; x; x^2, |x|, relu; x^3, sqrt, exp, log, sin;
tanh, sigmoid, gaussian; silu, gelu), so a nearly straight function is named ``x`` rather than ``sin(0.8*x + 0.1)``.
Within a class the best R^2 wins (exact ties: the order of :data:`SYMBOLIC_LIBRARY`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.optimize import least_squares
from scipy.special import erf, expit
from torch import Tensor, nn

from kanvision.interpret.sampling import InputRecord, check_range, function_shape, sample_functions

__all__ = [
    "SYMBOLIC_LIBRARY",
    "SymbolicFit",
    "SymbolicFunction",
    "fit_symbolic",
    "suggest_symbolic",
    "suggest_layer",
]

EXP_CLIP = 50.0  # exp(50) ~ 5e21: far beyond any fitted function, far from float64 overflow
R2_TOLERANCE = 1e-3  # R^2 a simpler formula may give up to the best fit
R2_TIE = 1e-9  # fits this close are equal (float round-off)


@dataclass(frozen=True)
class SymbolicFunction:
    """A library entry: f as a numpy function, its formula ``template`` (``{}`` is the affine argument), which of
    b (scale) and c (shift) are fitted, and its ``complexity`` (lower is simpler; fits within the R^2 tolerance of
    the best go to the lowest)."""

    name: str
    fn: Callable[[np.ndarray], np.ndarray]
    template: str
    complexity: int
    fit_scale: bool = True
    fit_shift: bool = True
    symmetry: str = ""  # "odd" or "even" (f(-u) = -f(u) or f(u)) and/or "periodic" (f(u + pi) = -f(u)): for display


def _gelu(u: np.ndarray) -> np.ndarray:
    return 0.5 * u * (1.0 + erf(u / math.sqrt(2.0)))


_ENTRIES = [  # (name, f, template, fit b, fit c, symmetry, complexity): pykan's complexity classes
    ("0", lambda u: np.zeros_like(u), "0", False, False, "", 0),
    ("x", lambda u: u, "{}", False, False, "odd", 1),
    ("x^2", lambda u: u**2, "{}^2", False, True, "even", 2),
    ("abs", np.abs, "|{}|", False, True, "even", 2),
    ("relu", lambda u: np.maximum(u, 0.0), "relu({})", True, True, "", 2),
    ("x^3", lambda u: u**3, "{}^3", False, True, "odd", 3),
    ("sqrt", lambda u: np.sqrt(np.abs(u)), "sqrt(|{}|)", False, True, "even", 3),
    ("exp", lambda u: np.exp(np.clip(u, -EXP_CLIP, EXP_CLIP)), "exp({})", True, False, "", 3),
    ("log", lambda u: np.log(np.maximum(np.abs(u), 1e-8)), "log(|{}|)", False, True, "even", 3),
    ("sin", np.sin, "sin({})", True, True, "odd periodic", 3),
    ("tanh", np.tanh, "tanh({})", True, True, "odd", 4),
    ("sigmoid", expit, "sigmoid({})", True, True, "", 4),
    ("gaussian", lambda u: np.exp(-(u**2)), "exp(-({})^2)", True, True, "even", 4),
    ("silu", lambda u: u * expit(u), "silu({})", True, True, "", 5),
    ("gelu", _gelu, "gelu({})", True, True, "", 5),
]

SYMBOLIC_LIBRARY: dict[str, SymbolicFunction] = {
    name: SymbolicFunction(name, fn, template, complexity, scale, shift, symmetry)
    for name, fn, template, scale, shift, symmetry, complexity in _ENTRIES
}


@dataclass(frozen=True)
class SymbolicFit:
    """``a * f(b * x + c) + d`` fitted to a function; ``r2`` on the sampled range."""

    name: str
    formula: str
    params: dict[str, float]
    r2: float
    complexity: int
    function: SymbolicFunction = field(repr=False, compare=False)

    def __call__(self, x: Tensor) -> Tensor:
        """The fitted formula at ``x`` (float64)."""
        p = self.params
        u = p["b"] * x.detach().to("cpu", torch.float64).numpy() + p["c"]
        return torch.from_numpy(p["a"] * self.function.fn(u) + p["d"])

    def as_dict(self) -> dict:
        return {"name": self.name, "formula": self.formula, "params": dict(self.params), "r2": self.r2}


def _number(value: float) -> str:
    return f"{value:.4g}"


def _canonical(entry: SymbolicFunction, a: float, b: float, c: float) -> tuple[float, float, float]:
    """The same function with b > 0 where a symmetry allows it, and a periodic shift in (-pi/2, pi/2]."""
    if b < 0 and "odd" in entry.symmetry:
        a, b, c = -a, -b, -c
    elif b < 0 and "even" in entry.symmetry:
        b, c = -b, -c
    if "periodic" in entry.symmetry:  # f(u + k pi) = (-1)^k f(u)
        k = math.ceil(c / math.pi - 0.5)
        a, c = a * (-1) ** k, c - k * math.pi
    return a, b, c


def _formula(entry: SymbolicFunction, a: float, b: float, c: float, d: float) -> str:
    tiny = 1e-10 * max(1.0, abs(a))  # float round-off, not part of the formula
    if entry.name == "0" or a == 0:
        return _number(d)
    inner = "x" if _number(b) == "1" else f"{_number(b)}*x"
    if abs(c) > 1e-10 * max(1.0, abs(b)):
        inner += f" {'+' if c > 0 else '-'} {_number(abs(c))}"
    if entry.template.startswith("{}") and inner != "x":  # powers: (2*x + 1)^2
        inner = f"({inner})"
    scale = {"1": "", "-1": "-"}.get(_number(a), f"{_number(a)}*")
    text = scale + entry.template.format(inner)
    return text + (f" {'+' if d >= 0 else '-'} {_number(abs(d))}" if abs(d) > tiny else "")


def _check_library(library: Sequence[str | SymbolicFunction] | None) -> list[SymbolicFunction]:
    if library is None:
        return list(SYMBOLIC_LIBRARY.values())
    if isinstance(library, (str, SymbolicFunction)) or not isinstance(library, Sequence) or not library:
        raise ValueError(f"library must be a non-empty list of names or SymbolicFunctions, got {library!r}")
    entries = []
    for item in library:
        if isinstance(item, SymbolicFunction):
            entries.append(item)
        elif item in SYMBOLIC_LIBRARY:
            entries.append(SYMBOLIC_LIBRARY[item])
        else:
            valid = list(SYMBOLIC_LIBRARY)
            raise ValueError(f"unknown symbolic function {item!r}; valid: {valid} or a SymbolicFunction")
    return entries


def _linear_fit(z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """a, d and the residual sum of squares of y ~ a z + d over the last axis (z batched)."""
    zc = z - z.mean(-1, keepdims=True)
    yc = y - y.mean()
    szz = (zc * zc).sum(-1)
    szy = (zc * yc).sum(-1)
    flat = szz <= 1e-12 * np.maximum(1.0, (z * z).sum(-1))  # constant z: a = 0
    a = np.where(flat, 0.0, szy / np.where(flat, 1.0, szz))
    d = y.mean() - a * z.mean(-1)
    sse = ((y - a[..., None] * z - d[..., None]) ** 2).sum(-1)
    return a, d, sse


def _candidates(entry: SymbolicFunction, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Grid of (b, c) to start from: scales with both signs, shifts placing f's feature anywhere over the range."""
    bs = np.array([0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.0, 10.0])
    bs = np.concatenate([-bs[::-1], bs]) if entry.fit_scale else np.ones(1)
    if not entry.fit_shift:
        return bs, np.zeros_like(bs)
    lo, hi = x.min(), x.max()
    centres = np.linspace(lo - 0.25 * (hi - lo), hi + 0.25 * (hi - lo), 41)  # f's origin at x = centre
    phases = np.linspace(-3.2, 3.2, 17)
    b = np.repeat(bs, centres.size + phases.size)
    c = np.concatenate([np.concatenate([-bb * centres, phases]) for bb in bs])
    return b, c


def _grid(entry: SymbolicFunction, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Residual sum of squares at every (b, c) of the start grid, sorted best first, with those (b, c)."""
    if entry.name == "0":
        return np.array([float(((y - y.mean()) ** 2).sum())]), np.ones(1), np.zeros(1)
    bs, cs = _candidates(entry, x)
    with np.errstate(all="ignore"):
        sse = _linear_fit(entry.fn(bs[:, None] * x + cs[:, None]), y)[2]
    sse = np.where(np.isfinite(sse), sse, np.inf)
    order = np.argsort(sse, kind="stable")
    return sse[order], bs[order], cs[order]


def _fit_entry(
    entry: SymbolicFunction, x: np.ndarray, y: np.ndarray, sst: float, grid: tuple, refine: bool
) -> SymbolicFit:
    """The entry's fit: the best grid point, refined by least squares from the best starts when ``refine``."""
    sse_grid, bs, cs = grid
    free = [i for i, flag in enumerate((entry.fit_scale, entry.fit_shift)) if flag]
    best = (float(sse_grid[0]), float(bs[0]), float(cs[0]))
    for start in range(min(3, len(bs)) if refine and free and entry.name != "0" else 0):
        params = np.array([bs[start], cs[start]])

        def residual(p: np.ndarray, params=params) -> np.ndarray:
            full = params.copy()
            full[free] = p
            with np.errstate(all="ignore"):
                z = entry.fn(full[0] * x + full[1])
            a, d, _ = _linear_fit(z, y)
            r = y - a * z - d
            return np.where(np.isfinite(r), r, 1e10)

        tol = dict(xtol=1e-12, ftol=1e-12, gtol=1e-12)
        params[free] = least_squares(residual, params[free], method="lm", max_nfev=200, **tol).x
        with np.errstate(all="ignore"):
            sse = float(_linear_fit(entry.fn(params[0] * x + params[1]), y)[2])
        if math.isfinite(sse) and sse < best[0]:
            best = (sse, float(params[0]), float(params[1]))
    sse, b, c = best
    if entry.name == "0":
        a, d = 0.0, float(y.mean())
    else:
        with np.errstate(all="ignore"):
            a, d, _ = (float(v) for v in _linear_fit(entry.fn(b * x + c), y))
        a, b, c = _canonical(entry, a, b, c)
    r2 = 1.0 - sse / sst if sst > 0 else (1.0 if sse <= 1e-24 * max(1.0, float((y * y).sum())) else -math.inf)
    r2 = float(r2) if math.isfinite(r2) else -math.inf
    params = {"a": a, "b": b, "c": c, "d": d}
    return SymbolicFit(entry.name, _formula(entry, a, b, c, d), params, r2, entry.complexity, entry)


def _rank(fits: list[SymbolicFit], top_k: int, r2_tolerance: float) -> list[SymbolicFit]:
    """Best R^2 first; among fits within ``r2_tolerance`` of the best remaining one, the simplest."""
    remaining, ranked = list(fits), []
    while remaining and len(ranked) < top_k:
        best = max(f.r2 for f in remaining)
        tied = [f for f in remaining if f.r2 >= best - r2_tolerance]
        simplest = min(f.complexity for f in tied)
        tied = [f for f in tied if f.complexity == simplest]
        best = max(f.r2 for f in tied)
        pick = next(f for f in tied if f.r2 >= best - R2_TIE)  # library order among equal fits
        ranked.append(pick)
        remaining.remove(pick)
    return ranked


def fit_symbolic(
    x: Tensor | np.ndarray,
    y: Tensor | np.ndarray,
    library: Sequence[str | SymbolicFunction] | None = None,
    top_k: int = 3,
    r2_tolerance: float = R2_TOLERANCE,
) -> list[SymbolicFit]:
    """The ``top_k`` best ``a * f(b * x + c) + d`` fits of the samples ``y = phi(x)`` (1-D, same length); a simpler
    function goes first when its R^2 is within ``r2_tolerance`` of the best."""
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be an integer >= 1, got {top_k!r}")
    if isinstance(r2_tolerance, bool) or not isinstance(r2_tolerance, (int, float)) or not 0 <= r2_tolerance < 1:
        raise ValueError(f"r2_tolerance must be a number in [0, 1), got {r2_tolerance!r}")
    x = torch.as_tensor(x).detach().to("cpu", torch.float64).numpy()
    y = torch.as_tensor(y).detach().to("cpu", torch.float64).numpy()
    if x.ndim != 1 or x.shape != y.shape or x.size < 4:
        raise ValueError(f"x and y must be 1-D of the same length >= 4, got shapes {x.shape} and {y.shape}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("x and y must be finite")
    sst = float(((y - y.mean()) ** 2).sum())
    entries = _check_library(library)
    grids = [_grid(entry, x, y) for entry in entries]
    # least squares refines only the entries whose grid fit is among the best (the rest keep their grid fit)
    refined = set(sorted(range(len(entries)), key=lambda i: grids[i][0][0])[: max(top_k + 3, 6)])
    fits = [_fit_entry(entry, x, y, sst, grids[i], i in refined) for i, entry in enumerate(entries)]
    return _rank(fits, top_k, float(r2_tolerance))


def suggest_symbolic(
    fn: Callable[[Tensor], Tensor],
    x_range: tuple[float, float] = (-4.0, 4.0),
    library: Sequence[str | SymbolicFunction] | None = None,
    top_k: int = 3,
    num_points: int = 201,
    r2_tolerance: float = R2_TOLERANCE,
) -> list[SymbolicFit]:
    """The ``top_k`` best symbolic formulas for ``fn`` (1-D tensor -> 1-D tensor) on ``x_range``, best first.

    ``library``: names of :data:`SYMBOLIC_LIBRARY` entries and/or :class:`SymbolicFunction` s (default: all).
    ``r2_tolerance``: the R^2 a simpler formula may lose to the best and still come first.
    """
    lo, hi = check_range(x_range)
    if isinstance(num_points, bool) or not isinstance(num_points, int) or num_points < 4:
        raise ValueError(f"num_points must be an integer >= 4, got {num_points!r}")
    x = torch.linspace(lo, hi, num_points, dtype=torch.float64)
    y = torch.as_tensor(fn(x))
    if y.shape != x.shape:
        raise ValueError(f"fn must map a ({num_points},) tensor to a ({num_points},) tensor, got {tuple(y.shape)}")
    return fit_symbolic(x, y, library, top_k, r2_tolerance)


def suggest_layer(
    module: nn.Module,
    record: InputRecord | None = None,
    x_range: tuple[float, float] | None = None,
    indices: Sequence[tuple[int, ...]] | None = None,
    library: Sequence[str | SymbolicFunction] | None = None,
    top_k: int = 3,
    num_points: int = 101,
    r2_tolerance: float = R2_TOLERANCE,
) -> dict[tuple[int, ...], list[SymbolicFit]]:
    """Symbolic fits of a module's functions, keyed by their ``(out, in, *kernel)`` index.

    Each function is fitted on the range its input took in ``record`` (exactly the observed [min, max]), or on
    ``x_range``. ``indices`` selects functions, e.g. the most important ones
    (:meth:`~kanvision.interpret.importance.LayerImportance.top`); default: all of them.
    """
    if (record is None) == (x_range is None):
        raise ValueError("suggest_layer needs exactly one of record (the data's range) or x_range")
    samples = sample_functions(module, record, x_range, num_points, margin=0.0)
    shape = function_shape(module)
    if indices is None:
        indices = [tuple(int(v) for v in idx) for idx in np.ndindex(*shape)]
    fits = {}
    for idx in indices:
        idx = tuple(int(v) for v in idx)
        if len(idx) != len(shape) or any(not 0 <= v < n for v, n in zip(idx, shape, strict=True)):
            raise ValueError(f"function index {idx} is outside this module's functions {shape}")
        fits[idx] = fit_symbolic(samples.x[idx[:2]], samples.y[idx], library, top_k, r2_tolerance)
    return fits
