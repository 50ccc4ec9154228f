"""``data=imagefolder`` with its defaults learns a small real dataset; DeiT's recipe stays in ``data=imagenet``."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from kanvision.training.train import train


def write_digits(root, size: int = 16, val_fraction: float = 0.2) -> dict[str, int]:
    """scikit-learn's 8x8 handwritten digits as ``root/{train,val}/<digit>/<i>.png`` grayscale PNGs of ``size`` px."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(0).permutation(len(digits.target))
    counts = {"train": 0, "val": 0}
    for rank, i in enumerate(order):
        split = "val" if rank < val_fraction * len(order) else "train"
        folder = root / split / str(digits.target[i])
        folder.mkdir(parents=True, exist_ok=True)
        pixels = np.round(digits.images[i] * (255 / 16)).astype(np.uint8)  # 17 grey levels onto 0..255
        Image.fromarray(pixels).resize((size, size), Image.Resampling.BILINEAR).save(folder / f"{i}.png")
        counts[split] += 1
    return counts


@pytest.mark.slow  # about 16 s of CPU time (4 epochs of 1,437 images)
def test_imagefolder_defaults_learn_real_digits(make_cfg, tmp_path):
    """DeiT's ImageNet augmentation, once the default for every tree, held such runs far below this."""
    counts = write_digits(tmp_path / "digits")
    cfg = make_cfg(
        "data=imagefolder",
        f"data.root={tmp_path / 'digits'}",
        "data.img_size=16",
        "data.batch_size=32",
        "data.num_workers=0",
        "data.pin_memory=false",
        "data.in_chans=1",  # grayscale PNGs
        "model=kan_cnn_tiny",
        "trainer.max_epochs=4",
        "logger=csv",
        "test=false",
        output_dir=tmp_path / "run",
    )
    assert cfg.data.augment.auto_augment is None and cfg.data.augment.re_prob == 0.0
    metrics = train(cfg)
    assert metrics["global_step"] == 4 * (counts["train"] // 32)
    assert metrics["val/acc1"] > 0.5, metrics  # chance is 0.1; 0.63 when written


def _transform_ops(make_cfg, data: str) -> set[str]:
    from hydra.utils import instantiate

    cfg = make_cfg(f"data={data}", "data.root=unused", "data.img_size=32")
    transform = instantiate(cfg.data).transform(is_training=True)
    return {type(op).__name__ for op in transform.transforms}


def test_generic_imagefolder_uses_timm_defaults_and_imagenet_deit(make_cfg):
    """DeiT's RandAugment and RandomErasing (arXiv 2012.12877) belong to ImageNet, not to every tree."""
    generic = _transform_ops(make_cfg, "imagefolder")
    assert {"RandomResizedCropAndInterpolation", "RandomHorizontalFlip", "ColorJitter"} <= generic
    assert not generic & {"RandAugment", "RandomErasing"}
    imagenet = _transform_ops(make_cfg, "imagenet")
    assert {"RandomResizedCropAndInterpolation", "RandomHorizontalFlip", "RandAugment", "RandomErasing"} <= imagenet


@pytest.mark.parametrize("data", ["imagefolder", "imagenet"])
def test_augment_keys_match_timm_train_defaults(make_cfg, data):
    """The light recipe is timm train.py's argument defaults, key for key."""
    cfg = make_cfg(f"data={data}", "data.root=unused")
    augment = dict(cfg.data.augment)
    timm_train = {"scale": [0.08, 1.0], "ratio": [3 / 4, 4 / 3], "hflip": 0.5, "color_jitter": 0.4, "re_mode": "pixel"}
    for key, value in timm_train.items():
        assert augment[key] == pytest.approx(value), key
