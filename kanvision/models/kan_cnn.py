"""Convolutional KAN networks: plain stacks of KAN convolutions and Bodner et al.'s small 28x28 architectures.

Papers and code:

- Convolutional Kolmogorov-Arnold Networks, Bodner, Tepsich, Spolski & Pourteau, arXiv 2406.13155
  (https://github.com/AntonioTepsich/Convolutional-KANs, folder ``architectures_28x28``): KKAN and KANC MLP.
- Kolmogorov-Arnold Convolutions: Design Principles and Empirical Studies, Drokin, arXiv 2407.01092
  (https://github.com/IvanDrokin/torch-conv-kan, ``models/baselines``): the 4- and 8-layer KACN (Chebyshev,
  after ChebyKAN, Sidharth & Gokul arXiv 2405.07200) and KAGN (Gram) baselines.

Every KAN convolution here is :class:`~kanvision.layers.KANConv2d` (per-pixel basis expansion, then one
convolution; the channel-shared ones, :class:`~kanvision.layers.SharedKANConv2d`, run one over the channels folded
into the batch). Bodner's networks use no padding, so they are the same function as his unfold-and-loop layers at a
small fraction of their cost. torch-conv-kan's stacks use its border convention, ``border="zero"``: the basis is
computed on the unpadded input and the convolution pads the expansion, so a padded pixel contributes 0
(``border="function"`` gives phi(0) there instead).

Parameter parity with efficient-kan. Bodner's KAN kernels are efficient-kan ``KANLinear(k*k -> 1)`` modules
(B-spline grid G, order K, SiLU base). Per input position they hold a base weight, G + K spline coefficients and
a standalone *spline scaler* that multiplies all of that position's coefficients: k^2 (G + K + 2) parameters,
90 for a 3x3 kernel on grid 5 (their README's k^2 (G + 2) forgets the order). ``KANConv2d``/``KANLinear`` have
no scaler (it is a reparametrisation: coefficient * scaler spans the same functions), so they hold
k^2 (G + K + 1) = 81. :func:`~kanvision.layers.add_spline_scaler` adds the scaler back (one multiplier per output,
input and kernel position on the basis coefficients, starting at 1 so the layer's function is unchanged), and the
``kan_kkan_*`` / ``kan_kanc_mlp_*`` models use it by default (``spline_scaler=True``), which reproduces the
published parameter counts exactly: KKAN 94,650 and KANConv & MLP 163,726 (MNIST, README of the first paper
version), and the Fashion-MNIST table of the later version (KANC MLP Small/Medium/Big 5.31K/9.94K/33.54K and
KKAN Small/Medium 22.80K/44.93K at grid 10). ``spline_scaler=False`` drops the redundant multipliers.

Sources of the layer configurations: the official ``architectures_28x28`` files give the first version's KKAN
(two ``n_convs=5`` channel-shared layers, KANLinear(625 -> 10) on grid 10 over [0, 1]) and KANC MLP
(Linear 625 -> 256 -> 10 with no activation in between) and the later version's Small (1 -> 5 -> 5) and Medium
(1 -> 5 -> 10) KAN convs; KANC MLP (Big) is Medium's convs with a Linear 250 -> 100 -> 10 head, the only
layout that gives the table's 33.54K and 38.48K at grid 10 and 20 (whether its head has an activation is not
recorded; ``mlp_act_layer`` adds one).

torch-conv-kan's stacks (``kan_kacn_simple4/8``, ``kan_kagn_simple8``) reproduce its CIFAR-10 BatchNorm rows
(reports/mnist_cifar_baseline.md): KACN 394,058 and 18,092,202 exactly (Chebyshev degree 3 without base branch;
its cos(n acos(tanh x)) form computed here by the recurrence, the same function with finite gradients, and the same
zero border). ``kan_kagn_simple8`` uses its KAGN basis (``basis="kagn"``: learnable Gram-recurrence scales, SiLU on
the Gram values): 22,613,114 parameters, as released (``basis="gram"`` gives kanvision's fixed normalised Gram basis,
32 fewer). Their dropout layers are not reproduced (``kan_drop_rate`` is DropKAN, ``drop_rate`` the head dropout).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from timm.layers import ClassifierHead, SelectAdaptivePool2d
from timm.models import generate_default_cfgs, register_model
from torch import Tensor, nn

from kanvision.layers import KANConv2d, KANLinear, SharedKANConv2d, SplineScaler, add_spline_scaler
from kanvision.layers.helpers import check_int, create_activation, create_norm
from kanvision.models._classifier import SequentialFeaturesMixin
from kanvision.models._helpers import build_model, fit_state_dict

__all__ = [
    "KANConvNet",
    "SmallConvKAN",
    # backward-compatible imports: Bodner's constructor of the one channel-shared conv, and the layers' spline scaler
    "ChannelSharedKANConv2d",
    "SplineScaler",
    "add_spline_scaler",
]


# -- backward-compatible names ---------------------------------------------------------------------------------


# the former class' name and arguments, kept for existing imports; the layer is SharedKANConv2d
def ChannelSharedKANConv2d(
    kernels: int,
    kernel_size: int = 3,
    stride: int = 1,
    padding: int = 0,
    basis: str = "bspline",
    basis_kwargs: dict | None = None,
    base_activation: str | None = "silu",
    spline_scaler: bool = True,
) -> SharedKANConv2d:
    """Bodner et al.'s first-version KAN convolution: a :class:`~kanvision.layers.SharedKANConv2d` with ``kernels``
    efficient-kan kernels (B-spline, SiLU base branch, spline scaler, no padding, uniform init)."""
    return SharedKANConv2d(
        kernel_size, stride, padding, basis, basis_kwargs, base_activation, kernels=kernels,
        spline_scaler=spline_scaler, init="uniform",
    )  # fmt: skip


# -- plain KAN conv stacks ---------------------------------------------------------------------------------------


class KANConvNet(SequentialFeaturesMixin, nn.Module):
    """A plain stack of 3x3 KAN convolutions, each followed by BatchNorm, then pooling and a linear head.

    BatchNorm keeps every KAN conv's input near N(0, 1), inside the bases' working ranges (torch-conv-kan
    found BatchNorm, not InstanceNorm, is what makes such stacks train). ``groups`` applies to every layer but
    the first; ``act_layer`` (e.g. ``"silu"``, torch-conv-kan's KAGN layers) follows each BatchNorm when given.
    ``border="zero"`` (default): padded pixels contribute 0, torch-conv-kan's convention (see KANConv2d).
    ``norm_layer``: ``batchnorm`` (default), ``instancenorm`` or None, with ``norm_affine`` parameters or not.
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
        groups: int = 1,
        act_layer: str | None = None,
        kan_drop_rate: float = 0.0,
        drop_rate: float = 0.0,
        global_pool: str = "avg",
        border: str = "zero",
        norm_layer: str | None = "batchnorm",
        norm_affine: bool = True,
    ):
        super().__init__()
        if len(widths) != len(strides) or not widths:
            raise ValueError(f"widths and strides must be non-empty and of equal length, got {widths!r}, {strides!r}")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.grad_checkpointing = False
        layers: list[nn.Module] = []
        self.feature_info = []
        prev, reduction = in_chans, 1
        for i, (width, stride) in enumerate(zip(widths, strides, strict=True)):
            layers += [
                KANConv2d(
                    prev,
                    width,
                    3,
                    stride=stride,
                    padding=1,
                    groups=1 if i == 0 else groups,
                    bias=False,
                    basis=basis,
                    basis_kwargs=basis_kwargs,
                    base_activation=base_activation,
                    drop_rate=kan_drop_rate,
                    border=border,
                ),
                create_norm(norm_layer, width, norm_affine),
            ]
            if act_layer is not None:
                layers.append(create_activation(act_layer))
            prev, reduction = width, reduction * stride
            self.feature_info.append(dict(num_chs=width, reduction=reduction, module=f"features.{len(layers) - 1}"))
        self.features = nn.Sequential(*layers)
        self.num_features = self.head_hidden_size = prev
        self.head = ClassifierHead(prev, num_classes, pool_type=global_pool, drop_rate=drop_rate)


