"""The timm classifier API shared by kanvision's CNN families (one place instead of one copy per model)."""

from __future__ import annotations

import torch
from timm.models import checkpoint_seq
from torch import Tensor, nn


class ClassifierMixin:
    """``forward_head``/``forward`` and head management around a timm ``ClassifierHead`` named ``head``.

    The model provides ``forward_features``, ``grad_checkpointing`` and ``num_classes``. A model whose head lives
    elsewhere (RKAN: the timm backbone's) overrides ``get_classifier``, ``reset_classifier`` and ``forward_head``.
    """

    head: nn.Module
    grad_checkpointing: bool

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        self.head.reset(num_classes, pool_type=global_pool)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


class SequentialFeaturesMixin(ClassifierMixin):
    """Models whose body is one ``nn.Sequential`` named ``features`` (stem first)."""

    features: nn.Sequential

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(stem=r"^features\.0", blocks=r"^features\.(\d+)")

    def forward_features(self, x: Tensor) -> Tensor:
        if self.grad_checkpointing and torch.is_grad_enabled():
            return checkpoint_seq(self.features, x)
        return self.features(x)
