"""ImageNet or any ImageFolder tree (folders or tars), read with Pillow into timm's transforms.

A class is a top-level folder of a split; images anywhere below it (sub-folders included) belong to it, as in
torchvision's ``ImageFolder``. (timm's folder reader labels an image by its innermost folder instead, so images in
``train/a/b/`` would become class ``b`` or be dropped.) Every file type Pillow reads is an image; other files are
counted and reported once per split. Symbolic links are followed, each real folder and file once per class, so link
loops end. 16-bit images are scaled to 8 bits (``x >> 8``, as Pillow does for 16-bit RGB); a file that cannot be
read, or whose pixel range is undefined (32-bit integer or float pixels), is an error naming it.
"""

from __future__ import annotations

import logging
import os
import tarfile
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image, ImageFile
from torch.utils.data import Dataset

from kanvision.training.data.base import DataRootError, ImageDataModule

__all__ = ["ImageFolderDataModule", "ImageFileDataset", "image_extensions", "load_image"]

log = logging.getLogger(__name__)

# Formats Pillow identifies but cannot decode by itself: EPS/PS need Ghostscript, MPEG is identified only.
_UNDECODABLE_FORMATS = {"EPS", "MPEG"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}
_OUTSIDE = "(files outside a class folder)"
_NOT_REGULAR = "(broken links and other non-files)"
_REPEATED = "(repeated links to a file or folder already read)"


def image_extensions() -> frozenset[str]:
    """The lower-case file extensions of every format this Pillow build can open and decode."""
    Image.init()
    extensions = set()
    for extension, fmt in Image.registered_extensions().items():
        factory = Image.OPEN.get(fmt, (None,))[0]
        if factory is None or fmt in _UNDECODABLE_FORMATS:
            continue
        if isinstance(factory, type) and issubclass(factory, ImageFile.StubImageFile):  # needs an external handler
            continue
        extensions.add(extension.lower())
    return frozenset(extensions)


def load_image(source: Any, name: str, mode: str) -> Image.Image:
    """Decode ``source`` (a path or binary file; ``name`` is used in errors) into a PIL image in ``mode``.

    16-bit grayscale is scaled to 8 bits (``x >> 8``); 32-bit integer and float pixels, whose range no file format
    fixes, are refused, as is anything Pillow cannot decode.
    """
    try:
        with Image.open(source) as image:
            image.load()
            if image.mode in _SIXTEEN_BIT_MODES or (image.mode == "I" and image.format == "PPM"):
                # Pillow opens PGM/PPM with maxval > 255 as mode "I" rescaled to [0, 65535]
                pixels = np.asarray(image).astype(np.uint32) >> 8
                return Image.fromarray(pixels.astype(np.uint8)).convert(mode)
            if image.mode in ("I", "F") or image.mode.startswith("I;"):
                kind = "float" if image.mode == "F" else "signed or 32-bit integer"
                raise DataRootError(
                    f"{name} has {kind} pixels (Pillow mode {image.mode}), whose range is not defined; image files "
                    "must hold 8- or 16-bit unsigned pixels (convert it, e.g. to an 8-bit PNG)"
                )
            return image.convert(mode)
    except DataRootError:
        raise
    except Exception as exc:  # noqa: BLE001  (whatever Pillow raises, the file is unreadable)
        raise DataRootError(
            f"{name} cannot be read as an image ({type(exc).__name__}: {exc}); remove or replace the file"
        ) from exc


def _describe(skipped: Counter) -> str:
    return ", ".join(f"{kind} x{count}" for kind, count in sorted(skipped.items()))


