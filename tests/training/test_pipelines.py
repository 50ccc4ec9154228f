"""Every experiment's real pipeline at realistic volume, on generated data in the real on-disk formats.

For EVERY file in ``configs/experiment``: the experiment's own DataModule (its transforms, Mixup/CutMix, sampler,
image size and batch size) reads an ImageFolder tree of JPEGs and PNGs of mixed sizes and colour modes, or CIFAR
pickles, draws at least 5,000 augmented training samples, and ``train(cfg)`` then runs 2 optimizer steps of the
experiment's full-size network with the experiment's own trainer config (which resolves to the CPU here). A
separate test draws 20,000 samples from every distinct training transform (augmentations that fail once in a
thousand draws, such as timm's posterize on Pillow 13, crash within the first second of an ImageNet epoch).
"""

from __future__ import annotations

import pickle
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from omegaconf import open_dict
from PIL import Image

from kanvision.training.train import follow_data_img_size, train
from kanvision.training.utils import instantiate
from tests.training.test_data_mnist import write_mnist
from tests.training.test_experiments import EXPERIMENTS, compose_experiment

pytestmark = pytest.mark.slow

NUM_DRAWS = 5_000
NUM_TRANSFORM_DRAWS = 20_000
IMAGEFOLDER_CLASSES = 10
IMAGES_PER_CLASS = 110  # 1,100 training images: more than any recipe's global batch (1,024)


def _random_image(rng: np.random.Generator) -> Image.Image:
    height, width = (int(v) for v in rng.integers(12, 160, size=2))
    mode = rng.choice(["RGB", "RGB", "L", "RGBA", "P"])
    pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    return image.convert(mode) if mode != "P" else image.quantize(16)


def _write_image_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for split, count in (("train", IMAGES_PER_CLASS), ("val", 4)):
        for c in range(IMAGEFOLDER_CLASSES):
            folder = root / split / f"n{c:08d}"
            folder.mkdir(parents=True)
            for i in range(count):
                image = _random_image(rng)
                if i % 2 and image.mode in ("RGB", "L"):
                    image.save(folder / f"{i}.JPEG", quality=85)
                else:
                    image.save(folder / f"{i}.png")
    return root


def _write_cifar(root: Path, num_classes: int) -> Path:
    rng = np.random.default_rng(num_classes)
    if num_classes == 10:
        folder, train_files, test_files, meta, labels, names = (
            "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "batches.meta",
            "labels", "label_names",
        )  # fmt: skip
    else:
        folder, train_files, test_files, meta, labels, names = (
            "cifar-100-python", ["train"], ["test"], "meta", "fine_labels", "fine_label_names",
        )  # fmt: skip
    path = root / folder
    path.mkdir(parents=True)
    per_file = 1_250 // len(train_files)
    for name in train_files + test_files:
        n = per_file if name in train_files else 64
        entry = {
            "batch_label": f"{name} (generated)",
            "data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
            labels: rng.integers(0, num_classes, size=n).tolist(),
            "filenames": [f"img_{i}.png".encode() for i in range(n)],
        }
        (path / name).write_bytes(pickle.dumps(entry, protocol=2))
    (path / meta).write_bytes(pickle.dumps({names: [f"class_{i}" for i in range(num_classes)]}, protocol=2))
    return root


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("pipelines")
    write_mnist(base / "mnist", num_train=NUM_DRAWS, num_test=100)
    return {
        "ImageFolderDataModule": _write_image_folder(base / "imagefolder"),
        "CIFAR10DataModule": _write_cifar(base / "cifar10", 10),
        "CIFAR100DataModule": _write_cifar(base / "cifar100", 100),
        "MNISTDataModule": base / "mnist",
    }


@pytest.fixture(scope="module")
def vit_files(tmp_path_factory) -> dict[str, Path]:
    """Full-size timm ViT state dicts (every tensor a stride-0 view of one small value: a few KB on disk)."""
    base = tmp_path_factory.mktemp("vit_full")
    files = {}
    for size in ("tiny", "small", "base"):
        with torch.device("meta"):
            state = timm.create_model(f"vit_{size}_patch16_224").state_dict()
        files[size] = base / f"vit_{size}.pth"
        torch.save({k: torch.full((), 0.01, dtype=v.dtype).expand(v.shape) for k, v in state.items()}, files[size])
    return files


