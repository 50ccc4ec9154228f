"""Kolmogorov-Arnold Transformer (KAT)

Paper: "Kolmogorov-Arnold Transformer", Xingyi Yang and Xinchao Wang, ICLR 2025, https://arxiv.org/abs/2409.10594
Original code: https://github.com/Adamdad/kat (model, MIT) and https://github.com/Adamdad/rational_kat_cu (kernels)

A ViT whose MLP is a two-layer GR-KAN: act1 (GroupRational, identity init) -> dropout -> fc1 -> act2 (GroupRational,
swish init) -> dropout -> fc2. Everything else is timm's VisionTransformer (pre-norm blocks, LayerNorm eps 1e-6,
qkv bias, class token, no LayerScale), so the full timm API comes with it and ViT weights map one-to-one.

KAT-X: ``kan=<basis>`` (any name of ``kanvision.layers.list_bases()``) replaces both rationals by
:class:`~kanvision.layers.GroupKAN` activations of that basis, same groups and inits; ``kan="rational"`` (default) is
the released KAT.

Weights load through timm's standard path,
``timm.create_model("kat_tiny_patch16_224", pretrained=True, pretrained_cfg_overlay=dict(file=PATH))``, from timm ViT
state dicts (.pth/.bin/.safetensors; the paper's "from ViT" initialisation), Google AugReg ``.npz`` files, official
KAT checkpoints (timm train.py dicts; their ``args`` Namespace is the one extra class allowed under
``weights_only=True``) and kanvision's own files. See :func:`checkpoint_filter_fn`.
"""

from __future__ import annotations

import argparse
import logging
import math
import re
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import adapt_input_conv, generate_default_cfgs, register_model
from timm.models.vision_transformer import VisionTransformer
from timm.models.vision_transformer import checkpoint_filter_fn as vit_checkpoint_filter_fn
from torch import Tensor, nn

from kanvision.layers.group_activation import GroupActivation
from kanvision.layers.group_kan import GroupKAN, list_kans
from kanvision.layers.rational import GroupRational
from kanvision.models._helpers import build_model, describe_keys, fit_state_dict

__all__ = [
    "Kat",
    "KatMlp",
    "checkpoint_filter_fn",
    "load_checkpoint_file",
    "mimetic_attention_init_",
    "remap_vit_checkpoint",
    "vit_family_cfg",
]

_logger = logging.getLogger(__name__)

WEIGHT_INITS = ("released", "variance", "skip")

# What ``kan_kwargs`` may set on the GroupKAN activations of KAT-X; the rest comes from the model's own arguments.
KAN_KWARGS = ("basis_kwargs", "base_activation", "init_range")
_KAN_KWARGS_ELSEWHERE = {
    "groups": "rational_groups",
    "init": "rational_init",
    "basis": "kan",
    "num_channels": "the model's widths",
    "channel_dim": "the model's layout",
}
_RATIONAL_ONLY = dict(rational_order=(5, 4), share_numerator=True, use_kernel=None)


def check_kan(kan: str, kan_kwargs: dict | None, **rational_options: Any) -> dict[str, Any]:
    """ValueError naming the bad value unless ``kan`` is one of :func:`list_kans` and ``kan_kwargs`` (keys of
    ``KAN_KWARGS``, only with a basis) and the GroupRational options (only with ``"rational"``) fit it.
    Returns ``kan_kwargs`` as a new dict."""
    if not isinstance(kan, str) or kan not in list_kans():
        raise ValueError(f"kan={kan!r} is not a group activation; valid: {list_kans()}")
    if kan_kwargs is None:
        kan_kwargs = {}
    if not isinstance(kan_kwargs, dict):
        raise ValueError(f"kan_kwargs must be a dict with keys from {list(KAN_KWARGS)}, got {kan_kwargs!r}")
    if kan == "rational":
        if kan_kwargs:
            raise ValueError(f"kan_kwargs={kan_kwargs!r} applies to a basis kan, not kan='rational'")
        return {}
    for key in kan_kwargs:
        if key in _KAN_KWARGS_ELSEWHERE:
            raise ValueError(f"kan_kwargs[{key!r}]: set it through {_KAN_KWARGS_ELSEWHERE[key]} instead")
        if key not in KAN_KWARGS:
            raise ValueError(f"kan_kwargs has unknown key {key!r}; valid: {list(KAN_KWARGS)}")
    for name, value in rational_options.items():
        default = _RATIONAL_ONLY[name]
        if (tuple(value) if isinstance(value, (list, tuple)) else value) != default:
            raise ValueError(f"{name}={value!r} applies to kan='rational' only, not kan={kan!r}")
    return dict(kan_kwargs)


