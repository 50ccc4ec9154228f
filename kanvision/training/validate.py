"""One place that checks a composed training config before anything heavy is built.

``train(cfg)`` calls :func:`validate_config` first: a value of the wrong type or range (``data.batch_size=1.5``,
``trainer.max_epochs=abc``, a negative learning rate, ``trainer.max_epochs=0``) fails with an error that names the
key, the value and what is valid, instead of being truncated silently or failing deep inside Lightning after the
model was built. Checks that need the data (class counts, split sizes) live in the DataModules' ``check_data``.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, OmegaConf

__all__ = ["ConfigError", "validate_config"]

_MISSING = object()


class ConfigError(ValueError):
    """A config value of the wrong type or out of range; the message names the key and what is valid."""


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _positive_int(value: Any) -> bool:
    return _is_int(value) and value >= 1


def _nonnegative_int(value: Any) -> bool:
    return _is_int(value) and value >= 0


def _training_length(value: Any) -> bool:
    return _is_int(value) and (value >= 1 or value == -1)


def _positive_number(value: Any) -> bool:
    return _is_number(value) and math.isfinite(value) and value > 0


def _nonnegative_number(value: Any) -> bool:
    return _is_number(value) and math.isfinite(value) and value >= 0


def _fraction(value: Any) -> bool:
    return _is_number(value) and 0 <= value < 1


def _probability(value: Any) -> bool:
    return _is_number(value) and 0 <= value <= 1


def _batch_limit(value: Any) -> bool:
    """Lightning's ``limit_*_batches``: a batch count (int >= 0) or a fraction (float in [0, 1])."""
    return _nonnegative_int(value) or (isinstance(value, float) and 0 <= value <= 1)


def _devices(value: Any) -> bool:
    """Lightning's ``devices``: ``"auto"``, a count >= 1, -1 (all), or a non-empty list/string of device indices."""
    if value == "auto" or value == -1 or _positive_int(value):
        return True
    if isinstance(value, str):  # "2" is a count, "0,1" (or "0,") a list of indices
        text = value.strip()
        if "," in text:
            parts = [p.strip() for p in text.split(",") if p.strip()]
            return bool(parts) and all(p.isdigit() for p in parts)
        return text == "-1" or (text.isdigit() and int(text) >= 1)
    return isinstance(value, (list, tuple)) and len(value) >= 1 and all(_nonnegative_int(v) for v in value)


def _one_of(*choices: Any) -> Callable[[Any], bool]:
    return lambda value: value in choices


def _image_size(value: Any) -> bool:
    if _positive_int(value):
        return True
    return isinstance(value, (list, tuple)) and len(value) == 2 and all(_positive_int(v) for v in value)


def _numbers(value: Any) -> bool:
    return (
        isinstance(value, (list, tuple)) and len(value) >= 1 and all(_is_number(v) and math.isfinite(v) for v in value)
    )


# key -> (check, may be null, what is valid)
_RULES: dict[str, tuple[Callable[[Any], bool], bool, str]] = {
    "data.batch_size": (_positive_int, False, "a positive integer (the global batch size)"),
    "data.eval_batch_size": (_positive_int, True, "a positive integer or null"),
    "data.num_workers": (_nonnegative_int, False, "an integer >= 0"),
    "data.num_classes": (lambda v: _is_int(v) and v >= 2, True, "an integer >= 2, or null to take the data's"),
    "data.img_size": (_image_size, True, "a positive integer or [height, width], or null for the model's"),
    "data.mean": (_numbers, True, "a list of finite numbers (one per channel, or one for all), or null"),
    "data.std": (lambda v: _numbers(v) and all(s > 0 for s in v), True, "a list of finite positive numbers, or null"),
    "trainer.max_epochs": (_training_length, True, "a positive integer, -1 (no limit with max_steps) or null"),
    "trainer.max_steps": (_training_length, True, "a positive integer or -1 (no limit)"),
    "trainer.min_epochs": (_nonnegative_int, True, "an integer >= 0 or null"),
    "trainer.min_steps": (_nonnegative_int, True, "an integer >= 0 or null"),
    "trainer.accumulate_grad_batches": (_positive_int, False, "a positive integer"),
    "trainer.devices": (_devices, False, "'auto', a positive integer, -1 (all), or a list of device indices"),
    "trainer.check_val_every_n_epoch": (_positive_int, True, "a positive integer or null"),
    "trainer.val_check_interval": (
        lambda v: _positive_int(v) or (isinstance(v, float) and 0 < v <= 1),
        True,
        "a positive integer (batches) or a float in (0, 1] (a fraction of an epoch)",
    ),
    "trainer.limit_train_batches": (_batch_limit, True, "an integer >= 0 (batches), a float in [0, 1], or null"),
    "trainer.limit_val_batches": (_batch_limit, True, "an integer >= 0 (batches), a float in [0, 1], or null"),
    "trainer.limit_test_batches": (_batch_limit, True, "an integer >= 0 (batches), a float in [0, 1], or null"),
    "trainer.gradient_clip_val": (_nonnegative_number, True, "a finite number >= 0, or null (no clipping)"),
    "trainer.gradient_clip_algorithm": (_one_of("norm", "value"), True, "'norm', 'value' or null"),
    "trainer.log_every_n_steps": (_nonnegative_int, True, "an integer >= 0 (0: never) or null"),
    "print_config": (_one_of(True, False, "full"), True, "true (what differs from the defaults), 'full' or false"),
    "float32_matmul_precision": (_one_of("highest", "high", "medium"), True, "'highest', 'high', 'medium' or null"),
    "model.optimizer.lr": (_positive_number, False, "a finite positive number"),
    "model.optimizer.weight_decay": (_nonnegative_number, False, "a finite number >= 0"),
    "model.scheduler.min_lr": (_nonnegative_number, False, "a finite number >= 0"),
    "model.scheduler.warmup_lr": (_nonnegative_number, False, "a finite number >= 0"),
    "model.scheduler.warmup_epochs": (_nonnegative_int, False, "an integer >= 0"),
    "model.scheduler.warmup_steps": (_nonnegative_int, True, "an integer >= 0 or null"),
    "model.scheduler.max_lr": (_positive_number, False, "a finite positive number"),
    "model.scheduler.pct_start": (lambda v: _is_number(v) and 0 < v < 1, False, "a number in (0, 1)"),
    "model.label_smoothing": (_fraction, False, "a number in [0, 1)"),
    "model.ema.decay": (_probability, False, "a number in [0, 1]"),
    "model.mixup.mixup_alpha": (_nonnegative_number, False, "a finite number >= 0 (0: off)"),
    "model.mixup.cutmix_alpha": (_nonnegative_number, False, "a finite number >= 0 (0: off)"),
    "model.mixup.prob": (_probability, False, "a number in [0, 1]"),
    "model.mixup.switch_prob": (_probability, False, "a number in [0, 1]"),
    "model.mixup.mode": (_one_of("batch", "pair", "elem"), False, "'batch', 'pair' or 'elem' (timm.data.Mixup)"),
}