def _experiment(name: str, output_dir: Path, roots, vit_files, overrides=()):
    cfg = compose_experiment(name, output_dir, tuple(overrides))
    with open_dict(cfg):
        cfg.print_config = False
        cfg.callbacks.pop("rich_progress_bar", None)
        cfg.data.num_workers = min(2, cfg.data.get("num_workers", 0))
        kind = cfg.data._target_.rsplit(".", 1)[-1]
        if kind in roots:
            cfg.data.root = str(roots[kind])
        if kind == "ImageFolderDataModule" and cfg.data.get("num_classes") not in (None, IMAGEFOLDER_CLASSES):
            cfg.data.num_classes = None  # the generated tree has its own class count (checked to match)
        if cfg.model.kwargs.get("pretrained"):
            cfg.model.kwargs.pretrained_cfg_overlay.file = str(vit_files[cfg.model.name.split("_")[1]])
    follow_data_img_size(cfg)
    return cfg


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_pipeline_at_volume(name, roots, vit_files, tmp_path):
    cfg = _experiment(name, tmp_path / "draw", roots, vit_files)
    datamodule = instantiate(cfg.data)
    datamodule.check_data()
    module = instantiate(
        cfg.model, num_classes=datamodule.num_classes, in_chans=cfg.model.in_chans or datamodule.in_chans, ema=None
    )
    datamodule.configure_for_model(module.model_data_config())
    datamodule.setup("fit")
    drawn = 0
    height, width = datamodule.data_config["img_size"]
    while drawn < NUM_DRAWS:
        for x, y in datamodule.train_dataloader():
            assert x.shape[1:] == (datamodule.in_chans, height, width) and torch.isfinite(x).all()
            assert 0 <= int(y.min()) and int(y.max()) < datamodule.num_classes
            if module.mixup is not None and len(x) % 2 == 0:
                mixed, target = module.mixup(x, y)
                assert target.shape == (len(x), datamodule.num_classes)
                torch.testing.assert_close(target.sum(1), torch.ones(len(x)))
            drawn += len(x)
            if drawn >= NUM_DRAWS:
                break
    del module

    # two optimizer steps of the full-size network with the experiment's own trainer (auto accelerator)
    steps = [
        "data.batch_size=4",
        "trainer.max_steps=2",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        "++trainer.num_sanity_val_steps=0",
    ]
    cfg = _experiment(name, tmp_path / "run", roots, vit_files, steps)
    metrics = train(cfg)
    assert metrics["global_step"] == 2
    assert np.isfinite(metrics["test/loss"]) and np.isfinite(metrics["train/loss_step"])
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()


def _draw(args) -> int:
    transform, mode, seed, count = args
    import random

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    images = [_random_image(rng).convert(mode) for _ in range(64)]
    for i in range(count):
        out = transform(images[i % len(images)])
        assert torch.isfinite(out).all()
    return count


def test_every_training_transform_survives_20000_draws(roots, vit_files, tmp_path):
    transforms = {}
    for name in EXPERIMENTS:
        cfg = _experiment(name, tmp_path / name, roots, vit_files)
        datamodule = instantiate(cfg.data)
        if not hasattr(datamodule, "root"):  # tensors in memory (digits, synthetic): no image transform
            continue
        with torch.device("meta"):
            module = instantiate(
                cfg.model, num_classes=10, in_chans=cfg.model.in_chans or datamodule.in_chans, ema=None
            )
        datamodule.configure_for_model(module.model_data_config())
        transform = datamodule.transform(True)
        mode = "L" if datamodule.in_chans == 1 else "RGB"
        transforms.setdefault(repr(transform) + mode, (transform, mode, []))[2].append(name)
    assert transforms
    jobs = [(t, mode, seed, NUM_TRANSFORM_DRAWS // 2) for t, mode, _ in transforms.values() for seed in (0, 1)]
    with ProcessPoolExecutor(max_workers=2) as pool:
        done = list(pool.map(_draw, jobs))
    assert sum(done) == NUM_TRANSFORM_DRAWS * len(transforms)
