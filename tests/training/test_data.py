"""DataModules against files the tests write in the real formats (CIFAR pickles, JPEG/PNG trees, tars)."""

from __future__ import annotations

import pickle
import tarfile
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from kanvision.training.data import (
    CIFAR10DataModule,
    CIFAR100DataModule,
    DataRootError,
    DigitsDataModule,
    ImageFolderDataModule,
    SyntheticDataModule,
)
from kanvision.training.train import train

MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.2, 0.3)
EXACT = dict(img_size=32, mean=MEAN, std=STD, crop_pct=1.0, interpolation="bilinear")


def _normalised(hwc_uint8: np.ndarray, mean=MEAN, std=STD) -> torch.Tensor:
    """ToTensor + Normalize by hand, in float64."""
    x = torch.from_numpy(hwc_uint8.astype(np.float64) / 255.0).permute(2, 0, 1)
    return (x - torch.tensor(mean, dtype=torch.float64)[:, None, None]) / torch.tensor(std, dtype=torch.float64)[
        :, None, None
    ]


def _dump(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)  # the release was pickled by Python 2


def write_cifar(root, num_classes: int, per_batch: int = 4, num_test: int = 6, seed: int = 0) -> dict:
    """The CIFAR python release layout with random images; returns the arrays written."""
    rng = np.random.default_rng(seed)
    if num_classes == 10:
        folder = root / "cifar-10-batches-py"
        splits = {f"data_batch_{i}": per_batch for i in range(1, 6)} | {"test_batch": num_test}
        key = "labels"
    else:
        folder = root / "cifar-100-python"
        splits = {"train": 5 * per_batch, "test": num_test}
        key = "fine_labels"
    folder.mkdir(parents=True)
    written = {}
    for name, n in splits.items():
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = rng.integers(0, num_classes, size=n).tolist()
        entry = {"batch_label": name, "data": data, key: labels, "filenames": [f"img_{i}.png" for i in range(n)]}
        if num_classes == 100:
            entry["coarse_labels"] = [label // 5 for label in labels]
        _dump(folder / name, entry)
        written[name] = (data, labels)
    if num_classes == 10:
        _dump(folder / "batches.meta", {"num_cases_per_batch": per_batch, "label_names": [f"c{i}" for i in range(10)]})
    else:
        _dump(folder / "meta", {"fine_label_names": [f"f{i}" for i in range(100)], "coarse_label_names": ["x"] * 20})
    return written


@pytest.mark.parametrize("num_classes", [10, 100])
def test_cifar_reads_the_python_release(tmp_path, num_classes):
    written = write_cifar(tmp_path, num_classes)
    cls = CIFAR10DataModule if num_classes == 10 else CIFAR100DataModule
    dm = cls(root=str(tmp_path), batch_size=4, augment=dict(hflip=0.5), **EXACT)
    dm.check_data()
    dm.setup()
    train_names = [n for n in written if n not in ("test_batch", "test")]
    test_data, test_labels = written["test_batch" if num_classes == 10 else "test"]
    assert len(dm.train_set) == sum(len(written[n][1]) for n in train_names) == 20
    assert dm.val_set is dm.test_set and len(dm.test_set) == 6
    for i in range(len(test_labels)):
        image, label = dm.test_set[i]
        # row-major 3072 bytes: 1024 red, then green, then blue, each 32 x 32
        expected = _normalised(test_data[i].reshape(3, 32, 32).transpose(1, 2, 0))
        torch.testing.assert_close(image.double(), expected, rtol=0, atol=1e-6)
        assert label == test_labels[i]
    train_labels = [label for n in train_names for label in written[n][1]]
    assert [dm.train_set[i][1] for i in range(len(dm.train_set))] == train_labels
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (4, 3, 32, 32) and labels.dtype == torch.int64


def test_cifar_validation_split_is_held_out_of_training(tmp_path):
    write_cifar(tmp_path, 10, per_batch=10)
    dm = CIFAR10DataModule(root=str(tmp_path), val_fraction=0.2, **EXACT)
    dm.setup()
    assert len(dm.train_set) == 40 and len(dm.val_set) == 10 and len(dm.test_set) == 6
    assert not set(dm.train_set.indices) & set(dm.val_set.indices)


def test_cifar_errors_name_the_path_and_layout(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataRootError, match=rf"{missing}.*cifar-10-batches-py.*data_batch_1"):
        CIFAR10DataModule(root=str(missing)).check_data()
    write_cifar(tmp_path, 10)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataRootError, match=r"malformed.*lacks data_batch_3.*expected cifar-10-batches-py/"):
        CIFAR10DataModule(root=str(tmp_path)).check_data()
    _dump(tmp_path / "cifar-10-batches-py" / "data_batch_3", {"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]})
    dm = CIFAR10DataModule(root=str(tmp_path), **EXACT)
    with pytest.raises(DataRootError, match=r"data_batch_3: 'data' must be \(N, 3072\)"):
        dm.setup()
    (tmp_path / "cifar-10-batches-py" / "batches.meta").write_bytes(b"not a pickle")
    with pytest.raises(DataRootError, match="batches.meta is not a CIFAR python batch file"):
        CIFAR10DataModule(root=str(tmp_path)).check_data()


def write_image_tree(root, splits: dict[str, dict[str, int]], fmt: str, size: int = 12, seed: int = 0) -> dict:
    """root/<split>/<class>/<i>.<fmt> with random RGB images; returns {(split, class, i): array}."""
    rng = np.random.default_rng(seed)
    written = {}
    for split, classes in splits.items():
        for name, count in classes.items():
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                array = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
                Image.fromarray(array).save(root / split / name / f"{i}.{fmt}")
                written[(split, name, i)] = array
    return written


TREE = {"train": {"cat": 3, "dog": 2, "eel": 2}, "val": {"dog": 2, "eel": 1}}


def test_imagefolder_png_pixels_and_class_indices(tmp_path):
    written = write_image_tree(tmp_path, TREE, "png")
    dm = ImageFolderDataModule(root=str(tmp_path), batch_size=2, **(EXACT | dict(img_size=12)))
    dm.check_data()
    assert dm.num_classes == 3 and dm.classes == ["cat", "dog", "eel"]
    dm.setup()
    assert len(dm.train_set) == 7 and len(dm.val_set) == 3 and dm.test_set is dm.val_set
    # the validation split lacks "cat", yet "dog" keeps index 1 and "eel" index 2 (the training split's indices)
    expected = {(name, i): arr for (split, name, i), arr in written.items() if split == "val"}
    seen = []
    for j in range(len(dm.val_set)):
        image, label = dm.val_set[j]
        name = dm.classes[label]
        match = [i for (n, i), arr in expected.items() if n == name and np.array_equal(arr, _raw(dm.val_set, j))]
        assert len(match) == 1
        torch.testing.assert_close(image.double(), _normalised(expected[(name, match[0])]), rtol=0, atol=1e-6)
        seen.append((name, match[0]))
    assert sorted(seen) == sorted(expected)
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (2, 3, 12, 12)


def test_imagefolder_grayscale(tmp_path):
    written = write_image_tree(tmp_path, {"train": {"a": 1, "b": 1}, "val": {"a": 1}}, "png")
    dm = ImageFolderDataModule(root=str(tmp_path), in_chans=1, img_size=12, mean=(0.5,), std=(0.5,), crop_pct=1.0)
    dm.setup()
    image, label = dm.val_set[0]
    rgb = written[("val", "a", 0)].astype(np.float64)
    luma = (rgb[..., 0] * 299 + rgb[..., 1] * 587 + rgb[..., 2] * 114) / 1000 / 255  # ITU-R 601-2, PIL's "L"
    assert image.shape == (1, 12, 12) and label == 0
    torch.testing.assert_close(image[0].double(), torch.from_numpy((luma - 0.5) / 0.5), rtol=0, atol=2.5 / 255)


def _raw(dataset, index):
    """The untransformed image of an item of a timm ImageDataset."""
    transform, dataset.transform = dataset.transform, None
    try:
        return np.asarray(dataset[index][0])
    finally:
        dataset.transform = transform


def test_imagefolder_jpeg_and_tar_layouts(tmp_path):
    folder_root, tar_root = tmp_path / "folders", tmp_path / "tars"
    write_image_tree(folder_root, TREE, "jpg")
    tar_root.mkdir()
    for split in TREE:
        with tarfile.open(tar_root / f"{split}.tar", "w") as tar:
            for class_dir in sorted((folder_root / split).iterdir()):
                tar.add(class_dir, arcname=class_dir.name)
    labels = {}
    for root in (folder_root, tar_root):
        dm = ImageFolderDataModule(root=str(root), **(EXACT | dict(img_size=12)))
        dm.setup()
        assert dm.num_classes == 3
        labels[root] = sorted(int(dm.train_set[i][1]) for i in range(len(dm.train_set)))
        assert dm.val_set[0][0].shape == (3, 12, 12)
    assert labels[folder_root] == labels[tar_root] == [0, 0, 0, 1, 1, 2, 2]


def test_imagefolder_errors_name_the_path_and_layout(tmp_path):
    with pytest.raises(DataRootError, match=rf"{tmp_path / 'nope'} does not exist.*train/<class>/<image>"):
        ImageFolderDataModule(root=str(tmp_path / "nope")).check_data()
    write_image_tree(tmp_path, {"train": {"a": 1, "b": 1, "c": 1}}, "png")
    with pytest.raises(DataRootError, match=r"malformed: no val split \(found \['train'\]\).*val/<class>/<image>"):
        ImageFolderDataModule(root=str(tmp_path)).check_data()
    (tmp_path / "val").mkdir()
    with pytest.raises(DataRootError, match="has 3 classes, but data.num_classes=2"):
        ImageFolderDataModule(root=str(tmp_path), num_classes=2).check_data()
    with pytest.raises(DataRootError, match=rf"{tmp_path / 'val'} has no class subfolders"):  # raw ILSVRC val layout
        ImageFolderDataModule(root=str(tmp_path)).check_data()


def test_imagefolder_rejects_evaluation_classes_missing_from_train(tmp_path):
    """timm's class_map would silently drop the unknown class and report accuracy on the rest."""
    write_image_tree(tmp_path, {"train": {"a": 1, "b": 1}, "val": {"a": 1, "c": 1}}, "png")
    with pytest.raises(
        DataRootError, match=rf"{tmp_path / 'val'} has class folders that the train split lacks: \['c'\]"
    ):
        ImageFolderDataModule(root=str(tmp_path)).check_data()


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ("data=cifar10", "does not exist"),
        ("data=imagefolder", "does not exist"),
    ],
)
def test_bad_data_root_fails_before_the_model_is_built(make_cfg, tmp_path, data, match):
    """The model name is invalid too: the data error must come first."""
    cfg = make_cfg(data, f"data.root={tmp_path / 'missing'}", "model.name=no_such_model_xyz")
    with pytest.raises(DataRootError, match=match):
        train(cfg)