class KatMlp(nn.Module):
    """GR-KAN channel mixer (KAT section 4): act1 -> drop -> fc1 -> act2 -> drop -> fc2, no dropout after fc2.

    Signature compatible with timm's ``Mlp`` so that it plugs into timm's ``Block`` as ``mlp_layer``
    (``act_layer`` is ignored: the activations are the two group activations). ``kan``, ``kan_kwargs``: as
    :class:`Kat` (``"rational"``: GroupRational; a basis name: GroupKAN of that basis).
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
        rational_init: Sequence = ("identity", "swish"),
        rational_groups: int = 8,
        rational_order: tuple[int, int] = (5, 4),
        share_numerator: bool = True,
        use_kernel: bool | None = None,
        kan: str = "rational",
        kan_kwargs: dict | None = None,
        device: Any = None,
        dtype: Any = None,
    ):
        super().__init__()
        if norm_layer is not None:
            raise ValueError("KatMlp has no inner norm: scale_mlp_norm=True is not supported")
        kan_kwargs = check_kan(
            kan, kan_kwargs, rational_order=rational_order, share_numerator=share_numerator, use_kernel=use_kernel
        )
        hidden_features = hidden_features or in_features
        out_features = out_features or in_features
        if kan == "rational":
            activation = partial(
                GroupRational, groups=rational_groups, order=rational_order, share_numerator=share_numerator,
                use_kernel=use_kernel,
            )  # fmt: skip
        else:
            activation = partial(GroupKAN, groups=rational_groups, basis=kan, **kan_kwargs)
        self.act1 = activation(in_features, init=rational_init[0])
        self.drop1 = nn.Dropout(drop)
        self.fc1 = nn.Linear(in_features, hidden_features, bias=bias)
        self.act2 = activation(hidden_features, init=rational_init[1])
        self.drop2 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden_features, out_features, bias=bias)
        self.to(device=device, dtype=dtype)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.drop2(self.act2(self.fc1(self.drop1(self.act1(x))))))


def _noisy_identity(dim: int, alpha: float, beta: float, generator: torch.Generator | None) -> Tensor:
    """alpha * Z + beta * I with Z uniform of variance 1/dim (the official mimetic draw), float64."""
    bound = math.sqrt(3.0 / dim)
    noise = torch.rand(dim, dim, generator=generator, dtype=torch.float64) * (2 * bound) - bound
    return alpha * noise + beta * torch.eye(dim, dtype=torch.float64)


def _head_factors(target: Tensor, num_heads: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """``target`` (D, D) = L @ R where head h owns L[:, block h] (D, D/H) and R[block h] (D/H, D), balanced.

    A random orthonormal basis is split into per-head blocks Q_h; head h gets the SVD factors
    (Q_h U sqrt(S), sqrt(S) V^T) of its projection Q_h Q_h^T target, so the heads sum to ``target`` exactly.
    The SVD of B = Q_h^T target (D/H, D) comes from the eigendecomposition of B B^T (D/H, D/H): one QR and H small
    eigh instead of H full D x D SVDs, so KAT-B builds in seconds on a CPU.
    """
    dim = target.shape[0]
    basis, _ = torch.linalg.qr(torch.randn(dim, dim, generator=generator, dtype=target.dtype))
    left, right = torch.empty_like(target), torch.empty_like(target)
    start = 0
    for block in basis.tensor_split(num_heads, dim=1):
        projected = block.T @ target  # (D/H, D)
        eigenvalues, u = torch.linalg.eigh(projected @ projected.T)  # B B^T = U S^2 U^T
        root = eigenvalues.clamp_min(torch.finfo(target.dtype).tiny).sqrt().sqrt()  # sqrt(S)
        stop = start + block.shape[1]
        left[:, start:stop] = block @ (u * root)
        right[start:stop] = (u / root).T @ projected  # sqrt(S) V^T = S^-1/2 U^T B
        start = stop
    return left, right


@torch.no_grad()
def mimetic_attention_init_(
    attn: nn.Module,
    qk: tuple[float, float] = (0.7, 0.7),
    vo: tuple[float, float] = (0.4, 0.4),
    generator: torch.Generator | None = None,
) -> None:
    """Mimetic initialisation of a timm ``Attention`` (Trockman & Kolter, arXiv 2305.09828), as KAT released it.

    Summed over heads, W_q^T W_k = alpha1 Z1 + beta1 I and W_proj W_v = alpha2 Z2 - beta2 I, with the official
    (alpha, beta) = (0.7, 0.7) and (0.4, 0.4) and Z uniform of variance 1/D. The official code draws an independent
    matrix per head and keeps its top D/H singular directions (a full SVD per head); here each head gets the
    projection of one per-layer matrix on its own random subspace, which makes the heads' sum exact and is cheap.
    Biases are left as they are (zero under timm's init).
    """
    dim, heads = attn.qkv.in_features, attn.num_heads
    if attn.qkv.out_features != 3 * dim or attn.proj.in_features != dim:
        raise ValueError(f"mimetic init needs qkv ({3 * dim}, {dim}) and proj (.., {dim}), got {attn.qkv}, {attn.proj}")
    weight = attn.qkv.weight
    query_t, key = _head_factors(_noisy_identity(dim, qk[0], qk[1], generator), heads, generator)
    weight[:dim].copy_(query_t.T)  # q_h . k_h = x^T (W_q^h)^T W_k^h x
    weight[dim : 2 * dim].copy_(key)
    proj, value = _head_factors(_noisy_identity(dim, vo[0], -vo[1], generator), heads, generator)
    weight[2 * dim :].copy_(value)
    attn.proj.weight.copy_(proj)


class Kat(VisionTransformer):
    """Kolmogorov-Arnold Transformer (arXiv 2409.10594): timm's VisionTransformer with :class:`KatMlp` blocks.

    Args (besides every VisionTransformer argument):
        kan: the group activation of act1 and act2: ``"rational"`` (default, the released KAT: GroupRational) or a
            basis name of ``kanvision.layers.list_bases()`` (KAT-X: GroupKAN of that basis); see :func:`list_kans`.
        kan_kwargs: GroupKAN options for a basis ``kan``: ``basis_kwargs`` (e.g. ``dict(degree=4)``),
            ``base_activation`` (default ``"silu"``), ``init_range`` (default (-3, 3)). Groups and inits come from
            ``rational_groups`` and ``rational_init``.
        rational_init: init of (act1, act2), names from ``kanvision.layers.rational.list_rational_inits`` (the same
            names for GroupKAN). ("identity", "swish") is the released default; ("identity", "gelu") makes the model
            compute the ViT's function (to the activations' fit error) once ViT weights are loaded.
        rational_groups: channel groups of every group activation (released: 8).
        rational_order, share_numerator: GroupRational layout (released: (5, 4), True); ``kan="rational"`` only.
        use_kernel: GroupRational kernel switch (None: fused Triton kernel on CUDA); ``kan="rational"`` only.
        weight_init: "released" (default) is what the published models were trained with: timm's ViT init
            (trunc-normal 0.02 on every Linear) plus mimetic attention. The official code meant to apply the
            paper's variance-preserving fc init but overwrote it; "variance" actually applies it (fc1, fc2 from
            N(0, alpha/d_in) with alpha = Var[x] / E[F(x)^2] of the preceding activation, computed numerically)
            on top of mimetic attention. "released" is the default because the published accuracies, recipes and
            checkpoints all come from it; "variance" is the design of section 4.4, untested at ImageNet scale.
            "skip" leaves parameters uninitialised (for loading weights right after).
    """

    def __init__(
        self,
        rational_init: Sequence = ("identity", "swish"),
        rational_groups: int = 8,
        rational_order: tuple[int, int] = (5, 4),
        share_numerator: bool = True,
        use_kernel: bool | None = None,
        weight_init: str = "released",
        kan: str = "rational",
        kan_kwargs: dict | None = None,
        **kwargs: Any,
    ):
        if isinstance(rational_init, str) or len(rational_init) != 2:
            raise ValueError(
                f"rational_init must be a pair (act1, act2) such as ('identity', 'swish'), got {rational_init!r}"
            )
        if weight_init not in WEIGHT_INITS:
            raise ValueError(f"weight_init={weight_init!r} is not one of {WEIGHT_INITS}")
        kan_kwargs = check_kan(
            kan, kan_kwargs, rational_order=rational_order, share_numerator=share_numerator, use_kernel=use_kernel
        )
        mlp_layer = partial(
            KatMlp, rational_init=tuple(rational_init), rational_groups=rational_groups,
            rational_order=tuple(rational_order), share_numerator=share_numerator, use_kernel=use_kernel,
        )  # fmt: skip
        if kan != "rational":  # the released KAT's blocks stay built exactly as before
            mlp_layer = partial(mlp_layer, kan=kan, kan_kwargs=kan_kwargs)
        super().__init__(mlp_layer=mlp_layer, weight_init="skip", **kwargs)
        self.kan, self.kan_kwargs = kan, kan_kwargs
        self.rational_init = tuple(rational_init)
        self.weight_init_mode = ""  # timm's own mode for VisionTransformer.init_weights
        self.kat_weight_init = weight_init
        if weight_init != "skip":
            self.init_weights(weight_init, needs_reset=False)

    def init_weights(self, mode: str = "", needs_reset: bool = True, generator: torch.Generator | None = None) -> None:
        """(Re-)initialise: ``mode`` is "released" or "variance" (default: the construction mode)."""
        mode = mode or self.kat_weight_init
        if mode not in ("released", "variance"):
            raise ValueError(f"Kat.init_weights: mode={mode!r} is not 'released' or 'variance'")
        super().init_weights("", needs_reset=needs_reset)  # trunc-normal(0.02) Linears, pos/cls init, activations
        for block in self.blocks:
            mimetic_attention_init_(block.attn, generator=generator)
        if mode == "variance":
            self._variance_preserving_fc_init(generator)

    @torch.no_grad()
    def _variance_preserving_fc_init(self, generator: torch.Generator | None) -> None:
        gains: dict[tuple, float] = {}  # every block starts from the same two functions: compute each gain once
        for block in self.blocks:
            mlp = block.mlp
            for act, fc in ((mlp.act1, mlp.fc1), (mlp.act2, mlp.fc2)):
                key = _function_key(act)
                if key not in gains:
                    gains[key] = act.variance_gain()
                std = math.sqrt(gains[key] / fc.in_features)
                fc.weight.copy_(torch.randn(fc.weight.shape, generator=generator) * std)
                if fc.bias is not None:
                    fc.bias.zero_()

    @torch.jit.ignore()
    def load_pretrained(self, checkpoint_path: str, prefix: str = "", use_ema: bool = False) -> None:
        """Load any supported checkpoint file; timm's ``pretrained=True`` path calls this (``custom_load``)."""
        state_dict = load_checkpoint_file(checkpoint_path, use_ema=use_ema)
        if prefix:
            state_dict = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
        self.load_state_dict(checkpoint_filter_fn(state_dict, self), strict=True)


