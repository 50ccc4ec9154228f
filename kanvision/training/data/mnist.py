"""MNIST (LeCun et al. 1998) and Fashion-MNIST (Xiao et al., arXiv 1708.07747) read from their IDX files.

The files are the ones ``torchvision.datasets.MNIST`` / ``FashionMNIST`` download: ``train-images-idx3-ubyte``,
``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte`` (each possibly ``.gz``) under
``<root>/MNIST/raw`` or ``<root>/FashionMNIST/raw``. IDX is a plain array format (a magic number giving the element
type and rank, big-endian dimensions, then the bytes); :func:`read_idx` checks every part of it.
"""

from __future__ import annotations

import gzip
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

__all__ = ["read_idx", "MNISTDataset", "MNISTDataModule", "FashionMNISTDataModule"]

_UBYTE = 0x08  # the IDX type code of unsigned bytes, the only one MNIST uses
_IDX_TYPES = {0x08: "uint8", 0x09: "int8", 0x0B: "int16", 0x0C: "int32", 0x0D: "float32", 0x0E: "float64"}
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_SIZE = (28, 28)


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _read_header(stream, path: Path) -> tuple[int, tuple[int, ...]]:
    """(type code, dimensions) of an IDX stream positioned at its start."""
    magic = stream.read(4)
    if len(magic) != 4 or magic[:2] != b"\0\0":
        raise DataRootError(f"{path} is not an IDX file: it must start with two zero bytes, got {magic[:4]!r}")
    code, ndim = magic[2], magic[3]
    if code not in _IDX_TYPES:
        raise DataRootError(f"{path}: unknown IDX element type 0x{code:02x}; valid: {sorted(_IDX_TYPES)}")
    raw = stream.read(4 * ndim)
    if len(raw) != 4 * ndim:
        raise DataRootError(f"{path}: the IDX header declares {ndim} dimensions but the file ends inside them")
    return code, tuple(int(v) for v in np.frombuffer(raw, dtype=">u4"))


def read_idx(path: str | os.PathLike, ndim: int, shape: tuple[int, ...] = ()) -> np.ndarray:
    """An IDX file of unsigned bytes (``.gz`` or plain) as a uint8 array of rank ``ndim``.

    ``shape`` gives the required trailing dimensions. The data must be exactly as long as the header says (at most
    that much is decompressed); every error names the file.
    """
    path = Path(path)
    try:
        with _open(path) as stream:
            code, dims = _read_header(stream, path)
            if code != _UBYTE:
                raise DataRootError(f"{path}: IDX elements are {_IDX_TYPES[code]}, expected uint8 (type 0x08)")
            if len(dims) != ndim or (shape and dims[1:] != tuple(shape)):
                want = f"(N, {', '.join(map(str, shape))})" if shape else f"rank {ndim}"
                raise DataRootError(f"{path}: IDX dimensions {dims}, expected {want}")
            size = int(np.prod(dims, dtype=np.int64))
            data = stream.read(size + 1)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataRootError(f"{path} cannot be read as an IDX file ({type(exc).__name__}: {exc})") from exc
    if len(data) != size:
        held = "more" if len(data) > size else f"only {len(data)}"
        raise DataRootError(f"{path}: the IDX header declares {size} data bytes {dims}, the file holds {held}")
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


def read_idx_dims(path: str | os.PathLike) -> tuple[int, ...]:
    """The dimensions an IDX file of unsigned bytes declares (its header only)."""
    path = Path(path)
    try:
        with _open(path) as stream:
            code, dims = _read_header(stream, path)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataRootError(f"{path} cannot be read as an IDX file ({type(exc).__name__}: {exc})") from exc
    if code != _UBYTE:
        raise DataRootError(f"{path}: IDX elements are {_IDX_TYPES[code]}, expected uint8 (type 0x08)")
    return dims


def _read_labels(path: Path, num_classes: int) -> np.ndarray:
    labels = read_idx(path, 1)
    if labels.size and labels.max() >= num_classes:
        raise DataRootError(f"{path}: labels must be in [0, {num_classes}), got {labels.min()}..{labels.max()}")
    return labels


class MNISTDataset(ArrayImageDataset):
    """One split of MNIST-format IDX files: items are (PIL image or transformed tensor, label).

    ``mode`` ``"RGB"`` repeats the gray channel for three-channel models.
    """

    native_mode = "L"  # uint8 (28, 28)

    def __init__(
        self, images: str | os.PathLike, labels: str | os.PathLike, num_classes: int = 10, transform=None, mode="L"
    ):
        self.images = read_idx(images, 3, _SIZE)
        self.targets = _read_labels(Path(labels), num_classes).astype(np.int64)
        if len(self.targets) != len(self.images):
            raise DataRootError(f"{images} holds {len(self.images)} images but {labels} {len(self.targets)} labels")
        self.transform = transform
        self.mode = mode


