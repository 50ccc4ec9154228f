"""Training augmentations that work with every Pillow release timm may meet.

timm's RandAugment/AutoAugment ``posterize`` calls ``PIL.ImageOps.posterize(img, bits)`` with ``bits = 0`` at high
magnitudes (the ``inc1`` "increasing" levels reach 0 bits at magnitude 10, which ``mstd0.5`` draws from m9 a few
times per thousand images). Pillow < 13 mapped 0 bits to a black image; Pillow 13 raises ``ValueError`` and the
training epoch dies. :func:`pillow_safe` swaps, in kanvision's own transform objects only, timm's posterize for
one that keeps the old behaviour, so no global state of timm or Pillow changes.
"""

from __future__ import annotations

from typing import Any

from PIL import Image, ImageOps

__all__ = ["posterize", "pillow_safe"]


def posterize(img: Image.Image, bits_to_keep: int, **_: Any) -> Image.Image:
    """Keep ``bits_to_keep`` bits per channel; 0 bits gives a black image (Pillow < 13's result), >= 8 the input."""
    bits = int(bits_to_keep)
    if bits >= 8:
        return img
    if bits <= 0:
        return img.point(lambda _: 0)
    return ImageOps.posterize(img, bits)


def _timm_posterize():
    from timm.data import auto_augment

    return auto_augment.posterize


def pillow_safe(transform: Any) -> Any:
    """Return ``transform`` with every timm posterize op inside it (Compose, RandAugment, AutoAugment, AugMix)
    replaced by :func:`posterize`; the transform is modified in place and returned."""
    broken = _timm_posterize()
    seen: set[int] = set()

    def visit(node: Any) -> None:
        if id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, (list, tuple)):
            for child in node:
                visit(child)
            return
        if getattr(node, "aug_fn", None) is broken:  # timm.data.auto_augment.AugmentOp
            node.aug_fn = posterize
        for attr in ("transforms", "ops", "policy"):  # Compose, RandAugment/AugMix, AutoAugment
            child = getattr(node, attr, None)
            if child is not None:
                visit(child)

    visit(transform)
    return transform
