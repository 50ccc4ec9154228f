"""Lightning DataModules: CIFAR-10/100, ImageNet or any ImageFolder tree, the bundled digits, and a synthetic set.

Image datasets use timm's ``create_dataset`` (folder and tar layouts) and DeiT-style ``create_transform``
(Touvron et al., "Training data-efficient image transformers", arXiv 2012.12877): RandAugment, RandomErasing,
``crop_pct`` and interpolation. Resolution and normalisation come from the model's ``pretrained_cfg`` unless set
(:meth:`ImageDataModule.configure_for_model`). ``batch_size`` is the GLOBAL batch; each process loads
``batch_size // world_size``. ``check_data`` validates ``root`` with an error naming the path and the expected
layout, and ``train(cfg)`` calls it before any model is built.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset, TensorDataset

__all__ = [
    "DataRootError",
    "ImageDataModule",
    "SyntheticDataModule",
    "DigitsDataModule",
    "CIFARDataset",
    "CIFAR10DataModule",
    "CIFAR100DataModule",
    "ImageFolderDataModule",
]

_DATA_CONFIG_KEYS = ("img_size", "mean", "std", "interpolation", "crop_pct")


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
        self._overrides = dict(img_size=img_size, mean=mean, std=std, interpolation=interpolation, crop_pct=crop_pct)
        self._data_config: dict[str, Any] | None = None
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None
        self.per_device_batch_size = self.batch_size
        self.per_device_eval_batch_size = self.eval_batch_size

    # ----------------------------------------------------------------------------------------- data config
    def check_data(self) -> None:
        """Validate the data source (cheap); raise :class:`DataRootError` naming the path and the layout."""

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
        """timm's DeiT-style transform for PIL images at the resolved data config."""
        from timm.data import create_transform

        cfg = self.data_config
        kwargs = dict(self.augment) if is_training else {}
        for key in ("scale", "ratio"):
            if kwargs.get(key) is not None:
                kwargs[key] = tuple(kwargs[key])
        return create_transform(
            input_size=(self.in_chans, *cfg["img_size"]),
            is_training=is_training,
            interpolation=cfg["interpolation"],
            mean=tuple(cfg["mean"]),
            std=tuple(cfg["std"]),
            crop_pct=cfg["crop_pct"],
            **kwargs,
        )

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
            self.check_data()
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


