"""Every basis in float64 against a naive reference written here."""

import math

import numpy as np
import pytest
import torch

from kanvision.layers import Basis, create_basis, list_bases
from kanvision.layers.bases import BSplineBasis, ChebyshevBasis, FourierBasis, GramBasis, RBFBasis, ReLUBasis


def cox_de_boor(x: float, knots: list[float], j: int, p: int) -> float:
    if p == 0:
        return 1.0 if knots[j] <= x < knots[j + 1] else 0.0
    left = (x - knots[j]) / (knots[j + p] - knots[j]) * cox_de_boor(x, knots, j, p - 1)
    right = (knots[j + p + 1] - x) / (knots[j + p + 1] - knots[j + 1]) * cox_de_boor(x, knots, j + 1, p - 1)
    return left + right


@pytest.mark.parametrize(
    "grid_size,order,lo,hi", [(5, 3, -1.0, 1.0), (4, 2, -2.0, 3.0), (3, 1, 0.0, 1.0), (6, 4, -1, 1)]
)
def test_bspline_matches_cox_de_boor(grid_size, order, lo, hi):
    basis = BSplineBasis(grid_size, order, (lo, hi))
    h = (hi - lo) / grid_size
    knots = [lo + (j - order) * h for j in range(grid_size + 2 * order + 1)]
    # points inside, near and beyond the extended knots; irrational offsets avoid landing on a knot
    xs = torch.linspace(lo - (order + 1.5) * h, hi + (order + 1.5) * h, 301, dtype=torch.float64) + math.pi * 1e-4
    got = basis(xs)
    ref = torch.tensor(
        [[cox_de_boor(x, knots, j, order) for j in range(grid_size + order)] for x in xs.tolist()], dtype=torch.float64
    )
    assert got.shape == (301, grid_size + order)
    torch.testing.assert_close(got, ref, atol=1e-10, rtol=0)
    inside = (xs >= lo) & (xs <= hi)
    torch.testing.assert_close(got[inside].sum(-1), torch.ones(int(inside.sum()), dtype=torch.float64))


def test_rbf_direct_formula():
    basis = RBFBasis(num_centers=8, grid_range=(-2, 2))
    xs = torch.linspace(-5, 5, 201, dtype=torch.float64)
    centers = np.linspace(-2, 2, 8)
    ref = np.exp(-(((xs.numpy()[:, None] - centers[None]) / (4 / 7)) ** 2))
    torch.testing.assert_close(basis(xs), torch.from_numpy(ref), atol=1e-10, rtol=0)
    wide = RBFBasis(num_centers=4, grid_range=(0, 3), bandwidth=0.3)
    ref = np.exp(-(((xs.numpy()[:, None] - np.arange(4.0)[None]) / 0.3) ** 2))
    torch.testing.assert_close(wide(xs), torch.from_numpy(ref), atol=1e-10, rtol=0)


@pytest.mark.parametrize("power", [2, 4])
def test_relu_bump_direct_formula(power):
    g, k = 5, 3
    basis = ReLUBasis(grid_size=g, order=k, power=power)
    xs = torch.linspace(-1.5, 2.5, 401, dtype=torch.float64)
    cols = []
    for i in range(g + k):
        s, e = (i - k) / g, (i + 1) / g
        r = np.maximum(e - xs.numpy(), 0) * np.maximum(xs.numpy() - s, 0)
        # ReLU-KAN's normalisation 16 / (e - s)^4 at power 2, generalised to a unit peak
        cols.append((r * 4 / (e - s) ** 2) ** power)
    torch.testing.assert_close(basis(xs), torch.from_numpy(np.stack(cols, -1)), atol=1e-10, rtol=0)
    peaks = basis(torch.tensor([((i - k) / g + (i + 1) / g) / 2 for i in range(g + k)], dtype=torch.float64))
    torch.testing.assert_close(peaks.diagonal(), torch.ones(g + k, dtype=torch.float64))


def test_chebyshev_trigonometric_form():
    basis = ChebyshevBasis(degree=6)
    xs = torch.linspace(-3, 3, 201, dtype=torch.float64)
    theta = torch.arccos(torch.tanh(xs))
    ref = torch.stack([torch.cos(n * theta) for n in range(7)], -1)
    torch.testing.assert_close(basis(xs), ref, atol=1e-10, rtol=0)


def test_fourier_direct_formula():
    basis = FourierBasis(num_frequencies=3)
    xs = torch.linspace(-7, 7, 101, dtype=torch.float64)
    ref = torch.stack([torch.cos(k * xs) for k in (1, 2, 3)] + [torch.sin(k * xs) for k in (1, 2, 3)], -1)
    torch.testing.assert_close(basis(xs), ref, atol=1e-10, rtol=0)


