"""Bottleneck KAN convolution and the VGG-11-style KAN networks of torch-conv-kan, with its ImageNet weights.

Kolmogorov-Arnold Convolutions: Design Principles and Empirical Studies, Drokin, arXiv 2407.01092,
https://github.com/IvanDrokin/torch-conv-kan (``kan_convs/kagn_conv.py``, ``kan_convs/kagn_bottleneck_conv.py``,
``models/vggkan.py``).

The bottleneck KAN conv keeps a KAN conv's base branch on the full input and moves the basis functions into a
squeezed space: ``act(norm(conv_kxk(silu(x)) + expand_1x1(KAN_kxk(squeeze_1x1(x)))))``, so the expensive part costs
``inner^2 * n * k^2`` instead of ``C_out * C_in * n * k^2`` parameters (inner = max(C_in, C_out) / dim_reduction,
at least ``min(min_inner_channels, C_in, C_out)``).

The three models of torch-conv-kan's ImageNet-1k table are registered with its weights (``.in1k``, from its
model hub pages; top-1 / top-5 as its README reports them, 224 px, resize 256 + center crop):

- ``kan_vgg11_kagn_v2`` (VGG KAGN 11v2, 59.1 / 82.29): VGG11v2 layout at width x2, KAGN conv (degree 5, SiLU base
  branch) -> InstanceNorm (affine) -> SiLU after every layer;
- ``kan_vgg11_kagn_v4`` (VGG KAGN 11v4, 61.17 / 83.26): the same on the VGG11v4 layout (last two layers 512 wide);
- ``kan_vgg11_bottleneck`` (VGG KAGN BN 11v4, 68.5 / 88.46, "7.25M"): bottleneck KAGN convs (``dim_reduction=8``)
  -> BatchNorm -> SiLU on VGG11v4 at width x2.

All end in global average pooling, dropout 0.25 and a linear classifier, and use torch-conv-kan's KAGN basis
(``basis="kagn"``: Gram-type polynomials of tanh x with a learnable scale on each recurrence coefficient, degree + 1
parameters per layer, SiLU on the values) and its zero border (padded pixels contribute 0), so their parameter
counts are the released ones and ``checkpoint_filter_fn`` maps the released ``model.safetensors`` onto them.
Training-time dropout differs: torch-conv-kan drops channels of tanh(x) (KAGN layers, 0.15) or injects noise into
the Gram values (bottleneck layers, 0.05), kanvision offers DropKAN (``kan_drop_rate``, off by default); evaluation
is unaffected. InstanceNorm needs more than one pixel per channel while training: at least 64 px for the
InstanceNorm models (output stride 32).
"""

from __future__ import annotations

from collections.abc import Sequence

from timm.layers import ClassifierHead
from timm.models import generate_default_cfgs, register_model
from torch import Tensor, nn

from kanvision.layers import KANConv2d
from kanvision.layers.activations import resolve_activation
from kanvision.layers.helpers import create_activation, create_norm
from kanvision.models._cfg import imagenet_cfg
from kanvision.models._classifier import SequentialFeaturesMixin
from kanvision.models._helpers import build_model, fit_state_dict
from kanvision.models.kan_cnn import kagn_conv_weight_from_torch_conv_kan

__all__ = ["BottleneckKANConv2d", "KANVGG", "VGG_CONFIGS", "bottleneck_inner_channels", "checkpoint_filter_fn"]

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
        norm_layer: str | None = "batchnorm",
        act_layer: str | None = "silu",
        kan_drop_rate: float = 0.0,
        border: str = "zero",
        norm_affine: bool = True,
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
        self.norm = create_norm(norm_layer, out_channels, norm_affine)
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
        norm_layer, norm_affine: the norm after every KAN conv: ``batchnorm`` (default) or ``instancenorm``
            (torch-conv-kan's default, used by its released VGG KAGN 11v2/11v4), with or without affine parameters.
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
        norm_layer: str | None = "batchnorm",
        norm_affine: bool = True,
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
                        norm_layer=norm_layer,
                        norm_affine=norm_affine,
                        **kan_kwargs,
                    )  # fmt: skip
                )
            else:
                act = create_activation(act_layer)
                conv = KANConv2d(prev, width, 3, 1, 1, bias=False, drop_rate=kan_drop_rate, **kan_kwargs)
                layers.append(nn.Sequential(conv, create_norm(norm_layer, width, norm_affine), act))
            prev = width
        self.features = nn.Sequential(*layers)
        self.feature_info.append(dict(num_chs=prev, reduction=reduction, module=f"features.{len(layers) - 1}"))
        self.num_features = self.head_hidden_size = prev
        self.head = ClassifierHead(prev, num_classes, pool_type=global_pool, drop_rate=drop_rate)