def test_digits_split_is_fixed_stratified_and_complete():
    from sklearn.datasets import load_digits

    dm = DigitsDataModule(mean=(0.5,), std=(0.25,))
    dm.setup()
    sizes = [len(s) for s in (dm.train_set, dm.val_set, dm.test_set)]
    assert sum(sizes) == 1797 and sizes[2] == 360
    images = torch.cat([s.tensors[0] for s in (dm.train_set, dm.val_set, dm.test_set)]).flatten(1).double()
    labels = torch.cat([s.tensors[1] for s in (dm.train_set, dm.val_set, dm.test_set)])
    raw = load_digits()
    reference = (torch.from_numpy(raw.images).flatten(1).double() / 16.0 - 0.5) / 0.25
    # every image exactly once, scaled to [0, 1] and normalised
    order, ref_order = _lexsort(images), _lexsort(reference)
    torch.testing.assert_close(images[order], reference[ref_order], rtol=0, atol=1e-6)
    assert torch.equal(labels[order], torch.from_numpy(raw.target)[ref_order])
    test_counts = torch.bincount(dm.test_set.tensors[1], minlength=10)
    assert test_counts.min() >= 35 and test_counts.max() <= 37  # stratified: 20% of ~180 per class
    again = DigitsDataModule(mean=(0.5,), std=(0.25,))
    again.setup()
    assert torch.equal(again.test_set.tensors[0], dm.test_set.tensors[0])


