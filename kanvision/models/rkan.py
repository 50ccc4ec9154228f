"""Residual KAN (RKAN): Chebyshev-KAN side paths around the stages of timm ResNet/ResNeXt/RegNet/DenseNet models.

Paper: "Residual Kolmogorov-Arnold Network for Enhanced Deep Learning", Yu, Wu & Gui, arXiv 2410.05500.
Original code: https://github.com/withray/residualKAN (``RKANet`` in ``residual_networks/``).

RKAN leaves the backbone untouched and adds, around chosen stages, a side path from the stage input to the
stage output (``ResidualKANBlock``): 1x1 reduce (C_in / 2, no bias) -> SiLU -> 3x3 Chebyshev KAN conv with the
stage's stride -> BN -> 1x1 expand (C_out, no bias) -> SiLU -> (last stage of the network only) a second KAN
conv, stride 1 -> BN, combined with the stage output by addition (default), sigmoid gating or SE. The paper's
KAN conv is ONE k*k -> 1 KAN kernel shared by every channel (:class:`~kanvision.layers.SharedKANConv2d`, 54 and
45 parameters), so nearly all added parameters are the two 1x1 convs: ResNet-50 + 1,578,083 = 27,135,115 (ImageNet
77.15 -> 78.02 top-1 in the paper). RKAN-L is the inverted bottleneck (C_in x 2, 4 or 6 instead of C_in / 2).

What differs from the official code, on purpose:
- the side path's last BN scale starts at zero, so a freshly wrapped model computes exactly its backbone
  (``add`` and ``se``; ``gate`` mixes ``out * g + r * (1 - g)`` and cannot start as the identity), and
  ``pretrained=True`` loads plain timm backbone checkpoints (``checkpoint_filter_fn``);
- the KAN conv is one KANConv2d over the channels folded into the batch instead of unfolded patches looped
  through a KANLinear (the same function, a fraction of the time and memory);
- DenseNet stages (dense block + transition) halve odd sizes by flooring while a stride-2 KAN conv rounds up:
  the side path is cropped to the stage output there instead of failing;
- ``control=True`` replaces every KAN conv by a depthwise conv + SiLU of the same shape, the experiment the
  paper does not report: it separates "an extra 1x1 bottleneck path" from "a KAN".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import timm
import torch
from timm.layers import SEModule
from timm.models import DenseNet, RegNet, ResNet, generate_default_cfgs, register_model
from timm.models import get_pretrained_cfg as timm_pretrained_cfg
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from kanvision.layers import KANConv2d, SharedKANConv2d, basis_parameters
from kanvision.layers.helpers import check_int
from kanvision.models._classifier import ClassifierMixin, _take_indices
from kanvision.models._helpers import build_model, fit_state_dict, model_arguments
from kanvision.models.baselines import use_cifar_stem

__all__ = [
    "SharedKANConv2d",  # backward-compatible import: the layer lives in kanvision.layers
    "ResidualKANBlock",
    "ResidualKANNet",
    "create_rkan",
    "checkpoint_filter_fn",
    "COMBINE_MODES",
    "KAN_CONV_TYPES",
    "SUPPORTED_FAMILIES",
]

COMBINE_MODES = ("add", "gate", "se")
KAN_CONV_TYPES = ("shared", "depthwise", "full")
SUPPORTED_FAMILIES = (
    "ResNet (timm.models.ResNet: resnet*, resnext*, wide_resnet*, seresnet*, resnet*d, ...)",
    "RegNet (timm.models.RegNet: regnetx_*, regnety_*, regnetv_*)",
    "DenseNet (timm.models.DenseNet: densenet*)",
)

_PROBE_SIZE = 64  # a multiple of every supported output stride (32), so stage strides come out exact


def _make_kan_conv(
    kan_conv: str,
    control: bool,
    channels: int,
    stride: int,
    degree: int,
    kernel_size: int,
    scale_by_input: bool,
    dd,
    basis: str = "chebyshev",
    base_activation: str = "identity",
) -> nn.Module:
    """One KAN conv of the side path (C -> C channels), or its depthwise-conv control. ``degree`` is the basis'
    ``degree`` where it has one (polynomial bases), else ignored for the basis' own defaults."""
    padding = kernel_size // 2
    if control:
        return nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size, stride, padding, groups=channels, bias=False, **dd), nn.SiLU()
        )
    basis_kwargs = dict(degree=degree) if "degree" in basis_parameters(basis) else {}
    if kan_conv == "shared":
        return SharedKANConv2d(
            kernel_size, stride, padding, basis, basis_kwargs, base_activation, scale_by_input, init="normal", **dd
        )  # fmt: skip
    groups = channels if kan_conv == "depthwise" else 1
    return KANConv2d(
        channels, channels, kernel_size, stride, padding, groups=groups, bias=False, basis=basis,
        basis_kwargs=basis_kwargs, base_activation=base_activation, **dd,
    )  # fmt: skip


