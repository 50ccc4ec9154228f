"""What every model family's creation and weight loading share: argument checks, the pretrained-download error and
one voice for checkpoints that do not fit a model."""

from __future__ import annotations

import difflib
import inspect
import logging
import socket
import urllib.error
from collections.abc import Callable, Iterable
from typing import Any

from timm.models import build_model_with_cfg, resolve_pretrained_cfg
from torch import Tensor, nn

__all__ = ["build_model", "check_model_arguments", "checkpoint_kind", "fit_state_dict"]

_logger = logging.getLogger(__name__)

# what timm's create_model / build_model_with_cfg take besides the model's own arguments
_TIMM_BUILD_ARGUMENTS = frozenset(
    {"pretrained_cfg", "pretrained_cfg_overlay", "cache_dir", "features_only", "out_indices", "feature_cls", "pruned"}
)
_NETWORK_ERRORS: tuple[type[BaseException], ...] = (urllib.error.URLError, ConnectionError, TimeoutError, socket.error)
try:  # hf_hub_download raises these without network (a missing cache entry subclasses FileNotFoundError)
    from huggingface_hub.errors import LocalEntryNotFoundError

    _NETWORK_ERRORS += (LocalEntryNotFoundError,)
except ImportError:  # pragma: no cover - huggingface_hub is one of timm's dependencies
    pass
try:
    from requests.exceptions import ConnectionError as RequestsConnectionError
    from requests.exceptions import Timeout as RequestsTimeout

    _NETWORK_ERRORS += (RequestsConnectionError, RequestsTimeout)
except ImportError:  # pragma: no cover
    pass


