"""suggest_symbolic recovers known formulas and the functions GroupRational is initialised to."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kanvision.interpret import SYMBOLIC_LIBRARY, SymbolicFunction, fit_symbolic, suggest_layer, suggest_symbolic
from kanvision.interpret.symbolic import R2_TOLERANCE
from kanvision.layers import GroupRational, KANLinear


@pytest.mark.parametrize(
    "fn, name, params",
    [
        (lambda x: torch.sin(2 * x + 1), "sin", dict(a=1.0, b=2.0, c=1.0, d=0.0)),
        (lambda x: 3 * torch.tanh(x), "tanh", dict(a=3.0, b=1.0, c=0.0, d=0.0)),
        (lambda x: x**2, "x^2", dict(a=1.0, b=1.0, c=0.0, d=0.0)),
        (lambda x: torch.exp(-((x - 1) ** 2)) + 0.5, "gaussian", dict(a=1.0, b=1.0, c=-1.0, d=0.5)),
    ],
)
def test_recovers_known_formulas(fn, name, params):
    fits = suggest_symbolic(fn, x_range=(-4.0, 4.0), top_k=3)
    assert len(fits) == 3
    assert fits[0].name == name and fits[0].r2 > 0.999, fits
    for key, value in params.items():
        assert fits[0].params[key] == pytest.approx(value, abs=1e-6)
    assert all(a.r2 >= b.r2 - R2_TOLERANCE for a, b in zip(fits, fits[1:], strict=False))
    x = torch.linspace(-4, 4, 50, dtype=torch.float64)
    torch.testing.assert_close(fits[0](x), fn(x), atol=1e-7, rtol=0)


def test_formula_is_readable_and_canonical():
    assert suggest_symbolic(lambda x: torch.sin(2 * x + 1))[0].formula == "sin(2*x + 1)"
    assert suggest_symbolic(lambda x: -3 * torch.tanh(-x) + 2)[0].formula == "3*tanh(x) + 2"
    assert suggest_symbolic(lambda x: 2 * x - 1)[0].formula == "2*x - 1"


def _r2(y: torch.Tensor, fit: torch.Tensor) -> float:
    """R^2 by its definition, float64."""
    return float(1 - ((y - fit) ** 2).sum() / ((y - y.mean()) ** 2).sum())


@pytest.mark.parametrize(
    "fn, name, formula",
    [
        (lambda x: 2 * x - 1, "x", "2*x - 1"),  # a straight line
        (lambda x: 0.8 * x + 0.02 * torch.sin(3 * x), "x", None),  # a line with a small wiggle: x would do
        (lambda x: torch.sin(0.1 * x + 0.1), "x", None),  # a sine far from a period is nearly straight
        (lambda x: 2 * (x - 0.5) ** 2 + 1, "x^2", "2*(x - 0.5)^2 + 1"),  # a parabola
        (lambda x: x**2 + 0.01 * x**3, "x^2", None),  # a nearly symmetric parabola
    ],
)
def test_nearly_simple_functions_get_the_simple_name(fn, name, formula):
    x = torch.linspace(-4, 4, 201, dtype=torch.float64)
    fits = suggest_symbolic(fn, top_k=3)
    assert fits[0].name == name, [(f.name, f.r2) for f in fits]
    assert formula is None or fits[0].formula == formula
    best = max(f.r2 for f in fits)
    assert fits[0].r2 >= best - R2_TOLERANCE and _r2(fn(x), fits[0](x)) == pytest.approx(fits[0].r2, abs=1e-9)
    if name == "x":  # the best fit by R^2 alone is more complex: only the tolerance picks x
        assert suggest_symbolic(fn, top_k=1, r2_tolerance=0.0)[0].name != "x" or formula is not None


@pytest.mark.parametrize(
    "fn", [lambda x: torch.sin(x), lambda x: 0.5 * torch.sin(1.5 * x - 0.3) + 2, lambda x: torch.sin(x) + 0.1 * x]
)
def test_a_real_sine_is_still_named_sin(fn):
    fits = suggest_symbolic(fn, top_k=2)
    assert fits[0].name == "sin" and fits[0].r2 > 0.99, [(f.name, f.r2) for f in fits]


def test_r2_tolerance_is_checked():
    with pytest.raises(ValueError, match=r"r2_tolerance must be a number in \[0, 1\), got 1.5"):
        suggest_symbolic(torch.sin, r2_tolerance=1.5)


def test_ties_go_to_the_simpler_formula():
    # 3 tanh(x) = 6 sigmoid(2x) - 3 exactly; a constant is fitted exactly by every function with a = 0
    fits = suggest_symbolic(lambda x: 3 * torch.tanh(x), top_k=2)
    assert [f.name for f in fits] == ["tanh", "sigmoid"] and fits[1].r2 > 1 - 1e-9
    constant = suggest_symbolic(lambda x: torch.full_like(x, 2.0), top_k=1)[0]
    assert constant.name == "0" and constant.formula == "2" and constant.r2 == 1.0


@pytest.mark.parametrize("init, name", [("swish", "silu"), ("gelu", "gelu"), ("identity", "x")])
def test_group_rational_inits_are_recognised(init, name):
    rational = GroupRational(1, groups=1, init=init).double()
    fits = suggest_symbolic(lambda x: rational(x[:, None])[:, 0], x_range=(-4.0, 4.0))
    assert fits[0].name == name and fits[0].r2 > 0.999, fits


def test_exp_does_not_overflow_and_custom_library():
    fits = suggest_symbolic(lambda x: torch.exp(3 * x), x_range=(-10.0, 10.0), library=["exp", "x"], top_k=2)
    assert fits[0].name == "exp" and fits[0].r2 > 0.999 and all(math.isfinite(f.r2) for f in fits)
    cube = SymbolicFunction("cube", lambda u: u**3, "{}^3", complexity=0, fit_scale=False)
    fits = suggest_symbolic(lambda x: (x - 0.5) ** 3, library=[cube, "x"], top_k=1)
    assert fits[0].name == "cube" and fits[0].r2 > 0.999999


def test_invalid_arguments_name_the_bad_value():
    with pytest.raises(ValueError, match=r"x_range .* got \(1.0, -1.0\)"):
        suggest_symbolic(torch.sin, x_range=(1.0, -1.0))
    with pytest.raises(ValueError, match="top_k must be an integer >= 1, got 0"):
        suggest_symbolic(torch.sin, top_k=0)
    with pytest.raises(ValueError, match="unknown symbolic function 'cosh'"):
        suggest_symbolic(torch.sin, library=["cosh"])
    with pytest.raises(ValueError, match="must be 1-D of the same length"):
        fit_symbolic(np.zeros(5), np.zeros(4))
    assert set(SYMBOLIC_LIBRARY) >= {"x", "x^2", "x^3", "sqrt", "exp", "log", "sin", "tanh", "sigmoid", "abs"}
    assert set(SYMBOLIC_LIBRARY) >= {"gaussian", "silu", "gelu", "relu", "0"}


def test_suggest_layer_fits_the_chosen_functions():
    layer = KANLinear(2, 3, basis="chebyshev").double()
    with torch.no_grad():  # phi_{1,0}(x) = silu(x) (base branch only)
        layer.weight.zero_()
        layer.weight[1, 0] = 1.0
    fits = suggest_layer(layer, x_range=(-3.0, 3.0), indices=[(1, 0), (0, 1)], top_k=1)
    assert list(fits) == [(1, 0), (0, 1)]
    assert fits[1, 0][0].name == "silu" and fits[1, 0][0].r2 > 0.999999
    assert fits[0, 1][0].name == "0"
    with pytest.raises(ValueError, match=r"function index \(3, 0\) is outside"):
        suggest_layer(layer, x_range=(-3.0, 3.0), indices=[(3, 0)])