class _MNISTDataModule(ImageDataModule):
    """28 x 28 grayscale digits or clothes from IDX files under ``root/<folder>/raw`` (torchvision's layout),
    ``root/raw`` or ``root`` itself.

    ``download=True`` fetches the files through torchvision in ``prepare_data``. With ``val_fraction=0`` the test set
    doubles as the validation set; otherwise a seeded part of the training set is held out. ``in_chans=3`` repeats
    the gray channel.
    """

    folder_name: str = "MNIST"
    classes: tuple[str, ...] = tuple(str(d) for d in range(10))

    def __init__(self, root: str, download: bool = False, val_fraction: float = 0.0, seed: int = 0, **kwargs: Any):
        kwargs.setdefault("num_classes", 10)
        kwargs.setdefault("in_chans", 1)
        if kwargs["num_classes"] != 10:
            raise ValueError(f"{self.folder_name} has 10 classes, got data.num_classes={kwargs['num_classes']}")
        super().__init__(**kwargs)
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"data.val_fraction must be in [0, 1), got {val_fraction}")
        self.root = root
        self.download = download
        self.val_fraction = val_fraction
        self.seed = seed

    def _expected_layout(self) -> str:
        names = ", ".join(name for pair in _FILES.values() for name in pair)
        return f"{self.folder_name}/raw/ holding {names} (each possibly .gz; torchvision's {self.folder_name} layout)"

    def folder(self) -> Path:
        """The folder holding the IDX files (the first of root/<folder>/raw, root/raw, root that has one)."""
        root = Path(os.path.expanduser(str(self.root)))
        for folder in (root / self.folder_name / "raw", root / "raw", root):
            if self._file(folder, _FILES["train"][0]) is not None:
                return folder
        return root / self.folder_name / "raw"

    @staticmethod
    def _file(folder: Path, name: str) -> Path | None:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
        return None

    def _paths(self, split: str) -> tuple[Path, Path]:
        folder = self.folder()
        return tuple(self._file(folder, name) for name in _FILES[split])

    def _check_source(self) -> int | None:
        if self.root is None:
            raise DataRootError(f"data.root is not set; expected a directory containing {self._expected_layout()}")
        root = Path(os.path.expanduser(str(self.root)))
        if self.download and self._file(self.folder(), _FILES["train"][0]) is None:
            return None  # prepare_data will fetch it
        if not root.is_dir():
            raise DataRootError(
                f"data.root={self.root} does not exist; expected a directory containing {self._expected_layout()}"
                " (or set data.download=true)"
            )
        folder = self.folder()
        missing = [name for pair in _FILES.values() for name in pair if self._file(folder, name) is None]
        if missing:
            raise DataRootError(
                f"data.root={self.root} is malformed: {folder} lacks {', '.join(missing)}; "
                f"expected {self._expected_layout()}"
            )
        for split in _FILES:
            images, labels = self._paths(split)
            dims = read_idx_dims(images)
            if len(dims) != 3 or dims[1:] != _SIZE:
                raise DataRootError(f"{images}: IDX dimensions {dims}, expected (N, 28, 28)")
            count = len(_read_labels(labels, 10))
            if count != dims[0]:
                raise DataRootError(f"{images} holds {dims[0]} images but {labels} {count} labels")
            if split == "train":
                num_train = count
        return num_train - int(round(num_train * self.val_fraction))

    def prepare_data(self) -> None:
        if self.download:
            from torchvision import datasets

            getattr(datasets, self.folder_name)(os.path.expanduser(str(self.root)), train=True, download=True)

    def _make_datasets(self) -> tuple[Dataset, Dataset, Dataset]:
        train_tf, eval_tf = self.transform(True), self.transform(False)
        mode = "L" if self.in_chans == 1 else "RGB"
        full = MNISTDataset(*self._paths("train"), mode=mode)
        test = MNISTDataset(*self._paths("test"), transform=eval_tf, mode=mode)
        if self.val_fraction > 0:
            keep, held = split_indices(len(full), self.val_fraction, self.seed)
            return ArraySubset(full, keep, train_tf), ArraySubset(full, held, eval_tf), test
        return ArraySubset(full, np.arange(len(full)), train_tf), test, test


class MNISTDataModule(_MNISTDataModule):
    __doc__ = _MNISTDataModule.__doc__
    folder_name = "MNIST"


class FashionMNISTDataModule(_MNISTDataModule):
    __doc__ = _MNISTDataModule.__doc__
    folder_name = "FashionMNIST"
    classes = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
