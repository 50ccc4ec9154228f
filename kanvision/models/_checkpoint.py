"""Rebuild a trained network from a kanvision checkpoint alone, and export it to safetensors.

Every checkpoint written by ``kanvision-train`` embeds the model name, its ``timm.create_model`` arguments and
the data config it was trained with (a lesson from torch-conv-kan, whose published ImageNet weights evaluated at
0% under a mismatched config). Loading never unpickles code: ``torch.load(weights_only=True)`` or safetensors.

Needs no Lightning: a ``.ckpt`` is read as the plain dict Lightning wrote; ``kanvision-export``
(:mod:`kanvision.training.checkpoint`) is the command-line front end.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

__all__ = [
    "CheckpointError",
    "check_checkpoint_file",
    "read_checkpoint",
    "checkpoint_metadata",
    "checkpoint_hparams",
    "check_metadata",
    "check_state_dict",
    "model_state_dict",
    "load_checkpoint",
    "export_safetensors",
    "save_safetensors",
]

_META_KEY = "kanvision"

log = logging.getLogger(__name__)

# create_model arguments that only matter when the network is first built (weights to start from); a checkpoint
# holds the trained weights, so rebuilding from it must not fetch them again (nor read a file it names).
INIT_ONLY_KWARGS = ("pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "checkpoint_path", "pretrained_strict")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be written or read; the message names the path."""


_RESUME_ADVICE = (
    "it was probably cut short by a crash or a full disk; delete it and resume from another checkpoint "
    "(ckpt_path=<file>) or start without ckpt_path"
)


def check_checkpoint_file(path: str | os.PathLike, advice: str = _RESUME_ADVICE) -> Path:
    """Raise :class:`CheckpointError` (naming the path, then ``advice``) unless ``path`` is a non-empty PyTorch (zip)
    checkpoint file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    size = path.stat().st_size
    if size == 0 or not zipfile.is_zipfile(path):
        what = "is empty (0 bytes)" if size == 0 else f"is not a PyTorch checkpoint ({size} bytes, not a zip archive)"
        raise CheckpointError(f"checkpoint {path} {what}: {advice}")
    return path


_LOAD_FOREIGN = (
    "load it into a network with timm.create_model(<name>, pretrained=True, "
    "pretrained_cfg_overlay=dict(file={path!r})) "
    "or write a kanvision file with kanvision-convert {path} <out>.safetensors --model <name>"
)


def _few(names: list[str], count: int = 3) -> str:
    shown = ", ".join(repr(n) for n in names[:count])
    return shown + (f" and {len(names) - count} more" if len(names) > count else "")


def _safetensors_header(path: Path) -> dict[str, Any] | None:
    """The JSON header of a safetensors file (whatever its suffix), else None."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                return None
            size = int.from_bytes(head, "little")
            if not 2 <= size <= min(path.stat().st_size - 8, 100_000_000):
                return None
            header = json.loads(handle.read(size))
    except (OSError, ValueError):
        return None
    return header if isinstance(header, dict) else None


