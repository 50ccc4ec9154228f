"""What every model family's creation and weight loading share: argument checks, the pretrained-download error and
one voice for checkpoints that do not fit a model."""

from __future__ import annotations

import difflib
import inspect
import logging
import socket
import urllib.error
import zipfile
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import torch
from timm.models import build_model_with_cfg, is_model, model_entrypoint, resolve_pretrained_cfg
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
    RuntimeError naming the file to fetch and how to pass it (``pretrained_cfg_overlay=dict(file=...)``).

    A local file (``pretrained_cfg_overlay=dict(file=...)``) is checked first (see :func:`_local_weights`): a kanvision
    file must be built with the arguments it was trained with, and ``.npz`` state dicts load like any other file.
    """
    if _RESOLVING.get():
        raise _ResolvedArguments(kwargs)
    check_model_arguments(variant, model_cls, _model_kwargs(kwargs))
    in_memory = False
    if pretrained:
        kwargs, in_memory = _local_weights(model_cls, variant, kwargs)
    try:
        model = build_model_with_cfg(model_cls, variant, pretrained, **kwargs)
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
    if in_memory and isinstance(getattr(model, "pretrained_cfg", None), dict):
        # the tensors read from the file were handed to timm through the cfg: the model keeps its file name only
        model.pretrained_cfg = {k: v for k, v in model.pretrained_cfg.items() if k != "state_dict"}
        model.default_cfg = model.pretrained_cfg
    return model


_BUILD_ONLY = frozenset({"pretrained_strict", "pretrained_filter_fn", "feature_cfg", "model_cfg", "kwargs_filter"})


def _model_kwargs(kwargs: dict[str, Any]) -> list[str]:
    return [k for k in kwargs if k not in _BUILD_ONLY]


# -- local weight files -----------------------------------------------------------------------------------------

# set while the arguments an entry point would build with are looked up: build_model reports them and builds nothing
_RESOLVING: ContextVar[bool] = ContextVar("kanvision_resolving_arguments", default=False)


class _ResolvedArguments(Exception):
    def __init__(self, kwargs: dict[str, Any]) -> None:
        super().__init__()
        self.kwargs = kwargs


# the arguments timm adapts pretrained weights to (a new head, input channels, a resampled position embedding)
_ADAPTABLE = ("num_classes", "in_chans", "img_size")
_FILE_KINDS = "a .safetensors file, a torch .pth/.pt/.bin/.ckpt (read with weights_only=True) or a NumPy .npz"


def _entry_arguments(variant: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The arguments ``timm.create_model(variant, **kwargs)`` passes to :func:`build_model` (nothing is built)."""
    if not is_model(variant):  # a variant named by a helper (e.g. create_rkan's) rather than registered
        return dict(kwargs)
    token = _RESOLVING.set(True)
    try:
        model_entrypoint(variant)(pretrained=False, **kwargs)
    except _ResolvedArguments as resolved:
        return resolved.kwargs
    finally:
        _RESOLVING.reset(token)
    return dict(kwargs)  # pragma: no cover - every kanvision entry point builds through build_model


def _plain(value: Any) -> Any:
    """Tuples as lists (a JSON round trip), so that stored and passed arguments compare."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _compared(name: str) -> bool:
    """Whether argument ``name`` changes the network's outputs in eval mode (dropout rates do not)."""
    return not (name in _TIMM_BUILD_ARGUMENTS or name in _BUILD_ONLY or name.endswith("drop_rate")
                or name.endswith("drop_path_rate") or name in ("pretrained", "checkpoint_path"))  # fmt: skip


def _argument_default(model_cls: Callable[..., nn.Module], name: str, cfg: Any) -> Any:
    """What ``model_cls`` gets for ``name`` when nobody passes it: timm's pretrained-cfg default, else the
    signature's; ``inspect.Parameter.empty`` when unknown."""
    if name == "num_classes" and cfg.num_classes is not None:
        return cfg.num_classes
    if name == "in_chans" and cfg.input_size:
        return cfg.input_size[0]
    if name == "img_size" and cfg.fixed_input_size and cfg.input_size:
        return cfg.input_size[-2:]
    for cls in inspect.getmro(model_cls) if inspect.isclass(model_cls) else (model_cls,):
        init = cls.__init__ if inspect.isclass(cls) else cls
        if init in (nn.Module.__init__, object.__init__):
            break
        parameter = inspect.signature(init).parameters.get(name)
        if parameter is not None and parameter.default is not parameter.empty:
            return parameter.default
    return inspect.Parameter.empty