def _function_key(act: GroupActivation) -> tuple:
    """Everything that defines the function a group activation computes: its type, layout and every tensor."""
    tensors = tuple((name, tuple(t.shape), tuple(t.flatten().tolist())) for name, t in act.state_dict().items())
    return type(act).__name__, act.extra_repr(), tensors


# ---------------------------------------------------------------------------------------------------------------------
# checkpoints


def load_checkpoint_file(path: str | Path, use_ema: bool = False) -> dict[str, Any]:
    """Read a checkpoint file into a flat dict of tensors (not yet remapped: see :func:`checkpoint_filter_fn`).

    ``.npz`` (Google Flax, arrays only), ``.safetensors``, or a torch file read with ``weights_only=True`` where
    ``argparse.Namespace`` (the ``args`` entry of timm train.py checkpoints) is the one extra allowed class. Trainer
    dicts are unwrapped to ``state_dict`` (or ``model``); ``state_dict_ema`` only when ``use_ema`` or when it is the
    only one. The default is the raw weights because the official KAT accuracies were evaluated on them (its
    validate.py log: "Loaded state_dict from checkpoint").
    """
    path = Path(path)
    if path.suffix == ".npz":
        import numpy as np

        with np.load(path, allow_pickle=False) as arrays:
            return {k: torch.from_numpy(arrays[k].copy()) for k in arrays.files}
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    with torch.serialization.safe_globals([argparse.Namespace]):
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    return _unwrap(checkpoint, use_ema)