# -- Bodner et al.'s small architectures ----------------------------------------------------------------------


class SmallConvKAN(SequentialFeaturesMixin, nn.Module):
    """Bodner et al.'s KKAN / KANC MLP networks: two KAN convs with 2x2 max pooling, flatten, a KAN or MLP head.

    ``conv -> maxpool -> conv -> maxpool -> flatten -> head``, 3x3 kernels without padding, no normalisation
    (28 -> 26 -> 13 -> 11 -> 5 at 28 px). The head flattens, so the network is tied to ``img_size``. Without classes
    (``num_classes=0`` or ``reset_classifier(0)``) there is no flattening head: the model gives its globally pooled
    features, (B, num_features), as timm's CNNs do.

    Args:
        conv_channels: output channels of the two KAN convs (``shared_kernels=False``, the later paper version's
            full KAN convolutions) or the number of kernels per layer (``shared_kernels=True``, the first
            version's channel-shared :class:`~kanvision.layers.SharedKANConv2d`: layer i outputs
            C_in * conv_channels[i] channels).
        head_type: ``"kan"`` (KKAN: KANLinear layers, no bias, as efficient-kan) or ``"mlp"`` (KANC MLP:
            nn.Linear layers).
        head_hidden: widths of the head's hidden layers (``()``: one layer).
        mlp_act_layer: activation between MLP layers; None (default) as in the official KANC MLP, whose
            ``linear1 -> linear2`` has none.
        basis, basis_kwargs: the KAN convs' basis (default efficient-kan's: B-spline, order 3 on [-1, 1]).
        grid_size, head_grid_size, head_grid_range: B-spline only (the paper's "gs"): grid of the convs (default 5),
            of the KAN head (default ``grid_size``) and the head's grid range ([0, 1] as in the official KKAN head);
            ``basis_kwargs`` / ``head_basis_kwargs`` override them. Other bases refuse them: they take
            ``basis_kwargs`` only (the registered presets then drop their B-spline grid).
        head_basis_kwargs: the KAN head's basis hyper-parameters (default: the convs').
        spline_scaler: add efficient-kan's spline scaler to every KAN layer (parameter parity, see module docs).
        global_pool: the pooling of the features when ``num_classes=0`` (default ``"avg"``; ``""``: the feature map);
            the classifying head flattens instead and refuses it.
    """

    def __init__(
        self,
        conv_channels: Sequence[int] = (5, 5),
        shared_kernels: bool = False,
        head_type: str = "mlp",
        head_hidden: Sequence[int] = (),
        mlp_act_layer: str | None = None,
        in_chans: int = 1,
        num_classes: int = 10,
        img_size: int = 28,
        basis: str = "bspline",
        basis_kwargs: dict | None = None,
        grid_size: int | None = None,
        head_grid_size: int | None = None,
        head_grid_range: tuple[float, float] | None = None,
        head_basis_kwargs: dict | None = None,
        base_activation: str | None = "silu",
        spline_scaler: bool = True,
        kernel_size: int = 3,
        drop_rate: float = 0.0,
        global_pool: str | None = None,
    ):
        super().__init__()
        _check_flatten_head_pool(num_classes, global_pool)
        if head_type not in ("kan", "mlp"):
            raise ValueError(f"head_type must be 'kan' or 'mlp', got {head_type!r}")
        if not conv_channels:
            raise ValueError(f"conv_channels must list at least one layer, got {conv_channels!r}")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.head_type = head_type
        self.grad_checkpointing = False
        if basis == "bspline":  # efficient-kan's hyper-parameters, overridable through the kwargs dicts
            conv_grid = dict(grid_size=grid_size or 5, spline_order=3, grid_range=(-1.0, 1.0))
            head_range = tuple(head_grid_range) if head_grid_range is not None else (0.0, 1.0)
            head_grid = dict(conv_grid, grid_size=head_grid_size or conv_grid["grid_size"], grid_range=head_range)
            basis_kwargs = {**conv_grid, **(basis_kwargs or {})}
            head_basis_kwargs = {**head_grid, **(head_basis_kwargs or {})}
        else:
            given = {k: v for k, v in (("grid_size", grid_size), ("head_grid_size", head_grid_size),
                                       ("head_grid_range", head_grid_range)) if v is not None}  # fmt: skip
            if given:
                raise ValueError(
                    f"{sorted(given)} apply to basis='bspline' only, got basis={basis!r}; pass that basis' "
                    "hyper-parameters in basis_kwargs / head_basis_kwargs"
                )
            if head_basis_kwargs is None:
                head_basis_kwargs = basis_kwargs
        self._kan_kwargs = dict(basis=basis, basis_kwargs=head_basis_kwargs, base_activation=base_activation)
        self._spline_scaler = spline_scaler

        layers: list[nn.Module] = []
        self.feature_info = []
        if isinstance(img_size, (tuple, list)) and len(img_size) == 2 and img_size[0] == img_size[1]:
            img_size = img_size[0]  # timm passes (H, W) for fixed_input_size models; these are square
        channels, size = in_chans, check_int("img_size", img_size, 1)
        for width in conv_channels:
            if shared_kernels:
                conv = SharedKANConv2d(
                    kernel_size, 1, 0, basis, basis_kwargs, base_activation, kernels=width,
                    spline_scaler=spline_scaler, init="uniform",
                )  # fmt: skip
                channels *= width
            else:
                conv = KANConv2d(
                    channels, width, kernel_size, bias=False, basis=basis, basis_kwargs=basis_kwargs,
                    base_activation=base_activation,
                )  # fmt: skip
                if spline_scaler:
                    add_spline_scaler(conv)
                channels = width
            size = (size - kernel_size + 1) // 2
            if size < 1:
                raise ValueError(f"img_size={img_size} is too small for {len(conv_channels)} conv + 2x2 pool layers")
            layers += [conv, nn.MaxPool2d(2)]
            reduction = 2 * (self.feature_info[-1]["reduction"] if self.feature_info else 1)  # conv + 2x2 pool
            self.feature_info.append(dict(num_chs=channels, reduction=reduction, module=f"features.{len(layers) - 1}"))
        self.features = nn.Sequential(*layers)
        self.num_features = channels
        self.feature_size = size

        self._head_dims = [channels * size * size, *head_hidden]
        self._mlp_act_layer = mlp_act_layer
        self.head_drop = nn.Dropout(drop_rate)
        self.pre_logits: nn.Module = nn.Identity()
        self._build_head(num_classes, global_pool)

    def _build_head(self, num_classes: int, global_pool: str | None) -> None:
        """The flattening head (hidden layers, kept when they exist, and a fresh classifier) for ``num_classes`` > 0,
        else global pooling only."""
        self.num_classes = num_classes
        if num_classes > 0:
            self.global_pool = None
            if isinstance(self.pre_logits, nn.Identity):
                hidden: list[nn.Module] = [nn.Flatten(1)]
                for d_in, d_out in zip(self._head_dims[:-1], self._head_dims[1:], strict=True):
                    hidden.append(self._head_layer(d_in, d_out))
                    if self.head_type == "mlp" and self._mlp_act_layer is not None:
                        hidden.append(create_activation(self._mlp_act_layer))
                self.pre_logits = nn.Sequential(*hidden)
            self.head_hidden_size = self._head_dims[-1]
            self.fc = self._head_layer(self.head_hidden_size, num_classes)
        else:
            pool_type = "avg" if global_pool is None else global_pool
            self.global_pool = SelectAdaptivePool2d(pool_type=pool_type, flatten=bool(pool_type))
            self.pre_logits = nn.Identity()
            self.fc = nn.Identity()
            self.head_hidden_size = self.num_features * self.global_pool.feat_mult()

    def forward_features(self, x: Tensor) -> Tensor:
        # the channel-shared convs take any channel count and the flattening head would fail with a size message
        if x.dim() != 4 or x.shape[1] != self.in_chans:
            raise ValueError(
                f"{type(self).__name__} was built for in_chans={self.in_chans} (N, {self.in_chans}, H, W) images, "
                f"got shape {tuple(x.shape)}; build it with in_chans={x.shape[1] if x.dim() == 4 else '?'}"
            )
        return super().forward_features(x)

    def _head_layer(self, d_in: int, d_out: int) -> nn.Module:
        if self.head_type == "mlp":
            return nn.Linear(d_in, d_out)
        layer = KANLinear(d_in, d_out, bias=False, **self._kan_kwargs)
        return add_spline_scaler(layer) if self._spline_scaler else layer

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        _check_flatten_head_pool(num_classes, global_pool)
        if num_classes > 0 and self.feature_size is None:
            raise ValueError(
                f"num_classes={num_classes}: this model was pruned (prune_intermediate_layers), its flattening head "
                "no longer fits the features; only reset_classifier(0) applies"
            )
        self._build_head(num_classes, global_pool)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        if self.global_pool is not None:  # no classes: the pooled features
            return self.head_drop(self.global_pool(x))
        if x.shape[-2:] != (self.feature_size, self.feature_size):
            raise ValueError(
                f"expected a ({self.feature_size}, {self.feature_size}) feature map (the img_size the model was built "
                f"for), got {tuple(x.shape[-2:])}: build the model with the input's img_size"
            )
        x = self.head_drop(self.pre_logits(x))
        return x if pre_logits else self.fc(x)

    def _prune_layers_after(self, index: int) -> None:
        super()._prune_layers_after(index)
        self.feature_size = None  # the flattening head no longer fits: pruning removes it

    def _prune_head(self) -> None:
        self._build_head(0, "")


