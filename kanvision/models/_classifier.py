"""The timm classifier API shared by kanvision's CNN families (one place instead of one copy per model)."""

from __future__ import annotations

import torch
from timm.models import checkpoint_seq

# timm's own index resolution for forward_intermediates / prune_intermediate_layers; timm exports it from no public
# module (its models import it from here too), test_intermediates.py compares the result with timm's ResNet's
from timm.models._features import feature_take_indices
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

    # timm's intermediate-feature API: the outputs of the ``feature_info`` modules, taken by forward hooks
    def _intermediate_modules(self) -> list[str]:
        return [info["module"] for info in self.feature_info]

    def forward_intermediates(
        self,
        x: Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[Tensor] | tuple[Tensor, list[Tensor]]:
        """timm's ``forward_intermediates``: the feature maps of ``feature_info`` (all; the last ``indices`` if an
        int; else those listed, negative from the end) and, unless ``intermediates_only``, the final features.
        ``stop_early`` (with ``intermediates_only``) ends after the last map taken where the model can (RKAN); these
        CNNs have no final norm (``norm`` is moot)."""
        _check_output_format(output_fmt)
        take, _ = _take_indices(len(self._intermediate_modules()), indices)
        features, maps = self._intermediate_maps(x, take, stop_early and intermediates_only)
        intermediates = [maps[i] for i in take]
        return intermediates if intermediates_only else (features, intermediates)

    def _intermediate_maps(self, x: Tensor, take: list[int], stop_early: bool) -> tuple[Tensor | None, dict]:
        """(the final features, or None after stopping early; {index: feature map} for the indices in ``take``)."""
        modules = self._intermediate_modules()
        maps: dict[int, Tensor] = {}
        handles = [
            self.get_submodule(modules[i]).register_forward_hook(lambda _m, _a, out, i=i: maps.__setitem__(i, out))
            for i in set(take)
        ]
        try:
            features = self.forward_features(x)
        finally:
            for handle in handles:
                handle.remove()
        return features, maps

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """timm's ``prune_intermediate_layers``: removes the layers after the last feature map in ``indices`` (the
        features then end there, ``num_features`` its channels) and, with ``prune_head`` or when layers went, the
        classifier and its pooling (``forward_head`` returns the feature map). Returns the indices kept."""
        take, max_index = _take_indices(len(self._intermediate_modules()), indices)
        prune_end = max_index < len(self._intermediate_modules()) - 1
        if prune_end:
            self._prune_layers_after(max_index)
            self.num_features = self.head_hidden_size = self.feature_info[max_index]["num_chs"]
            # the maps after max_index are gone: forward_intermediates' default indices end there (timm's ViT
            # trims self.blocks the same way)
            self.feature_info = self.feature_info[: max_index + 1]
        if prune_head or prune_end:
            self._prune_head()
        return take

    def _prune_layers_after(self, index: int) -> None:
        """Remove every layer after feature map ``index`` (``feature_info`` module ``features.N``: a Sequential)."""
        last = int(self.feature_info[index]["module"].removeprefix("features."))
        self.features = self.features[: last + 1]

    def _prune_head(self) -> None:
        self.num_classes = 0
        self.head.reset(0, pool_type="", in_features=self.num_features)


def _take_indices(count: int, indices: int | list[int] | tuple[int, ...] | None) -> tuple[list[int], int]:
    """timm's ``feature_take_indices`` (absolute indices, the largest), with its range checked here first: timm's
    check is an assertion (gone under ``python -O``) and takes ``True`` as 1."""
    if isinstance(indices, bool) or not (indices is None or isinstance(indices, (int, list, tuple))):
        raise ValueError(
            f"indices={indices!r}: expected an int 1..{count} (the last n), a list of ints or None "
            f"({count} feature maps)"
        )
    if isinstance(indices, int) and not 0 < indices <= count:
        raise ValueError(f"indices={indices!r}: last-n ({indices}) is out of range (1 to {count})")
    for i in indices if isinstance(indices, (list, tuple)) else ():
        if isinstance(i, bool) or not isinstance(i, int) or not -count <= i < count:
            raise ValueError(
                f"indices={indices!r}: feature index {i!r} is out of range (0 to {count - 1}) (negative ints "
                f"count from the end, down to -{count})"
            )
    try:
        return feature_take_indices(count, indices)
    except AssertionError as error:
        raise ValueError(f"indices={indices!r}: {error} ({count} feature maps)") from None


def _check_output_format(output_fmt: str) -> None:
    if output_fmt != "NCHW":
        raise ValueError(f"output_fmt={output_fmt!r}: these CNNs give 'NCHW' feature maps only")


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
