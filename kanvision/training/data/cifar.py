"""CIFAR-10/100 (Krizhevsky 2009) read from the python release's pickled batches with a restricted unpickler."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from kanvision.training.data.base import DataRootError, ImageDataModule, split_indices
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


class CIFARDataset(Dataset):
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
        self.mode = mode

    def __len__(self) -> int:
        return len(self.targets)

    def image(self, index: int) -> Image.Image:
        """Image ``index`` as a PIL image in the dataset's mode."""
        image = Image.fromarray(self.images[index])
        return image if self.mode == "RGB" else image.convert(self.mode)

    def __getitem__(self, index: int):
        image = self.image(index)
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
        image = self.dataset.image(self.indices[index])
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
        for name in layout["train"] + layout["test"]:  # labels a classifier of this size cannot output fail here
            labels = np.asarray(_unpickle(folder / name).get(layout["labels"], ()), dtype=np.int64)
            if labels.size and not (0 <= labels.min() and labels.max() < self.cifar_classes):
                raise DataRootError(
                    f"{folder / name}: labels must be in [0, {self.cifar_classes}), got {labels.min()}..{labels.max()}"
                )
            num_train += labels.size if name in layout["train"] else 0
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
            return _Subset(full, keep, train_tf), _Subset(full, held, eval_tf), test
        return _Subset(full, np.arange(len(full)), train_tf), test, test


class CIFAR10DataModule(_CIFARDataModule):
    __doc__ = _CIFARDataModule.__doc__
    cifar_classes = 10


class CIFAR100DataModule(_CIFARDataModule):
    __doc__ = _CIFARDataModule.__doc__
    cifar_classes = 100