def _check_flatten_head_pool(num_classes: int, global_pool: str | None) -> None:
    if num_classes > 0 and global_pool not in (None, ""):
        raise ValueError(
            f"global_pool={global_pool!r}: SmallConvKAN's classifier flattens its features, it pools only without "
            "classes (num_classes=0)"
        )


# -- registry ---------------------------------------------------------------------------------------------------


_SIMPLE8_WIDTHS = (16, 32, 64, 128, 256, 256, 512, 512)
_SIMPLE8_STRIDES = (1, 2, 2, 1, 1, 2, 1, 1)

# the model arguments of each registered model, side by side (a caller's kwargs override them)
_KAN_CNN_ARGS = {
    "kan_cnn_tiny": dict(widths=(16, 32, 64), strides=(1, 2, 2)),
    "kan_kacn_simple4": dict(widths=(32, 64, 128, 256), strides=(1, 2, 2, 1), groups=4, base_activation=None),
    "kan_kacn_simple8": dict(widths=_SIMPLE8_WIDTHS, strides=_SIMPLE8_STRIDES, base_activation=None),
    "kan_kagn_simple8": dict(widths=_SIMPLE8_WIDTHS, strides=_SIMPLE8_STRIDES, basis="kagn", act_layer="silu"),
}
_SMALL_CONV_KAN_ARGS = {
    # Bodner et al.'s first version (MNIST): channel-shared kernels
    "kan_kkan_mnist": dict(conv_channels=(5, 5), shared_kernels=True, head_type="kan", head_grid_size=10),
    "kan_kanc_mlp_mnist": dict(conv_channels=(5, 5), shared_kernels=True, head_type="mlp", head_hidden=(256,)),
    # the later version's Fashion-MNIST table, grid 10
    "kan_kkan_small": dict(conv_channels=(5, 5), head_type="kan", grid_size=10),
    "kan_kkan_medium": dict(conv_channels=(5, 10), head_type="kan", grid_size=10),
    "kan_kanc_mlp_small": dict(conv_channels=(5, 5), head_type="mlp", grid_size=10),
    "kan_kanc_mlp_medium": dict(conv_channels=(5, 10), head_type="mlp", grid_size=10),
    "kan_kanc_mlp_big": dict(conv_channels=(5, 10), head_type="mlp", head_hidden=(100,), grid_size=10),
}


