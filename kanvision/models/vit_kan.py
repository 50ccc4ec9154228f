"""ViT with KAN MLPs: the "ViT + KAN" baseline of the Kolmogorov-Arnold Transformer paper

Paper: "Kolmogorov-Arnold Transformer", Xingyi Yang and Xinchao Wang, ICLR 2025, https://arxiv.org/abs/2409.10594.
Its baseline table trains ViT-T/S/B whose MLPs are B-spline KAN layers ("ViT + KAN"): ImageNet-1k top-1 64.9 (T),
62.9 (S), diverged (B), against 72.7 / 78.8 / 79.1 for the ViTs; the paper publishes no details beyond "B-spline KAN".
Prior work: Vision-KAN (https://github.com/chenziwenhaoshuai/Vision-KAN, pip ``VisionKAN``), DeiT with efficient-kan
KANLinear MLPs of hidden width 192 (``kan_hidden_features=192`` here): 64.87 top-1 on ImageNet-1k.

A timm VisionTransformer whose block MLP is :class:`KanMlp`: fc1 = KANLinear(D, hidden) -> dropout -> fc2 =
KANLinear(hidden, D) -> dropout (timm's Mlp with both Linears replaced and its activation dropped: the KAN layers
carry their own functions). Any kanvision basis works (``kan_basis``, ``kan_kwargs``); everything else is timm's ViT,
so the full timm API comes with it and a ViT's attention, patch embedding, norms and head load one-to-one
(:func:`checkpoint_filter_fn`).
"""

from __future__ import annotations

import logging
import re
from functools import partial
from typing import Any

import torch
from timm.models import generate_default_cfgs, register_model
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

from kanvision.layers import Basis, KANLinear, basis_parameters, list_bases
from kanvision.layers.helpers import check_int
from kanvision.models._helpers import build_model, describe_keys, fit_state_dict
from kanvision.models.kat import load_checkpoint_file, remap_vit_checkpoint, vit_family_cfg

__all__ = ["VitKan", "KanMlp", "checkpoint_filter_fn"]

_logger = logging.getLogger(__name__)

# LayerNorm'd tokens (fc1's input) are about N(0, 1): efficient-kan's (-1, 1) grid would leave a third of them on the
# decaying outer splines (only the base branch responds beyond +-2.2 for order 3), so the grid spans +-3 sigma; fc2's
# input starts narrower (std ~0.2 under KANLinear's init) and fc1 learns its scale.
DEFAULT_BSPLINE_KWARGS = dict(grid_size=5, spline_order=3, grid_range=(-3.0, 3.0))