def model_arguments(model_cls: Callable[..., nn.Module]) -> tuple[list[str], bool]:
    """(the keyword arguments ``model_cls`` accepts, whether it also forwards unknown ones somewhere unresolved).

    A class whose ``__init__`` passes ``**kwargs`` to its base (KAT -> timm's VisionTransformer) takes the base's too.
    """
    names: list[str] = []
    for cls in inspect.getmro(model_cls) if inspect.isclass(model_cls) else (model_cls,):
        init = cls.__init__ if inspect.isclass(cls) else cls
        if init in (nn.Module.__init__, object.__init__):
            return names, True
        parameters = inspect.signature(init).parameters.values()
        names += [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        names = [n for n in dict.fromkeys(names) if n != "self"]
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            return names, False
    return names, True


def check_model_arguments(variant: str, model_cls: Callable[..., nn.Module], kwargs: Iterable[str]) -> None:
    """TypeError naming each argument ``model_cls`` does not take, with the arguments it does take."""
    accepted, open_ended = model_arguments(model_cls)
    if open_ended:
        return
    unknown = [k for k in kwargs if k not in accepted and k not in _TIMM_BUILD_ARGUMENTS]
    if unknown:
        hints = [f"{k!r} (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(k, accepted, 1)) else
                 repr(k) for k in unknown]  # fmt: skip
        raise TypeError(
            f"{variant} ({model_cls.__name__}) got unknown argument(s) {', '.join(hints)}; it accepts: "
            f"{', '.join(accepted)} (and timm's {', '.join(sorted(_TIMM_BUILD_ARGUMENTS))})"
        )


def _weight_source(variant: str, kwargs: dict[str, Any]) -> tuple[str, str] | None:
    """(what to download, its file name) when the weights come from the network, else None (a file or dict)."""
    overlay = kwargs.get("pretrained_cfg_overlay")
    cfg = resolve_pretrained_cfg(variant, pretrained_cfg=kwargs.get("pretrained_cfg"), pretrained_cfg_overlay=overlay)
    if cfg.file or cfg.state_dict:
        return None
    if cfg.hf_hub_id:
        filename = cfg.hf_hub_filename or "model.safetensors"
        return f"https://huggingface.co/{cfg.hf_hub_id}/resolve/main/{filename}", filename
    if cfg.url:
        return cfg.url, cfg.url.rsplit("/", 1)[-1]
    return None


def build_model(
    model_cls: Callable[..., nn.Module], variant: str, pretrained: bool = False, **kwargs: Any
) -> nn.Module:
    """timm's ``build_model_with_cfg`` after :func:`check_model_arguments`; a failed weight download becomes a
    RuntimeError naming the file to fetch and how to pass it (``pretrained_cfg_overlay=dict(file=...)``)."""
    check_model_arguments(variant, model_cls, _model_kwargs(kwargs))
    try:
        return build_model_with_cfg(model_cls, variant, pretrained, **kwargs)
    except _NETWORK_ERRORS as error:
        source = _weight_source(variant, kwargs) if pretrained else None
        if source is None:
            raise
        location, filename = source
        raise RuntimeError(
            f"{variant}: the pretrained weights could not be downloaded ({type(error).__name__}: {error}). Download "
            f"{location} where there is network access and load the local file with timm.create_model("
            f"'{variant}', pretrained=True, pretrained_cfg_overlay=dict(file='/path/to/{filename}'))"
        ) from error


_BUILD_ONLY = frozenset({"pretrained_strict", "pretrained_filter_fn", "feature_cfg", "model_cfg", "kwargs_filter"})


def _model_kwargs(kwargs: dict[str, Any]) -> list[str]:
    return [k for k in kwargs if k not in _BUILD_ONLY]


# -- checkpoints ------------------------------------------------------------------------------------------------

_KAT_LOAD = "timm.create_model('kat_tiny_patch16_224', pretrained=True, pretrained_cfg_overlay=dict(file=PATH))"
_KINDS = {
    "kat": ("a KAT checkpoint (official release or kanvision)", "a kat_* model of its size: " + _KAT_LOAD),
    "vit": ("a timm ViT state dict", "a kat_* model of its width and depth: " + _KAT_LOAD),
    "flax_vit": ("a Google AugReg ViT .npz", "a kat_* model of its width and depth: " + _KAT_LOAD),
    "torch_conv_kan": (
        "a torch-conv-kan checkpoint",
        "the kan_vgg11_* model it was released as: timm.create_model('kan_vgg11_bottleneck', pretrained=True, "
        "pretrained_cfg_overlay=dict(file=PATH))",
    ),
    "rkan": (
        "a kanvision RKAN checkpoint",
        "the rkan_* model with the same backbone and stages, pretrained=True, pretrained_cfg_overlay=dict(file=PATH)",
    ),
    "timm_cnn": (
        "a timm ResNet/RegNet/DenseNet state dict",
        "an RKAN around that backbone: kanvision.models.rkan.create_rkan('resnet50', pretrained=True, "
        "pretrained_cfg_overlay=dict(file=PATH)) (or the rkan_<backbone> model)",
    ),
    "kanvision": (
        "a kanvision KAN CNN checkpoint",
        "the kan_* model (and arguments) it was saved from, pretrained=True, pretrained_cfg_overlay=dict(file=PATH)",
    ),
}


def checkpoint_kind(state_dict: dict[str, Any]) -> str | None:
    """Which known layout a (flat, unwrapped) state dict has: a key of the kinds above, or None."""
    keys = list(state_dict)

    def has(part: str) -> bool:
        return any(part in k for k in keys)

    if has("embedding/kernel"):
        return "flax_vit"
    if has("pos_embed") or has("cls_token"):
        return "kat" if has(".mlp.act1.weight_numerator") else "vit"
    if has(".poly_weights"):
        return "torch_conv_kan"
    if any(k.startswith(("backbone.", "side_paths.")) for k in keys):
        return "rkan"
    if any(k.startswith(("s1.", "stem.conv.", "features.denseblock1.")) for k in keys) or (
        "fc.weight" in state_dict and any(k.startswith("layer1.") for k in keys)
    ):
        return "timm_cnn"
    if any(k.startswith(("features.", "head.fc.", "layer1.", "fc.")) for k in keys):
        return "kanvision"
    return None


def describe_checkpoint(state_dict: dict[str, Any]) -> str:
    """'The file looks like <kind>; such files load into <how>.' (empty when the layout is unknown)."""
    kind = checkpoint_kind(state_dict)
    if kind is None:
        return ""
    what, how = _KINDS[kind]
    return f"The file looks like {what}; such files load into {how}. "


def describe_keys(keys: list[str], tensors: dict[str, Any], limit: int = 24) -> str:
    """``key (shape), ...`` for the first ``limit`` keys."""
    text = ", ".join(f"{k} {tuple(tensors[k].shape)}" for k in keys[:limit])
    return text + (f", ... ({len(keys)} keys in all)" if len(keys) > limit else "")


def describe_model(model: nn.Module) -> str:
    """``name (Class, num_classes=N)``, the model as an error message names it."""
    name = getattr(model, "pretrained_cfg", {}).get("architecture")
    text = f"{type(model).__name__}(num_classes={getattr(model, 'num_classes', '?')})"
    return f"{name} {text}" if name else text


def fit_state_dict(
    state_dict: dict[str, Any],
    model: nn.Module,
    model_description: str | None = None,
    classifier: Iterable[str] | None = None,
    source: dict[str, Any] | None = None,
) -> dict[str, Tensor]:
    """``state_dict`` checked against ``model``'s own: every key present, none extra, every shape equal, or a
    ValueError listing each mismatch (nothing is loaded) and naming what the file looks like and what loads it.

    Keys of ``classifier`` (module names, default the pretrained cfg's ``classifier``) whose shapes differ from the
    model's are dropped (the model keeps its fresh head, logged), as is a classifier the model has none of; ``source``
    is the checkpoint as read, for recognising its kind when ``state_dict`` is already remapped.
    """
    if classifier is None:
        names = getattr(model, "pretrained_cfg", {}).get("classifier") or ()
        classifier = (names,) if isinstance(names, str) else tuple(names)
    model_description = model_description or describe_model(model)
    expected = model.state_dict()
    out = dict(state_dict)
    for key, value in out.items():
        if not isinstance(value, Tensor):
            raise ValueError(f"checkpoint entry {key!r} is a {type(value).__name__}, not a tensor")
    head_keys = [k for k in out if any(k.startswith(name + ".") for name in classifier)]
    if head_keys and any(k not in expected or out[k].shape != expected[k].shape for k in head_keys):
        _logger.warning(
            f"Dropping the checkpoint's classifier ({describe_keys(head_keys, out)}): the model's head is "
            f"{describe_keys([k for k in head_keys if k in expected], expected) or 'absent'} "
            f"({getattr(model, 'num_classes', '?')} classes); it keeps its fresh initialisation"
        )
        for k in head_keys:
            del out[k]
        out.update({k: v for k, v in expected.items() if any(k.startswith(name + ".") for name in classifier)})
    missing = [k for k in expected if k not in out]
    unexpected = [k for k in out if k not in expected]
    # timm adapts the input conv to in_chans after the filter: a difference in its input channels only is expected
    first_conv = getattr(model, "pretrained_cfg", {}).get("first_conv") or ()
    input_convs = {f"{n}.weight" for n in ((first_conv,) if isinstance(first_conv, str) else first_conv)}
    mismatched = [
        k for k in out if k in expected and out[k].shape != expected[k].shape
        and not (k in input_convs and out[k].dim() == 4 and out[k].shape[::2] == expected[k].shape[::2]
                 and out[k].shape[3] == expected[k].shape[3])
    ]  # fmt: skip
    if missing or unexpected or mismatched:
        problems = []
        if mismatched:
            pairs = ", ".join(f"{k} {tuple(out[k].shape)} vs {tuple(expected[k].shape)}" for k in mismatched[:24])
            more = f", ... ({len(mismatched)} keys in all)" if len(mismatched) > 24 else ""
            problems.append(f"shape mismatch (checkpoint vs model): {pairs}{more}")
        if missing:
            problems.append("missing from checkpoint: " + describe_keys(missing, expected))
        if unexpected:
            problems.append("not in the model: " + describe_keys(unexpected, out))
        raise ValueError(
            f"Checkpoint does not fit {model_description}; nothing was loaded. "
            + describe_checkpoint(source if source is not None else state_dict)
            + "; ".join(problems)
        )
    return out
