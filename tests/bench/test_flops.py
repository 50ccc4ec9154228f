"""FLOPs against counts written out by hand: KAT-T (matmuls, attention, the rational op) by kanvision's counter and
by Lightning's model summary, the group rational's backward, and a KAN conv."""

from __future__ import annotations

import lightning
import pytest
import timm
import torch
from lightning.pytorch.utilities.model_summary import ModelSummary
from torch.utils.flop_counter import FlopCounterMode

import kanvision  # noqa: F401
from kanvision.layers import GroupRational, KANConv2d
from kanvision.utils.flops import count_forward_flops


def _kat_tiny_analytic_flops() -> int:
    tokens, dim, blocks, rational = 197, 192, 12, 21  # 21 FLOPs per element for the (5, 4) rational (Horner)
    per_block = (
        2 * tokens * dim * 3 * dim  # qkv
        + 2 * 2 * tokens * tokens * dim  # q k^T and attention @ v over 3 heads of 64
        + 2 * tokens * dim * dim  # proj
        + 2 * 2 * tokens * dim * 4 * dim  # fc1, fc2
        + rational * tokens * dim  # act1 on D channels
        + rational * tokens * 4 * dim  # act2 on 4D channels
    )
    return 2 * 196 * (16 * 16 * 3) * dim + blocks * per_block + 2 * dim * 1000  # patch embed, blocks, head


def test_kat_tiny_forward_flops_match_the_analytic_count():
    model = timm.create_model("kat_tiny_patch16_224")
    counted = count_forward_flops(model, torch.zeros(1, 3, 224, 224))
    assert counted == pytest.approx(_kat_tiny_analytic_flops(), rel=0.01)
    assert model.training  # restored


class _Wrapper(lightning.LightningModule):
    def __init__(self, network: torch.nn.Module):
        super().__init__()
        self.network = network
        self.example_input_array = torch.zeros(1, 3, 224, 224)

    def forward(self, x):
        return self.network(x)


def test_lightning_model_summary_counts_the_rationals():
    summary = ModelSummary(_Wrapper(timm.create_model("kat_tiny_patch16_224")), max_depth=5)
    assert summary.total_flops == pytest.approx(_kat_tiny_analytic_flops(), rel=0.01)
    # each rational layer shows its own FLOPs, 21 per element: act1 on D channels, act2 on 4D
    assert sum(summary.flop_counts["network.blocks.0.mlp.act1"].values()) == 21 * 197 * 192
    assert sum(summary.flop_counts["network.blocks.11.mlp.act2"].values()) == 21 * 197 * 4 * 192


@pytest.mark.parametrize("rows", [8, 4096])  # plain ops, and compiled kernels on CPU
def test_rational_forward_and_backward_flops(rows):
    act = GroupRational(64, groups=8)
    x = torch.randn(rows, 64, requires_grad=True)
    with FlopCounterMode(display=False) as counter:
        act(x).sum().backward()
    assert counter.get_total_flops() == rows * 64 * (21 + 61)  # 6m + 6n + 7 = 61 backward (the kernel's count)


def test_kan_conv_flops_are_the_wide_convolution():
    """A KAN conv is one convolution over the (C * m)-channel expansion: 2 * out * (in * m * k^2) per output pixel."""
    conv = KANConv2d(8, 16, 3, padding=1, basis="chebyshev", basis_kwargs=dict(degree=3))
    m = 4 + 1  # degree 3 -> 4 functions, plus the base branch
    expected = 2 * 16 * 8 * m * 9 * 10 * 10
    counted = count_forward_flops(conv, torch.zeros(1, 8, 10, 10))
    # plus the small one-channel convolution that adds phi(0)'s share of the zero-padded border
    assert counted >= expected and counted == pytest.approx(expected, rel=0.03)
