"""Configs read from files are data, never code.

A checkpoint that loads under ``torch.load(weights_only=True)`` can still carry a Hydra ``_target_`` chain in its
stored configs (``{"_target_": "torch.load", "f": {"_target_": "io.BytesIO", ...}, "weights_only": false}``), and
Hydra's own blocklist does not stop chains through allowed callables. So nothing read from a checkpoint, a
safetensors header or a run directory reaches ``hydra.utils.instantiate`` before :func:`check_file_config` has
walked it: every ``_target_``, at every depth, must be one of kanvision's DataModules, a torch/timm optimizer or
learning-rate scheduler, kanvision's schedules or model builders, and every other value plain data. Where the
caller knows what a config builds (a DataModule, an optimizer, a scheduler, a model), only its top-level node may
name code, and only code of that kind.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, Literal

__all__ = ["TARGET_KINDS", "UnsafeConfigError", "check_file_config", "is_allowed_target", "target_kind"]

# Hydra's own keys that change how a node is built but name no code.
_HYDRA_KEYS = ("_target_", "_args_", "_partial_", "_convert_", "_recursive_")

_ALLOWED_EXACT = {
    "timm.create_model": "model",
    "kanvision.training.module.ImageClassifier": "model",
    "timm.optim.create_optimizer_v2": "optimizer",
    "timm.scheduler.create_scheduler_v2": "scheduler",
    "kanvision.training.optim.cosine_with_warmup": "scheduler",
}

# what a file-borne config may build, when its caller knows: check_file_config(allow_targets=<kind>)
TARGET_KINDS = ("datamodule", "optimizer", "scheduler", "model")
TargetKind = Literal["datamodule", "optimizer", "scheduler", "model"]


class UnsafeConfigError(ValueError):
    """A config read from a file names code that kanvision does not build from files, or holds a non-data value."""


def _public_class_in(module_name: str, name: str, base_of: str) -> bool:
    """``module_name.name`` is a public class deriving from ``base_of`` (looked up, never imported by name)."""
    if not name.isidentifier() or name.startswith("_"):
        return False
    if module_name == "kanvision.training.data":
        # by name: that package defines nothing else called *DataModule, and this keeps utils below training
        return name.endswith("DataModule")
    import timm.optim
    import timm.scheduler
    import torch.optim
    from timm.scheduler.scheduler import Scheduler as TimmScheduler

    module = {
        "torch.optim": torch.optim,
        "torch.optim.lr_scheduler": torch.optim.lr_scheduler,
        "timm.optim": timm.optim,
        "timm.scheduler": timm.scheduler,
    }[module_name]
    base = {
        "optimizer": torch.optim.Optimizer,
        "scheduler": (torch.optim.lr_scheduler.LRScheduler, TimmScheduler),
    }[base_of]
    candidate = getattr(module, name, None)
    return inspect.isclass(candidate) and issubclass(candidate, base)


_CLASS_MODULES = {
    "kanvision.training.data": "datamodule",
    "torch.optim": "optimizer",
    "timm.optim": "optimizer",
    "torch.optim.lr_scheduler": "scheduler",
    "timm.scheduler": "scheduler",
}


def target_kind(target: Any) -> str | None:
    """What an allowed ``target`` builds (one of :data:`TARGET_KINDS`), or None when a file may not name it."""
    if not isinstance(target, str):
        return None
    if target in _ALLOWED_EXACT:
        return _ALLOWED_EXACT[target]
    module_name, _, name = target.rpartition(".")
    kind = _CLASS_MODULES.get(module_name)
    return kind if kind is not None and _public_class_in(module_name, name, kind) else None


def is_allowed_target(target: Any) -> bool:
    """Whether a file-borne config may name ``target``: kanvision's DataModules (``kanvision.training.data.*``),
    torch/timm optimizer and scheduler classes, ``timm.create_model``, ``timm.optim.create_optimizer_v2``,
    ``timm.scheduler.create_scheduler_v2``, :class:`~kanvision.training.module.ImageClassifier` and
    :func:`~kanvision.training.optim.cosine_with_warmup`."""
    return target_kind(target) is not None


def _path(key: str, part: str | int) -> str:
    if isinstance(part, int):
        return f"{key}[{part}]"
    return f"{key}.{part}" if key else str(part)


def check_file_config(value: Any, source: str, key: str = "", allow_targets: bool | TargetKind = True) -> Any:
    """Return ``value`` (as plain Python) if it is safe to build; else raise :class:`UnsafeConfigError`.

    Args:
        value: a config read from a file (plain dicts/lists, or an OmegaConf node).
        source: the file, for the error message (e.g. ``"checkpoint run/last.ckpt"``).
        key: the key path of ``value`` inside the file, for the error message.
        allow_targets: False where no ``_target_`` at all belongs (e.g. model kwargs, which are passed to
            ``timm.create_model`` as they are); a kind (``"datamodule"``: kanvision's DataModules, ``"optimizer"``:
            torch/timm optimizers and ``timm.optim.create_optimizer_v2``, ``"scheduler"``: torch/timm schedulers,
            ``timm.scheduler.create_scheduler_v2`` and ``cosine_with_warmup``, ``"model"``: ``timm.create_model``
            and ``ImageClassifier``) where the config builds one thing: only its top-level node may then carry a
            ``_target_``, of that kind; True: any allowed ``_target_`` at any depth.
    """
    if not isinstance(allow_targets, bool) and allow_targets not in TARGET_KINDS:
        raise ValueError(f"allow_targets must be True, False or one of {TARGET_KINDS}, got {allow_targets!r}")
    if type(value).__module__.startswith("omegaconf"):  # omegaconf comes with the train extra only
        from omegaconf import OmegaConf

        value = OmegaConf.to_container(value, resolve=False)
    _walk(value, source, key, allow_targets)
    return value


def _refuse(source: str, key: str, what: str) -> UnsafeConfigError:
    where = key or "<top level>"
    return UnsafeConfigError(
        f"{source}: refused to build {where}: {what}; configs read from files are data, never code"
    )


def _walk(value: Any, source: str, key: str, allow_targets: bool | str) -> None:
    if value is None or isinstance(value, (bool, int, float)):
        return
    if isinstance(value, str):
        if "${" in value:  # resolvers read environment variables or decode text; stored configs are resolved
            raise _refuse(source, key, f"the interpolation {value!r}")
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):  # a list is never the node a kind of config builds
            _walk(item, source, _path(key, index), allow_targets if isinstance(allow_targets, bool) else False)
        return
    if isinstance(value, Mapping):
        for name in value:
            if not isinstance(name, str):
                raise _refuse(source, key, f"the non-string key {name!r}")
            if name.startswith("_") and name.endswith("_") and name not in _HYDRA_KEYS:
                raise _refuse(source, _path(key, name), f"the unknown Hydra key {name!r}")
        if "_target_" in value:
            target = value["_target_"]
            if not allow_targets:
                raise _refuse(source, _path(key, "_target_"), f"the _target_ {target!r} (no _target_ belongs here)")
            kind = target_kind(target)
            if kind is None:
                raise _refuse(
                    source,
                    _path(key, "_target_"),
                    f"the _target_ {target!r}, which is not one of kanvision's DataModules, a torch/timm optimizer "
                    "or scheduler, or kanvision's model and schedule builders",
                )
            if allow_targets is not True and kind != allow_targets:
                raise _refuse(
                    source,
                    _path(key, "_target_"),
                    f"the _target_ {target!r}, a {kind} where only a {allow_targets} belongs",
                )
        # a config of one kind builds one thing: its arguments are data
        inner = allow_targets if isinstance(allow_targets, bool) else False
        for name, item in value.items():
            if name != "_target_":
                _walk(item, source, _path(key, name), inner)
        return
    raise _refuse(source, key, f"a value of type {type(value).__name__} (only numbers, strings, bools, lists, dicts)")
