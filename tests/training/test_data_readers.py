"""Data readers refuse or report what they cannot read faithfully (files written in the real on-disk formats)."""

from __future__ import annotations

import logging
import os
import pickle
import tarfile
import time

import numpy as np
import pytest
import torch
from PIL import Image

from kanvision.training.data import CIFAR10DataModule, CIFARDataset, DataRootError, ImageFolderDataModule
from kanvision.training.data.imagefolder import image_extensions

from .test_data import EXACT, _normalised, _raw, write_cifar


# ---------------------------------------------------------------------------------------------------- CIFAR
def _rewrite_batch(root, name: str = "data_batch_2", **changes):
    path = root / "cifar-10-batches-py" / name
    with open(path, "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    entry.update(changes)
    with open(path, "wb") as f:
        pickle.dump(entry, f, protocol=2)
    return path, entry


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (dict(labels=[0, 1.7, 2, 3]), r"'labels' must be a 1-D list of integer labels in \[0, 10\), got dtype float64"
         r".*e\.g\. 1\.7"),
        (dict(labels=np.array([0.0, 1.0, 2.0, 3.0])), r"'labels' must be .*integer labels.*float64"),
        (dict(labels=[0, 1, 2, 10]), r"labels must be in \[0, 10\), got 0\.\.10 \('labels' holds 10\)"),
        (dict(labels=["a", "b", "c", "d"]), r"'labels' must be .*integer labels.*e\.g\. 'a'"),
        (dict(data=np.full((4, 3072), 0.5)), r"'data' must hold uint8 pixels \(or integers in \[0, 255\]\), got dtype "
         r"float64"),
        (dict(data=np.full((4, 3072), 300, np.int64)), r"'data' pixels must be in \[0, 255\], got 300\.\.300 "
         r"\(dtype int64\)"),
        (dict(data=np.full((4, 3072), -1, np.int16)), r"'data' pixels must be in \[0, 255\], got -1\.\.-1"),
    ],
)  # fmt: skip
def test_cifar_batches_that_would_be_misread_fail_naming_file_and_key(tmp_path, change, match):
    write_cifar(tmp_path, 10)
    path, _ = _rewrite_batch(tmp_path, **change)
    for read in (
        lambda: CIFAR10DataModule(root=str(tmp_path), batch_size=4).check_data(),
        lambda: CIFARDataset(path.parent, 10, train=True),
    ):
        with pytest.raises(DataRootError, match=rf"{path}: {match}"):
            read()


def test_cifar_integer_pixels_in_range_read_exactly(tmp_path):
    """A batch re-packed with int64 pixels (e.g. a list of ints) and an int array of labels is the same data."""
    written = write_cifar(tmp_path, 10)
    data, labels = written["data_batch_2"]
    _rewrite_batch(tmp_path, data=data.astype(np.int64).tolist(), labels=np.asarray(labels, np.int32))
    dm = CIFAR10DataModule(root=str(tmp_path), batch_size=4, **EXACT)
    dm.check_data()
    full = CIFARDataset(tmp_path / "cifar-10-batches-py", 10, train=True)
    start = len(written["data_batch_1"][1])
    for i in range(len(labels)):
        assert np.array_equal(np.asarray(full.image(start + i)), data[i].reshape(3, 32, 32).transpose(1, 2, 0))
        assert full.targets[start + i] == labels[i]


# ---------------------------------------------------------------------------------------------------- ImageFolder
def _save(path, array, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)
    return array


def _rgb(seed: int, size: int = 8) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(size, size, 3), dtype=np.uint8)


def _module(root, **kwargs) -> ImageFolderDataModule:
    dm = ImageFolderDataModule(root=str(root), batch_size=1, **(EXACT | dict(img_size=8) | kwargs))
    dm.setup()
    return dm


def _items(dataset) -> list[tuple[bytes, int]]:
    return sorted((_raw(dataset, i).tobytes(), int(dataset[i][1])) for i in range(len(dataset)))