class ResidualKANBlock(nn.Module):
    """The RKAN side path of one stage and its combination with the stage output (Yu et al., arXiv 2410.05500).

    ``forward(stage_input, stage_output)``: r = BN(KAN2(SiLU(expand(BN(KAN1(SiLU(reduce(stage_input)))))))),
    KAN1 with the stage's ``stride``, KAN2 (stride 1) only with ``second_kan`` (the network's last stage), then

    - ``add``: ``out + r``;
    - ``gate``: ``out * g + r * (1 - g)``, g = sigmoid(conv1x1(r)) (the released "gating");
    - ``se``: ``out + r * SE(r)`` (squeeze-excitation, reduction 16, no biases, as released).

    Args:
        in_chs, out_chs: channels of the stage input and output.
        stride: the stage's spatial reduction (output size is ceil(input / stride); a stage that floors instead,
            e.g. DenseNet's 2x2 average-pool transitions on an odd size, gets the side path cropped to match).
        reduction: bottleneck width ``in_chs // reduction`` (the paper's reduce factor 2).
        inverted_expansion: RKAN-L: width ``in_chs * inverted_expansion`` (2, 4 or 6) instead of ``reduction``.
        second_kan: add the second KAN conv (stride 1, on ``out_chs`` channels).
        combine: ``add`` | ``gate`` | ``se``.
        kan_conv: ``shared`` (the paper's channel-shared k*k -> 1 kernel, :class:`~kanvision.layers.SharedKANConv2d`),
            ``depthwise`` (KANConv2d with one kernel per channel) or ``full`` (a dense KANConv2d, C*C kernels).
        degrees: Chebyshev degrees of the first and second KAN conv (paper: 3 and 2).
        control: replace each KAN conv by a depthwise conv + SiLU with the same channels, kernel and stride.
        scale_by_input: ``shared`` only: the first release's x * sum c_d T_d(tanh x) form (see SharedKANConv2d).
        basis: the KAN convs' basis (any registered name; ``degrees`` set its degree where it has one).
        base_activation: the KAN convs' base branch b: ``identity`` (the newest official form), ``silu``, ...
        zero_init_last: start the last BN's scale at 0, so r = 0 and ``add``/``se`` return the stage output.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int = 1,
        reduction: int = 2,
        inverted_expansion: int | None = None,
        second_kan: bool = False,
        combine: str = "add",
        kan_conv: str = "shared",
        degrees: tuple[int, int] = (3, 2),
        kernel_size: int = 3,
        control: bool = False,
        scale_by_input: bool = False,
        zero_init_last: bool = True,
        se_reduction: int = 16,
        basis: str = "chebyshev",
        base_activation: str = "identity",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        check_int("in_chs", in_chs, 1)
        check_int("out_chs", out_chs, 1)
        check_int("stride", stride, 1)
        check_int("kernel_size", kernel_size, 1)
        if combine not in COMBINE_MODES:
            raise ValueError(f"combine must be one of {COMBINE_MODES}, got {combine!r}")
        if kan_conv not in KAN_CONV_TYPES:
            raise ValueError(f"kan_conv must be one of {KAN_CONV_TYPES}, got {kan_conv!r}")
        if scale_by_input and (kan_conv != "shared" or control):
            raise ValueError(
                f"scale_by_input=True applies to kan_conv='shared' only, got kan_conv={kan_conv!r}"
                f"{' with control=True' if control else ''}"
            )
        if len(degrees) != 2:
            raise ValueError(f"degrees must be two Chebyshev degrees (first, second KAN conv), got {degrees!r}")
        for degree in degrees:
            check_int("degree", degree, 0)
        if inverted_expansion is not None:
            mid_chs = in_chs * check_int("inverted_expansion", inverted_expansion, 1)
        else:
            mid_chs = in_chs // check_int("reduction", reduction, 1)
            if mid_chs < 1:
                raise ValueError(f"reduction={reduction} leaves no channels of in_chs={in_chs}; use <= {in_chs}")
        dd = dict(device=device, dtype=dtype)
        self.in_chs, self.mid_chs, self.out_chs, self.stride = in_chs, mid_chs, out_chs, stride
        self.combine = combine
        self.reduce = nn.Conv2d(in_chs, mid_chs, 1, bias=False, **dd)
        self.act1 = nn.SiLU()
        kan_args = dict(basis=basis, base_activation=base_activation)
        self.kan1 = _make_kan_conv(
            kan_conv, control, mid_chs, stride, degrees[0], kernel_size, scale_by_input, dd, **kan_args
        )  # fmt: skip
        self.norm1 = nn.BatchNorm2d(mid_chs, **dd)
        self.expand = nn.Conv2d(mid_chs, out_chs, 1, bias=False, **dd)
        self.act2 = nn.SiLU()
        self.kan2 = (
            _make_kan_conv(kan_conv, control, out_chs, 1, degrees[1], kernel_size, scale_by_input, dd, **kan_args)
            if second_kan
            else nn.Identity()
        )
        self.norm2 = nn.BatchNorm2d(out_chs, **dd)
        if zero_init_last:
            nn.init.zeros_(self.norm2.weight)
        if combine == "gate":
            self.gate = nn.Conv2d(out_chs, out_chs, 1, **dd)
        elif combine == "se":
            self.se = SEModule(out_chs, rd_channels=max(1, out_chs // se_reduction), bias=False, **dd)

    def residual(self, x: Tensor) -> Tensor:
        """The side path's output r for the stage input ``x``: (N, out_chs, ceil(H / stride), ceil(W / stride))."""
        x = self.norm1(self.kan1(self.act1(self.reduce(x))))
        return self.norm2(self.kan2(self.act2(self.expand(x))))

    def forward(self, stage_input: Tensor, stage_output: Tensor) -> Tensor:
        r = self.residual(stage_input)
        height, width = stage_output.shape[-2:]
        if r.shape[-2:] != stage_output.shape[-2:]:  # a flooring stage (avg-pool 2x2) on an odd input size
            r = r[..., :height, :width]
        if self.combine == "add":
            return stage_output + r
        if self.combine == "gate":
            g = torch.sigmoid(self.gate(r))
            return stage_output * g + r * (1 - g)
        return stage_output + self.se(r)