def _unwrap(checkpoint: dict[str, Any], use_ema: bool = False) -> dict[str, Any]:
    raw, ema = ("state_dict", "model"), ("state_dict_ema", "model_ema")
    keys = ema + raw if use_ema else raw + ema
    for key in keys:
        if isinstance(checkpoint.get(key), dict):
            return checkpoint[key]
    return checkpoint


def _is_flax(state_dict: dict[str, Any]) -> bool:
    return any(k.endswith("embedding/kernel") for k in state_dict)


def _convert_flax(state_dict: dict[str, Tensor], model: Kat) -> dict[str, Tensor]:
    """Google AugReg ``.npz`` (Flax names, HWIO / (in, heads, head_dim) kernels) -> timm ViT names and layouts.

    Keys it does not understand are kept under their Flax names so that the filter reports them.
    """
    prefix = next(k for k in state_dict if k.endswith("embedding/kernel"))[: -len("embedding/kernel")]
    flax = {k[len(prefix) :]: v.float() for k, v in state_dict.items() if k.startswith(prefix)}
    flax.update({k: v for k, v in state_dict.items() if not k.startswith(prefix)})
    out: dict[str, Tensor] = {}

    def take(name: str) -> Tensor:
        return flax.pop(name)

    def dense(name: str) -> Tensor:  # (in, out) -> (out, in)
        return take(name).T

    if "embedding/kernel" in flax:
        out["patch_embed.proj.weight"] = take("embedding/kernel").permute(3, 2, 0, 1)  # HWIO -> OIHW
        out["patch_embed.proj.bias"] = take("embedding/bias")
    if "cls" in flax:
        out["cls_token"] = take("cls")
    if "Transformer/posembed_input/pos_embedding" in flax:
        out["pos_embed"] = take("Transformer/posembed_input/pos_embedding")
    for ours, theirs in (("norm", "Transformer/encoder_norm"), ("head", "head")):
        if f"{theirs}/bias" in flax:
            out[f"{ours}.weight"] = take(f"{theirs}/scale") if ours == "norm" else dense(f"{theirs}/kernel")
            out[f"{ours}.bias"] = take(f"{theirs}/bias")
    for name in [k for k in flax if k.startswith("pre_logits/")]:  # unused representation layer, as in timm
        del flax[name]
    block_ids = sorted({int(m.group(1)) for k in flax if (m := re.match(r"Transformer/encoderblock_(\d+)/", k))})
    for i in block_ids:
        src, dst = f"Transformer/encoderblock_{i}/", f"blocks.{i}."
        attn = src + "MultiHeadDotProductAttention_1/"
        for ours, theirs in (("norm1", "LayerNorm_0"), ("norm2", "LayerNorm_2")):
            out[dst + ours + ".weight"] = take(src + theirs + "/scale")
            out[dst + ours + ".bias"] = take(src + theirs + "/bias")
        qkv = ("query", "key", "value")
        out[dst + "attn.qkv.weight"] = torch.cat([take(f"{attn}{n}/kernel").flatten(1).T for n in qkv])
        out[dst + "attn.qkv.bias"] = torch.cat([take(f"{attn}{n}/bias").flatten() for n in qkv])
        out[dst + "attn.proj.weight"] = take(attn + "out/kernel").flatten(0, 1).T  # (heads, hd, D) -> (D, heads*hd)
        out[dst + "attn.proj.bias"] = take(attn + "out/bias")
        for r in (0, 1):
            out[f"{dst}mlp.fc{r + 1}.weight"] = dense(f"{src}MlpBlock_3/Dense_{r}/kernel")
            out[f"{dst}mlp.fc{r + 1}.bias"] = take(f"{src}MlpBlock_3/Dense_{r}/bias")
    out.update(flax)  # leftovers: reported as unexpected keys
    return out


def _strip_prefix(state_dict: dict[str, Any]) -> dict[str, Any]:
    """Drop a wrapper prefix ("module.", Lightning's "model.", ...) found in front of ``pos_embed``."""
    if "pos_embed" in state_dict or "cls_token" in state_dict:
        return state_dict
    anchors = [k[: -len("pos_embed")] for k in state_dict if k.endswith("pos_embed")]
    if len(anchors) > 1 and "model." in anchors:  # a Lightning checkpoint with EMA: the raw network's weights
        anchors = ["model."]
    if len(anchors) != 1:
        return state_dict
    prefix = anchors[0]
    return {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}


def _is_group_activation(key: str) -> bool:
    """A tensor of a block's act1/act2 (GroupRational numerator/denominator; GroupKAN weight, base_weight and its
    basis' grid): what a ViT checkpoint does not have."""
    return bool(re.match(r"blocks\.\d+\.mlp\.act[12]\.", key))


def remap_vit_checkpoint(
    state_dict: dict[str, Any],
    model: VisionTransformer,
    interpolation: str = "bicubic",
    antialias: bool = True,
    prepare: Callable[[dict[str, Any], dict[str, Tensor]], dict[str, Any]] | None = None,
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The steps every ViT-shaped kanvision model (KAT, KAT-X, ViT-KAN) takes on a checkpoint: unwrap trainer dicts,
    convert AugReg Flax names, strip wrapper prefixes, refuse non-tensors, ``prepare(state_dict, expected)`` (the
    model's own changes), resample position embeddings and patch kernels (timm's ViT filter), adapt the input
    channels and drop a classifier of another class count (logged; the model's fresh head is kept). Returns the
    remapped dict and the unwrapped source (for error messages)."""
    state_dict = source = _unwrap(state_dict)
    if _is_flax(state_dict):
        state_dict = _convert_flax(state_dict, model)
    state_dict = _strip_prefix(state_dict)
    for key, value in state_dict.items():
        if not isinstance(value, Tensor):
            raise ValueError(f"checkpoint entry {key!r} is a {type(value).__name__}, not a tensor")
    expected = model.state_dict()
    if prepare is not None:
        state_dict = prepare(state_dict, expected)
    # timm's ViT filter resamples the position embedding and patch kernels to the model's grid
    out = vit_checkpoint_filter_fn(state_dict, model, interpolation=interpolation, antialias=antialias)
    weight = out.get("patch_embed.proj.weight")
    target = expected["patch_embed.proj.weight"].shape
    if weight is not None and weight.dim() == 4 and weight.shape[1] != target[1]:  # in_chans differs
        out["patch_embed.proj.weight"] = adapt_input_conv(target[1], weight)
    head_keys = [k for k in ("head.weight", "head.bias") if k in out]
    if head_keys and any(k not in expected or out[k].shape != expected[k].shape for k in head_keys):
        _logger.warning(
            f"Dropping the checkpoint's classifier ({describe_keys(head_keys, out)}): the model's head is "
            f"{describe_keys([k for k in head_keys if k in expected], expected) or 'absent'} ({model.num_classes} "
            "classes); it keeps its fresh initialisation"
        )
        for k in head_keys:
            del out[k]
    if model.num_classes > 0 and not any(k in out for k in ("head.weight", "head.bias")):
        out.update({k: v for k, v in expected.items() if k.startswith("head.")})
    return out, source


def checkpoint_filter_fn(
    state_dict: dict[str, Any], model: Kat, interpolation: str = "bicubic", antialias: bool = True
) -> dict[str, Tensor]:
    """Remap a checkpoint to ``model``'s full state dict, or raise ValueError listing every mismatch.

    Accepts timm ViT state dicts (the group activations, rational or GroupKAN, are new: the model's initial ones are
    kept, and logged), Google AugReg
    Flax dicts (from ``.npz``), official KAT checkpoints (``state_dict``/``state_dict_ema`` with ``args``) and
    kanvision's own. Position embeddings (and patch-embedding kernels) are resampled to the model's grid; a head
    whose class count differs is dropped (the model's fresh head is kept, and logged). Any other missing,
    unexpected or mis-shaped key is an error, so a model is never half-loaded.
    """
    out, source = remap_vit_checkpoint(state_dict, model, interpolation, antialias)
    expected = model.state_dict()
    activation_keys = [k for k in expected if _is_group_activation(k)]
    if activation_keys and not any(k in out for k in activation_keys):
        _logger.info(
            f"Checkpoint has no group activations (a ViT): keeping the model's initial {getattr(model, 'kan', '')} "
            f"activations {getattr(model, 'rational_init', '')}"
        )
        out.update({k: expected[k] for k in activation_keys})

    description = f"{type(model).__name__}(embed_dim={model.embed_dim}, depth={len(model.blocks)}, " \
        f"num_classes={model.num_classes})"  # fmt: skip
    return fit_state_dict(out, model, description, classifier=(), source=source)


# ---------------------------------------------------------------------------------------------------------------------
# registry


def _create_kat(variant: str, pretrained: bool, model_args: dict[str, Any], kwargs: dict[str, Any]) -> Kat:
    if "kan_kwargs" in model_args:
        # a preset's basis settings hold unless the caller overrides them one by one, or picks another basis
        preset, given = model_args["kan_kwargs"], dict(kwargs.get("kan_kwargs") or {})
        if kwargs.get("kan", model_args["kan"]) != model_args["kan"]:
            kwargs["kan_kwargs"] = given
        else:
            merged = preset | given
            if isinstance(given.get("basis_kwargs"), dict):
                merged["basis_kwargs"] = preset.get("basis_kwargs", {}) | given["basis_kwargs"]
            kwargs["kan_kwargs"] = merged
    kwargs = dict(patch_size=16, **model_args) | kwargs  # every registered KAT has 16 px patches
    out_indices = kwargs.pop("out_indices", 3)
    overlay = dict(kwargs.pop("pretrained_cfg_overlay", None) or {})
    if overlay.get("file") or overlay.get("url"):
        overlay.setdefault("custom_load", True)  # timm resets it for overlaid sources; our reader handles them all
    return build_model(
        Kat,
        variant,
        pretrained,
        pretrained_cfg_overlay=overlay,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=out_indices, feature_cls="getter"),
        **kwargs,
    )


def vit_family_cfg(url: str = "", **kwargs: Any) -> dict[str, Any]:
    """timm pretrained config of KAT, KAT-X and ViT-KAN (ImageNet, 224 px, every file through ``load_pretrained``)."""
    return {
        "url": url,
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": None,
        "crop_pct": 0.875,
        "interpolation": "bicubic",
        "fixed_input_size": True,
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "first_conv": "patch_embed.proj",
        "classifier": "head",
        # Every file (url or pretrained_cfg_overlay=dict(file=...)) goes through Kat.load_pretrained: one reader for
        # .npz/.safetensors/.pth, official checkpoints' argparse.Namespace allowed under weights_only=True.
        "custom_load": True,
        "paper_ids": "arXiv:2409.10594",
        "paper_name": "Kolmogorov-Arnold Transformer",
        "origin_url": "https://github.com/Adamdad/kat",
        **kwargs,
    }


_RELEASE = "https://github.com/Adamdad/kat/releases/download/checkpoint/"
# Official checkpoints (MIT), named as in the official timm configs and evaluation log. The official README's
# table swaps the tiny and small "from scratch" links; these names are the right ones.
_RELEASED_URLS = {
    "kat_tiny_patch16_224.in1k": _RELEASE
    + "kat_tiny_patch16_224_1f3ad3b2e69821f3d412f2924cf159a0e266f142d739cb68f68f796f5a0fe289.pth",
    "kat_tiny_patch16_224.vitft_in1k": _RELEASE
    + "kat_tiny_patch16_224-finetune_64f124d003803e4a7e1aba1ba23500ace359b544e8a5f0110993f25052e402fb.pth",
    "kat_small_patch16_224.in1k": _RELEASE
    + "kat_small_patch16_224_32487885cf13d2c14e461c9016fac8ad43f7c769171f132530941e930aeb5fe2.pth",
    "kat_small_patch16_224.vitft_in1k": _RELEASE
    + "kat_small_patch_224-finetune_3ae087a4c28e2993468eb377d5151350c52c80b2a70cc48ceec63d1328ba58e0.pth",
    "kat_base_patch16_224.in1k": _RELEASE
    + "kat_base_patch16_224_abff874d925d756d15cde97303f772a3460ddbd44b9c53fb9ce5cf15be230fb6.pth",
    "kat_base_patch16_224.vitft_in1k": "https://huggingface.co/adamdad/kat_pretained/resolve/main/"
    "kat_base_patch16_224-finetune_440bf1ead9dd8ecab642078cfb60ae542f1fa33ca65517260501e02c011e38f2.pth",
}
default_cfgs = generate_default_cfgs(
    {
        **{name: vit_family_cfg(url=url, license="mit") for name, url in _RELEASED_URLS.items()},
        "kat_tiny_patch16_384": vit_family_cfg(input_size=(3, 384, 384), crop_pct=1.0),
        "kat_small_patch16_384": vit_family_cfg(input_size=(3, 384, 384), crop_pct=1.0),
        "kat_base_patch16_384": vit_family_cfg(input_size=(3, 384, 384), crop_pct=1.0),
        "kat_large_patch16_224": vit_family_cfg(),
        # KAT-X: no published weights; they load ViT weights like KAT (the activations start from rational_init)
        "katx_tiny_cheb_patch16_224": vit_family_cfg(),
        "katx_tiny_rbf_patch16_224": vit_family_cfg(),
    }
)


@register_model
def kat_tiny_patch16_224(pretrained: bool = False, **kwargs: Any) -> Kat:
    """KAT-T/16 (5,718,328 parameters): ViT-Ti/16 with GR-KAN MLPs; 74.6 top-1 from scratch, 75.7 from ViT."""
    return _create_kat("kat_tiny_patch16_224", pretrained, dict(embed_dim=192, depth=12, num_heads=3), kwargs)


@register_model
def kat_small_patch16_224(pretrained: bool = False, **kwargs: Any) -> Kat:
    """KAT-S/16 (22.1M): ViT-S/16 with GR-KAN MLPs; 81.2 top-1 from scratch, 82.0 from ViT."""
    return _create_kat("kat_small_patch16_224", pretrained, dict(embed_dim=384, depth=12, num_heads=6), kwargs)


@register_model
def kat_base_patch16_224(pretrained: bool = False, **kwargs: Any) -> Kat:
    """KAT-B/16 (86.6M): ViT-B/16 with GR-KAN MLPs; 82.3 top-1 from scratch, 82.8 from ViT."""
    return _create_kat("kat_base_patch16_224", pretrained, dict(embed_dim=768, depth=12, num_heads=12), kwargs)


@register_model
def kat_tiny_patch16_384(pretrained: bool = False, **kwargs: Any) -> Kat:
    """KAT-T/16 at 384 px (fine-tuning size of the AugReg ViT-Ti/16 384 weights)."""
    model_args = dict(img_size=384, embed_dim=192, depth=12, num_heads=3)
    return _create_kat("kat_tiny_patch16_384", pretrained, model_args, kwargs)


@register_model
def kat_small_patch16_384(pretrained: bool = False, **kwargs: Any) -> Kat:
    """KAT-S/16 at 384 px (fine-tuning size of the AugReg ViT-S/16 384 weights)."""
    model_args = dict(img_size=384, embed_dim=384, depth=12, num_heads=6)
    return _create_kat("kat_small_patch16_384", pretrained, model_args, kwargs)


@register_model
def kat_base_patch16_384(pretrained: bool = False, **kwargs: Any) -> Kat:
    """KAT-B/16 at 384 px (fine-tuning size of the AugReg ViT-B/16 384 weights)."""
    model_args = dict(img_size=384, embed_dim=768, depth=12, num_heads=12)
    return _create_kat("kat_base_patch16_384", pretrained, model_args, kwargs)


@register_model
def kat_large_patch16_224(pretrained: bool = False, **kwargs: Any) -> Kat:
    """KAT-L/16: ViT-L/16 (24 blocks, width 1024) with GR-KAN MLPs; not in the paper, for ViT-L initialisation."""
    return _create_kat("kat_large_patch16_224", pretrained, dict(embed_dim=1024, depth=24, num_heads=16), kwargs)


# KAT-X: KAT-T with GroupKAN activations of another basis (same groups, inits, everything else)


@register_model
def katx_tiny_cheb_patch16_224(pretrained: bool = False, **kwargs: Any) -> Kat:
    """KAT-X-T/16 Chebyshev (5,718,568 parameters): KAT-T with GroupKAN(chebyshev, degree 4, SiLU base) activations,
    8 groups x 6 coefficients each."""
    model_args = dict(
        embed_dim=192, depth=12, num_heads=3, kan="chebyshev", kan_kwargs=dict(basis_kwargs=dict(degree=4))
    )
    return _create_kat("katx_tiny_cheb_patch16_224", pretrained, model_args, kwargs)


@register_model
def katx_tiny_rbf_patch16_224(pretrained: bool = False, **kwargs: Any) -> Kat:
    """KAT-X-T/16 RBF (5,719,144 parameters): KAT-T with GroupKAN(rbf, 8 Gaussians on [-3, 3], SiLU base)
    activations (FastKAN's basis), 8 groups x 9 coefficients each."""
    model_args = dict(
        embed_dim=192, depth=12, num_heads=3, kan="rbf", kan_kwargs=dict(basis_kwargs=dict(num_centers=8))
    )
    return _create_kat("katx_tiny_rbf_patch16_224", pretrained, model_args, kwargs)
