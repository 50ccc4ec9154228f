"""The shared DataModule machinery: global batch -> per-device batch, data-config resolution, loaders, checks.

Image datasets use timm's ``create_transform`` with the data config's ``augment`` arguments (timm train.py's light
defaults for a generic tree; DeiT's RandAugment and RandomErasing, arXiv 2012.12877, where a config cites it).
Resolution and normalisation come from the model's ``pretrained_cfg`` unless set
(:meth:`ImageDataModule.configure_for_model`). ``batch_size`` is the GLOBAL batch; each process loads
``batch_size // world_size``. ``check_data`` validates the source with an error naming the path and the expected
layout, and ``train(cfg)`` calls it before any model is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import numpy as np
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from kanvision.training.data.augment import pillow_safe

__all__ = ["ArrayImageDataset", "ArraySubset", "DataRootError", "ImageDataModule"]

_DATA_CONFIG_KEYS = ("img_size", "mean", "std", "interpolation", "crop_pct")


class ArrayImageDataset(Dataset):
    """Images held in memory as a uint8 array (``images``, ``targets``), read as PIL images of ``mode``;
    ``native_mode`` is the mode of the stored pixels."""

    native_mode = "RGB"
    images: np.ndarray
    targets: np.ndarray
    transform: Any = None
    mode: str = "RGB"

    def __len__(self) -> int:
        return len(self.targets)

    def image(self, index: int) -> Image.Image:
        """Image ``index`` as a PIL image in the dataset's mode."""
        image = Image.fromarray(self.images[index])
        return image if self.mode == self.native_mode else image.convert(self.mode)

    def __getitem__(self, index: int):
        image = self.image(index)
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.targets[index])


class ArraySubset(Dataset):
    """A view of an :class:`ArrayImageDataset` at ``indices`` with its own transform (train and val splits of one
    source)."""

    def __init__(self, dataset: ArrayImageDataset, indices: np.ndarray, transform):
        self.dataset, self.indices, self.transform = dataset, indices, transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        image = self.dataset.image(self.indices[index])
        return self.transform(image), int(self.dataset.targets[self.indices[index]])


class DataRootError(ValueError):
    """A missing or malformed ``data.root``; the message names the path and the expected layout."""


def _match_channels(values: Sequence[float], in_chans: int, what: str) -> tuple[float, ...]:
    values = tuple(float(v) for v in values)
    if len(values) == in_chans:
        return values
    if len(values) == 1:
        return values * in_chans
    if in_chans == 1:  # an RGB model default applied to grayscale data: one channel, the average
        return (sum(values) / len(values),)
    raise ValueError(f"{what} has {len(values)} values {values}, but the data has {in_chans} channels")