def checkpoint_filter_fn(state_dict: dict[str, Tensor], model: KANConvNet | SmallConvKAN) -> dict[str, Tensor]:
    """A kanvision checkpoint of ``model``'s architecture, checked key by key (a ValueError lists every mismatch)."""
    return fit_state_dict(state_dict, model)


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


def _mnist_cfg(**kwargs) -> dict:
    return _cfg(
        num_classes=10,
        input_size=(1, 28, 28),
        mean=(0.5,),
        std=(0.5,),
        classifier="fc",
        fixed_input_size=True,
        **kwargs,
    )


def _cifar10_cfg(**kwargs) -> dict:
    return _cfg(num_classes=10, paper_ids="arXiv:2407.01092", **kwargs)


default_cfgs = generate_default_cfgs(
    {
        "kan_cnn_tiny.untrained": _cfg(num_classes=10, input_size=(1, 8, 8), mean=(0.5,), std=(0.5,)),
        "kan_kkan_mnist.untrained": _mnist_cfg(paper_ids="arXiv:2406.13155", first_conv="features.0.conv"),
        "kan_kanc_mlp_mnist.untrained": _mnist_cfg(paper_ids="arXiv:2406.13155", first_conv="features.0.conv"),
        "kan_kkan_small.untrained": _mnist_cfg(paper_ids="arXiv:2406.13155"),
        "kan_kkan_medium.untrained": _mnist_cfg(paper_ids="arXiv:2406.13155"),
        "kan_kanc_mlp_small.untrained": _mnist_cfg(paper_ids="arXiv:2406.13155"),
        "kan_kanc_mlp_medium.untrained": _mnist_cfg(paper_ids="arXiv:2406.13155"),
        "kan_kanc_mlp_big.untrained": _mnist_cfg(paper_ids="arXiv:2406.13155"),
        "kan_kacn_simple4.untrained": _cifar10_cfg(),
        "kan_kacn_simple8.untrained": _cifar10_cfg(),
        "kan_kagn_simple8.untrained": _cifar10_cfg(),
    }
)


def _create_kan_cnn(variant: str, pretrained: bool = False, **kwargs) -> KANConvNet:
    kwargs = dict(_KAN_CNN_ARGS[variant], **kwargs)
    out_indices = tuple(range(len(kwargs.get("widths", (16, 32)))))  # one feature map per KAN conv
    feature_cfg = dict(flatten_sequential=True, out_indices=out_indices)
    return build_model(
        KANConvNet, variant, pretrained, feature_cfg=feature_cfg, pretrained_filter_fn=checkpoint_filter_fn, **kwargs
    )


def _create_small_conv_kan(variant: str, pretrained: bool = False, **kwargs) -> SmallConvKAN:
    model_args = _SMALL_CONV_KAN_ARGS[variant]
    if kwargs.get("basis", "bspline") != "bspline":  # the preset's grid belongs to its B-splines
        model_args = {k: v for k, v in model_args.items() if k not in ("grid_size", "head_grid_size")}
    kwargs = dict(model_args, **kwargs)
    out_indices = tuple(range(len(kwargs.get("conv_channels", (5, 5)))))  # one per conv + pool
    feature_cfg = dict(flatten_sequential=True, out_indices=out_indices)
    return build_model(
        SmallConvKAN, variant, pretrained, feature_cfg=feature_cfg, pretrained_filter_fn=checkpoint_filter_fn, **kwargs
    )


