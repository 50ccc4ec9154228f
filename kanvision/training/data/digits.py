"""scikit-learn's bundled 8x8 handwritten digits: real images that need no download."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, TensorDataset

from kanvision.training.data.base import ImageDataModule

__all__ = ["DigitsDataModule"]


class DigitsDataModule(ImageDataModule):
    """scikit-learn's bundled 8x8 handwritten digits (1,797 real images, 10 classes, no download).

    A fixed, seeded, stratified test split (``test_fraction``) and a validation split taken from the rest
    (``val_fraction``). Pixels are scaled from [0, 16] to [0, 1], then normalised with the data config's mean/std.
    ``img_size`` other than 8 resizes bilinearly.
    """

    def __init__(
        self, test_fraction: float = 0.2, val_fraction: float = 0.1, seed: int = 0, img_size: int = 8, **kwargs: Any
    ):
        kwargs.setdefault("in_chans", 1)
        if kwargs["in_chans"] != 1:
            raise ValueError(f"the digits are grayscale: data.in_chans must be 1, got {kwargs['in_chans']}")
        super().__init__(num_classes=10, img_size=img_size, **kwargs)
        for name, value in (("test_fraction", test_fraction), ("val_fraction", val_fraction)):
            if not 0.0 < value < 1.0:
                raise ValueError(f"data.{name} must be in (0, 1), got {value}")
        self.test_fraction = test_fraction
        self.val_fraction = val_fraction
        self.seed = seed

    def _check_source(self) -> int:
        return len(self.split_arrays()["train"][1])

    def split_arrays(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """The raw split: name -> (images in [0, 1] as (N, 8, 8) float32, labels)."""
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        digits = load_digits()
        images = digits.images.astype(np.float32) / 16.0
        x_rest, x_test, y_rest, y_test = train_test_split(
            images, digits.target, test_size=self.test_fraction, random_state=self.seed, stratify=digits.target
        )
        x_train, x_val, y_train, y_val = train_test_split(
            x_rest, y_rest, test_size=self.val_fraction, random_state=self.seed, stratify=y_rest
        )
        return {"train": (x_train, y_train), "val": (x_val, y_val), "test": (x_test, y_test)}

    def _make_datasets(self) -> tuple[Dataset, Dataset, Dataset]:
        cfg = self.data_config
        mean = torch.tensor(cfg["mean"]).view(1, -1, 1, 1)
        std = torch.tensor(cfg["std"]).view(1, -1, 1, 1)
        sets = []
        for images, labels in self.split_arrays().values():
            x = torch.from_numpy(images).unsqueeze(1)  # (N, 1, 8, 8)
            if list(x.shape[-2:]) != cfg["img_size"]:
                x = F.interpolate(x, size=tuple(cfg["img_size"]), mode="bilinear", antialias=True, align_corners=False)
            sets.append(TensorDataset((x - mean) / std, torch.from_numpy(labels).long()))
        return tuple(sets)