class ImageDataModule(L.LightningDataModule):
    """Shared machinery: global -> per-device batch size, data-config resolution, loaders.

    Subclasses implement ``check_data`` (cheap validation, sets ``num_classes``) and ``_make_datasets``.

    Args:
        batch_size: global batch size, divided by the world size in :meth:`setup`.
        eval_batch_size: global batch size for validation and test (defaults to ``batch_size``).
        img_size, mean, std, interpolation, crop_pct: ``None`` takes the model's ``pretrained_cfg`` value.
        augment: keyword arguments for timm's ``create_transform(is_training=True)`` (``auto_augment``,
            ``re_prob``, ``re_mode``, ``hflip``, ``scale``, ``color_jitter``, ...).
        drop_last: drop the last incomplete training batch.
    """

    def __init__(
        self,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        drop_last: bool = False,
        img_size: int | Sequence[int] | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        interpolation: str | None = None,
        crop_pct: float | None = None,
        augment: dict[str, Any] | None = None,
        num_classes: int | None = None,
        in_chans: int = 3,
    ):
        super().__init__()
        for name, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size or 1)):
            if int(value) < 1:
                raise ValueError(f"data.{name} must be a positive integer, got {value}")
        if num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {num_workers}")
        if in_chans not in (1, 3):
            raise ValueError(f"data.in_chans must be 1 (grayscale) or 3 (RGB), got {in_chans}")
        if num_classes is not None and num_classes < 2:
            raise ValueError(f"data.num_classes must be >= 2, got {num_classes}")
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.drop_last = drop_last
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.augment = dict(augment or {})
        for name, values in (("mean", mean), ("std", std)):
            if values is not None and len(values) not in (1, in_chans) and in_chans != 1:
                raise ValueError(
                    f"data.{name} has {len(values)} values {list(values)}, but the data has {in_chans} channels: "
                    f"give {in_chans} values (one per channel) or 1 (for all)"
                )
        self.num_train_samples: int | None = None
        self._overrides = dict(img_size=img_size, mean=mean, std=std, interpolation=interpolation, crop_pct=crop_pct)
        self._data_config: dict[str, Any] | None = None
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None
        self.per_device_batch_size = self.batch_size
        self.per_device_eval_batch_size = self.eval_batch_size

    # ----------------------------------------------------------------------------------------- data config
    def check_data(self, training: bool = True) -> None:
        """Validate the data source (cheap, before any model is built); raise :class:`DataRootError` naming the
        path and the layout, or (when ``training``) ``ValueError`` when the batch cannot be filled from the training
        split."""
        self.num_train_samples = self._check_source()
        samples = self.num_train_samples
        if training and self.drop_last and samples is not None and samples < self.batch_size:
            raise ValueError(
                f"data.batch_size={self.batch_size} is larger than the training split ({self.num_train_samples} "
                "samples) and data.drop_last=true drops that one incomplete batch, so an epoch would have no "
                f"batch; use data.batch_size <= {self.num_train_samples} or data.drop_last=false"
            )

    def _check_source(self) -> int | None:
        """Validate the source; return the number of training samples (``None`` if unknown without loading)."""
        return None

    def configure_for_model(self, model_config: dict[str, Any] | None = None) -> dict[str, Any]:
        """Fill unset img_size/mean/std/interpolation/crop_pct from a model data config; return the result.

        ``model_config`` is what ``timm.data.resolve_model_data_config(model)`` returns (``input_size`` as
        (C, H, W)) or a stored ``data_config`` from a kanvision checkpoint (``img_size``).
        """
        model_config = dict(model_config or {})
        if "img_size" not in model_config and "input_size" in model_config:
            model_config["img_size"] = tuple(model_config["input_size"][-2:])
        resolved = {}
        for key in _DATA_CONFIG_KEYS:
            value = self._overrides[key]
            resolved[key] = model_config.get(key) if value is None else value
        resolved = self._finalize_data_config(resolved)
        self._data_config = resolved
        return dict(resolved)

    def _finalize_data_config(self, cfg: dict[str, Any]) -> dict[str, Any]:
        size = cfg["img_size"]
        if size is None:
            raise ValueError("data.img_size is not set and the model's pretrained_cfg gives no input_size")
        size = (int(size), int(size)) if isinstance(size, (int, float)) else tuple(int(s) for s in size)
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"data.img_size must be an int or (height, width) of positive ints, got {cfg['img_size']}")
        cfg["img_size"] = list(size)
        cfg["mean"] = list(_match_channels(cfg["mean"] or (0.5,), self.in_chans, "data.mean"))
        cfg["std"] = list(_match_channels(cfg["std"] or (0.5,), self.in_chans, "data.std"))
        if any(s <= 0 for s in cfg["std"]):
            raise ValueError(f"data.std must be positive, got {cfg['std']}")
        cfg["interpolation"] = cfg["interpolation"] or "bilinear"
        cfg["crop_pct"] = float(cfg["crop_pct"] if cfg["crop_pct"] is not None else 1.0)
        if not 0.0 < cfg["crop_pct"] <= 1.0:
            raise ValueError(f"data.crop_pct must be in (0, 1], got {cfg['crop_pct']}")
        return cfg

    @property
    def data_config(self) -> dict[str, Any]:
        """The resolved input size and normalisation (resolved from the overrides alone if no model was given)."""
        if self._data_config is None:
            self.configure_for_model()
        return dict(self._data_config)

    def transform(self, is_training: bool):
        """timm's transform for PIL images at the resolved data config and ``augment`` (:func:`pillow_safe` ops)."""
        from timm.data import create_transform

        cfg = self.data_config
        kwargs = dict(self.augment) if is_training else {}
        for key in ("scale", "ratio"):
            if kwargs.get(key) is not None:
                kwargs[key] = tuple(kwargs[key])
        transform = create_transform(
            input_size=(self.in_chans, *cfg["img_size"]),
            is_training=is_training,
            interpolation=cfg["interpolation"],
            mean=tuple(cfg["mean"]),
            std=tuple(cfg["std"]),
            crop_pct=cfg["crop_pct"],
            **kwargs,
        )
        return pillow_safe(transform)

    # ----------------------------------------------------------------------------------------- Lightning
    def _world_size(self) -> int:
        trainer = getattr(self, "trainer", None)
        return int(trainer.world_size) if trainer is not None else 1

    def setup(self, stage: str | None = None) -> None:
        world = self._world_size()
        for name in ("batch_size", "eval_batch_size"):
            value = getattr(self, name)
            if value % world:
                raise ValueError(
                    f"data.{name}={value} is the global batch and must be divisible by the world size {world}"
                )
        self.per_device_batch_size = self.batch_size // world
        self.per_device_eval_batch_size = self.eval_batch_size // world
        if self.train_set is None and self.val_set is None and self.test_set is None:
            self.check_data(training=stage in (None, "fit"))
            self.train_set, self.val_set, self.test_set = self._make_datasets()

    def _make_datasets(self) -> tuple[Dataset, Dataset, Dataset]:
        raise NotImplementedError

    def _loader(self, dataset: Dataset, train: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.per_device_batch_size if train else self.per_device_eval_batch_size,
            shuffle=train,
            drop_last=train and self.drop_last,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, train=False)


def split_indices(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random (keep, held_out) split of range(n)."""
    order = np.random.default_rng(seed).permutation(n)
    held = int(round(n * fraction))
    return np.sort(order[held:]), np.sort(order[:held])