def _lexsort(rows: torch.Tensor) -> torch.Tensor:
    keys = rows.numpy().round(4)
    return torch.from_numpy(np.lexsort(keys.T[::-1]).copy())


def test_global_batch_is_divided_by_the_world_size():
    dm = SyntheticDataModule(batch_size=32, eval_batch_size=16, img_size=8)
    dm.trainer = SimpleNamespace(world_size=2)
    dm.setup()
    assert dm.train_dataloader().batch_size == 16 and dm.val_dataloader().batch_size == 8
    odd = SyntheticDataModule(batch_size=33, img_size=8)
    odd.trainer = SimpleNamespace(world_size=2)
    with pytest.raises(ValueError, match="batch_size=33 is the global batch and must be divisible by the world size 2"):
        odd.setup()


def test_data_config_comes_from_the_model_unless_overridden():
    import timm
    from timm.data import resolve_model_data_config

    with torch.device("meta"):
        model_cfg = resolve_model_data_config(timm.create_model("resnet18"))
    resolved = SyntheticDataModule().configure_for_model(model_cfg)
    assert resolved["img_size"] == [224, 224] and resolved["mean"] == pytest.approx(model_cfg["mean"])
    assert resolved["interpolation"] == model_cfg["interpolation"] and resolved["crop_pct"] == model_cfg["crop_pct"]
    overridden = SyntheticDataModule(img_size=64, std=(1.0,)).configure_for_model(model_cfg)
    assert overridden["img_size"] == [64, 64] and overridden["std"] == [1.0, 1.0, 1.0]
    gray = DigitsDataModule().configure_for_model(model_cfg)
    assert gray["img_size"] == [8, 8] and gray["mean"] == pytest.approx([sum(model_cfg["mean"]) / 3])