def _scan_class_folder(folder: str, extensions: frozenset[str], skipped: Counter) -> list[str]:
    """The image files anywhere below ``folder`` (links followed; each real folder and file once), sorted."""
    seen_dirs: set[str] = set()
    seen_files: set[str] = set()
    found: list[str] = []
    stack = [folder]
    while stack:
        directory = stack.pop()
        real_dir = os.path.realpath(directory)
        if real_dir in seen_dirs:  # a link loop or a second link to a folder already read
            skipped[_REPEATED] += 1
            continue
        seen_dirs.add(real_dir)
        try:
            entries = list(os.scandir(directory))
        except OSError as exc:
            raise DataRootError(f"{directory} cannot be listed ({exc})") from exc
        for entry in entries:
            if entry.is_dir():
                stack.append(entry.path)
                continue
            if not entry.is_file():
                skipped[_NOT_REGULAR] += 1
                continue
            extension = os.path.splitext(entry.name)[1].lower()
            if extension not in extensions:
                skipped[extension or "(no extension)"] += 1
                continue
            real = os.path.realpath(entry.path) if entry.is_symlink() else os.path.join(real_dir, entry.name)
            if real in seen_files:
                skipped[_REPEATED] += 1
                continue
            seen_files.add(real)
            found.append(entry.path)
    return sorted(found)


class _Scan:
    """The images of one split by class (paths, or tar members), and the files left out, by class."""

    def __init__(self, path: Path):
        self.path = path
        self.tar = path if path.is_file() else None
        self.images: dict[str, list] = {}
        self.skipped: dict[str, Counter] = {}

    @classmethod
    def folder(cls, path: Path) -> _Scan:
        scan = cls(path)
        extensions = image_extensions()
        outside = Counter()
        for entry in sorted(os.scandir(path), key=lambda e: e.name):
            if entry.is_dir():
                skipped = scan.skipped.setdefault(entry.name, Counter())
                scan.images[entry.name] = _scan_class_folder(entry.path, extensions, skipped)
            else:
                outside[_OUTSIDE] += 1
        if outside:
            scan.skipped[""] = outside
        return scan

    @classmethod
    def tar_file(cls, path: Path) -> _Scan:
        scan = cls(path)
        extensions = image_extensions()
        with tarfile.open(path) as tar:
            for member in tar.getmembers():
                parts = [p for p in PurePosixPath(member.name).parts if p not in (".", "/")]
                if member.isdir():
                    if len(parts) == 1:
                        scan.images.setdefault(parts[0], [])
                    continue
                cls_name = parts[0] if len(parts) > 1 else ""
                skipped = scan.skipped.setdefault(cls_name, Counter())
                if not cls_name:
                    skipped[_OUTSIDE] += 1
                elif not member.isfile():
                    skipped[_NOT_REGULAR] += 1
                elif (extension := os.path.splitext(parts[-1])[1].lower()) not in extensions:
                    skipped[extension or "(no extension)"] += 1
                else:
                    scan.images.setdefault(cls_name, []).append(member)
        for members in scan.images.values():
            members.sort(key=lambda m: m.name)
        scan.images = dict(sorted(scan.images.items()))
        return scan

    def counts(self) -> dict[str, int]:
        return {name: len(files) for name, files in self.images.items()}

    def report_skipped(self) -> None:
        """One warning for the split naming what was left out, by kind."""
        total = sum((c for c in self.skipped.values()), Counter())
        if total:
            log.warning(
                "%s: %d files are not read as images: %s (images are the files Pillow reads: %s)",
                self.path,
                sum(total.values()),
                _describe(total),
                " ".join(sorted(image_extensions())),
            )

    def check_no_empty_classes(self) -> None:
        """A DataRootError when a class of the split holds no images, naming what its folder holds instead."""
        empty = [name for name, files in self.images.items() if not files]
        if empty:
            found = sum((self.skipped.get(name, Counter()) for name in empty), Counter())
            raise DataRootError(
                f"{self.path}: {len(empty)} of {len(self.images)} class folders hold no images ({empty[:10]}"
                f"{' ...' if len(empty) > 10 else ''}); they hold {_describe(found) or 'no files'}, but images "
                f"are the files Pillow reads ({' '.join(sorted(image_extensions()))})"
            )