def _npz_names(path: Path) -> list[str] | None:
    """The array names of a NumPy ``.npz`` archive (a zip of ``.npy`` files without torch's ``data.pkl``), else None."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return None
    if not names or any(n.endswith("data.pkl") for n in names) or not all(n.endswith(".npy") for n in names):
        return None
    return [n[: -len(".npy")] for n in names]


def _foreign_file(path: Path) -> str | None:
    """What ``path`` is when it is a weights file that is not a kanvision checkpoint (a sentence, with advice)."""
    names = _npz_names(path)
    if names is not None:
        return (
            f"{path} is a NumPy .npz archive ({len(names)} arrays, e.g. {_few(names)}), not a kanvision checkpoint; "
            + _LOAD_FOREIGN.format(path=str(path))
        )
    header = _safetensors_header(path)
    if header is not None and path.suffix != ".safetensors":
        return (
            f"{path} is a safetensors file named {path.suffix or 'without a suffix'}; rename it to end with "
            ".safetensors to load it with kanvision.load_checkpoint"
        )
    return None


class _Checkpoint(dict):
    """A checkpoint dict that remembers its file, so that errors about its contents name it."""

    path: str = ""


def _source_of(checkpoint: dict[str, Any], source: str | None) -> str:
    if source:
        return source
    return f"checkpoint {checkpoint.path}" if isinstance(checkpoint, _Checkpoint) else "checkpoint"


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A Lightning ``.ckpt`` as a dict, loaded with ``weights_only=True`` (memory-mapped, on the CPU)."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory; give the .ckpt file in it (e.g. {path}/last.ckpt)")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    foreign = _foreign_file(path)
    if foreign is not None:
        raise CheckpointError(foreign)
    check_checkpoint_file(path, advice="it may have been cut short by a crash or a full disk")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as error:  # objects other than tensors and plain data: never unpickled
        raise CheckpointError(
            f"checkpoint {path} holds objects other than tensors and plain data, which kanvision never unpickles "
            f"(it loads with torch.load(weights_only=True)): {str(error).splitlines()[0]}"
        ) from error
    except (RuntimeError, OSError) as error:  # a zip archive that ends early
        raise CheckpointError(f"checkpoint {path} cannot be read, it may be truncated ({error})") from error
    if not isinstance(checkpoint, dict):
        raise CheckpointError(
            f"checkpoint {path} holds a {type(checkpoint).__name__}, not a checkpoint dict; "
            + _LOAD_FOREIGN.format(path=str(path))
        )
    checkpoint = _Checkpoint(checkpoint)
    checkpoint.path = str(path)
    return checkpoint


def _describe(checkpoint: dict[str, Any]) -> str:
    """What a checkpoint dict without kanvision metadata looks like."""
    tensors = [k for k, v in checkpoint.items() if isinstance(v, torch.Tensor)]
    if tensors and len(tensors) == len(checkpoint):
        return f"is a plain state dict ({len(tensors)} tensors, e.g. {_few(tensors)}), not a kanvision-train checkpoint"
    if "state_dict" in checkpoint and "pytorch-lightning_version" in checkpoint:
        return "is a Lightning checkpoint of another LightningModule (no 'kanvision' entry)"
    return f"is not a kanvision-train checkpoint (its top-level keys: {_few(sorted(map(str, checkpoint)), 6)})"


def check_metadata(meta: Any, source: str, key: str = _META_KEY) -> dict[str, Any]:
    """``meta`` (a checkpoint's ``kanvision`` entry or a safetensors file's metadata) as plain Python if it is data
    that rebuilds a network; else :class:`~kanvision.utils.safe_config.UnsafeConfigError` or ``ValueError``,
    naming ``source`` and the key. The stored ``data`` config may name kanvision's DataModules; nothing else names
    code."""
    from kanvision.utils.safe_config import check_file_config

    if not isinstance(meta, Mapping):
        raise ValueError(f"{source}: {key} must be a mapping, got a {type(meta).__name__}")
    meta = {
        name: check_file_config(value, source, f"{key}.{name}", allow_targets="datamodule" if name == "data" else False)
        for name, value in meta.items()
    }
    for name, kinds, what in (
        ("model_name", str, "a model name"),
        ("model_kwargs", (dict, type(None)), "a mapping of timm.create_model arguments"),
        ("data_config", (dict, type(None)), "a mapping"),
        ("data", (dict, type(None)), "a data config mapping"),
        ("wandb_run_id", (str, type(None)), "a string"),
        ("kanify", (list, type(None)), "a list of kanvision.kanify argument mappings"),
    ):
        if name in meta and not isinstance(meta[name], kinds):
            raise ValueError(f"{source}: {key}.{name} must be {what}, got {meta[name]!r}")
    for index, step in enumerate(meta.get("kanify") or []):
        if not isinstance(step, dict):
            raise ValueError(f"{source}: {key}.kanify[{index}] must be a mapping of kanify arguments, got {step!r}")
    if meta.get("model_kwargs"):
        meta["model_kwargs"] = drop_init_only(meta["model_kwargs"], source, f"{key}.model_kwargs")
    for name in ("num_classes", "in_chans"):
        value = (meta.get("model_kwargs") or {}).get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{source}: {key}.model_kwargs.{name} must be a positive integer, got {value!r}")
    return meta


def checkpoint_metadata(checkpoint: dict[str, Any] | str | os.PathLike, source: str | None = None) -> dict[str, Any]:
    """The checked ``kanvision`` entry (model_name, model_kwargs, kanify, data_config, data, has_ema, wandb_run_id) of
    a checkpoint (a dict read by :func:`read_checkpoint`, or a path); ``source`` names it in errors."""
    if not isinstance(checkpoint, dict):
        source = source or f"checkpoint {os.fspath(checkpoint)}"
        checkpoint = read_checkpoint(checkpoint)
    source = _source_of(checkpoint, source)
    meta = checkpoint.get(_META_KEY)
    if not isinstance(meta, Mapping) or "model_name" not in meta:
        if meta is None:
            path = source.removeprefix("checkpoint ")
            raise ValueError(
                f"{source} has no 'kanvision' entry (model name and arguments): it {_describe(checkpoint)}; "
                + _LOAD_FOREIGN.format(path=path)
            )
        raise ValueError(f"{source}: its 'kanvision' entry has no model_name; it was not written by kanvision-train")
    return check_metadata(meta, source)


def drop_init_only(kwargs: Mapping[str, Any], source: str, key: str) -> dict[str, Any]:
    """``kwargs`` (stored ``timm.create_model`` arguments) without :data:`INIT_ONLY_KWARGS` (logged): the network is
    rebuilt from the file's weights, never from the weights or file those arguments name."""
    dropped = sorted(k for k in kwargs if k in INIT_ONLY_KWARGS)
    if dropped:
        log.info("%s: ignoring %s.%s (the network is rebuilt from the file's weights)", source, key, dropped)
    return {k: v for k, v in kwargs.items() if k not in INIT_ONLY_KWARGS}