def checkpoint_filter_fn(state_dict: dict[str, Tensor], model: KANVGG) -> dict[str, Tensor]:
    """Map a torch-conv-kan VGG checkpoint (``VGGKAGN`` / ``VGGKAGN_BN``, its ``PyTorchModelHubMixin``
    ``model.safetensors``) onto :class:`KANVGG`; a kanvision state dict passes through unchanged.

    torch-conv-kan keeps each layer's pieces in per-group lists (groups = 1 here): ``features.N.base_conv.0``,
    ``poly_weights`` (1, C_out, (D + 1) C_in, k, k) with degree-major channels, ``beta_weights``,
    ``layer_norm.0``, and in the bottleneck layer ``inner_proj.0`` / ``out_proj.0``; the head is
    ``classifier.1`` (after a dropout). Any key that does not fit is a ValueError listing every mismatch.
    """
    state_dict = state_dict.get("state_dict", state_dict)
    if not any(".poly_weights" in k for k in state_dict):
        return fit_state_dict(state_dict, model)
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        if key.startswith("classifier.1."):
            out["head.fc." + key.removeprefix("classifier.1.")] = value
            continue
        index, _, name = key.removeprefix("features.").partition(".")
        if not key.startswith("features.") or not index.isdigit() or int(index) >= len(model.features):
            out[key] = value  # reported below as not in the model
            continue
        prefix = f"features.{index}."
        layer = model.features[int(index)]
        if name in ("poly_weights", "base_conv.0.weight"):
            continue  # merged below, once per layer
        if isinstance(layer, BottleneckKANConv2d):
            name = name.replace("inner_proj.0.", "squeeze.").replace("out_proj.0.", "expand.")
            name = name.replace("layer_norm.0.", "norm.").replace("beta_weights", "kan.basis.beta_weights")
            out[prefix + name] = value
        else:  # Sequential(KANConv2d, norm, act)
            name = name.replace("layer_norm.0.", "1.").replace("beta_weights", "0.basis.beta_weights")
            out[prefix + name] = value
        if name in ("kan.basis.beta_weights", "0.basis.beta_weights") and prefix + "poly_weights" in state_dict:
            degree = value.numel() - 1
            poly = state_dict[prefix + "poly_weights"]
            base = state_dict.get(prefix + "base_conv.0.weight")
            if isinstance(layer, BottleneckKANConv2d):
                out[prefix + "kan.weight"] = kagn_conv_weight_from_torch_conv_kan(poly, None, degree)
                if base is not None:
                    out[prefix + "base_conv.weight"] = base
            else:
                out[prefix + "0.weight"] = kagn_conv_weight_from_torch_conv_kan(poly, base, degree)
    return fit_state_dict(out, model, source=state_dict)


def _cfg(**kwargs) -> dict:
    family = dict(
        interpolation="bilinear", first_conv="features.0.base_conv", paper_ids="arXiv:2407.01092", license="mit"
    )
    return imagenet_cfg(family, **kwargs)


default_cfgs = generate_default_cfgs(
    {
        # torch-conv-kan's ImageNet-1k weights (its README: 59.1 / 61.17 / 68.5% top-1, 224 px, resize 256)
        "kan_vgg11_kagn_v2.in1k": _cfg(
            hf_hub_id="brivangl/vgg_kagn11_v2", hf_hub_filename="model.safetensors", first_conv="features.0.0"
        ),
        "kan_vgg11_kagn_v4.in1k": _cfg(
            hf_hub_id="brivangl/vgg_kagn11_v4", hf_hub_filename="model.safetensors", first_conv="features.0.0"
        ),
        "kan_vgg11_bottleneck.in1k": _cfg(hf_hub_id="brivangl/vgg_kagn_bn11_v4", hf_hub_filename="model.safetensors"),
    }
)


def _create_kan_vgg(variant: str, pretrained: bool = False, **kwargs) -> KANVGG:
    # every feature map by default, as timm's VGGs: one before each max pool and the last
    cfg = kwargs.get("cfg", "vgg11v4")
    stages = 1 + list(VGG_CONFIGS.get(cfg, ()) if isinstance(cfg, str) else cfg).count("M")
    return build_model(
        KANVGG, variant, pretrained, pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(flatten_sequential=True, out_indices=tuple(range(stages))), **kwargs,
    )  # fmt: skip


# torch-conv-kan's released ImageNet VGGs: Gram degree 5 (its KAGN basis), width x2, dropout 0.25 before the head
_RELEASED = dict(width_scale=2, basis="kagn", basis_kwargs=dict(degree=5), drop_rate=0.25)


@register_model
def kan_vgg11_kagn_v2(pretrained: bool = False, **kwargs) -> KANVGG:
    """torch-conv-kan's VGG KAGN 11v2 (ImageNet 59.1% top-1): KAGN conv + InstanceNorm (affine) + SiLU."""
    model_args = dict(cfg="vgg11v2", conv_type="kan", norm_layer="instancenorm", **_RELEASED)
    return _create_kan_vgg("kan_vgg11_kagn_v2", pretrained, **dict(model_args, **kwargs))


@register_model
def kan_vgg11_kagn_v4(pretrained: bool = False, **kwargs) -> KANVGG:
    """torch-conv-kan's VGG KAGN 11v4 (ImageNet 61.17% top-1): KAGN conv + InstanceNorm (affine) + SiLU."""
    model_args = dict(cfg="vgg11v4", conv_type="kan", norm_layer="instancenorm", **_RELEASED)
    return _create_kan_vgg("kan_vgg11_kagn_v4", pretrained, **dict(model_args, **kwargs))


@register_model
def kan_vgg11_bottleneck(pretrained: bool = False, **kwargs) -> KANVGG:
    """torch-conv-kan's VGG KAGN BN 11v4 (ImageNet 68.5% top-1): bottleneck KAGN (degree 5) KAN convs; 7,252,115."""
    model_args = dict(cfg="vgg11v4", dim_reduction=8.0, **_RELEASED)
    return _create_kan_vgg("kan_vgg11_bottleneck", pretrained, **dict(model_args, **kwargs))
