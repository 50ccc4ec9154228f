"""MNIST / Fashion-MNIST DataModules against IDX files written here in the real format (plain and gzipped)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from kanvision.training.data import DataRootError, FashionMNISTDataModule, MNISTDataModule, read_idx

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array, written from the format's definition: 0, 0, type 0x08, rank, then the
    big-endian uint32 dimensions and the bytes."""
    assert array.dtype == np.uint8
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_mnist(
    root, folder: str = "MNIST", num_train: int = 12, num_test: int = 6, gz: bool = False, seed: int = 0
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """root/<folder>/raw with the four IDX files (``.gz`` when ``gz``), random digits; returns the arrays written."""
    rng = np.random.default_rng(seed)
    raw = Path(root) / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, n in (("train", num_train), ("test", num_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        rng.shuffle(labels)
        for name, array in zip(FILES[split], (images, labels), strict=True):
            data = idx_bytes(array)
            if gz:
                (raw / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (raw / name).write_bytes(data)
        written[split] = (images, labels)
    return written


NO_AUGMENT = dict(scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=0.0, color_jitter=None)  # the whole image, unchanged
EXACT = dict(img_size=28, mean=(0.25,), std=(0.5,), crop_pct=1.0, interpolation="bilinear")


@pytest.mark.parametrize(
    ("cls", "folder", "gz"), [(MNISTDataModule, "MNIST", False), (FashionMNISTDataModule, "FashionMNIST", True)]
)
def test_reads_the_idx_files_pixel_for_pixel(tmp_path, cls, folder, gz):
    written = write_mnist(tmp_path, folder, gz=gz)
    dm = cls(root=str(tmp_path), batch_size=4, augment=NO_AUGMENT, **EXACT)
    dm.check_data()
    assert dm.num_train_samples == 12 and dm.num_classes == 10 and dm.in_chans == 1
    dm.setup()
    assert len(dm.train_set) == 12 and dm.val_set is dm.test_set and len(dm.test_set) == 6
    for split, dataset in (("train", dm.train_set), ("test", dm.test_set)):
        images, labels = written[split]
        for i in range(len(labels)):
            image, label = dataset[i]
            expected = (torch.from_numpy(images[i]).double() / 255.0 - 0.25) / 0.5  # ToTensor + Normalize by hand
            torch.testing.assert_close(image.double(), expected[None], rtol=0, atol=1e-6)
            assert label == labels[i]
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 1, 28, 28) and y.dtype == torch.int64


def test_rgb_validation_split_and_other_layouts(tmp_path):
    written = write_mnist(tmp_path / "flat", num_train=20)
    (tmp_path / "flat" / "MNIST" / "raw").rename(tmp_path / "files")  # the files directly in data.root
    dm = MNISTDataModule(root=str(tmp_path / "files"), in_chans=3, val_fraction=0.25, **EXACT)
    dm.setup()
    assert len(dm.train_set) == 15 and len(dm.val_set) == 5 and len(dm.test_set) == 6
    assert not set(dm.train_set.indices) & set(dm.val_set.indices)
    image, _ = dm.test_set[0]
    gray = (torch.from_numpy(written["test"][0][0]).double() / 255.0 - 0.25) / 0.5
    torch.testing.assert_close(image.double(), gray.expand(3, 28, 28), rtol=0, atol=1e-6)


def _raw(tmp_path) -> Path:
    return tmp_path / "MNIST" / "raw"


def test_missing_root_and_files_are_named(tmp_path):
    with pytest.raises(DataRootError, match=rf"{tmp_path / 'nowhere'} does not exist.*MNIST/raw.*train-images"):
        MNISTDataModule(root=str(tmp_path / "nowhere")).check_data()
    write_mnist(tmp_path)
    (_raw(tmp_path) / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataRootError, match=r"malformed.*lacks t10k-labels-idx1-ubyte"):
        MNISTDataModule(root=str(tmp_path)).check_data()


IMAGES, LABELS = FILES["train"]
TWO = idx_bytes(np.zeros((2, 28, 28), np.uint8))
FLOATS = bytes([0, 0, 0x0D, 3]) + struct.pack(">3I", 1, 28, 28) + bytes(4 * 784)


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        (IMAGES, b"\x08\x03\0\0" + bytes(20), r"not an IDX file: it must start with two zero"),
        (IMAGES, TWO[:-5], r"declares 1568 data bytes.*only 1563"),
        (IMAGES, TWO + b"x", r"declares 1568 data bytes.*holds more"),
        (IMAGES, idx_bytes(np.zeros((2, 32, 32), np.uint8)), r"dimensions \(2, 32, 32\), expected \(N, 28, 28\)"),
        (IMAGES, FLOATS, r"float32, expected uint8"),
        (LABELS, idx_bytes(np.array([1, 10], np.uint8)), r"labels must be in \[0, 10\), got 1..10"),
        (LABELS, idx_bytes(np.array([1, 2, 3], np.uint8)), r"holds 2 images but .* 3 labels"),
    ],
)  # fmt: skip
def test_malformed_idx_files_are_named(tmp_path, name, content, match):
    write_mnist(tmp_path, num_train=2)
    (_raw(tmp_path) / name).write_bytes(content)
    dm = MNISTDataModule(root=str(tmp_path), **EXACT)
    with pytest.raises(DataRootError, match=match) as info:
        dm.check_data()
        dm.setup()
    assert name in str(info.value)


def test_gzip_is_read_at_most_as_far_as_the_header_says(tmp_path):
    """A gzipped file far longer than its header declares is rejected without decompressing all of it."""
    path = tmp_path / "bomb.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((1, 28, 28), np.uint8)) + bytes(50_000_000)))
    with pytest.raises(DataRootError, match="bomb.gz: the IDX header declares 784 data bytes"):
        read_idx(path, 3, (28, 28))
    (tmp_path / "bad.gz").write_bytes(b"not gzip")
    with pytest.raises(DataRootError, match="bad.gz cannot be read as an IDX file"):
        read_idx(tmp_path / "bad.gz", 3)


def test_download_goes_through_torchvision(tmp_path, monkeypatch):
    calls = []

    class FakeMNIST:
        def __init__(self, root, train, download):
            calls.append((root, train, download))
            write_mnist(root)

    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "MNIST", FakeMNIST)
    dm = MNISTDataModule(root=str(tmp_path), download=True, **EXACT)
    dm.check_data()  # nothing there yet: prepare_data fetches it
    dm.prepare_data()
    dm.setup()
    assert calls == [(str(tmp_path), True, True)] and len(dm.train_set) == 12


def test_wrong_class_count_is_rejected():
    with pytest.raises(ValueError, match="MNIST has 10 classes, got data.num_classes=5"):
        MNISTDataModule(root="x", num_classes=5)
