"""Random, learnable images for smoke tests."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset, TensorDataset

from kanvision.training.data.base import ImageDataModule

__all__ = ["SyntheticDataModule"]


class SyntheticDataModule(ImageDataModule):
    """Random, learnable images for smoke tests: each class is a fixed random template plus Gaussian noise.

    Samples are already normalised tensors, so mean/std are not applied.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 3,
        num_train: int = 256,
        num_val: int = 64,
        num_test: int = 64,
        noise: float = 1.0,
        seed: int = 0,
        **kwargs: Any,
    ):
        super().__init__(num_classes=num_classes, in_chans=in_chans, **kwargs)
        for name, value in (("num_train", num_train), ("num_val", num_val), ("num_test", num_test)):
            if value < 1:
                raise ValueError(f"data.{name} must be >= 1, got {value}")
        self.sizes = (num_train, num_val, num_test)
        self.noise = noise
        self.seed = seed

    def _check_source(self) -> int:
        return self.sizes[0]

    def _make_datasets(self) -> tuple[Dataset, Dataset, Dataset]:
        height, width = self.data_config["img_size"]
        gen = torch.Generator().manual_seed(self.seed)
        templates = torch.randn(self.num_classes, self.in_chans, height, width, generator=gen)
        sets = []
        for n in self.sizes:
            labels = torch.randint(0, self.num_classes, (n,), generator=gen)
            images = templates[labels] + self.noise * torch.randn(n, self.in_chans, height, width, generator=gen)
            sets.append(TensorDataset(images, labels))
        return tuple(sets)