class KanMlp(nn.Module):
    """KAN channel mixer: fc1 (KANLinear) -> drop -> fc2 (KANLinear) -> drop.

    Signature compatible with timm's ``Mlp`` so that it plugs into timm's ``Block`` as ``mlp_layer`` (``act_layer``
    is ignored: each KANLinear has its own basis functions and base branch). ``fixed_hidden_features`` sets the
    hidden width whatever the block's ``mlp_ratio`` gives (Vision-KAN's 192).
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int | None = None,
        out_features: int | None = None,
        act_layer: Any = None,
        norm_layer: Any = None,
        bias: bool = True,
        drop: float = 0.0,
        basis: str | Basis = "bspline",
        basis_kwargs: dict | None = None,
        base_activation: str | None = "silu",
        fixed_hidden_features: int | None = None,
        device: Any = None,
        dtype: Any = None,
    ):
        super().__init__()
        if norm_layer is not None:
            raise ValueError("KanMlp has no inner norm: scale_mlp_norm=True is not supported")
        hidden_features = fixed_hidden_features or hidden_features or in_features
        out_features = out_features or in_features
        kan = partial(KANLinear, basis=basis, basis_kwargs=basis_kwargs, base_activation=base_activation, bias=bias,
                      device=device, dtype=dtype)  # fmt: skip
        self.fc1 = kan(in_features, hidden_features)
        self.drop1 = nn.Dropout(drop)
        self.fc2 = kan(hidden_features, out_features)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop2(self.fc2(self.drop1(self.fc1(x))))


class VitKan(VisionTransformer):
    """timm's VisionTransformer with :class:`KanMlp` blocks (the KAT paper's "ViT + KAN" baseline).

    Args (besides every VisionTransformer argument):
        kan_basis: basis of both KANLinears, a name from ``kanvision.layers.list_bases()`` or a Basis instance.
        kan_kwargs: the basis' hyper-parameters (``basis_kwargs``); None gives :data:`DEFAULT_BSPLINE_KWARGS` for
            "bspline" (grid 5, order 3 as efficient-kan, on (-3, 3)) and the basis' own defaults otherwise.
        base_activation: the KANLinears' base branch b(x) ("silu" as pykan and efficient-kan); "none" (or None when
            constructing the class directly: ``timm.create_model`` drops None arguments) for no base branch.
        kan_hidden_features: hidden width of the KAN MLP; None: ``mlp_ratio * embed_dim`` as timm's ViT.

    Parameters at 224 px with 1000 classes (bspline grid 5, order 3: 9 weights per edge with the base branch):
    default hidden width (4 D) vit_kan_tiny 34,028,968, vit_kan_small 135,296,872, vit_kan_base 539,552,488;
    ``kan_hidden_features=192`` (Vision-KAN) 10,134,184 / 23,804,008 / 61,760,488.
    """

    def __init__(
        self,
        kan_basis: str | Basis = "bspline",
        kan_kwargs: dict | None = None,
        base_activation: str | None = "silu",
        kan_hidden_features: int | None = None,
        **kwargs: Any,
    ):
        if not isinstance(kan_basis, Basis):
            if not isinstance(kan_basis, str) or kan_basis not in list_bases():
                raise ValueError(f"kan_basis={kan_basis!r} is not a registered basis; valid: {list_bases()}")
            if kan_kwargs is None and kan_basis == "bspline":
                kan_kwargs = dict(DEFAULT_BSPLINE_KWARGS)
            unknown = sorted(set(kan_kwargs or {}) - set(basis_parameters(kan_basis)))
            if unknown:
                raise ValueError(
                    f"kan_kwargs {unknown} are not parameters of basis {kan_basis!r}; valid: "
                    f"{basis_parameters(kan_basis)}"
                )
        if kan_hidden_features is not None:
            kan_hidden_features = check_int("kan_hidden_features", kan_hidden_features, 1)
            if "mlp_ratio" in kwargs:
                raise ValueError(
                    f"mlp_ratio={kwargs['mlp_ratio']!r} and kan_hidden_features={kan_hidden_features} both set the MLP "
                    "width: pass one of them"
                )
        mlp_layer = partial(
            KanMlp, basis=kan_basis, basis_kwargs=kan_kwargs, base_activation=base_activation,
            fixed_hidden_features=kan_hidden_features,
        )  # fmt: skip
        super().__init__(mlp_layer=mlp_layer, **kwargs)
        self.kan_basis = kan_basis
        self.kan_kwargs = dict(kan_kwargs or {})

    @torch.jit.ignore()
    def load_pretrained(self, checkpoint_path: str, prefix: str = "", use_ema: bool = False) -> None:
        """Load any supported checkpoint file; timm's ``pretrained=True`` path calls this (``custom_load``)."""
        state_dict = load_checkpoint_file(checkpoint_path, use_ema=use_ema)
        if prefix:
            state_dict = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
        self.load_state_dict(checkpoint_filter_fn(state_dict, self), strict=True)


# ---------------------------------------------------------------------------------------------------------------------
# checkpoints

_MLP_KEY = re.compile(r"blocks\.\d+\.mlp\.")
_LINEAR_MLP = re.compile(r"blocks\.\d+\.mlp\.fc[12]\.(weight|bias)$")


def _is_linear_mlp(state_dict: dict[str, Tensor], model: VitKan) -> bool:
    """Whether the checkpoint's MLPs are timm ``Mlp``s (a ViT's): fc1/fc2 weights and biases only, with
    ``nn.Linear`` shapes (fc1 reads ``embed_dim`` inputs, not ``embed_dim`` times the basis size)."""
    keys = [k for k in state_dict if _MLP_KEY.match(k)]
    if not keys or not all(_LINEAR_MLP.match(k) for k in keys):
        return False
    fc1 = [state_dict[k] for k in keys if k.endswith("fc1.weight")]
    return bool(fc1) and all(w.dim() == 2 and w.shape[1] == model.embed_dim for w in fc1)