def _check_kanvision_file(
    model_cls: Callable[..., nn.Module],
    variant: str,
    kwargs: dict[str, Any],
    cfg: Any,
    meta: dict[str, Any],
    path: Path,
) -> None:
    """ValueError naming every argument of this build that differs from those the file was trained with (both
    values, and the fix), unless it is a new ``num_classes`` / ``in_chans`` / ``img_size`` passed on purpose: timm's
    fine-tuning semantics (a new head, adapted input channels), logged."""
    name = meta["model_name"]
    rebuild = f"or rebuild the trained network exactly with kanvision.load_checkpoint({str(path)!r})"
    if name.split(".")[0] != variant:
        raise ValueError(
            f"{path} holds the weights of a {name} (its kanvision metadata), not of a {variant}: build "
            f"timm.create_model({name.split('.')[0]!r}, pretrained=True, pretrained_cfg_overlay=dict(file=...), "
            f"...) {rebuild}"
        )
    trained = _entry_arguments(variant, dict(meta.get("model_kwargs") or {}))
    entry_defaults = _entry_arguments(variant, {})
    differences, adapted = [], []
    for key in dict.fromkeys([*trained, *kwargs]):
        if not _compared(key):
            continue
        default = _argument_default(model_cls, key, cfg)
        theirs, ours = trained.get(key, default), kwargs.get(key, default)
        if _plain(theirs) == _plain(ours):
            continue
        passed = key in kwargs and (key not in entry_defaults or _plain(entry_defaults[key]) != _plain(ours))
        if key in _ADAPTABLE and passed:
            adapted.append(f"{key}={ours!r} (trained with {theirs!r})")
            continue
        shown = [repr(v) if v is not inspect.Parameter.empty else "its default" for v in (theirs, ours)]
        how = "as passed" if passed else "by default"
        differences.append((key, f"{key}={shown[0]} in the file, {shown[1]} here ({how})", theirs))
    if differences:
        fix = ", ".join(f"{key}={value!r}" for key, _, value in differences if value is not inspect.Parameter.empty)
        raise ValueError(
            f"{path} was trained as {name} with other arguments than this {variant} has; loading it would not give "
            f"the trained network: "
            + "; ".join(text for _, text, _ in differences)
            + f". Pass {fix or 'the arguments it was trained with'} to timm.create_model, {rebuild}"
        )
    if adapted:
        _logger.warning(
            f"{variant}: adapting the weights of {path} to {', '.join(adapted)}; a new head starts from its "
            "initialisation (timm's fine-tuning semantics)"
        )


def _read_npz(path: Path) -> dict[str, Tensor]:
    """A NumPy ``.npz`` of a state dict as tensors (``allow_pickle=False``), or a ValueError naming the file."""
    import numpy as np

    if not zipfile.is_zipfile(path):
        with open(path, "rb") as handle:
            start = handle.read(16)
        raise ValueError(
            f"{path} is not a NumPy .npz archive ({path.stat().st_size} bytes, not a zip of .npy arrays; it starts "
            f"with {start!r}). " + _NPZ_ADVICE
        )
    try:
        with np.load(path, allow_pickle=False) as arrays:
            return {k: torch.from_numpy(np.array(arrays[k])) for k in arrays.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path} cannot be read as an .npz of arrays (np.load(allow_pickle=False): {error}). "
                         + _NPZ_ADVICE) from error  # fmt: skip


_NPZ_ADVICE = (
    "An .npz loads with pretrained_cfg_overlay=dict(file=...) when it holds one array per state-dict key, e.g. "
    "np.savez(path, **{k: v.numpy() for k, v in model.state_dict().items()}); otherwise give " + _FILE_KINDS
)