# -- the wrapper --------------------------------------------------------------------------------------------


def _stage_layout(backbone: nn.Module) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...], tuple[str, ...]]:
    """Submodule names of (stem, stages, post-stage) whose sequence is the backbone's ``forward_features``."""
    if isinstance(backbone, ResNet):
        return ("conv1", "bn1", "act1", "maxpool"), tuple((f"layer{i}",) for i in range(1, 5)), ()
    if isinstance(backbone, RegNet):
        return ("stem",), tuple((f"s{i}",) for i in range(1, 5)), ("final_conv",)
    if isinstance(backbone, DenseNet):
        # a stage is a dense block and what follows it up to the next block (its transition, or norm5 + ReLU),
        # as in the released post-transition RKAN_DenseNet
        names = [f"features.{name}" for name, _ in backbone.features.named_children()]
        first = names.index("features.denseblock1")
        stages: list[list[str]] = []
        for name in names[first:]:
            if name.startswith("features.denseblock"):
                stages.append([name])
            else:
                stages[-1].append(name)
        return tuple(names[:first]), tuple(tuple(s) for s in stages), ()
    raise ValueError(
        f"RKAN side paths cannot be inserted into {type(backbone).__name__}; supported timm families: "
        + "; ".join(SUPPORTED_FAMILIES)
    )