# hyper-parameters whose configs are Hydra targets (built when training starts); every other one is plain data
_TARGET_HPARAMS = {"optimizer": "optimizer", "scheduler": "scheduler"}


def checkpoint_hparams(checkpoint: dict[str, Any], source: str | None = None) -> dict[str, Any]:
    """The checkpoint's ``hyper_parameters`` (ImageClassifier's arguments) as plain Python once checked: the optimizer
    and scheduler may name torch/timm optimizers and schedulers and kanvision's schedules (at their top level only),
    nothing else names code. :data:`INIT_ONLY_KWARGS` are dropped from ``kwargs``."""
    from kanvision.utils.safe_config import check_file_config

    source = _source_of(checkpoint, source)
    hparams = checkpoint.get("hyper_parameters")
    if not isinstance(hparams, Mapping) or "name" not in hparams:
        raise ValueError(f"{source} has no ImageClassifier hyper_parameters; it was not written by kanvision-train")
    checked = {}
    for name, value in hparams.items():
        allow = _TARGET_HPARAMS.get(name, False)
        checked[name] = check_file_config(value, source, f"hyper_parameters.{name}", allow_targets=allow)
    if not isinstance(checked["name"], str):
        raise ValueError(f"{source}: hyper_parameters.name must be a model name, got {checked['name']!r}")
    if isinstance(checked.get("kwargs"), Mapping):
        checked["kwargs"] = drop_init_only(checked["kwargs"], source, "hyper_parameters.kwargs")
    return checked


def _kind(dtype: torch.dtype) -> str:
    if dtype == torch.bool:
        return "bool"
    if dtype.is_complex:
        return "complex"
    return "floating-point" if dtype.is_floating_point else "integer"


def check_state_dict(model: nn.Module, state: Mapping[str, Any], source: str, allow_missing: bool = False) -> None:
    """Raise ``ValueError`` (naming ``source``, the keys, shapes and dtypes) unless ``state`` fits ``model`` exactly:
    the same keys (``allow_missing``: a subset), shapes and kinds of dtype (integer or bool tensors never go into
    floating-point parameters, which ``load_state_dict`` would silently convert)."""
    expected = model.state_dict()
    problems = []
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing and not allow_missing:
        problems.append(f"missing {_few(missing)}")
    if unexpected:
        problems.append(f"unexpected {_few(unexpected)}")
    for key in sorted(set(expected) & set(state)):
        want, got = expected[key], state[key]
        if not isinstance(want, torch.Tensor):
            continue
        if not isinstance(got, torch.Tensor):
            problems.append(f"{key!r} is a {type(got).__name__}, not a tensor")
        elif got.shape != want.shape:
            problems.append(f"{key!r} has shape {list(got.shape)} where the network's is {list(want.shape)}")
        elif _kind(got.dtype) != _kind(want.dtype):
            problems.append(f"{key!r} is {got.dtype} ({_kind(got.dtype)}) where the network's is {want.dtype}")
    if problems:
        raise ValueError(
            f"{source} does not fit the network built from its metadata ({type(model).__name__}): "
            + "; ".join(problems[:6])
            + (f"; and {len(problems) - 6} more" if len(problems) > 6 else "")
            + "; the weights were saved from another network (other model kwargs, image size or classes) or edited"
        )