def _local_weights(
    model_cls: Callable[..., nn.Module], variant: str, kwargs: dict[str, Any]
) -> tuple[dict[str, Any], bool]:
    """(``kwargs`` for timm, whether the weights now travel in the cfg) for ``pretrained_cfg_overlay=dict(file=...)``.

    The path must be a file. An ``.npz`` is read here (timm would hand it to ``torch.load``). A kanvision
    ``.safetensors``/``.ckpt`` (with its ``kanvision`` metadata) is checked against the arguments of this build
    (:func:`_check_kanvision_file`) and its cfg says its classes, channels and normalisation, so that timm keeps
    the trained head; a ``.ckpt`` gives its network's raw weights.
    """
    from kanvision.models import _checkpoint

    overlay = dict(kwargs.get("pretrained_cfg_overlay") or {})
    cfg = resolve_pretrained_cfg(variant, pretrained_cfg=kwargs.get("pretrained_cfg"), pretrained_cfg_overlay=overlay)
    if not cfg.file or cfg.state_dict is not None or cfg.source in ("hf-hub", "local-dir"):
        return kwargs, False
    path = Path(cfg.file)
    if path.is_dir():
        raise IsADirectoryError(
            f"{variant}: pretrained_cfg_overlay file {path} is a directory; give the weights file in it ({_FILE_KINDS})"
        )
    if not path.is_file():
        raise FileNotFoundError(
            f"{variant}: pretrained_cfg_overlay file {path} does not exist; give the path of a weights file "
            f"({_FILE_KINDS})"
        )
    state_dict, meta = None, None
    if path.suffix == ".npz" or _checkpoint._npz_names(path) is not None:
        state_dict = _read_npz(path)
    elif (header := _checkpoint._safetensors_header(path)) is not None:
        if _checkpoint._META_KEY in (header.get("__metadata__") or {}):
            meta, _ = _checkpoint._safetensors_metadata(path)
        if path.suffix != ".safetensors":  # timm chooses its reader by the suffix
            from safetensors.torch import load_file

            state_dict = load_file(str(path))
    elif path.suffix == ".ckpt":
        checkpoint = _checkpoint.read_checkpoint(path)
        if _checkpoint._META_KEY in checkpoint:
            checkpoint, meta, _ = _checkpoint._read_kanvision_checkpoint(path)
            state_dict = _checkpoint.model_state_dict(checkpoint)
    if meta is not None:
        _check_kanvision_file(model_cls, variant, kwargs, cfg, meta, path)
        model_kwargs = meta.get("model_kwargs") or {}
        in_chans = model_kwargs.get("in_chans", cfg.input_size[0] if cfg.input_size else 3)
        overlay["num_classes"] = model_kwargs.get("num_classes", cfg.num_classes)
        overlay["input_size"] = (in_chans, *(cfg.input_size or (3, 224, 224))[1:])
        data = meta.get("data_config") or {}
        overlay.update({k: tuple(data[k]) if k in ("mean", "std") else data[k]
                        for k in ("mean", "std", "interpolation", "crop_pct") if k in data})  # fmt: skip
        if "img_size" in data and not cfg.fixed_input_size:
            overlay["input_size"] = (in_chans, *data["img_size"])
    else:
        # timm drops a local file's head whenever the cfg's class count is not the model's; the family's filter
        # keeps a head that fits and drops (and logs) one that does not
        overlay["num_classes"] = kwargs.get("num_classes", cfg.num_classes)
    if state_dict is not None:
        overlay["state_dict"] = state_dict
    return {**kwargs, "pretrained_cfg_overlay": overlay}, state_dict is not None


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


def _dtype_kind(dtype: torch.dtype) -> str:
    from kanvision.models._checkpoint import _kind

    return _kind(dtype)


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
    # load_state_dict would silently convert integer or bool tensors into floating-point parameters (a float count
    # into an integer buffer such as num_batches_tracked is how some released files store it, and is exact)
    retyped = [
        k for k in out if k in expected and k not in mismatched and isinstance(expected[k], Tensor)
        and expected[k].is_floating_point() and _dtype_kind(out[k].dtype) != _dtype_kind(expected[k].dtype)
    ]  # fmt: skip
    if missing or unexpected or mismatched or retyped:
        problems = []
        if retyped:
            problems.append("dtype mismatch (checkpoint vs model): " + ", ".join(
                f"{k} {out[k].dtype} vs {expected[k].dtype}" for k in retyped[:24]))  # fmt: skip
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
