"""KAN-ResNets: ResNet-18/34 whose spatial convolutions are KAN convolutions (any basis) with BatchNorm.

The ConvKAN idea of Bodner et al. (Convolutional Kolmogorov-Arnold Networks, arXiv 2406.13155,
https://github.com/AntonioTepsich/Convolutional-KANs) applied to the ResNet of He et al. (arXiv 1512.03385), in
the basis-then-conv form of torch-conv-kan (Drokin, arXiv 2407.01092, https://github.com/IvanDrokin/torch-conv-kan,
``models/reskanet.py``), with BatchNorm after every KAN conv (torch-conv-kan: BatchNorm, not InstanceNorm) and a
SiLU base branch in every KAN conv.

Layout (timm ``resnet18``/``resnet34`` topology, so the parameter count is checkable against timm's): stem KAN conv
(7x7 stride 2 + 3x3 max pool for 224 px, ``stem_type="imagenet"``; 3x3 stride 1 without pooling for 32 px,
``stem_type="cifar"``) + BN, then four stages of basic blocks ``BN(KAN3x3(BN(KAN3x3(x)))) + shortcut(x)`` with
1x1 conv + BN projection shortcuts. There is no ReLU: the KAN convs are the non-linearity (each applies learned
univariate functions to its input), so ``act_layer`` (after BN1 and after the residual sum) is None by default.
The last BN of each block starts at zero (``zero_init_last``), so every block starts as its shortcut.

Each KAN conv has ``m = basis.num_functions + 1`` times the parameters of the conv it replaces (Chebyshev degree 3:
5x; B-spline grid 5 order 3: 9x; RBF 8 centres: 9x), so ``kan_resnet18`` holds about 56M parameters with the
default Chebyshev basis. ``basis``/``basis_kwargs`` select any basis of ``kanvision.layers.list_bases()``; the
grid bases default to the range [-1, 1] (B-spline) or [-2, 2] (RBF), outside which only the base branch responds:
widen it with e.g. ``basis_kwargs=dict(grid_range=(-3, 3))``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from timm.layers import ClassifierHead, DropPath
from timm.models import checkpoint_seq, generate_default_cfgs, register_model
from torch import Tensor, nn

from kanvision.layers import KANConv2d
from kanvision.layers.helpers import create_activation, create_norm
from kanvision.models._cfg import imagenet_cfg
from kanvision.models._classifier import ClassifierMixin
from kanvision.models._helpers import build_model, fit_state_dict

__all__ = ["KANBasicBlock", "KANResNet"]

STEM_TYPES = ("imagenet", "cifar")


class KANBasicBlock(nn.Module):
    """ResNet basic block with KAN convs: ``act(drop_path(BN(KAN3x3(act(BN(KAN3x3(x)))))) + shortcut(x))``."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int = 1,
        kan_kwargs: dict | None = None,
        act_layer: str | None = None,
        drop_path_rate: float = 0.0,
        zero_init_last: bool = True,
        norm_layer: str | None = "batchnorm",
        norm_affine: bool = True,
    ):
        super().__init__()
        kan_kwargs = kan_kwargs or {}
        self.conv1 = KANConv2d(in_chs, out_chs, 3, stride, 1, bias=False, **kan_kwargs)
        self.bn1 = create_norm(norm_layer, out_chs, norm_affine)
        self.act1 = create_activation(act_layer)
        self.conv2 = KANConv2d(out_chs, out_chs, 3, 1, 1, bias=False, **kan_kwargs)
        self.bn2 = create_norm(norm_layer, out_chs, norm_affine)
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()
        self.act2 = create_activation(act_layer)
        self.downsample = None
        if stride != 1 or in_chs != out_chs:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_chs, out_chs, 1, stride, bias=False), create_norm(norm_layer, out_chs, norm_affine)
            )  # fmt: skip
        if zero_init_last and getattr(self.bn2, "weight", None) is not None:
            nn.init.zeros_(self.bn2.weight)

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.bn2(self.conv2(x))
        return self.act2(self.drop_path(x) + shortcut)


