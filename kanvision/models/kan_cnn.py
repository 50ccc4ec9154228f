"""Convolutional KAN networks: stacks of KAN convolutions (any basis) with BatchNorm.

Convolutional Kolmogorov-Arnold Networks, Bodner et al., arXiv 2406.13155
(https://github.com/AntonioTepsich/Convolutional-KANs); the basis-then-conv layers follow
torch-conv-kan (Drokin, arXiv 2407.01092, https://github.com/IvanDrokin/torch-conv-kan).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from timm.layers import ClassifierHead
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import Tensor, nn

from kanvision.layers import KANConv2d

__all__ = ["KANConvNet"]


class KANConvNet(nn.Module):
    """A plain stack of 3x3 KAN convolutions, each followed by BatchNorm, then pooling and a linear head.

    BatchNorm keeps every KAN conv's input near N(0, 1), inside the bases' working ranges (torch-conv-kan
    found BatchNorm, not InstanceNorm, is what makes such stacks train).
    """

    def __init__(
        self,
        widths: Sequence[int] = (16, 32),
        strides: Sequence[int] = (1, 2),
        in_chans: int = 3,
        num_classes: int = 1000,
        basis: str = "chebyshev",
        basis_kwargs: dict | None = None,
        base_activation: str | None = "silu",
        kan_drop_rate: float = 0.0,
        drop_rate: float = 0.0,
        global_pool: str = "avg",
    ):
        super().__init__()
        if len(widths) != len(strides) or not widths:
            raise ValueError(f"widths and strides must be non-empty and of equal length, got {widths!r}, {strides!r}")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.grad_checkpointing = False
        layers: list[nn.Module] = []
        prev = in_chans
        for width, stride in zip(widths, strides, strict=True):
            layers += [
                KANConv2d(
                    prev,
                    width,
                    3,
                    stride=stride,
                    padding=1,
                    bias=False,
                    basis=basis,
                    basis_kwargs=basis_kwargs,
                    base_activation=base_activation,
                    drop_rate=kan_drop_rate,
                ),
                nn.BatchNorm2d(width),
            ]
            prev = width
        self.features = nn.Sequential(*layers)
        self.num_features = self.head_hidden_size = prev
        self.head = ClassifierHead(prev, num_classes, pool_type=global_pool, drop_rate=drop_rate)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(stem=r"^features\.0", blocks=r"^features\.(\d+)")

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        self.head.reset(num_classes, pool_type=global_pool)

    def forward_features(self, x: Tensor) -> Tensor:
        if self.grad_checkpointing and torch.is_grad_enabled():
            from timm.models import checkpoint_seq

            return checkpoint_seq(self.features, x)
        return self.features(x)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


def _cfg(**kwargs) -> dict:
    return {
        "url": "",
        "num_classes": 1000,
        "input_size": (3, 32, 32),
        "pool_size": None,
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": (0.5, 0.5, 0.5),
        "std": (0.5, 0.5, 0.5),
        "first_conv": "features.0",
        "classifier": "head.fc",
        **kwargs,
    }


default_cfgs = generate_default_cfgs(
    {"kan_cnn_tiny.untrained": _cfg(num_classes=10, input_size=(1, 8, 8), mean=(0.5,), std=(0.5,))}
)


def _create_kan_cnn(variant: str, pretrained: bool = False, **kwargs) -> KANConvNet:
    return build_model_with_cfg(KANConvNet, variant, pretrained, feature_cfg=dict(flatten_sequential=True), **kwargs)


@register_model
def kan_cnn_tiny(pretrained: bool = False, **kwargs) -> KANConvNet:
    """Three 3x3 KAN convs (16, 32, 64 channels): the demo network for small images such as the 8x8 digits."""
    model_args = dict(widths=(16, 32, 64), strides=(1, 2, 2))
    return _create_kan_cnn("kan_cnn_tiny", pretrained, **dict(model_args, **kwargs))
