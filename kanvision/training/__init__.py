"""Training system: ImageClassifier (LightningModule), DataModules, Hydra entry points, checkpoints.

Heavy imports (Lightning, Hydra) happen on first attribute access, so ``import kanvision`` stays light.
The entry points are ``kanvision.training.train.train`` and ``kanvision.training.evaluate.evaluate``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ImageClassifier": "kanvision.training.module",
    "load_checkpoint": "kanvision.training.checkpoint",
    "export_safetensors": "kanvision.training.checkpoint",
    "NonFiniteLossGuard": "kanvision.training.callbacks",
    "NonFiniteLossError": "kanvision.training.callbacks",
    "DataRootError": "kanvision.training.data",
    "DigitsDataModule": "kanvision.training.data",
    "SyntheticDataModule": "kanvision.training.data",
    "CIFAR10DataModule": "kanvision.training.data",
    "CIFAR100DataModule": "kanvision.training.data",
    "ImageFolderDataModule": "kanvision.training.data",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'kanvision.training' has no attribute {name!r}")