class KANResNet(ClassifierMixin, nn.Module):
    """ResNet with KAN convolutions (see the module docstring); timm's model API.

    Args:
        layers: basic blocks per stage ((2, 2, 2, 2) ResNet-18, (3, 4, 6, 3) ResNet-34).
        channels: stage widths.
        stem_type: ``imagenet`` (7x7/2 KAN conv + 3x3/2 max pool, output stride 32) or ``cifar`` (3x3/1 KAN conv,
            output stride 8, for 32 px input).
        basis, basis_kwargs, base_activation, kan_drop_rate: of every KAN conv (``kan_drop_rate`` is DropKAN).
        act_layer: optional activation after BN1 and after each residual sum (None: the KAN convs only).
        drop_rate, drop_path_rate: classifier dropout and stochastic depth (linearly increasing per block).
        border: what zero-padded pixels contribute, ``"zero"`` (torch-conv-kan's convention, default) or
            ``"function"`` (phi(0)); see :class:`~kanvision.layers.KANConv2d`.
        norm_layer, norm_affine: the norm after every conv, ``batchnorm`` (default, torch-conv-kan's ResKANet),
            ``instancenorm`` or None, with affine parameters or not (the choice torch-conv-kan's KAN layers offer).
    """

    def __init__(
        self,
        layers: Sequence[int] = (2, 2, 2, 2),
        channels: Sequence[int] = (64, 128, 256, 512),
        stem_type: str = "imagenet",
        stem_width: int = 64,
        in_chans: int = 3,
        num_classes: int = 1000,
        basis: str = "chebyshev",
        basis_kwargs: dict | None = None,
        base_activation: str | None = "silu",
        act_layer: str | None = None,
        kan_drop_rate: float = 0.0,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        zero_init_last: bool = True,
        global_pool: str = "avg",
        border: str = "zero",
        norm_layer: str | None = "batchnorm",
        norm_affine: bool = True,
    ):
        super().__init__()
        if stem_type not in STEM_TYPES:
            raise ValueError(f"stem_type must be one of {STEM_TYPES}, got {stem_type!r}")
        if len(layers) != len(channels) or not layers or any(n < 1 for n in layers):
            raise ValueError(f"layers and channels must be equally long and layers >= 1, got {layers!r}, {channels!r}")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.grad_checkpointing = False
        kan_kwargs = dict(
            basis=basis, basis_kwargs=basis_kwargs, base_activation=base_activation, drop_rate=kan_drop_rate,
            border=border,
        )  # fmt: skip

        # registration order = execution order (timm's FeatureListNet runs the children in this order)
        stem_kernel, stem_stride = (7, 2) if stem_type == "imagenet" else (3, 1)
        self.conv1 = KANConv2d(
            in_chans, stem_width, stem_kernel, stem_stride, stem_kernel // 2, bias=False, **kan_kwargs
        )
        self.bn1 = create_norm(norm_layer, stem_width, norm_affine)
        self.act1 = create_activation(act_layer)
        self.maxpool = nn.MaxPool2d(3, 2, 1) if stem_type == "imagenet" else nn.Identity()
        reduction = 4 if stem_type == "imagenet" else 1
        self.feature_info = [dict(num_chs=stem_width, reduction=max(reduction // 2, 1), module="bn1")]

        total_blocks, block_idx = sum(layers), 0
        prev = stem_width
        for i, (depth, width) in enumerate(zip(layers, channels, strict=True)):
            stride = 1 if i == 0 else 2
            blocks = []
            for j in range(depth):
                dpr = drop_path_rate * block_idx / max(total_blocks - 1, 1)
                blocks.append(
                    KANBasicBlock(
                        prev, width, stride if j == 0 else 1, kan_kwargs, act_layer, dpr, zero_init_last, norm_layer,
                        norm_affine,
                    )
                )  # fmt: skip
                prev, block_idx = width, block_idx + 1
            reduction *= stride
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            self.feature_info.append(dict(num_chs=width, reduction=reduction, module=f"layer{i + 1}"))
        self.num_stages = len(layers)
        self.num_features = self.head_hidden_size = prev
        self.head = ClassifierHead(prev, num_classes, pool_type=global_pool, drop_rate=drop_rate)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(stem=r"^conv1|^bn1", blocks=r"^layer(\d+)" if coarse else r"^layer(\d+)\.(\d+)")

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        for i in range(self.num_stages):
            stage = getattr(self, f"layer{i + 1}")
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint_seq(stage, x)
            else:
                x = stage(x)
        return x

    def _prune_layers_after(self, index: int) -> None:
        # empty Sequentials, not deleted, as timm's ResNet: forward_features still runs every stage name
        for i in range(index + 1, self.num_stages + 1):
            setattr(self, f"layer{i}", nn.Sequential())
        if index == 0:  # the first feature map is bn1's output
            self.act1, self.maxpool = nn.Identity(), nn.Identity()


def checkpoint_filter_fn(state_dict: dict[str, Tensor], model: KANResNet) -> dict[str, Tensor]:
    """A kanvision checkpoint of ``model``'s architecture, checked key by key (a ValueError lists every mismatch)."""
    return fit_state_dict(state_dict, model)


def _cfg(**kwargs) -> dict:
    return imagenet_cfg(dict(interpolation="bicubic", first_conv="conv1", paper_ids="arXiv:2406.13155"), **kwargs)


def _cifar_cfg(**kwargs) -> dict:
    return _cfg(
        num_classes=10, input_size=(3, 32, 32), pool_size=(4, 4), crop_pct=1.0, interpolation="bilinear",
        mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616), **kwargs,
    )  # fmt: skip


default_cfgs = generate_default_cfgs(
    {
        "kan_resnet18.untrained": _cfg(),
        "kan_resnet34.untrained": _cfg(),
        "kan_resnet18_cifar.untrained": _cifar_cfg(),
        "kan_resnet34_cifar.untrained": _cifar_cfg(),
    }
)


def _create_kan_resnet(
    variant: str, layers: tuple[int, ...], stem_type: str, pretrained: bool = False, /, **kwargs
) -> KANResNet:
    # positional-only, so that a caller's layers= or stem_type= lands in kwargs and overrides the preset
    model_args = dict(layers=layers, stem_type=stem_type)
    return build_model(
        KANResNet, variant, pretrained, pretrained_filter_fn=checkpoint_filter_fn, **dict(model_args, **kwargs)
    )


@register_model
def kan_resnet18(pretrained: bool = False, **kwargs) -> KANResNet:
    """KAN-ResNet-18, 224 px stem; any basis (default Chebyshev degree 3: 5x a ResNet-18's conv parameters)."""
    return _create_kan_resnet("kan_resnet18", (2, 2, 2, 2), "imagenet", pretrained, **kwargs)


@register_model
def kan_resnet34(pretrained: bool = False, **kwargs) -> KANResNet:
    """KAN-ResNet-34, 224 px stem; any basis (default Chebyshev degree 3)."""
    return _create_kan_resnet("kan_resnet34", (3, 4, 6, 3), "imagenet", pretrained, **kwargs)


@register_model
def kan_resnet18_cifar(pretrained: bool = False, **kwargs) -> KANResNet:
    """KAN-ResNet-18 with the CIFAR stem (3x3 stride 1, no max pool) for 32 px input."""
    return _create_kan_resnet("kan_resnet18_cifar", (2, 2, 2, 2), "cifar", pretrained, **kwargs)


@register_model
def kan_resnet34_cifar(pretrained: bool = False, **kwargs) -> KANResNet:
    """KAN-ResNet-34 with the CIFAR stem (3x3 stride 1, no max pool) for 32 px input."""
    return _create_kan_resnet("kan_resnet34_cifar", (3, 4, 6, 3), "cifar", pretrained, **kwargs)
