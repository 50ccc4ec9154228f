"""Extending kanvision with a new basis: one class and one registry entry, and it works in KANLinear, KANConv2d and
the layer benchmark (the README's "Extending kanvision" recipe, done by a test)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from benchmarks import layers as layer_bench
from kanvision.layers import Basis, KANConv2d, KANLinear, create_basis, list_bases, register_basis
from kanvision.layers import bases as bases_module


@pytest.fixture
def toy_basis():
    """Powers of tanh: B_k(x) = tanh(x)^k, k = 0..degree, registered for the test only."""

    @register_basis("toy_tanh_powers")
    class TanhPowers(Basis):
        def __init__(self, degree: int = 2):
            super().__init__()
            self.degree = degree
            self.num_functions = degree + 1

        def values(self, x):  # x: (P, 1, Q) -> (P, n, Q)
            return torch.tanh(x) ** torch.arange(self.num_functions, dtype=x.dtype).view(-1, 1)

    try:
        yield "toy_tanh_powers"
    finally:
        del bases_module._REGISTRY["toy_tanh_powers"]


def test_a_registered_basis_works_in_every_layer(toy_basis):
    assert toy_basis in list_bases() and create_basis(toy_basis, degree=3).num_functions == 4
    torch.manual_seed(0)
    layer = KANLinear(3, 2, basis=toy_basis, basis_kwargs=dict(degree=2)).double()
    x = torch.randn(5, 3, dtype=torch.float64)
    # naive float64 reference: y_o = sum_i w_base[o, i] silu(x_i) + sum_{i,k} w[o, i, k] tanh(x_i)^k
    w = layer.weight.view(2, 3, 4)  # per input: [base, B_0, B_1, B_2]
    t = torch.tanh(x)
    feats = torch.stack([F.silu(x), torch.ones_like(x), t, t**2], dim=-1)  # (5, 3, 4)
    expected = torch.einsum("bik,oik->bo", feats, w) + (layer.bias if layer.bias is not None else 0)
    torch.testing.assert_close(layer(x), expected)
    assert torch.autograd.gradcheck(layer, (x.clone().requires_grad_(True),))
    conv = KANConv2d(2, 3, 3, padding=1, basis=toy_basis)
    assert conv(torch.randn(1, 2, 5, 5)).shape == (1, 3, 5, 5)


def test_a_registered_basis_appears_in_the_layer_benchmark(toy_basis):
    result = layer_bench.run("cpu", batch=1, channels=2, size=4, reps=1, warmup=0, tokens=8, features=4)
    layers = {row["layer"] for row in result["rows"]}
    assert {f"KANConv2d[{toy_basis}]", f"KANLinear[{toy_basis}]"} <= layers