@register_model
def kan_cnn_tiny(pretrained: bool = False, **kwargs) -> KANConvNet:
    """Three 3x3 KAN convs (16, 32, 64 channels): the demo network for small images such as the 8x8 digits."""
    return _create_kan_cnn("kan_cnn_tiny", pretrained, **kwargs)


@register_model
def kan_kkan_mnist(pretrained: bool = False, **kwargs) -> SmallConvKAN:
    """KKAN (Bodner et al. v1, MNIST 98.7%): 2 x 5 channel-shared KAN kernels, KANLinear(625 -> 10, grid 10); 94,650."""
    return _create_small_conv_kan("kan_kkan_mnist", pretrained, **kwargs)


@register_model
def kan_kanc_mlp_mnist(pretrained: bool = False, **kwargs) -> SmallConvKAN:
    """KANConv & MLP (Bodner et al. v1, MNIST 98.5%): 2 x 5 shared KAN kernels, Linear 625 -> 256 -> 10; 163,726."""
    return _create_small_conv_kan("kan_kanc_mlp_mnist", pretrained, **kwargs)


@register_model
def kan_kkan_small(pretrained: bool = False, **kwargs) -> SmallConvKAN:
    """KKAN (Small) (Bodner et al., Fashion-MNIST): KAN convs 1->5->5, KANLinear 125 -> 10; 22,800 at grid 10."""
    return _create_small_conv_kan("kan_kkan_small", pretrained, **kwargs)


@register_model
def kan_kkan_medium(pretrained: bool = False, **kwargs) -> SmallConvKAN:
    """KKAN (Medium) (Bodner et al., Fashion-MNIST): KAN convs 1->5->10, KANLinear 250 -> 10; 44,925 at grid 10."""
    return _create_small_conv_kan("kan_kkan_medium", pretrained, **kwargs)


@register_model
def kan_kanc_mlp_small(pretrained: bool = False, **kwargs) -> SmallConvKAN:
    """KANC MLP (Small) (Bodner et al., Fashion-MNIST 87.43%): KAN convs 1->5->5, Linear 125 -> 10; 5,310 at grid 10."""
    return _create_small_conv_kan("kan_kanc_mlp_small", pretrained, **kwargs)


@register_model
def kan_kanc_mlp_medium(pretrained: bool = False, **kwargs) -> SmallConvKAN:
    """KANC MLP (Medium) (Bodner et al., Fashion-MNIST 88.99%): KAN convs 1->5->10, Linear 250 -> 10; 9,935."""
    return _create_small_conv_kan("kan_kanc_mlp_medium", pretrained, **kwargs)


@register_model
def kan_kanc_mlp_big(pretrained: bool = False, **kwargs) -> SmallConvKAN:
    """KANC MLP (Big) (Bodner et al., Fashion-MNIST 89.15%): KAN convs 1->5->10, Linear 250 -> 100 -> 10; 33,535."""
    return _create_small_conv_kan("kan_kanc_mlp_big", pretrained, **kwargs)


@register_model
def kan_kacn_simple4(pretrained: bool = False, **kwargs) -> KANConvNet:
    """torch-conv-kan's 4-layer KACN (Chebyshev degree 3, BN, groups 4, no base branch); 394,058 on CIFAR-10."""
    return _create_kan_cnn("kan_kacn_simple4", pretrained, **kwargs)


@register_model
def kan_kacn_simple8(pretrained: bool = False, **kwargs) -> KANConvNet:
    """torch-conv-kan's 8-layer KACN (Chebyshev degree 3, BN, no base branch; CIFAR-10 62.1%); 18,092,202."""
    return _create_kan_cnn("kan_kacn_simple8", pretrained, **kwargs)


@register_model
def kan_kagn_simple8(pretrained: bool = False, **kwargs) -> KANConvNet:
    """torch-conv-kan's 8-layer KAGN (its Gram basis with learnable scales and SiLU on the values, SiLU base,
    BN + SiLU, zero border; CIFAR-10 84.1%); 22,613,114 parameters, as released."""
    return _create_kan_cnn("kan_kagn_simple8", pretrained, **kwargs)


def kagn_conv_weight_from_torch_conv_kan(
    poly_weights: torch.Tensor, base_weight: torch.Tensor | None, degree: int
) -> torch.Tensor:
    """A torch-conv-kan KAGN layer's weights as one :class:`~kanvision.layers.KANConv2d` weight (groups = 1).

    torch-conv-kan stores the polynomial conv as ``poly_weights`` (1, C_out, (D + 1) C_in, k, k) with input channel
    ``d * C_in + c`` (degree-major) and the base branch as a separate conv ``base_conv.0.weight`` (C_out, C_in, k, k);
    a KANConv2d over basis ``kagn`` holds (C_out, C_in * m, k, k) with channel ``c * m + j``, j = 0 the base branch
    (when present) and j = 1 + d the degree-d function.
    """
    poly = poly_weights[0] if poly_weights.dim() == 5 else poly_weights  # (C_out, (D+1) C_in, k, k)
    c_out, _, *kernel = poly.shape
    c_in = poly.shape[1] // (degree + 1)
    poly = poly.reshape(c_out, degree + 1, c_in, *kernel).transpose(1, 2)  # (C_out, C_in, D+1, k, k)
    if base_weight is not None:
        poly = torch.cat([base_weight.reshape(c_out, c_in, 1, *kernel), poly], dim=2)
    return poly.reshape(c_out, -1, *kernel).contiguous()