def model_state_dict(checkpoint: dict[str, Any], ema: bool = False) -> dict[str, torch.Tensor]:
    """The network's own state dict from a Lightning checkpoint (the raw weights, or the EMA weights)."""
    prefix = "model_ema.module." if ema else "model."
    state = checkpoint.get("state_dict")
    if not isinstance(state, Mapping):
        raise ValueError("checkpoint holds no state_dict")
    state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if not state:
        what = "EMA weights (train with model.ema set)" if ema else "weights under 'model.'"
        raise ValueError(f"checkpoint holds no {what}")
    return {k.replace("_orig_mod.", ""): v for k, v in state.items()}


def _build(meta: dict[str, Any], source: str) -> nn.Module:
    import kanvision  # noqa: F401  (registers kanvision's models with timm)

    name = meta["model_name"]
    if not timm.is_model(name.split(".")[0]):
        raise ValueError(f"{source}: model_name {name!r} is not a registered timm or kanvision model")
    try:
        model = timm.create_model(name, pretrained=False, **(meta.get("model_kwargs") or {}))
    except TypeError as error:  # arguments the model does not take
        raise ValueError(f"{source}: cannot build {name} with {meta.get('model_kwargs')}: {error}") from error
    _replay_kanify(model, meta.get("kanify"), source)
    data = meta.get("data_config") or {}
    if data and hasattr(model, "pretrained_cfg"):
        # so that timm.data.resolve_model_data_config(model) gives the trained input size and normalisation
        cfg = dict(model.pretrained_cfg)
        in_chans = (meta.get("model_kwargs") or {}).get("in_chans", 3)
        try:
            cfg.update(
                input_size=(in_chans, *data["img_size"]),
                mean=tuple(data["mean"]),
                std=tuple(data["std"]),
                interpolation=data["interpolation"],
                crop_pct=data["crop_pct"],
                num_classes=(meta.get("model_kwargs") or {}).get("num_classes", cfg.get("num_classes")),
            )
        except (KeyError, TypeError) as error:
            raise ValueError(f"{source}: kanvision.data_config is incomplete or malformed ({data!r})") from error
        model.pretrained_cfg = cfg
    return model


def _replay_kanify(model: nn.Module, recipe: list[dict[str, Any]] | None, source: str) -> None:
    """Apply the stored :func:`~kanvision.kanify` steps to the freshly built ``model``, in their order."""
    from kanvision.models.kanification import KANIFY_ARGUMENTS, kanify

    for index, step in enumerate(recipe or []):
        unknown = sorted(set(step) - set(KANIFY_ARGUMENTS))
        if unknown:
            raise ValueError(
                f"{source}: kanvision.kanify[{index}] has unknown arguments {unknown}; valid: {list(KANIFY_ARGUMENTS)}"
            )
        try:
            kanify(model, **step)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{source}: cannot replay kanvision.kanify[{index}]={step!r}: {error}") from error


def _safetensors_metadata(path: Path) -> tuple[dict[str, Any], list[str]]:
    """The checked ``kanvision`` metadata of a safetensors file and its tensor names."""
    from safetensors import SafetensorError, safe_open

    source = f"safetensors file {path}"
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata, names = handle.metadata() or {}, list(handle.keys())
    except (SafetensorError, OSError) as error:
        raise ValueError(f"{source} cannot be read as safetensors ({error}); it may be truncated") from error
    text = metadata.get(_META_KEY)
    if not text:
        raise ValueError(
            f"{source} holds {len(names)} tensors (e.g. {_few(names)}) but no 'kanvision' metadata (model name and "
            "arguments), so the network cannot be rebuilt from it alone; " + _LOAD_FOREIGN.format(path=str(path))
        )
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{source}: its 'kanvision' metadata is not valid JSON ({error}: {text[:60]!r}); write the file again "
            "with kanvision-export or kanvision-convert"
        ) from error
    meta = check_metadata(meta, source)
    if "model_name" not in meta:
        raise ValueError(f"{source}: its 'kanvision' metadata has no model_name; write it with kanvision-export")
    return meta, names