def checkpoint_filter_fn(
    state_dict: dict[str, Any], model: VitKan, interpolation: str = "bicubic", antialias: bool = True
) -> dict[str, Tensor]:
    """Remap a checkpoint to ``model``'s full state dict, or raise ValueError listing every mismatch.

    Accepts timm ViT state dicts (and Google AugReg Flax dicts from ``.npz``), whose MLPs are replaced by the model's
    initial KAN MLPs (logged), and VitKan's own. Position embeddings (and patch-embedding kernels) are resampled to
    the model's grid; a head whose class count differs is dropped (the model's fresh head is kept, and logged). Any
    other missing, unexpected or mis-shaped key is an error, so a model is never half-loaded.
    """

    def keep_kan_mlps(state_dict: dict[str, Any], expected: dict[str, Tensor]) -> dict[str, Any]:
        if not _is_linear_mlp(state_dict, model):
            return state_dict
        dropped = [k for k in state_dict if _MLP_KEY.match(k)]
        _logger.info(
            f"Checkpoint has Linear MLPs (a ViT): keeping the model's initial KAN MLPs ({model.kan_basis!r}); not "
            f"loaded: {describe_keys(dropped, state_dict)}"
        )
        kept = {k: v for k, v in state_dict.items() if not _MLP_KEY.match(k)}
        return kept | {k: v for k, v in expected.items() if _MLP_KEY.match(k)}

    out, source = remap_vit_checkpoint(state_dict, model, interpolation, antialias, prepare=keep_kan_mlps)
    description = f"{type(model).__name__}(embed_dim={model.embed_dim}, depth={len(model.blocks)}, " \
        f"kan_basis={model.kan_basis!r}, num_classes={model.num_classes})"  # fmt: skip
    return fit_state_dict(out, model, description, classifier=(), source=source)


# ---------------------------------------------------------------------------------------------------------------------
# registry


def _create_vit_kan(variant: str, pretrained: bool, model_args: dict[str, Any], kwargs: dict[str, Any]) -> VitKan:
    kwargs = dict(patch_size=16, **model_args) | kwargs
    out_indices = kwargs.pop("out_indices", 3)
    overlay = dict(kwargs.pop("pretrained_cfg_overlay", None) or {})
    if overlay.get("file") or overlay.get("url"):
        overlay.setdefault("custom_load", True)  # timm resets it for overlaid sources; our reader handles them all
    return build_model(
        VitKan,
        variant,
        pretrained,
        pretrained_cfg_overlay=overlay,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=out_indices, feature_cls="getter"),
        **kwargs,
    )


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return vit_family_cfg(paper_name="Kolmogorov-Arnold Transformer (ViT + KAN baseline)", **kwargs)


default_cfgs = generate_default_cfgs(
    {
        "vit_kan_tiny_patch16_224": _cfg(),
        "vit_kan_small_patch16_224": _cfg(),
        "vit_kan_base_patch16_224": _cfg(),
    }
)


@register_model
def vit_kan_tiny_patch16_224(pretrained: bool = False, **kwargs: Any) -> VitKan:
    """ViT-Ti/16 with B-spline KAN MLPs (34.0M; 10.1M at hidden 192); KAT paper baseline: 64.9 top-1."""
    model_args = dict(embed_dim=192, depth=12, num_heads=3)
    return _create_vit_kan("vit_kan_tiny_patch16_224", pretrained, model_args, kwargs)


@register_model
def vit_kan_small_patch16_224(pretrained: bool = False, **kwargs: Any) -> VitKan:
    """ViT-S/16 with B-spline KAN MLPs (135.3M; 23.8M at hidden 192); KAT paper baseline: 62.9 top-1."""
    model_args = dict(embed_dim=384, depth=12, num_heads=6)
    return _create_vit_kan("vit_kan_small_patch16_224", pretrained, model_args, kwargs)


@register_model
def vit_kan_base_patch16_224(pretrained: bool = False, **kwargs: Any) -> VitKan:
    """ViT-B/16 with B-spline KAN MLPs (539.6M; 61.8M at hidden 192); diverged in the KAT paper's baseline."""
    model_args = dict(embed_dim=768, depth=12, num_heads=12)
    return _create_vit_kan("vit_kan_base_patch16_224", pretrained, model_args, kwargs)