@pytest.mark.parametrize("degree,points", [(3, 64), (5, 9)])
def test_gram_matches_gram_schmidt(degree, points):
    basis = GramBasis(degree=degree, num_points=points)
    grid = -1 + (2 * np.arange(points) + 1) / points
    q, r = np.linalg.qr(np.vander(grid, degree + 1, increasing=True))
    coeffs = np.linalg.inv(np.sign(np.diag(r))[:, None] * r) * math.sqrt(points)  # unit average norm, positive lead
    xs = torch.linspace(-3, 3, 101, dtype=torch.float64)
    t = np.tanh(xs.numpy())
    ref = np.vander(t, degree + 1, increasing=True) @ coeffs
    torch.testing.assert_close(basis(xs), torch.from_numpy(ref), atol=1e-10, rtol=0)
    on_grid = basis(torch.from_numpy(np.arctanh(grid)))
    torch.testing.assert_close(on_grid.T @ on_grid / points, torch.eye(degree + 1, dtype=torch.float64))


@pytest.mark.parametrize("name", list_bases())
def test_dim_argument_places_basis_axis(name):
    basis = create_basis(name)
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    last = basis(x)  # (2, 3, 4, 5, n)
    torch.testing.assert_close(basis(x, dim=2), last.movedim(-1, 2))
    with_base = basis(x, dim=1, base_activation=torch.nn.functional.silu)
    assert with_base.shape == (2, basis.num_functions + 1, 3, 4, 5)
    torch.testing.assert_close(with_base[:, 0], torch.nn.functional.silu(x))
    torch.testing.assert_close(with_base[:, 1:], last.movedim(-1, 1))


@pytest.mark.parametrize("name", list_bases())
def test_half_input_computes_in_float32(name):
    basis = create_basis(name)
    x = torch.randn(64) * 2
    assert basis(x.bfloat16()).dtype == torch.bfloat16
    torch.testing.assert_close(basis(x.bfloat16()).float(), basis(x.bfloat16().float()), atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize(
    "name,kwargs,match",
    [
        ("chebyshev", dict(degree=-1), "degree must be an integer in [0, 256], got -1"),
        ("gram", dict(degree=-2), "degree must be an integer in [0, 256], got -2"),
        ("bspline", dict(grid_size=0), "grid_size must be an integer in [1, 4096], got 0"),
        ("bspline", dict(spline_order=0), "spline_order must be an integer in [1, 16], got 0"),
        ("bspline", dict(grid_range=(1.0, -1.0)), "low < high"),
        ("rbf", dict(num_centers=1), "num_centers must be an integer in [2, 4097], got 1"),
        ("relu", dict(grid_size=0), "grid_size must be an integer in [1, 4096], got 0"),
        ("fourier", dict(num_frequencies=0), "num_frequencies must be an integer in [1, 4096], got 0"),
        ("gram", dict(degree=5, num_points=4), "num_points must be an integer in [6, 1048576], got 4"),
    ],
)
def test_bad_hyperparameters(name, kwargs, match):
    with pytest.raises(ValueError, match=match.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        create_basis(name, **kwargs)


def test_unknown_basis_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown basis 'spline'.*'bspline', 'chebyshev'"):
        create_basis("spline")


def test_registry_resolves_every_name():
    assert list_bases() == sorted(list_bases())
    assert {"bspline", "chebyshev", "fourier", "gram", "kagn", "rbf", "relu"} <= set(list_bases())
    for name in list_bases():
        assert isinstance(create_basis(name), Basis) and create_basis(name).registry_name == name


@pytest.mark.parametrize("name", list_bases())
def test_float32_close_to_float64(name):
    basis = create_basis(name)
    x = torch.linspace(-4, 4, 20001, dtype=torch.float64)
    assert (basis(x.float()).double() - basis(x)).abs().max() < 2e-6


def test_kagn_basis_against_its_recurrence_in_float64():
    """torch-conv-kan's KAGN values written out: p_0 = 1, p_1 = t, p_i = t p_{i-1} - beta(i-1, i) p_{i-2},
    beta(n, m) = w_n (m+n)(m-n) n^2 / (m^2 / (4n^2 - 1)), t = tanh x, then SiLU."""
    basis = create_basis("kagn", degree=4).double()
    with torch.no_grad():
        basis.beta_weights.copy_(torch.tensor([0.7, -0.3, 0.2, 0.5, 0.9]))
    x = torch.linspace(-5, 5, 101, dtype=torch.float64)
    t = torch.tanh(x)
    w = basis.beta_weights.detach()
    p = [torch.ones_like(t), t]
    for i in range(2, 5):
        n, m = i - 1, i
        p.append(t * p[-1] - ((m + n) * (m - n) * n**2) / (m**2 / (4.0 * n**2 - 1.0)) * w[n] * p[-2])
    expected = torch.nn.functional.silu(torch.stack(p, -1))
    torch.testing.assert_close(basis(x), expected, rtol=1e-12, atol=1e-12)
    assert sum(q.numel() for q in basis.parameters()) == 5  # degree + 1 learnable scales, as released
    raw = create_basis("kagn", degree=2, activation=None, learnable=False)
    assert list(raw.parameters()) == [] and torch.allclose(
        raw(torch.tensor([0.5]))[0, 2], torch.tanh(torch.tensor(0.5)) ** 2
    )