def _read_kanvision_checkpoint(path: Path) -> tuple[dict[str, Any], dict[str, Any], str]:
    """(checkpoint, checked metadata, source); stored hyper-parameters are checked too, though not used here, so that
    a file carrying code is refused by every loader alike."""
    source = f"checkpoint {path}"
    checkpoint = read_checkpoint(path)
    meta = checkpoint_metadata(checkpoint, source)
    if checkpoint.get("hyper_parameters") is not None:
        checkpoint_hparams(checkpoint, source)
    return checkpoint, meta, source


def load_checkpoint(path: str | os.PathLike, ema: bool = False, map_location: str | torch.device = "cpu") -> nn.Module:
    """The trained network (in eval mode) from a kanvision ``.ckpt`` or an exported ``.safetensors`` file.

    The network is rebuilt from the file's metadata (checked: data only, see
    :mod:`kanvision.utils.safe_config`) and the weights must fit it exactly (keys, shapes, dtype kinds).

    Args:
        path: checkpoint written by ``kanvision-train`` or file written by :func:`export_safetensors`.
        ema: take the EMA weights from a ``.ckpt`` (a ``.safetensors`` file holds the weights it was exported with).
        map_location: device to put the network on.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file, load_model

        if not path.is_file():
            raise FileNotFoundError(f"safetensors file {path} does not exist")
        source = f"safetensors file {path}"
        meta, _ = _safetensors_metadata(path)
        model = _build(meta, source)
        # load_model below would silently convert dtypes; keys de-duplicated by save_model are missing here
        check_state_dict(model, load_file(str(path)), source, allow_missing=True)
        try:
            load_model(model, str(path), strict=True)
        except RuntimeError as error:
            raise ValueError(f"{source} does not fit the network built from its metadata: {error}") from error
    else:
        checkpoint, meta, source = _read_kanvision_checkpoint(path)
        model = _build(meta, source)
        state = model_state_dict(checkpoint, ema=ema)
        check_state_dict(model, state, source)
        model.load_state_dict(state, strict=True)
    return model.to(map_location).eval()


def export_safetensors(
    ckpt_path: str | os.PathLike, out_path: str | os.PathLike | None = None, ema: bool = False
) -> Path:
    """Write the network of a kanvision ``.ckpt`` as ``.safetensors`` with its name, kwargs and data config.

    ``out_path`` defaults to the checkpoint path with the suffix ``.safetensors``.
    """
    ckpt_path = Path(ckpt_path)
    out_path = Path(out_path) if out_path is not None else ckpt_path.with_suffix(".safetensors")
    checkpoint, meta, source = _read_kanvision_checkpoint(ckpt_path)
    model = _build(meta, source)
    state = model_state_dict(checkpoint, ema=ema)
    check_state_dict(model, state, source)
    model.load_state_dict(state, strict=True)
    return save_safetensors(model, meta, out_path, ema=ema)


def save_safetensors(model: nn.Module, meta: dict[str, Any], out_path: str | os.PathLike, ema: bool = False) -> Path:
    """Write ``model`` with the checkpoint metadata ``meta`` (model_name, model_kwargs, data_config) as safetensors.

    The :func:`~kanvision.kanify` steps applied to ``model`` (its ``kanify_recipe``) are recorded too.
    """
    from safetensors.torch import save_model

    from kanvision.models.kanification import kanify_recipe

    out_path = Path(out_path)
    recipe = kanify_recipe(model, f"the network written to {out_path}")
    meta = {k: meta.get(k) for k in ("model_name", "model_kwargs", "data_config")} | {"ema": ema}
    if recipe is not None:
        meta["kanify"] = recipe
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    save_model(model, str(tmp), metadata={_META_KEY: json.dumps(meta)})  # save_model de-duplicates shared tensors
    os.replace(tmp, out_path)
    return out_path