def _select(cfg: DictConfig, key: str) -> Any:
    node = OmegaConf.select(cfg, key, default=_MISSING, throw_on_missing=False)
    if OmegaConf.is_config(node):
        return OmegaConf.to_container(node, resolve=True)
    return node


def validate_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` for the first value of ``cfg`` whose type or range is wrong.

    Keys absent from ``cfg`` are not checked (each group documents its own defaults).
    """
    errors = []
    for key, (check, nullable, valid) in _RULES.items():
        value = _select(cfg, key)
        if value is _MISSING or (value is None and nullable):
            continue
        if value is None or not check(value):
            errors.append(f"{key}={value!r} ({type(value).__name__}) is invalid: expected {valid}")
    errors += _check_precision(cfg) + _check_optimizer(cfg) + _check_length(cfg) + _check_kanify(cfg)
    if errors:
        raise ConfigError("invalid config value" + ("s" if len(errors) > 1 else "") + ":\n  " + "\n  ".join(errors))


def _check_precision(cfg: DictConfig) -> list[str]:
    value = _select(cfg, "trainer.precision")
    if value is _MISSING or value is None:
        return []
    # Lightning's own parsing (private: its public form is only reached inside Trainer(), after the model is built);
    # if a Lightning release moves it, the Trainer still checks the value (later) and test_robustness.py says so
    try:
        from lightning.fabric.connector import _convert_precision_to_unified_args
    except ImportError:
        return []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the Trainer repeats the advice on legacy names such as 16 or "bf16"
            _convert_precision_to_unified_args(value)
    except (ValueError, TypeError) as error:
        return [f"trainer.precision={value!r} is invalid: {error}"]
    return []


def _check_optimizer(cfg: DictConfig) -> list[str]:
    target, name = _select(cfg, "model.optimizer._target_"), _select(cfg, "model.optimizer.opt")
    if target != "timm.optim.create_optimizer_v2" or name is _MISSING:
        return []
    import timm.optim

    valid = timm.optim.list_optimizers()
    # timm accepts "lookahead_<name>" and is case-insensitive
    if isinstance(name, str) and name.lower().removeprefix("lookahead_") in valid:
        return []
    return [f"model.optimizer.opt={name!r} is not a timm optimizer: expected one of {', '.join(valid)}"]


def _check_length(cfg: DictConfig) -> list[str]:
    """A run must end: -1 epochs and -1 steps need trainer.max_time; training must see at least one batch."""
    epochs, steps = _select(cfg, "trainer.max_epochs"), _select(cfg, "trainer.max_steps")
    errors = []
    if epochs == -1 and steps in (-1, None, _MISSING) and _select(cfg, "trainer.max_time") in (None, _MISSING):
        errors.append(
            "trainer.max_epochs=-1 with trainer.max_steps=-1 never ends: set a positive trainer.max_epochs or "
            "trainer.max_steps (or trainer.max_time)"
        )
    if _select(cfg, "train") is not False and _select(cfg, "trainer.limit_train_batches") in (0, 0.0):
        errors.append(
            "trainer.limit_train_batches=0 trains nothing: expected a positive batch count or fraction "
            "(or train=false to only test a checkpoint)"
        )
    return errors


def _check_kanify(cfg: DictConfig) -> list[str]:
    """``model.kanify``'s keys and values (kan, where, groups, pattern, kan_kwargs), before the network is built."""
    value = _select(cfg, "model.kanify")
    if value is _MISSING or value is None:
        return []
    from kanvision.models.kanification import check_kanify_config

    try:
        check_kanify_config(value, "model.kanify")
    except (TypeError, ValueError) as error:
        return [str(error)]
    return []
