"""Plain networks that kanvision's models are compared with, where timm has none: ResNets with the CIFAR stem.

``resnet18_cifar`` / ``resnet34_cifar`` are timm's ``resnet18`` / ``resnet34`` with the stem of He et al. 2016
(arXiv 1512.03385, section 4.2) for 32 px images: a 3x3 stride-1 first convolution and no max pooling, so stage 1 sees
the full 32 x 32 image. They are the backbones of ``rkan_resnet*_cifar`` and the layout of ``kan_resnet*_cifar``, and
their baselines in ``kanvision-bench`` and the CIFAR recipes. They are not listed among kanvision's own models.
"""

from __future__ import annotations

from timm.models import ResNet, build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.resnet import BasicBlock
from torch import nn

__all__ = ["use_cifar_stem"]


def use_cifar_stem(backbone: nn.Module, device=None, dtype=None) -> None:
    """Give a timm ResNet the CIFAR stem in place: a 3x3 stride-1 first conv (new weights) and no max pooling."""
    if not isinstance(backbone, ResNet):
        raise ValueError(f"the CIFAR stem is defined for ResNet-family backbones, got {type(backbone).__name__}")
    old = backbone.conv1
    if not isinstance(old, nn.Conv2d):
        raise ValueError("the CIFAR stem needs a single-conv ResNet stem (stem_type ''), got a deep stem")
    backbone.conv1 = nn.Conv2d(old.in_channels, old.out_channels, 3, 1, 1, bias=False, device=device, dtype=dtype)
    backbone.maxpool = nn.Identity()
    for info in getattr(backbone, "feature_info", []):  # the stem no longer halves the image, nor the max pooling
        info["reduction"] = max(1, info["reduction"] // 4)


def _create_resnet_cifar(variant: str, layers: tuple[int, ...], pretrained: bool = False, **kwargs) -> ResNet:
    if kwargs.pop("features_only", False):
        raise ValueError(f"{variant} does not support features_only (its stem is replaced after timm builds it)")
    model = build_model_with_cfg(ResNet, variant, pretrained, block=BasicBlock, layers=layers, **kwargs)
    use_cifar_stem(model)
    return model


def _cfg() -> dict:
    return dict(
        input_size=(3, 32, 32), num_classes=10, crop_pct=1.0, interpolation="bilinear", mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616), first_conv="conv1", classifier="fc",
    )  # fmt: skip


default_cfgs = generate_default_cfgs({"resnet18_cifar": _cfg(), "resnet34_cifar": _cfg()})


@register_model
def resnet18_cifar(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-18 with the CIFAR stem, 10 classes by default."""
    return _create_resnet_cifar("resnet18_cifar", (2, 2, 2, 2), pretrained, **{"num_classes": 10, **kwargs})


@register_model
def resnet34_cifar(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-34 with the CIFAR stem, 10 classes by default."""
    return _create_resnet_cifar("resnet34_cifar", (3, 4, 6, 3), pretrained, **{"num_classes": 10, **kwargs})