def test_a_class_is_a_top_level_folder_and_owns_its_sub_folders(tmp_path):
    """timm's reader labels train/a/b/* as class b and drops train/a/extra/*."""
    images = {
        "a/0.png": ("a", _rgb(0)), "a/b/1.png": ("a", _rgb(1)), "a/extra/deeper/2.png": ("a", _rgb(2)),
        "b/3.png": ("b", _rgb(3)),
    }  # fmt: skip
    for split in ("train", "val"):
        for rel, (_, array) in images.items():
            _save(tmp_path / split / rel, array)
    dm = _module(tmp_path)
    assert dm.classes == ["a", "b"] and dm.num_train_samples == 4
    expected = sorted((array.tobytes(), dm.classes.index(name)) for name, array in images.values())
    assert _items(dm.train_set) == _items(dm.val_set) == expected


def test_every_format_pillow_reads_is_read(tmp_path):
    """A class of only .bmp, .webp or .tif images passed timm's scan-free check and then had no samples."""
    assert {".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".jpg", ".png"} <= image_extensions()
    lossless = {"bmp": {}, "webp": dict(lossless=True), "tif": {}, "ppm": {}}
    written = {}
    for split in ("train", "val"):
        for k, (ext, options) in enumerate(lossless.items()):
            written[(split, ext)] = _save(tmp_path / split / ext / f"x.{ext}", _rgb(10 * k + len(split)), **options)
    dm = _module(tmp_path)
    assert dm.classes == sorted(lossless) and len(dm.train_set) == len(dm.val_set) == 4
    for j in range(len(dm.val_set)):
        image, label = dm.val_set[j]
        torch.testing.assert_close(image.double(), _normalised(written[("val", dm.classes[label])]), rtol=0, atol=1e-6)


def test_files_that_are_not_images_are_reported_once_per_split(tmp_path, caplog):
    for split in ("train", "val"):
        _save(tmp_path / split / "a" / "0.png", _rgb(0))
        _save(tmp_path / split / "b" / "1.png", _rgb(1))
    for rel in ("train/a/notes.txt", "train/b/labels.txt", "train/b/meta.json", "train/README", "val/a/x.txt"):
        (tmp_path / rel).write_text("not an image")
    with caplog.at_level(logging.WARNING, logger="kanvision.training.data.imagefolder"):
        ImageFolderDataModule(root=str(tmp_path)).check_data()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[0].startswith(f"{tmp_path / 'train'}: 4 files are not read as images: ")
    assert "(files outside a class folder) x1, .json x1, .txt x2" in lines[0]
    assert lines[1].startswith(f"{tmp_path / 'val'}: 1 files are not read as images: .txt x1")


def test_a_class_without_images_names_what_its_folder_holds(tmp_path):
    for split in ("train", "val"):
        _save(tmp_path / split / "a" / "0.png", _rgb(0))
        (tmp_path / split / "b").mkdir()
    (tmp_path / "train" / "b" / "scan.pdf").write_bytes(b"%PDF-1.4")
    (tmp_path / "train" / "b" / "scan2.pdf").write_bytes(b"%PDF-1.4")
    with pytest.raises(DataRootError, match=r"train: 1 of 2 class folders hold no images \(\['b'\]\); they hold "
                       r"\.pdf x2, but images are the files Pillow reads \(.*\.png"):  # fmt: skip
        ImageFolderDataModule(root=str(tmp_path)).check_data()


def test_an_unreadable_image_fails_naming_the_file(tmp_path):
    """timm skips a corrupt file with a warning (a class of corrupt files became an empty class)."""
    for split in ("train", "val"):
        _save(tmp_path / split / "a" / "0.png", _rgb(0))
    bad = tmp_path / "train" / "b" / "broken.png"
    bad.parent.mkdir()
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    truncated = tmp_path / "val" / "b" / "cut.jpg"
    _save(truncated, _rgb(1, size=64), quality=90)
    truncated.write_bytes(truncated.read_bytes()[:200])
    dm = _module(tmp_path)
    labels = [label for _, label in dm.train_set.samples]
    with pytest.raises(DataRootError, match=rf"{bad} cannot be read as an image .*remove or replace the file"):
        dm.train_set[labels.index(1)]
    with pytest.raises(DataRootError, match=rf"{truncated} cannot be read as an image"):
        list(dm.val_dataloader())


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path):
    """A 16-bit PNG at half range read as white (Pillow's I;16 -> L conversion clips)."""
    values = np.array([[0, 255, 256, 32768], [32767, 40000, 65280, 65535]], dtype=np.uint16)
    for split in ("train", "val"):
        _save(tmp_path / split / "png" / "x.png", values)  # mode I;16
        _save(tmp_path / split / "pgm" / "x.pgm", values)  # Pillow opens 16-bit PGM as mode I
    dm = _module(tmp_path, img_size=(2, 4), in_chans=1, mean=(0.0,), std=(1.0,))
    expected = torch.from_numpy(values.astype(np.float64) / 65535.0)  # the 16-bit range onto [0, 1]
    assert [Image.open(tmp_path / "val" / n / f"x.{n}").mode for n in ("png", "pgm")] == ["I;16", "I"]
    for j in range(len(dm.val_set)):
        image, _ = dm.val_set[j]
        torch.testing.assert_close(image[0].double(), expected, rtol=0, atol=1.0 / 255)
        assert image[0, 0, 3] == pytest.approx(128 / 255)  # half range is mid-grey, not white
    rgb = _module(tmp_path, img_size=(2, 4), mean=(0.0,), std=(1.0,))
    torch.testing.assert_close(rgb.val_set[0][0], dm.val_set[0][0].expand(3, -1, -1))


@pytest.mark.parametrize(
    ("array", "mode"), [(np.full((4, 4), 7, np.int32), "I"), (np.full((4, 4), 0.5, np.float32), "F")]
)
def test_pixels_without_a_defined_range_fail(tmp_path, array, mode):
    for split in ("train", "val"):
        _save(tmp_path / split / "a" / "x.png", _rgb(0))
        _save(tmp_path / split / "b" / "x.tif", array)
    dm = _module(tmp_path)
    match = rf"b/x\.tif has .* pixels \(Pillow mode {mode}\), whose range is not defined"
    with pytest.raises(DataRootError, match=match):
        [dm.val_set[i] for i in range(len(dm.val_set))]


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")
def test_symlinks_are_followed_once_and_loops_end(tmp_path):
    """A link loop multiplied the samples (126 for 6 files) or hung the scan."""
    outside = tmp_path / "elsewhere"
    for i in range(2):
        _save(outside / f"{i}.png", _rgb(100 + i))
    for split in ("train", "val"):
        cls_a = tmp_path / split / "a"
        for i in range(4):
            _save(cls_a / f"{i}.png", _rgb(i))
        _save(tmp_path / split / "b" / "0.png", _rgb(9))
        (cls_a / "loop").symlink_to(cls_a, target_is_directory=True)  # a folder linking to itself
        (cls_a / "up").symlink_to(tmp_path / split, target_is_directory=True)  # to the split (reaches b too)
        (cls_a / "again.png").symlink_to(cls_a / "0.png")  # a second name for a file already read
        (cls_a / "shared").symlink_to(outside, target_is_directory=True)  # real images outside: read once
        (cls_a / "shared2").symlink_to(outside, target_is_directory=True)
        (cls_a / "dangling.png").symlink_to(tmp_path / "missing.png")
    start = time.perf_counter()
    dm = _module(tmp_path)
    assert time.perf_counter() - start < 5
    # class a: its 4 images, the 2 outside ones and, through "up", b's image (a link the user made into class a)
    assert dm.num_train_samples == 7 + 1 and len(dm.val_set) == 8
    names = sorted(os.path.realpath(path) for path, label in dm.train_set.samples if label == 0)
    assert len(names) == len(set(names)) == 7


def test_tar_members_follow_the_same_rules(tmp_path):
    folders = tmp_path / "folders"
    written = {
        "a/0.png": _save(folders / "a" / "0.png", _rgb(0)),
        "a/sub/1.bmp": _save(folders / "a" / "sub" / "1.bmp", _rgb(1)),
        "b/2.webp": _save(folders / "b" / "2.webp", _rgb(2), lossless=True),
    }
    (folders / "b" / "notes.txt").write_text("x")
    root = tmp_path / "tars"
    root.mkdir()
    for split in ("train", "val"):
        with tarfile.open(root / f"{split}.tar", "w") as tar:
            for name in ("a", "b"):
                tar.add(folders / name, arcname=name)
    dm = _module(root)
    assert dm.classes == ["a", "b"] and len(dm.train_set) == 3
    expected = sorted((written[k].tobytes(), int(k.startswith("b"))) for k in written)
    assert _items(dm.train_set) == _items(dm.val_set) == expected
    loader = torch.utils.data.DataLoader(dm.val_set, batch_size=3, num_workers=2)
    assert next(iter(loader))[0].shape == (3, 3, 8, 8)  # each worker opens the tar itself
