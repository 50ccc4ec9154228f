"""ImageNet or any ImageFolder tree (folders or tars), read through timm's ``create_dataset``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from kanvision.training.data.base import DataRootError, ImageDataModule

__all__ = ["ImageFolderDataModule"]

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

    def _count_images(self, path: Path) -> dict[str, int]:
        """Class name -> number of image files in a split (a folder of class folders, or a tar of them)."""
        if path.is_dir():
            counts = {}
            for entry in os.scandir(path):
                if entry.is_dir():
                    files = (name for _, _, names in os.walk(entry.path) for name in names)
                    counts[entry.name] = sum(name.lower().endswith(_IMAGE_EXTENSIONS) for name in files)
            if not counts:
                raise DataRootError(f"{path} has no class subfolders; expected {self._layout()} under {self.root}")
            return dict(sorted(counts.items()))
        import tarfile

        counts: dict[str, int] = {}
        with tarfile.open(path) as tar:
            for member in tar.getmembers():
                if member.isfile() and member.name.lower().endswith(_IMAGE_EXTENSIONS):
                    name = Path(member.name).parent.name
                    counts[name] = counts.get(name, 0) + 1
        if not counts or list(counts) == [""]:
            raise DataRootError(f"{path} holds no <class>/<image> members; expected {self._layout()} under {self.root}")
        return dict(sorted(counts.items()))

    def _check_source(self) -> int | None:
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
        train_path = self._split_path(self.splits["train"])
        counts = self._count_images(train_path)
        classes = list(counts)
        _check_no_empty_classes(train_path, counts)
        if self.num_classes is not None and len(classes) != self.num_classes:
            raise DataRootError(
                f"{train_path} has {len(classes)} classes, but data.num_classes={self.num_classes}: the classifier "
                f"would get {self.num_classes} outputs; set data.num_classes={len(classes)} (or null to infer it)"
            )
        for stage, split in self.splits.items():
            if stage == "train" or split is None:
                continue
            path = self._split_path(split)
            # timm's class_map silently drops images of unknown classes: a wrong evaluation split must fail here
            other = self._count_images(path)
            _check_no_empty_classes(path, other)
            extra = sorted(set(other) - set(classes))
            if extra:
                raise DataRootError(
                    f"{path} has class folders that the train split lacks: {extra[:10]}"
                    f"{' ...' if len(extra) > 10 else ''}; expected {self._layout()} with the same classes"
                )
        self.classes = classes
        if self.num_classes is None:
            self.num_classes = len(classes)
        return sum(counts.values())

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


def _check_no_empty_classes(path: Path, counts: dict[str, int]) -> None:
    """A DataRootError when a class folder of the split at ``path`` holds no images (``counts``: images per class)."""
    empty = [name for name, n in counts.items() if n == 0]
    if empty:
        raise DataRootError(
            f"{path}: {len(empty)} of {len(counts)} class folders hold no images ({empty[:10]}"
            f"{' ...' if len(empty) > 10 else ''}); image files end in {', '.join(_IMAGE_EXTENSIONS)}"
        )
