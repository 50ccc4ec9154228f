"""Datasets named as timm's ``create_dataset`` names them: Hugging Face datasets and WebDataset shards.

- ``hfds/<hub id or local folder>``: a Hugging Face dataset (``datasets.load_dataset``; a local folder of parquet
  files in the Hub layout works offline), random access, ``root`` its cache directory;
- ``hfids/<hub id>``: the same, streamed (an iterable dataset);
- ``wds/<name>``: WebDataset ``.tar`` shards in ``root`` holding ``<key>.jpg`` (or png/webp) and ``<key>.cls``
  samples, described by ``root/_info.json`` (per split: ``name``, ``num_samples``, ``filenames``,
  ``shard_lengths``) or by a split given as a brace pattern with its size, ``train-{0000..0099}.tar|128116``.

Iterable datasets (``hfids``, ``wds``) are shuffled by timm's reader (a sample buffer) rather than by the loader,
and are split between processes and loader workers by it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader, Dataset, IterableDataset

from kanvision.training.data.base import DataRootError, ImageDataModule

__all__ = ["TimmDataModule", "TIMM_DATASET_PREFIXES"]

TIMM_DATASET_PREFIXES = ("hfds", "hfids", "wds")


class TimmDataModule(ImageDataModule):
    """A dataset by its timm name (``hfds/...``, ``hfids/...``, ``wds/...``), read with timm's ``create_dataset``.

    Args:
        name: the timm dataset name; the prefix picks the reader.
        root: ``hfds``/``hfids``: the Hugging Face cache directory (``None``: the default cache); ``wds``: the
            folder holding the shards and ``_info.json``.
        train_split, val_split, test_split: split names (``test_split=None``: the validation split is also the test
            split); for ``wds`` a split may be a brace pattern of shards with its size (``name-{00..09}.tar|5000``).
        input_key, target_key: the image and label fields (``None``: the reader's default, ``image``/``label`` for
            Hugging Face datasets, the ``.jpg;png;webp`` and ``.cls`` members for WebDataset).
        num_classes: required for ``hfids`` and ``wds`` (their labels are not listed up front); for ``hfds``
            ``None`` takes the number of names of the label column's ``ClassLabel``.
        download: ``hfids``: allow downloading (otherwise only streaming).
        seed: the shuffling seed of iterable datasets.
    """

    def __init__(
        self,
        name: str,
        root: str | None = None,
        train_split: str = "train",
        val_split: str = "validation",
        test_split: str | None = None,
        input_key: str | None = None,
        target_key: str | None = None,
        download: bool = False,
        seed: int = 0,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        prefix, sep, rest = str(name).partition("/")
        if not sep or prefix.lower() not in TIMM_DATASET_PREFIXES or not rest:
            valid = ", ".join(f"{p}/<name>" for p in TIMM_DATASET_PREFIXES)
            raise ValueError(
                f"data.name={name!r} is not a timm dataset name of this module; valid: {valid} "
                "(image folder trees: data=imagefolder)"
            )
        self.name = str(name)
        self.kind = prefix.lower()
        self.root = root
        self.splits = {"train": train_split, "val": val_split, "test": test_split}
        self.reader_kwargs = {k: v for k, v in (("input_key", input_key), ("target_key", target_key)) if v is not None}
        self.download = download
        self.seed = seed
        self._loaded: dict[str, Dataset] = {}

    # ------------------------------------------------------------------------------------------------- checks
    def _check_source(self) -> int | None:
        if self.kind != "hfds" and self.num_classes is None:
            raise DataRootError(
                f"data.num_classes is not set: {self.kind} datasets do not list their classes up front "
                f"({self.name}); set data.num_classes to the number of classes"
            )
        if self.kind == "wds":
            return self._check_wds()
        if self.kind == "hfds":
            return self._check_hfds()
        return None

    def _root(self) -> Path:
        return Path(os.path.expanduser(str(self.root)))

    def _check_wds(self) -> int:
        layout = "WebDataset .tar shards and an _info.json listing each split's filenames and num_samples"
        if self.root is None:
            raise DataRootError(f"data.root is not set; expected a directory holding {layout}")
        root = self._root()
        if not root.is_dir():
            raise DataRootError(f"data.root={self.root} does not exist or is not a directory; expected {layout}")
        info_path = next((root / n for n in ("_info.json", "info.json") if (root / n).is_file()), None)
        info: dict[str, Any] = {}
        if info_path is not None:
            try:
                info = json.loads(info_path.read_text())
            except (OSError, ValueError) as exc:
                raise DataRootError(f"{info_path} is not valid JSON ({exc})") from exc
            if not isinstance(info.get("splits"), dict):
                raise DataRootError(f"{info_path} has no 'splits' mapping; expected {layout}")
        sizes = {}
        for stage, split in self.splits.items():
            if split is None:
                continue
            if ".tar" in split or ".." in split:  # a brace pattern: timm reads it, the size follows a '|'
                pattern, _, count = split.partition("|")
                if stage == "train" and not count.strip().isdigit():
                    raise DataRootError(
                        f"data.train_split={split!r} gives shards without their number of samples; "
                        f"write it as '{pattern}|<num_samples>'"
                    )
                sizes[stage] = int(count) if count.strip().isdigit() else None
                continue
            if info_path is None:
                raise DataRootError(
                    f"data.root={self.root} has no _info.json (or info.json) to look split {split!r} up in; "
                    f"expected {layout}, or give the split as a shard pattern 'name-{{0000..0009}}.tar|<num_samples>'"
                )
            entry = info["splits"].get(split)
            if not isinstance(entry, dict) or not {"num_samples", "filenames", "shard_lengths", "name"} <= set(entry):
                raise DataRootError(
                    f"{info_path}: split {split!r} is missing or lacks name/num_samples/filenames/shard_lengths; "
                    f"splits listed: {sorted(info['splits'])}"
                )
            missing = [f for f in entry["filenames"] if "://" not in f and not (root / f).is_file()]
            if missing:
                raise DataRootError(
                    f"{info_path}: split {split!r} lists shards that {root} lacks: {missing[:5]}"
                    f"{' ...' if len(missing) > 5 else ''}"
                )
            sizes[stage] = int(entry["num_samples"])
        return sizes["train"]

    def _check_hfds(self) -> int:
        for stage, split in self.splits.items():
            if split is not None and split not in self._loaded:
                self._loaded[split] = self._create(split, stage == "train", transform=None)
        train = self._loaded[self.splits["train"]]
        classes = train.reader.class_to_idx
        if not classes:
            raise DataRootError(
                f"{self.name} split {self.splits['train']!r}: the label column is not a ClassLabel, so the classes "
                "are unknown; cast it to datasets.ClassLabel (or use the label column's name as data.target_key)"
            )
        if self.num_classes is None:
            self.num_classes = len(classes)
        elif len(classes) != self.num_classes:
            raise DataRootError(
                f"{self.name} has {len(classes)} classes, but data.num_classes={self.num_classes}; set "
                f"data.num_classes={len(classes)} (or null to infer it)"
            )
        return len(train)

    # ------------------------------------------------------------------------------------------------- datasets
    def _create(self, split: str, is_training: bool, transform):
        from timm.data import create_dataset

        try:
            return create_dataset(
                self.name,
                root=None if self.root is None else str(self._root()),
                split=split,
                is_training=is_training,
                download=self.download,
                batch_size=self.per_device_batch_size if is_training else self.per_device_eval_batch_size,
                seed=self.seed,
                input_img_mode="L" if self.in_chans == 1 else "RGB",
                transform=transform,
                **self.reader_kwargs,
            )
        except DataRootError:
            raise
        except Exception as exc:  # noqa: BLE001  (datasets, webdataset and timm raise many types for a bad source)
            raise DataRootError(
                f"cannot open split {split!r} of data.name={self.name} (data.root={self.root}): "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def _make_datasets(self) -> tuple[Dataset, Dataset, Dataset]:
        sets = {}
        for stage, split in self.splits.items():
            if split is None:
                continue
            transform = self.transform(stage == "train")
            dataset = self._loaded.pop(split, None)  # opened by check_data; a split used twice is opened again
            if dataset is None:
                dataset = self._create(split, stage == "train", transform)
            else:
                dataset.transform = transform
            sets[stage] = dataset
        self._loaded.clear()
        return sets["train"], sets["val"], sets.get("test", sets["val"])

    def _loader(self, dataset: Dataset, train: bool) -> DataLoader:
        if not isinstance(dataset, IterableDataset):
            return super()._loader(dataset, train)
        dataset.set_loader_cfg(num_workers=self.num_workers)  # timm's reader splits the shards by worker
        return DataLoader(
            dataset,
            batch_size=self.per_device_batch_size if train else self.per_device_eval_batch_size,
            drop_last=train and self.drop_last,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )
