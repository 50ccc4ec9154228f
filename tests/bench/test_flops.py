"""Forward FLOPs against counts written out by hand: KAT-T (matmuls, attention, the rational op) and a KAN conv."""

from __future__ import annotations

import pytest
import timm
import torch

import kanvision  # noqa: F401
from kanvision.bench.flops import count_forward_flops
from kanvision.layers import KANConv2d


def test_kat_tiny_forward_flops_match_the_analytic_count():
    model = timm.create_model("kat_tiny_patch16_224")
    tokens, dim, blocks, rational = 197, 192, 12, 21  # 21 FLOPs per element for the (5, 4) rational (Horner)
    per_block = (
        2 * tokens * dim * 3 * dim  # qkv
        + 2 * 2 * tokens * tokens * dim  # q k^T and attention @ v over 3 heads of 64
        + 2 * tokens * dim * dim  # proj
        + 2 * 2 * tokens * dim * 4 * dim  # fc1, fc2
        + rational * tokens * dim  # act1 on D channels
        + rational * tokens * 4 * dim  # act2 on 4D channels
    )
    expected = 2 * 196 * (16 * 16 * 3) * dim + blocks * per_block + 2 * dim * 1000  # patch embed, blocks, head
    counted = count_forward_flops(model, torch.zeros(1, 3, 224, 224))
    assert counted == pytest.approx(expected, rel=0.01)
    assert model.training  # restored


def test_kan_conv_flops_are_the_wide_convolution():
    """A KAN conv is one convolution over the (C * m)-channel expansion: 2 * out * (in * m * k^2) per output pixel."""
    conv = KANConv2d(8, 16, 3, padding=1, basis="chebyshev", basis_kwargs=dict(degree=3))
    m = 4 + 1  # degree 3 -> 4 functions, plus the base branch
    expected = 2 * 16 * 8 * m * 9 * 10 * 10
    counted = count_forward_flops(conv, torch.zeros(1, 8, 10, 10))
    # plus the small one-channel convolution that adds phi(0)'s share of the zero-padded border
    assert counted >= expected and counted == pytest.approx(expected, rel=0.03)
