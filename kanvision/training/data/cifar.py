"""CIFAR-10/100 (Krizhevsky 2009) read from the python release's pickled batches with a restricted unpickler."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from kanvision.training.data.base import (
    ArrayImageDataset,
    ArraySubset,
    DataRootError,
    ImageDataModule,
    split_indices,
)
from kanvision.training.data.safe_pickle import UnsafePickleError, load_data_pickle

__all__ = ["CIFARDataset", "CIFAR10DataModule", "CIFAR100DataModule"]

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
        entry = load_data_pickle(path)
    except UnsafePickleError as exc:
        raise DataRootError(str(exc)) from exc
    except Exception as exc:  # noqa: BLE001  (any unpickling failure means the same thing here)
        raise DataRootError(f"{path} is not a CIFAR python batch file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(entry, dict):
        raise DataRootError(f"{path} should unpickle to a dict, got {type(entry).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}


def _labels(path: Path, entry: dict[str, Any], key: str, num_classes: int) -> np.ndarray:
    """The labels under ``key`` as int64: integers in [0, num_classes), nothing else (no rounding, no wrapping)."""
    if key not in entry:
        raise DataRootError(f"{path} lacks the '{key}' entry of a CIFAR-{num_classes} batch")
    try:
        labels = np.asarray(entry[key])
    except (TypeError, ValueError) as exc:
        raise DataRootError(f"{path}: '{key}' must be a list of integer labels ({exc})") from exc
    if labels.size == 0 and labels.ndim == 1:
        return labels.astype(np.int64)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        flat = labels.reshape(-1)
        if np.issubdtype(labels.dtype, np.floating) and (flat != np.round(flat)).any():
            flat = flat[flat != np.round(flat)]  # name a value that truncation would change
        raise DataRootError(
            f"{path}: '{key}' must be a 1-D list of integer labels in [0, {num_classes}), got dtype {labels.dtype} "
            f"with shape {labels.shape} (e.g. {flat[0].item()!r})"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)][0]
        raise DataRootError(
            f"{path}: labels must be in [0, {num_classes}), got {labels.min()}..{labels.max()} ('{key}' holds {bad})"
        )
    return labels.astype(np.int64)


def _pixels(path: Path, entry: dict[str, Any], num_labels: int) -> np.ndarray:
    """The images under 'data' as (N, 3072) uint8: uint8, or integers in [0, 255]; floats and wider ranges fail."""
    if "data" not in entry:
        raise DataRootError(f"{path} lacks the 'data' entry of a CIFAR batch")
    try:
        data = np.asarray(entry["data"])
    except (TypeError, ValueError) as exc:
        raise DataRootError(f"{path}: 'data' must be an (N, 3072) uint8 array ({exc})") from exc
    if data.dtype != np.uint8:
        # floats are refused even when integral: [0, 1] and [0, 255] scales cannot be told apart
        if not np.issubdtype(data.dtype, np.integer) or data.dtype == np.bool_:
            raise DataRootError(
                f"{path}: 'data' must hold uint8 pixels (or integers in [0, 255]), got dtype {data.dtype}"
            )
        if data.size and (data.min() < 0 or data.max() > 255):
            raise DataRootError(
                f"{path}: 'data' pixels must be in [0, 255], got {data.min()}..{data.max()} (dtype {data.dtype})"
            )
        data = data.astype(np.uint8)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != num_labels:
        raise DataRootError(
            f"{path}: 'data' must be (N, 3072) uint8 with N labels, got {data.shape} and {num_labels} labels"
        )
    return data


def read_batch(path: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-``num_classes`` batch file as ((N, 32, 32, 3) uint8 HWC images, (N,) int64 labels), checked."""
    entry = _unpickle(path)
    labels = _labels(path, entry, _CIFAR_LAYOUT[num_classes]["labels"], num_classes)
    data = _pixels(path, entry, len(labels))
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels  # row-major: 1024 red, green, blue


class CIFARDataset(ArrayImageDataset):
    """The CIFAR-10/100 python release read directly from its pickled batches.

    Checks the structure (keys, shapes, label range) rather than torchvision's MD5 sums, so re-packed copies and
    test fixtures in the real format load too. Items are (PIL image or transformed tensor, label); ``mode`` ``"L"``
    gives grayscale images (Pillow's luma of the RGB release).
    """

    def __init__(self, folder: str | os.PathLike, num_classes: int, train: bool, transform=None, mode: str = "RGB"):
        layout = _CIFAR_LAYOUT[num_classes]
        folder = Path(folder)
        images, labels = [], []
        for name in layout["train" if train else "test"]:
            data, target = read_batch(folder / name, num_classes)
            images.append(data)
            labels.append(target)
        self.images = np.ascontiguousarray(np.concatenate(images))
        self.targets = np.concatenate(labels)
        self.transform = transform
        self.mode = mode


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

    def _check_source(self) -> int | None:
        if self.root is None:
            raise DataRootError(f"data.root is not set; expected a directory containing {self._expected_layout()}")
        layout = _CIFAR_LAYOUT[self.cifar_classes]
        folder = self.folder()
        if self.download and not folder.is_dir():
            return None  # prepare_data will fetch it
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
        num_train = 0
        for name in layout["train"] + layout["test"]:  # labels and pixels that would be misread fail here
            num = len(read_batch(folder / name, self.cifar_classes)[1])
            num_train += num if name in layout["train"] else 0
        return num_train - int(round(num_train * self.val_fraction))

    def prepare_data(self) -> None:
        if self.download:
            from torchvision.datasets import CIFAR10, CIFAR100

            cls = CIFAR10 if self.cifar_classes == 10 else CIFAR100
            cls(os.path.expanduser(str(self.root)), train=True, download=True)

    def _make_datasets(self) -> tuple[Dataset, Dataset, Dataset]:
        folder = self.folder()
        train_tf, eval_tf = self.transform(True), self.transform(False)
        mode = "L" if self.in_chans == 1 else "RGB"  # data.in_chans=1: grayscale for a one-channel model
        full = CIFARDataset(folder, self.cifar_classes, train=True, mode=mode)
        test = CIFARDataset(folder, self.cifar_classes, train=False, transform=eval_tf, mode=mode)
        if self.val_fraction > 0:
            keep, held = split_indices(len(full), self.val_fraction, self.seed)
            return ArraySubset(full, keep, train_tf), ArraySubset(full, held, eval_tf), test
        return ArraySubset(full, np.arange(len(full)), train_tf), test, test


class CIFAR10DataModule(_CIFARDataModule):
    __doc__ = _CIFARDataModule.__doc__
    cifar_classes = 10


class CIFAR100DataModule(_CIFARDataModule):
    __doc__ = _CIFARDataModule.__doc__
    cifar_classes = 100
