"""One place that checks a composed training config before anything heavy is built.

``train(cfg)`` calls :func:`validate_config` first: a value of the wrong type or range (``data.batch_size=1.5``,
``trainer.max_epochs=abc``, a negative learning rate, ``trainer.max_epochs=0``) fails with an error that names the
key, the value and what is valid, instead of being truncated silently or failing deep inside Lightning after the
model was built. Checks that need the data (class counts, split sizes) live in the DataModules' ``check_data``.
"""

from __future__ import annotations

import numbers
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
    return _is_number(value) and value > 0


def _nonnegative_number(value: Any) -> bool:
    return _is_number(value) and value >= 0


def _fraction(value: Any) -> bool:
    return _is_number(value) and 0 <= value < 1


def _image_size(value: Any) -> bool:
    if _positive_int(value):
        return True
    return isinstance(value, (list, tuple)) and len(value) == 2 and all(_positive_int(v) for v in value)


def _numbers(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and len(value) >= 1 and all(_is_number(v) for v in value)


# key -> (check, may be null, what is valid)
_RULES: dict[str, tuple[Callable[[Any], bool], bool, str]] = {
    "data.batch_size": (_positive_int, False, "a positive integer (the global batch size)"),
    "data.eval_batch_size": (_positive_int, True, "a positive integer or null"),
    "data.num_workers": (_nonnegative_int, False, "an integer >= 0"),
    "data.num_classes": (lambda v: _is_int(v) and v >= 2, True, "an integer >= 2, or null to take the data's"),
    "data.img_size": (_image_size, True, "a positive integer or [height, width], or null for the model's"),
    "data.mean": (_numbers, True, "a list of numbers (one per channel, or one for all), or null"),
    "data.std": (lambda v: _numbers(v) and all(s > 0 for s in v), True, "a list of positive numbers, or null"),
    "trainer.max_epochs": (_training_length, True, "a positive integer, -1 (no limit with max_steps) or null"),
    "trainer.max_steps": (_training_length, True, "a positive integer or -1 (no limit)"),
    "trainer.accumulate_grad_batches": (_positive_int, False, "a positive integer"),
    "model.optimizer.lr": (_positive_number, False, "a positive number"),
    "model.optimizer.weight_decay": (_nonnegative_number, False, "a number >= 0"),
    "model.label_smoothing": (_fraction, False, "a number in [0, 1)"),
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
    if errors:
        raise ConfigError("invalid config value" + ("s" if len(errors) > 1 else "") + ":\n  " + "\n  ".join(errors))