class ImageFileDataset(Dataset):
    """(image, class index) items from image files, or from members of one tar file (``tar``).

    ``samples`` is a list of (path or ``tarfile.TarInfo``, class index); ``mode`` the PIL mode images are
    converted to; ``transform`` applies to the PIL image.
    """

    def __init__(self, samples: list[tuple[Any, int]], mode: str = "RGB", transform=None, tar: Path | None = None):
        self.samples = samples
        self.mode = mode
        self.transform = transform
        self.tar = tar
        self._tar_handle: tuple[int, tarfile.TarFile] | None = None

    def __len__(self) -> int:
        return len(self.samples)

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__ | {"_tar_handle": None}

    def _open(self, source) -> tuple[Any, str]:
        if self.tar is None:
            return source, str(source)
        # one handle per process: a forked DataLoader worker must not share the parent's file offset
        if self._tar_handle is None or self._tar_handle[0] != os.getpid():
            self._tar_handle = (os.getpid(), tarfile.open(self.tar))
        return self._tar_handle[1].extractfile(source), f"{self.tar}:{source.name}"

    def __getitem__(self, index: int):
        source, target = self.samples[index]
        image = load_image(*self._open(source), self.mode)
        if self.transform is not None:
            image = self.transform(image)
        return image, target


class ImageFolderDataModule(ImageDataModule):
    """ImageNet or any ``root/{train,val}/<class>/<image>`` tree (a ``train.tar``/``val.tar`` per split works too).

    A class is a top-level folder of a split, and images in its sub-folders belong to it. Class indices follow the
    sorted class names of the training split and are applied to every split. ``test_split`` (default: none) names
    a labelled test split; without it the validation split is also used for testing.
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
        self._scans: dict[str, _Scan] = {}

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

    def _scan(self, path: Path) -> _Scan:
        """The split at ``path`` by class; a DataRootError when it has no classes or a class has no images."""
        if path.is_dir():
            scan = _Scan.folder(path)
            if not scan.images:
                raise DataRootError(f"{path} has no class subfolders; expected {self._layout()} under {self.root}")
        else:
            scan = _Scan.tar_file(path)
            if not scan.images:
                raise DataRootError(
                    f"{path} holds no <class>/<image> members; expected {self._layout()} under {self.root}"
                )
        scan.report_skipped()
        scan.check_no_empty_classes()
        return scan

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
        scans = {"train": self._scan(train_path)}
        classes = list(scans["train"].images)
        if self.num_classes is not None and len(classes) != self.num_classes:
            raise DataRootError(
                f"{train_path} has {len(classes)} classes, but data.num_classes={self.num_classes}: the classifier "
                f"would get {self.num_classes} outputs; set data.num_classes={len(classes)} (or null to infer it)"
            )
        for stage, split in self.splits.items():
            if stage == "train" or split is None:
                continue
            path = self._split_path(split)
            scans[stage] = self._scan(path)
            extra = sorted(set(scans[stage].images) - set(classes))
            if extra:
                raise DataRootError(
                    f"{path} has class folders that the train split lacks: {extra[:10]}"
                    f"{' ...' if len(extra) > 10 else ''}; expected {self._layout()} with the same classes"
                )
        self._scans = scans
        self.classes = classes
        if self.num_classes is None:
            self.num_classes = len(classes)
        return sum(scans["train"].counts().values())

    def _make_datasets(self) -> tuple[Dataset, Dataset, Dataset]:
        class_index = {name: index for index, name in enumerate(self.classes)}
        mode = "L" if self.in_chans == 1 else "RGB"
        sets = {}
        for stage, scan in self._scans.items():
            samples = [(source, class_index[name]) for name, sources in scan.images.items() for source in sources]
            sets[stage] = ImageFileDataset(samples, mode, self.transform(stage == "train"), tar=scan.tar)
        return sets["train"], sets["val"], sets.get("test", sets["val"])