def _normalize_stages(stages: int | Iterable[int], num_stages: int) -> tuple[int, ...]:
    values = (stages,) if isinstance(stages, int) else tuple(stages)
    if (
        not values
        or any(isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= num_stages for s in values)
        or len(set(values)) != len(values)
    ):
        raise ValueError(
            f"stages must be distinct stage numbers in 1..{num_stages} (e.g. (4,) or (3, 4)), got {stages!r}"
        )
    return tuple(sorted(values))


class ResidualKANNet(ClassifierMixin, nn.Module):
    """A timm ResNet/ResNeXt/Wide-ResNet/RegNet/DenseNet with RKAN side paths around chosen stages (RKANet).

    The backbone is an ordinary timm model kept whole under ``backbone`` (its own head, ``forward_head``,
    ``reset_classifier``); side paths live in ``side_paths[str(stage)]`` (stages are numbered 1..4 as in the
    paper: ``(4,)`` default, ``(3, 4)`` the "E" variants). Only the last stage of the network gets the second
    KAN conv, as released. Stage channels and strides are read off one small probe forward at construction,
    so any backbone variant of a supported family works (deep stems, output_stride, ...).

    Args:
        backbone: a timm model name (optionally with a pretrained tag) of a supported family.
        stages, combine (one mode or one per stage), reduction (one factor or one per stage), kan_conv, degrees,
            kernel_size, inverted_expansion, control, scale_by_input, zero_init_last, basis, base_activation: see
            :class:`ResidualKANBlock` (defaults: the newest official side path, identity base branch, no input factor).
        stem: ``imagenet`` (the backbone's own) or ``cifar`` (3x3 stride-1 conv, no max pooling; ResNets).
        num_classes, in_chans, device, dtype, **backbone_kwargs: passed to ``timm.create_model(backbone, ...)``
            (e.g. ``drop_rate``, ``drop_path_rate``, ``global_pool``, ``output_stride``).
    """

    def __init__(
        self,
        backbone: str = "resnet50",
        stages: int | Sequence[int] = (4,),
        combine: str | Sequence[str] = "add",
        kan_conv: str = "shared",
        degrees: tuple[int, int] = (3, 2),
        kernel_size: int = 3,
        reduction: int | Sequence[int] = 2,
        inverted_expansion: int | None = None,
        control: bool = False,
        scale_by_input: bool = False,
        zero_init_last: bool = True,
        stem: str = "imagenet",
        basis: str = "chebyshev",
        base_activation: str = "identity",
        num_classes: int = 1000,
        in_chans: int = 3,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **backbone_kwargs,
    ):
        super().__init__()
        if stem not in ("imagenet", "cifar"):
            raise ValueError(f"stem must be 'imagenet' (the backbone's own) or 'cifar', got {stem!r}")
        if not isinstance(backbone, str) or not timm.is_model(backbone.partition(".")[0]):
            raise ValueError(
                f"backbone must be the name of a timm model of a supported family, got {backbone!r}; supported: "
                + "; ".join(SUPPORTED_FAMILIES)
            )
        try:
            self.backbone = timm.create_model(
                backbone, num_classes=num_classes, in_chans=in_chans, device=device, dtype=dtype, **backbone_kwargs
            )
        except TypeError as error:
            if not backbone_kwargs or "argument" not in str(error):
                raise
            raise TypeError(
                f"{sorted(backbone_kwargs)}: not an argument of ResidualKANNet, so passed on to the backbone "
                f"{backbone!r}, which refused it ({error}). ResidualKANNet accepts: "
                f"{', '.join(model_arguments(ResidualKANNet)[0])}, and the backbone's own timm arguments"
            ) from None
        if stem == "cifar":
            use_cifar_stem(self.backbone, device, dtype)
        self._stem, self._stages, self._post = _stage_layout(self.backbone)
        self.stages = _normalize_stages(stages, len(self._stages))
        combines = (combine,) * len(self.stages) if isinstance(combine, str) else tuple(combine)
        if len(combines) != len(self.stages):
            raise ValueError(f"combine must be one mode or one per stage {self.stages}, got {combine!r}")
        reductions = (reduction,) * len(self.stages) if isinstance(reduction, int) else tuple(reduction)
        if len(reductions) != len(self.stages):
            raise ValueError(f"reduction must be one factor or one per stage {self.stages}, got {reduction!r}")
        self.in_chans = in_chans
        self.grad_checkpointing = False
        shapes = self._probe_stage_shapes()
        # channels of forward_intermediates' maps: the backbone's first feature map, then each stage's output
        self._map_channels = [self.backbone.feature_info[0]["num_chs"], *(out for _, out, _ in shapes)]
        self.side_paths = nn.ModuleDict()
        for stage, mode, factor in zip(self.stages, combines, reductions, strict=True):
            in_chs, out_chs, stride = shapes[stage - 1]
            self.side_paths[str(stage)] = ResidualKANBlock(
                in_chs, out_chs, stride, factor, inverted_expansion, second_kan=stage == len(self._stages),
                combine=mode, kan_conv=kan_conv, degrees=tuple(degrees), kernel_size=kernel_size, control=control,
                scale_by_input=scale_by_input, zero_init_last=zero_init_last, device=device, dtype=dtype,
                basis=basis, base_activation=base_activation,
            )  # fmt: skip

    @torch.no_grad()
    def _probe_stage_shapes(self) -> list[tuple[int, int, int]]:
        """(in channels, out channels, stride) of every stage, from an eval-mode forward of a small input."""
        param = next(self.backbone.parameters())
        was_training = self.backbone.training
        self.backbone.eval()
        try:
            x = torch.zeros(1, self.in_chans, _PROBE_SIZE, _PROBE_SIZE, device=param.device, dtype=param.dtype)
            for name in self._stem:
                x = self.backbone.get_submodule(name)(x)
            shapes = []
            for names in self._stages:
                y = x
                for name in names:
                    y = self.backbone.get_submodule(name)(y)
                shapes.append((x.shape[1], y.shape[1], x.shape[-1] // y.shape[-1]))
                x = y
        finally:
            self.backbone.train(was_training)
        return shapes

    # -- timm model API (set_grad_checkpointing, forward: ClassifierMixin; the head is the backbone's) -----
    @property
    def num_classes(self) -> int:
        return self.backbone.num_classes

    @property
    def num_features(self) -> int:
        return self.backbone.num_features

    @property
    def head_hidden_size(self) -> int:
        return getattr(self.backbone, "head_hidden_size", self.backbone.num_features)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        """The backbone's groups under ``backbone.``; side paths form one group after the blocks, before the head."""

        def prefixed(pattern: str) -> str:
            return r"^backbone\.(?:" + pattern.removeprefix("^") + ")"

        matcher = {}
        for group, spec in self.backbone.group_matcher(coarse=coarse).items():
            if spec is None or isinstance(spec, str):
                matcher[group] = spec if spec is None else prefixed(spec)
            else:
                matcher[group] = [(prefixed(pattern), suffix) for pattern, suffix in spec]
        matcher["side_paths"] = r"^side_paths\.(\d+)"
        return matcher

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.backbone.get_classifier()

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        if global_pool is None:
            self.backbone.reset_classifier(num_classes)
        else:
            self.backbone.reset_classifier(num_classes, global_pool)

    def _run_stage(self, x: Tensor, index: int) -> Tensor:
        y = x
        for name in self._stages[index - 1]:
            y = self.backbone.get_submodule(name)(y)
        key = str(index)
        if key in self.side_paths:
            y = self.side_paths[key](x, y)
        return y

    def forward_features(self, x: Tensor) -> Tensor:
        for name in self._stem:
            x = self.backbone.get_submodule(name)(x)
        for index in range(1, len(self._stages) + 1):
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(self._run_stage, x, index, use_reentrant=False)
            else:
                x = self._run_stage(x, index)
        for name in self._post:
            x = self.backbone.get_submodule(name)(x)
        return x

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        return self.backbone.forward_head(x, pre_logits=pre_logits)

    def _intermediate_maps(self, x: Tensor, take: list[int], stop_early: bool) -> tuple[Tensor | None, dict]:
        # the backbone's first feature map (0: in its stem, as timm's feature_info says) and each stage's output with
        # its side path added (1..4, what forward_features passes on; hooks on the backbone's stages would miss it)
        stem_map = self.backbone.feature_info[0]["module"]
        maps = {}
        for name in self._stem:
            x = self.backbone.get_submodule(name)(x)
            if name == stem_map:
                maps[0] = x
        maps.setdefault(0, x)
        last = max(take) if stop_early and take else len(self._stages)
        for index in range(1, last + 1):
            x = maps[index] = self._run_stage(x, index)
        if last < len(self._stages):
            return None, maps
        for name in self._post:
            x = self.backbone.get_submodule(name)(x)
        return x, maps

    def _intermediate_modules(self) -> list[str]:
        return ["stem", *(f"stage{i}" for i in range(1, self._num_maps))]

    @property
    def _num_maps(self) -> int:
        return len(self._map_channels)

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """timm's ``prune_intermediate_layers``: the backbone's modules and side paths of the stages after the last
        map in ``indices`` go (the features end there, ``num_features`` its channels) and, with ``prune_head`` or
        when stages went, the backbone's classifier and pooling. Returns the indices kept."""
        take, max_index = _take_indices(self._num_maps, indices)
        prune_end = max_index < self._num_maps - 1
        if prune_end:
            removed = [name for names in self._stages[max_index:] for name in names] + list(self._post)
            if max_index == 0:  # the stem's modules after its feature map (a ResNet's max pooling)
                stem_map = self.backbone.feature_info[0]["module"]
                if stem_map in self._stem:
                    removed += list(self._stem[self._stem.index(stem_map) + 1 :])
                    self._stem = self._stem[: self._stem.index(stem_map) + 1]
            for name in removed:
                parent, _, child = name.rpartition(".")
                setattr(self.backbone.get_submodule(parent), child, nn.Identity())
            for stage in range(max_index + 1, len(self._stages) + 1):
                if str(stage) in self.side_paths:
                    del self.side_paths[str(stage)]
            self._stages, self._post = self._stages[:max_index], ()
            self.stages = tuple(s for s in self.stages if s <= max_index)
            self.backbone.num_features = self.backbone.head_hidden_size = self._map_channels[max_index]
            # forward_intermediates' default indices end at the last map kept
            self._map_channels = self._map_channels[: max_index + 1]
        if prune_head or prune_end:
            self.backbone.reset_classifier(0, "")
        return take


def checkpoint_filter_fn(state_dict: dict[str, Tensor], model: ResidualKANNet) -> dict[str, Tensor]:
    """Map a plain timm backbone checkpoint onto ``model`` (keys as saved by timm, moved under ``backbone.``).

    An RKAN checkpoint (keys under ``backbone.`` / ``side_paths.``) is taken as is. For a backbone
    checkpoint the side paths keep their (no-op) initial values. Either is checked key by key: a ValueError lists
    every missing, unexpected or mis-shaped key.
    """
    if any(k.startswith(("backbone.", "side_paths.")) for k in state_dict):
        return fit_state_dict(state_dict, model, describe_rkan(model))
    out = {f"backbone.{k}": v for k, v in state_dict.items()}
    for k, v in model.state_dict().items():
        if k.startswith("side_paths."):
            out[k] = v
    return fit_state_dict(out, model, describe_rkan(model), source=state_dict)


def describe_rkan(model: ResidualKANNet) -> str:
    backbone = model.backbone.pretrained_cfg.get("architecture", type(model.backbone).__name__)
    return f"ResidualKANNet(backbone={backbone!r}, stages={model.stages}, num_classes={model.num_classes})"


# -- registry -----------------------------------------------------------------------------------------------


def _cfg(backbone: str, **kwargs) -> dict:
    """The pretrained cfg of a timm backbone (name or name.tag) with its weight source: ``pretrained=True`` loads
    the backbone's timm weights, the side paths start as a no-op. Head and stem names move under ``backbone.``."""
    source = timm_pretrained_cfg(backbone)
    cfg = source.to_dict() if source is not None else dict(input_size=(3, 224, 224), num_classes=1000)
    for key in ("architecture", "tag"):
        cfg.pop(key, None)
    for key in ("first_conv", "classifier"):
        names = cfg.get(key)
        if names:
            cfg[key] = f"backbone.{names}" if isinstance(names, str) else tuple(f"backbone.{n}" for n in names)
    cfg["paper_ids"] = "arXiv:2410.05500"
    cfg["notes"] = (f"backbone weights: timm {backbone}; RKAN side paths start as a no-op",)
    return {**cfg, **kwargs}


def _cifar_cfg() -> dict:
    return dict(
        input_size=(3, 32, 32), num_classes=10, crop_pct=1.0, interpolation="bilinear", mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616), first_conv="backbone.conv1", classifier="backbone.fc",
        paper_ids="arXiv:2410.05500",
    )  # fmt: skip


default_cfgs = generate_default_cfgs(
    {
        "rkan_resnet18.a1_in1k": _cfg("resnet18.a1_in1k"),
        "rkan_resnet34.a1_in1k": _cfg("resnet34.a1_in1k"),
        "rkan_resnet50.a1_in1k": _cfg("resnet50.a1_in1k"),
        "rkan_resnet101.a1h_in1k": _cfg("resnet101.a1h_in1k"),
        "rkan_resnext50_32x4d.a1h_in1k": _cfg("resnext50_32x4d.a1h_in1k"),
        "rkan_densenet121.ra_in1k": _cfg("densenet121.ra_in1k"),
        "rkan_regnety_008.pycls_in1k": _cfg("regnety_008.pycls_in1k"),
        "rkan_regnety_016.tv2_in1k": _cfg("regnety_016.tv2_in1k"),
        "rkan_regnety_032.ra_in1k": _cfg("regnety_032.ra_in1k"),
        # 32 px CIFAR networks: no published weights
        "rkan_resnet18_cifar": _cifar_cfg(),
        "rkan_resnet34_cifar": _cifar_cfg(),
    }
)


def _create_rkan(variant: str, backbone: str, pretrained: bool = False, /, **kwargs) -> ResidualKANNet:
    if kwargs.pop("features_only", False):
        raise ValueError(f"{variant} does not support features_only; use the backbone's timm model for features")
    kwargs = {"backbone": backbone, **kwargs}  # positional-only backbone: a caller's backbone= lands here and wins
    return build_model(ResidualKANNet, variant, pretrained, pretrained_filter_fn=checkpoint_filter_fn, **kwargs)


def _create_rkan_cifar(variant: str, backbone: str, pretrained: bool = False, /, **kwargs) -> ResidualKANNet:
    """An RKAN for 32 px CIFAR images: the CIFAR stem and 10 classes unless ``kwargs`` say otherwise."""
    return _create_rkan(variant, backbone, pretrained, **{"stem": "cifar", "num_classes": 10, **kwargs})


def create_rkan(
    backbone: str = "resnet50",
    pretrained: bool = False,
    pretrained_cfg: str | dict | None = None,
    **kwargs,
) -> ResidualKANNet:
    """RKAN side paths in ANY supported timm backbone, e.g. ``create_rkan("resnext50_32x4d", stages=(3, 4))``.

    For Hydra (``_target_: kanvision.models.rkan.create_rkan``) and, registered as ``rkan_generic``, for
    ``timm.create_model("rkan_generic", backbone="regnetx_032", stages=[3, 4])``. The pretrained cfg is the
    backbone's (a string ``pretrained_cfg`` is a backbone tag), so ``pretrained=True`` loads the backbone's
    timm weights, or ``pretrained_cfg_overlay=dict(file=...)`` a local backbone or RKAN checkpoint.
    """
    if not isinstance(backbone, str) or not timm.is_model(backbone.partition(".")[0]):
        raise ValueError(f"backbone must be a timm model name, got {backbone!r}; supported: {SUPPORTED_FAMILIES}")
    if isinstance(pretrained_cfg, str):
        backbone = f"{backbone.partition('.')[0]}.{pretrained_cfg}"
        pretrained_cfg = None
    cfg = _cfg(backbone) if pretrained_cfg is None else pretrained_cfg
    if "stages" in kwargs and not isinstance(kwargs["stages"], int):
        kwargs["stages"] = tuple(kwargs["stages"])  # a Hydra ListConfig or a list
    variant = f"rkan_{backbone.partition('.')[0]}"
    return _create_rkan(variant, backbone, pretrained, pretrained_cfg=cfg, **kwargs)


@register_model
def rkan_generic(pretrained: bool = False, **kwargs) -> ResidualKANNet:
    """RKAN around any supported timm backbone named by ``backbone=`` (default resnet50): see create_rkan."""
    return create_rkan(pretrained=pretrained, **kwargs)


@register_model
def rkan_resnet18(pretrained: bool = False, **kwargs) -> ResidualKANNet:
    """RKAN-ResNet-18: stage-4 side path (256 -> 128 -> 512), +99,683 parameters."""
    return _create_rkan("rkan_resnet18", "resnet18", pretrained, **kwargs)


@register_model
def rkan_resnet18_cifar(pretrained: bool = False, **kwargs) -> ResidualKANNet:
    """RKAN-ResNet-18 for 32 px CIFAR images: the CIFAR stem (3x3 stride-1 conv, no max pooling), stage-4 side path."""
    return _create_rkan_cifar("rkan_resnet18_cifar", "resnet18", pretrained, **kwargs)


@register_model
def rkan_resnet34_cifar(pretrained: bool = False, **kwargs) -> ResidualKANNet:
    """RKAN-ResNet-34 for 32 px CIFAR images: the CIFAR stem, stage-4 side path."""
    return _create_rkan_cifar("rkan_resnet34_cifar", "resnet34", pretrained, **kwargs)


@register_model
def rkan_resnet34(pretrained: bool = False, **kwargs) -> ResidualKANNet:
    """RKAN-ResNet-34: stage-4 side path (256 -> 128 -> 512), +99,683 parameters."""
    return _create_rkan("rkan_resnet34", "resnet34", pretrained, **kwargs)


@register_model
def rkan_resnet50(pretrained: bool = False, **kwargs) -> ResidualKANNet:
    """RKAN-ResNet-50 (paper, ImageNet 78.02): stage-4 side path, 25,557,032 + 1,578,083 = 27,135,115 parameters."""
    return _create_rkan("rkan_resnet50", "resnet50", pretrained, **kwargs)


@register_model
def rkan_resnet101(pretrained: bool = False, **kwargs) -> ResidualKANNet:
    """RKANet-101 (paper, CIFAR-100 85.12 at 128 px): +1,578,083 parameters, 44,283,143 with 100 classes."""
    return _create_rkan("rkan_resnet101", "resnet101", pretrained, **kwargs)


@register_model
def rkan_resnext50_32x4d(pretrained: bool = False, **kwargs) -> ResidualKANNet:
    """RKAN-ResNeXt-50 32x4d: stage-4 side path (1024 -> 512 -> 2048), +1,578,083 parameters."""
    return _create_rkan("rkan_resnext50_32x4d", "resnext50_32x4d", pretrained, **kwargs)


@register_model
def rkan_densenet121(pretrained: bool = False, **kwargs) -> ResidualKANNet:
    """RKAN-DenseNet-121: side path around dense block 4 + norm5 (512 -> 256 -> 1024), +395,875 parameters."""
    return _create_rkan("rkan_densenet121", "densenet121", pretrained, **kwargs)


@register_model
def rkan_regnety_008(pretrained: bool = False, **kwargs) -> ResidualKANNet:
    """RKAN-RegNetY-800MF: stage-4 side path (320 -> 160 -> 768), +176,035 parameters."""
    return _create_rkan("rkan_regnety_008", "regnety_008", pretrained, **kwargs)


@register_model
def rkan_regnety_016(pretrained: bool = False, **kwargs) -> ResidualKANNet:
    """RKAN-RegNetY-1.6GF: stage-4 side path (336 -> 168 -> 888), +207,843 parameters."""
    return _create_rkan("rkan_regnety_016", "regnety_016", pretrained, **kwargs)


@register_model
def rkan_regnety_032(pretrained: bool = False, **kwargs) -> ResidualKANNet:
    """RKAN-RegNetY-3.2GF: stage-4 side path (576 -> 288 -> 1512), +605,043 parameters."""
    return _create_rkan("rkan_regnety_032", "regnety_032", pretrained, **kwargs)
