"""Bottleneck KAN convolution and the VGG-11-style bottleneck KAN network of torch-conv-kan.

Kolmogorov-Arnold Convolutions: Design Principles and Empirical Studies, Drokin, arXiv 2407.01092,
https://github.com/IvanDrokin/torch-conv-kan (``kan_convs/kagn_bottleneck_conv.py``, ``models/vggkan.py``).

The bottleneck KAN conv keeps a KAN conv's base branch on the full input and moves the basis functions into a
squeezed space: ``act(BN(conv_kxk(silu(x)) + expand_1x1(KAN_kxk(squeeze_1x1(x)))))``, so the expensive part costs
``inner^2 * n * k^2`` instead of ``C_out * C_in * n * k^2`` parameters (inner = max(C_in, C_out) / dim_reduction,
at least ``min(min_inner_channels, C_in, C_out)``). ``kan_vgg11_bottleneck`` is the design released as
"VGG KAGN BN 11v4" (ImageNet-1k 68.5% top-1, 88.46% top-5 with "7.25M" parameters): the VGG11v4 layout
(16, M, 32, M, 64, 64, M, 128, 128, M, 128, 128, M, 256, 256) at width x2, Gram polynomials of degree 5,
``dim_reduction=8``, BatchNorm + SiLU after every layer, global average pooling, dropout and a linear classifier.

The KAN convs use torch-conv-kan's KAGN basis (``basis="kagn"``: Gram-type polynomials of tanh x with a learnable
scale on each recurrence coefficient, ``degree + 1`` parameters per layer, and SiLU applied to the values) and its
zero border (padded pixels contribute 0), so ``kan_vgg11_bottleneck`` has the released 7,252,115 parameters
(``basis="gram"``, kanvision's fixed normalised Gram basis, gives 60 fewer). Its ``NoiseInjection`` dropout is
replaced by the layers' DropKAN (``kan_drop_rate``).
"""

from __future__ import annotations

from collections.abc import Sequence

from timm.layers import ClassifierHead
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import Tensor, nn

from kanvision.layers import KANConv2d
from kanvision.layers.kan_layer import resolve_activation
from kanvision.models._classifier import SequentialFeaturesMixin
from kanvision.models.kan_cnn import create_activation

__all__ = ["BottleneckKANConv2d", "KANVGG", "VGG_CONFIGS", "bottleneck_inner_channels"]

VGG_CONFIGS: dict[str, tuple[int | str, ...]] = {
    # torch-conv-kan's VGG layouts ("M": 2x2 max pool); widths are multiplied by the model's width_scale
    "vgg11": (16, "M", 32, "M", 64, 64, "M", 128, 128, "M", 128, 128),
    "vgg11v2": (16, "M", 32, "M", 64, 64, "M", 128, 128, "M", 128, 128, "M", 128, 128),
    "vgg11v4": (16, "M", 32, "M", 64, 64, "M", 128, 128, "M", 128, 128, "M", 256, 256),
}
CONV_TYPES = ("bottleneck", "kan")


def bottleneck_inner_channels(in_channels: int, out_channels: int, dim_reduction: float, min_inner: int) -> int:
    """torch-conv-kan's squeezed width: max(C_in, C_out) / dim_reduction, raised to min(min_inner, C_in, C_out)."""
    inner = int(max(in_channels / dim_reduction, out_channels / dim_reduction))
    return inner if inner >= min_inner else min(min_inner, in_channels, out_channels)


