"""The pretrained-cfg entries kanvision's 224 px CNN families share; each model file's ``_cfg`` adds its own."""

from __future__ import annotations

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD


def imagenet_cfg(family: dict, **kwargs) -> dict:
    """A 1000-class 224 px cfg without weights (7 x 7 final map, crop 0.875, ImageNet mean and std, head ``head.fc``),
    then the ``family``'s entries, then the ``kwargs`` of one model or tag."""
    return {
        "url": "",
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": (7, 7),
        "crop_pct": 0.875,
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "classifier": "head.fc",
        **family,
        **kwargs,
    }
