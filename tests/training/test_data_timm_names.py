"""TimmDataModule (data=hfds / data=wds) against a local Hugging Face parquet dataset and WebDataset shards."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from kanvision.training.data import DataRootError, TimmDataModule

EXACT = dict(img_size=8, mean=(0.5,), std=(0.25,), crop_pct=1.0, interpolation="bilinear", in_chans=1)
NO_AUGMENT = dict(scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=0.0, color_jitter=None)


def _expected(gray: np.ndarray) -> torch.Tensor:
    return ((torch.from_numpy(gray).double() / 255.0 - 0.5) / 0.25)[None]


def write_parquet_dataset(folder: Path, sizes: dict[str, int], classes=("ant", "bee", "cat")) -> dict:
    """A Hub-layout folder <folder>/data/<split>-00000-of-00001.parquet: PNG images, a ClassLabel label column."""
    import datasets

    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=list(classes))})
    rng = np.random.default_rng(0)
    written = {}
    (folder / "data").mkdir(parents=True)
    for split, n in sizes.items():
        images = rng.integers(0, 256, size=(n, 8, 8), dtype=np.uint8)
        labels = [i % len(classes) for i in range(n)]
        table = datasets.Dataset.from_dict(
            {"image": [Image.fromarray(a) for a in images], "label": labels}, features=features
        )
        table.to_parquet(str(folder / "data" / f"{split}-00000-of-00001.parquet"))
        written[split] = (images, labels)
    return written


def write_shards(folder: Path, splits: dict[str, list[int]], info: bool = True) -> dict:
    """WebDataset shards <split>-<k>.tar of <key>.png + <key>.cls (shard sizes per split), with timm's _info.json."""
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True)
    written, entries = {}, {}
    for split, shard_sizes in splits.items():
        files = []
        for k, n in enumerate(shard_sizes):
            name = f"{split}-{k:04d}.tar"
            with tarfile.open(folder / name, "w") as tar:
                for i in range(n):
                    key = f"{split}_{k}_{i:03d}"
                    image = rng.integers(0, 256, size=(8, 8), dtype=np.uint8)
                    label = int(rng.integers(0, 4))
                    buffer = io.BytesIO()
                    Image.fromarray(image).save(buffer, format="PNG")
                    for ext, data in (("png", buffer.getvalue()), ("cls", str(label).encode())):
                        member = tarfile.TarInfo(f"{key}.{ext}")
                        member.size = len(data)
                        tar.addfile(member, io.BytesIO(data))
                    written[key] = (image, label)
            files.append(name)
        entries[split] = dict(name=split, num_samples=sum(shard_sizes), filenames=files, shard_lengths=shard_sizes)
    if info:
        (folder / "_info.json").write_text(json.dumps({"name": "tiny", "splits": entries}))
    return written


def test_hfds_local_parquet_folder(tmp_path):
    written = write_parquet_dataset(tmp_path / "tiny", {"train": 6, "validation": 3})
    dm = TimmDataModule(
        name=f"hfds/{tmp_path / 'tiny'}", root=str(tmp_path / "cache"), batch_size=3, augment=NO_AUGMENT, **EXACT
    )
    dm.check_data()
    assert dm.num_classes == 3 and dm.num_train_samples == 6
    dm.setup()
    assert len(dm.train_set) == 6 and len(dm.val_set) == 3 and dm.test_set is dm.val_set
    for split, dataset in (("train", dm.train_set), ("validation", dm.val_set)):
        images, labels = written[split]
        for i in range(len(labels)):
            image, label = dataset[i]
            torch.testing.assert_close(image.double(), _expected(images[i]), rtol=0, atol=1e-6)
            assert label == labels[i]
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (3, 1, 8, 8) and sorted(y.tolist()) != []