class BottleneckKANConv2d(nn.Module):
    """Bottleneck KAN conv (Drokin, arXiv 2407.01092): 1x1 squeeze -> KAN conv -> 1x1 expand, plus a base branch.

    ``y = act(norm(base(b(x)) + expand(KAN(squeeze(x)))))`` with ``base`` a plain k x k conv on b(x) = SiLU(x)
    (a KAN conv's base branch, kept at full width), ``squeeze`` a 1x1 conv to ``inner`` channels, ``KAN`` a
    :class:`~kanvision.layers.KANConv2d` ``inner -> inner`` over the basis only (no base branch of its own) with
    the block's kernel, stride, padding and dilation, and ``expand`` a 1x1 conv to ``out_channels``; no biases.

    Parameters: ``C_out C_in k^2 + C_in inner + inner^2 n k^2 + inner C_out`` (+ the norm's 2 C_out), n the
    basis' number of functions; ``inner`` from :func:`bottleneck_inner_channels`. ``border="zero"``: padded
    pixels contribute 0 to the KAN conv, as in torch-conv-kan (see KANConv2d).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        dilation: int = 1,
        dim_reduction: float = 8.0,
        min_inner_channels: int = 16,
        basis: str = "gram",
        basis_kwargs: dict | None = None,
        base_activation: str | None = "silu",
        norm_layer: type[nn.Module] | None = nn.BatchNorm2d,
        act_layer: str | None = "silu",
        kan_drop_rate: float = 0.0,
        border: str = "zero",
    ):
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not dim_reduction > 0:
            raise ValueError(f"dim_reduction must be > 0, got {dim_reduction!r}")
        padding = dilation * (kernel_size - 1) // 2 if padding is None else padding
        self.inner_channels = bottleneck_inner_channels(in_channels, out_channels, dim_reduction, min_inner_channels)
        inner = self.inner_channels
        self.base_activation = resolve_activation(base_activation)
        self.base_conv = None
        if self.base_activation is not None:
            self.base_conv = nn.Conv2d(
                in_channels, out_channels, kernel_size, stride, padding, dilation, bias=False
            )  # fmt: skip
        self.squeeze = nn.Conv2d(in_channels, inner, 1, bias=False)
        self.kan = KANConv2d(
            inner, inner, kernel_size, stride, padding, dilation, bias=False, basis=basis, basis_kwargs=basis_kwargs,
            base_activation=None, drop_rate=kan_drop_rate, border=border,
        )  # fmt: skip
        self.expand = nn.Conv2d(inner, out_channels, 1, bias=False)
        self.norm = norm_layer(out_channels) if norm_layer is not None else nn.Identity()
        self.act = create_activation(act_layer)

    def forward(self, x: Tensor) -> Tensor:
        y = self.expand(self.kan(self.squeeze(x)))
        if self.base_conv is not None:
            y = y + self.base_conv(self.base_activation(x))
        return self.act(self.norm(y))


class KANVGG(SequentialFeaturesMixin, nn.Module):
    """VGG-style stack of (bottleneck) KAN convs with max pooling, global average pooling and a linear head.

    Args:
        cfg: a key of :data:`VGG_CONFIGS` or a sequence of widths and ``"M"`` (2x2 max pool).
        width_scale: multiplier of every width (the released 11v4 model: 2).
        conv_type: ``bottleneck`` (:class:`BottleneckKANConv2d`, BN + SiLU inside) or ``kan`` (KANConv2d with its
            own base branch, then BN + SiLU, torch-conv-kan's plain KAGN layer).
        basis, basis_kwargs, base_activation, kan_drop_rate: of every KAN conv.
        dim_reduction, min_inner_channels: bottleneck width (``bottleneck`` only).
        border: what zero-padded pixels contribute: ``"zero"`` (torch-conv-kan's convention, default) or
            ``"function"`` (phi(0)); see :class:`~kanvision.layers.KANConv2d`.
    """

    def __init__(
        self,
        cfg: str | Sequence[int | str] = "vgg11v4",
        width_scale: int = 1,
        conv_type: str = "bottleneck",
        in_chans: int = 3,
        num_classes: int = 1000,
        basis: str = "gram",
        basis_kwargs: dict | None = None,
        base_activation: str | None = "silu",
        dim_reduction: float = 8.0,
        min_inner_channels: int = 16,
        act_layer: str | None = "silu",
        kan_drop_rate: float = 0.0,
        drop_rate: float = 0.0,
        global_pool: str = "avg",
        border: str = "zero",
    ):
        super().__init__()
        if isinstance(cfg, str):
            if cfg not in VGG_CONFIGS:
                raise ValueError(f"unknown VGG cfg {cfg!r}; valid: {sorted(VGG_CONFIGS)} or a sequence of ints/'M'")
            cfg = VGG_CONFIGS[cfg]
        if conv_type not in CONV_TYPES:
            raise ValueError(f"conv_type must be one of {CONV_TYPES}, got {conv_type!r}")
        if not any(isinstance(v, int) for v in cfg) or any(not isinstance(v, int) and v != "M" for v in cfg):
            raise ValueError(f"cfg must hold positive ints (widths) and 'M' (max pool), got {cfg!r}")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.grad_checkpointing = False
        kan_kwargs = dict(basis=basis, basis_kwargs=basis_kwargs, base_activation=base_activation, border=border)
        layers: list[nn.Module] = []
        self.feature_info = []
        prev, reduction = in_chans, 1
        for v in cfg:
            if v == "M":
                self.feature_info.append(dict(num_chs=prev, reduction=reduction, module=f"features.{len(layers) - 1}"))
                layers.append(nn.MaxPool2d(2, 2))
                reduction *= 2
                continue
            width = v * width_scale
            if conv_type == "bottleneck":
                layers.append(
                    BottleneckKANConv2d(
                        prev,
                        width,
                        3,
                        dim_reduction=dim_reduction,
                        min_inner_channels=min_inner_channels,
                        act_layer=act_layer,
                        kan_drop_rate=kan_drop_rate,
                        **kan_kwargs,
                    )  # fmt: skip
                )
            else:
                act = create_activation(act_layer)
                conv = KANConv2d(prev, width, 3, 1, 1, bias=False, drop_rate=kan_drop_rate, **kan_kwargs)
                layers.append(nn.Sequential(conv, nn.BatchNorm2d(width), act))
            prev = width
        self.features = nn.Sequential(*layers)
        self.feature_info.append(dict(num_chs=prev, reduction=reduction, module=f"features.{len(layers) - 1}"))
        self.num_features = self.head_hidden_size = prev
        self.head = ClassifierHead(prev, num_classes, pool_type=global_pool, drop_rate=drop_rate)


def _cfg(**kwargs) -> dict:
    return {
        "url": "",
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": (7, 7),
        "crop_pct": 0.875,
        "interpolation": "bilinear",
        "mean": (0.485, 0.456, 0.406),
        "std": (0.229, 0.224, 0.225),
        "first_conv": "features.0.base_conv",
        "classifier": "head.fc",
        "paper_ids": "arXiv:2407.01092",
        **kwargs,
    }


default_cfgs = generate_default_cfgs({"kan_vgg11_bottleneck.untrained": _cfg()})


def _create_kan_vgg(variant: str, pretrained: bool = False, **kwargs) -> KANVGG:
    return build_model_with_cfg(KANVGG, variant, pretrained, feature_cfg=dict(flatten_sequential=True), **kwargs)


@register_model
def kan_vgg11_bottleneck(pretrained: bool = False, **kwargs) -> KANVGG:
    """torch-conv-kan's VGG KAGN BN 11v4 (ImageNet 68.5% top-1): bottleneck KAGN (degree 5) KAN convs; 7,252,115."""
    model_args = dict(cfg="vgg11v4", width_scale=2, basis="kagn", basis_kwargs=dict(degree=5), dim_reduction=8.0)
    return _create_kan_vgg("kan_vgg11_bottleneck", pretrained, **dict(model_args, **kwargs))