def _split_indices(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random (keep, held_out) split of range(n)."""
    order = np.random.default_rng(seed).permutation(n)
    held = int(round(n * fraction))
    return np.sort(order[held:]), np.sort(order[:held])


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


# --------------------------------------------------------------------------------------------------- CIFAR
_CIFAR_LAYOUT = {
    10: dict(
        folder="cifar-10-batches-py",
        train=[f"data_batch_{i}" for i in range(1, 6)],
        test=["test_batch"],
        meta="batches.meta",
        labels="labels",
        names="label_names",
    ),
    100: dict(
        folder="cifar-100-python",
        train=["train"],
        test=["test"],
        meta="meta",
        labels="fine_labels",
        names="fine_label_names",
    ),
}


def _unpickle(path: Path) -> dict[str, Any]:
    """One file of the CIFAR python release (pickled in Python 2: latin1; keys may come back as bytes)."""
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
    except Exception as exc:  # noqa: BLE001  (any unpickling failure means the same thing here)
        raise DataRootError(f"{path} is not a CIFAR python batch file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(entry, dict):
        raise DataRootError(f"{path} should unpickle to a dict, got {type(entry).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}


class CIFARDataset(Dataset):
    """The CIFAR-10/100 python release read directly from its pickled batches.

    Checks the structure (keys, shapes, label range) rather than torchvision's MD5 sums, so re-packed copies and
    test fixtures in the real format load too. Items are (PIL image or transformed tensor, label).
    """

    def __init__(self, folder: str | os.PathLike, num_classes: int, train: bool, transform=None):
        layout = _CIFAR_LAYOUT[num_classes]
        folder = Path(folder)
        images, labels = [], []
        for name in layout["train" if train else "test"]:
            entry = _unpickle(folder / name)
            if "data" not in entry or layout["labels"] not in entry:
                raise DataRootError(
                    f"{folder / name} lacks the 'data' and '{layout['labels']}' entries of a CIFAR-{num_classes} batch"
                )
            data = np.asarray(entry["data"], dtype=np.uint8)
            target = np.asarray(entry[layout["labels"]], dtype=np.int64)
            if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(target) != len(data):
                raise DataRootError(
                    f"{folder / name}: 'data' must be (N, 3072) uint8 with N labels, got {data.shape} "
                    f"and {len(target)} labels"
                )
            if len(target) and (target.min() < 0 or target.max() >= num_classes):
                raise DataRootError(
                    f"{folder / name}: labels must be in [0, {num_classes}), got {target.min()}..{target.max()}"
                )
            images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))  # (N, 32, 32, 3) HWC
            labels.append(target)
        self.images = np.ascontiguousarray(np.concatenate(images))
        self.targets = np.concatenate(labels)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        image = Image.fromarray(self.images[index])
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.targets[index])


class _Subset(Dataset):
    """A view of ``dataset`` at ``indices`` with its own transform (train and val splits of one source)."""

    def __init__(self, dataset: CIFARDataset, indices: np.ndarray, transform):
        self.dataset, self.indices, self.transform = dataset, indices, transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        image = Image.fromarray(self.dataset.images[self.indices[index]])
        return self.transform(image), int(self.dataset.targets[self.indices[index]])


class _CIFARDataModule(ImageDataModule):
    """CIFAR-10/100 from ``root/cifar-10-batches-py`` or ``root/cifar-100-python`` (or ``root`` itself).

    ``download=True`` fetches the release through torchvision in ``prepare_data``. With ``val_fraction=0`` the
    test set doubles as the validation set (common practice for CIFAR); otherwise a seeded part of the training
    set is held out.
    """

    cifar_classes: int = 10

    def __init__(self, root: str, download: bool = False, val_fraction: float = 0.0, seed: int = 0, **kwargs: Any):
        kwargs.setdefault("num_classes", self.cifar_classes)
        if kwargs["num_classes"] != self.cifar_classes:
            raise ValueError(
                f"CIFAR-{self.cifar_classes} has {self.cifar_classes} classes, "
                f"got data.num_classes={kwargs['num_classes']}"
            )
        super().__init__(**kwargs)
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"data.val_fraction must be in [0, 1), got {val_fraction}")
        self.root = root
        self.download = download
        self.val_fraction = val_fraction
        self.seed = seed

    def _expected_layout(self) -> str:
        layout = _CIFAR_LAYOUT[self.cifar_classes]
        files = ", ".join(layout["train"] + layout["test"] + [layout["meta"]])
        return f"{layout['folder']}/ holding {files} (the CIFAR-{self.cifar_classes} python release)"

    def folder(self) -> Path:
        root = Path(os.path.expanduser(str(self.root)))
        layout = _CIFAR_LAYOUT[self.cifar_classes]
        return root if (root / layout["meta"]).is_file() else root / layout["folder"]

    def check_data(self) -> None:
        if self.root is None:
            raise DataRootError(f"data.root is not set; expected a directory containing {self._expected_layout()}")
        layout = _CIFAR_LAYOUT[self.cifar_classes]
        folder = self.folder()
        if self.download and not folder.is_dir():
            return  # prepare_data will fetch it
        if not Path(os.path.expanduser(str(self.root))).is_dir():
            raise DataRootError(
                f"data.root={self.root} does not exist; expected a directory containing {self._expected_layout()}"
                " (or set data.download=true)"
            )
        missing = [n for n in layout["train"] + layout["test"] + [layout["meta"]] if not (folder / n).is_file()]
        if missing:
            raise DataRootError(
                f"data.root={self.root} is malformed: {folder} lacks {', '.join(missing)}; "
                f"expected {self._expected_layout()}"
            )
        meta = _unpickle(folder / layout["meta"])
        names = meta.get(layout["names"])
        if names is None or len(names) != self.cifar_classes:
            raise DataRootError(
                f"{folder / layout['meta']} must list {self.cifar_classes} '{layout['names']}', "
                f"got {None if names is None else len(names)}"
            )

    def prepare_data(self) -> None:
        if self.download:
            from torchvision.datasets import CIFAR10, CIFAR100

            cls = CIFAR10 if self.cifar_classes == 10 else CIFAR100
            cls(os.path.expanduser(str(self.root)), train=True, download=True)

    def _make_datasets(self) -> tuple[Dataset, Dataset, Dataset]:
        folder = self.folder()
        train_tf, eval_tf = self.transform(True), self.transform(False)
        full = CIFARDataset(folder, self.cifar_classes, train=True)
        test = CIFARDataset(folder, self.cifar_classes, train=False, transform=eval_tf)
        if self.val_fraction > 0:
            keep, held = _split_indices(len(full), self.val_fraction, self.seed)
            return _Subset(full, keep, train_tf), _Subset(full, held, eval_tf), test
        return _Subset(full, np.arange(len(full)), train_tf), test, test


class CIFAR10DataModule(_CIFARDataModule):
    __doc__ = _CIFARDataModule.__doc__
    cifar_classes = 10


class CIFAR100DataModule(_CIFARDataModule):
    __doc__ = _CIFARDataModule.__doc__
    cifar_classes = 100


# --------------------------------------------------------------------------------------------- ImageFolder
_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


class ImageFolderDataModule(ImageDataModule):
    """ImageNet or any ``root/{train,val}/<class>/<image>`` tree (a ``train.tar``/``val.tar`` per split works too).

    Read through timm's ``create_dataset`` so folder and tar layouts behave as in timm's train.py. Class indices
    follow the sorted class names of the training split and are applied to every split. ``test_split`` (default:
    none) names a labelled test split; without it the validation split is also used for testing.
    """

    def __init__(
        self,
        root: str,
        train_split: str = "train",
        val_split: str = "val",
        test_split: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.root = root
        self.splits = {"train": train_split, "val": val_split, "test": test_split}
        self.classes: list[str] | None = None

    def _layout(self) -> str:
        train, val = self.splits["train"], self.splits["val"]
        return (
            f"{train}/<class>/<image> and {val}/<class>/<image> subfolders "
            f"(or {train}.tar and {val}.tar holding <class>/<image>)"
        )

    def _split_path(self, split: str) -> Path | None:
        root = Path(os.path.expanduser(str(self.root)))
        if (root / split).is_dir():
            return root / split
        if (root / f"{split}.tar").is_file():
            return root / f"{split}.tar"
        return None

    def _class_names(self, path: Path) -> list[str]:
        if path.is_dir():
            classes = sorted(d.name for d in os.scandir(path) if d.is_dir())
            if not classes:
                raise DataRootError(f"{path} has no class subfolders; expected {self._layout()} under {self.root}")
            return classes
        import tarfile

        with tarfile.open(path) as tar:
            classes = sorted(
                {
                    Path(m.name).parent.name
                    for m in tar.getmembers()
                    if m.isfile() and m.name.lower().endswith(_IMAGE_EXTENSIONS)
                }
            )
        if not classes or classes == [""]:
            raise DataRootError(f"{path} holds no <class>/<image> members; expected {self._layout()} under {self.root}")
        return classes

    def check_data(self) -> None:
        if self.root is None:
            raise DataRootError(f"data.root is not set; expected a directory with {self._layout()}")
        root = Path(os.path.expanduser(str(self.root)))
        if not root.is_dir():
            raise DataRootError(
                f"data.root={self.root} does not exist or is not a directory; expected {self._layout()}"
            )
        wanted = [s for s in self.splits.values() if s is not None]
        missing = [s for s in wanted if self._split_path(s) is None]
        if missing:
            found = sorted(p.name for p in root.iterdir())[:10]
            raise DataRootError(
                f"data.root={self.root} is malformed: no {', '.join(missing)} split (found {found}); "
                f"expected {self._layout()}"
            )
        classes = self._class_names(self._split_path(self.splits["train"]))
        if self.num_classes is not None and len(classes) > self.num_classes:
            raise DataRootError(
                f"{self._split_path(self.splits['train'])} has {len(classes)} classes, "
                f"but data.num_classes={self.num_classes}"
            )
        for stage, split in self.splits.items():
            if stage == "train" or split is None:
                continue
            path = self._split_path(split)
            # timm's class_map silently drops images of unknown classes: a wrong evaluation split must fail here
            other = self._class_names(path)
            extra = sorted(set(other) - set(classes))
            if extra:
                raise DataRootError(
                    f"{path} has class folders that the train split lacks: {extra[:10]}"
                    f"{' ...' if len(extra) > 10 else ''}; expected {self._layout()} with the same classes"
                )
        self.classes = classes
        if self.num_classes is None:
            self.num_classes = len(classes)

    def _make_datasets(self) -> tuple[Dataset, Dataset, Dataset]:
        from timm.data import create_dataset

        class_map = {name: index for index, name in enumerate(self.classes)}
        img_mode = "L" if self.in_chans == 1 else "RGB"
        sets = {}
        for stage, split in self.splits.items():
            if split is None:
                continue
            sets[stage] = create_dataset(
                "",
                root=str(self._split_path(split)),
                split=split,
                search_split=False,
                is_training=stage == "train",
                class_map=class_map,
                input_img_mode=img_mode,
                transform=self.transform(stage == "train"),
            )
            if len(sets[stage]) == 0:
                raise DataRootError(f"{self._split_path(split)} contains no images; expected {self._layout()}")
        return sets["train"], sets["val"], sets.get("test", sets["val"])