def test_hfds_errors_name_the_dataset_and_the_classes(tmp_path):
    write_parquet_dataset(tmp_path / "tiny", {"train": 3, "validation": 3})
    name = f"hfds/{tmp_path / 'tiny'}"
    with pytest.raises(DataRootError, match=r"3 classes, but data.num_classes=5"):
        TimmDataModule(name=name, root=str(tmp_path / "cache"), num_classes=5, **EXACT).check_data()
    with pytest.raises(DataRootError, match=rf"split 'test' of data.name={name}"):
        TimmDataModule(name=name, root=str(tmp_path / "cache"), test_split="test", **EXACT).check_data()


def test_wds_shards_with_info_json(tmp_path):
    written = write_shards(tmp_path / "shards", {"train": [5, 3], "validation": [4]})
    dm = TimmDataModule(
        name="wds/tiny", root=str(tmp_path / "shards"), num_classes=4, batch_size=2, augment=NO_AUGMENT, **EXACT
    )
    dm.check_data()
    assert dm.num_train_samples == 8
    dm.setup()
    seen = {}
    for x, y in dm.val_dataloader():  # evaluation: every sample once, in shard order
        assert x.shape[1:] == (1, 8, 8)
        for image, label in zip(x, y, strict=True):
            seen[len(seen)] = (image, int(label))
    val = [v for k, v in written.items() if k.startswith("validation")]
    assert len(seen) == 4
    for (image, label), (expected, expected_label) in zip(seen.values(), val, strict=True):
        torch.testing.assert_close(image.double(), _expected(expected), rtol=0, atol=1e-6)
        assert label == expected_label
    batches = list(dm.train_dataloader())  # training: shuffled by timm's reader, one epoch of 8 samples
    assert sum(len(y) for _, y in batches) == 8 and all(x.shape[1:] == (1, 8, 8) for x, _ in batches)


def test_wds_brace_pattern_without_info(tmp_path):
    write_shards(tmp_path / "shards", {"train": [2, 2], "validation": [2]}, info=False)
    root = str(tmp_path / "shards")
    dm = TimmDataModule(
        name="wds/tiny", root=root, num_classes=4, train_split="train-{0000..0001}.tar|4",
        val_split="validation-0000.tar", batch_size=2, **EXACT,
    )  # fmt: skip
    dm.check_data()
    assert dm.num_train_samples == 4
    dm.setup()
    assert sum(len(y) for _, y in dm.val_dataloader()) == 2
    with pytest.raises(DataRootError, match=r"no _info.json .* split 'train'"):
        TimmDataModule(name="wds/tiny", root=root, num_classes=4, **EXACT).check_data()
    with pytest.raises(
        DataRootError, match=r"without their number of samples; write it as 'train-\{0000..0001\}.tar\|"
    ):
        TimmDataModule(name="wds/tiny", root=root, num_classes=4, train_split="train-{0000..0001}.tar").check_data()


def test_wds_errors_name_the_file(tmp_path):
    write_shards(tmp_path / "shards", {"train": [2, 2], "validation": [2]})
    root = tmp_path / "shards"
    with pytest.raises(DataRootError, match=r"data.num_classes is not set: wds datasets"):
        TimmDataModule(name="wds/tiny", root=str(root)).check_data()
    with pytest.raises(DataRootError, match=r"split 'val' is missing .* splits listed: \['train', 'validation'\]"):
        TimmDataModule(name="wds/tiny", root=str(root), num_classes=4, val_split="val").check_data()
    (root / "train-0001.tar").unlink()
    with pytest.raises(
        DataRootError, match=r"_info.json: split 'train' lists shards that .* lacks: \['train-0001.tar'\]"
    ):
        TimmDataModule(name="wds/tiny", root=str(root), num_classes=4).check_data()


def test_unknown_names_are_rejected():
    with pytest.raises(
        ValueError, match=r"data.name='imagenet' is not a timm dataset name .* hfds/<name>, hfids/<name>"
    ):
        TimmDataModule(name="imagenet")
    with pytest.raises(ValueError, match=r"data.name='tfds/x'"):
        TimmDataModule(name="tfds/x")
