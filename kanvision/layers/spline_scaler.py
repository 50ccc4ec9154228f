"""efficient-kan's standalone spline scaler as a parametrisation of a KAN layer's weight (parameter parity)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from kanvision.layers.kan_layer import KANLayer

__all__ = ["SplineScaler", "add_spline_scaler"]


class SplineScaler(nn.Module):
    """Parametrisation ``weight -> weight * s``: efficient-kan's standalone spline scaler on a KAN layer's weight.

    ``s`` has one learnable multiplier per (output, input, kernel position), applied to every basis coefficient of
    that edge; the base-branch weight is not scaled (as in efficient-kan, where the scaler multiplies only
    ``spline_weight``). Starts at 1. Register it with :func:`add_spline_scaler`.
    """

    scales_edges = True  # one factor for all basis coefficients of an edge: the layer's update_grid keeps it

    def __init__(self, layer: KANLayer):
        super().__init__()
        weight = layer.weight
        self.num_basis = layer.basis.num_functions
        self.num_base = layer.num_terms - self.num_basis  # 1 with a base branch, else 0
        in_per_group = weight.shape[1] // layer.num_terms
        kernel = tuple(weight.shape[2:])
        # (out, in/groups, *kernel): the weight's rank, so memory-format conversions of the model apply to it too
        self.scale = nn.Parameter(
            torch.ones(weight.shape[0], in_per_group, *kernel, dtype=weight.dtype, device=weight.device)
        )

    def resize_basis(self, num_basis: int) -> None:
        """Follow a grid update of the layer to ``num_basis`` basis functions (the scales stay as they are)."""
        self.num_basis = num_basis

    def forward(self, weight: Tensor) -> Tensor:
        out, in_per_group, *kernel = self.scale.shape
        scale = self.scale.unsqueeze(2)
        ones = scale.new_ones(out, in_per_group, self.num_base, *kernel)
        full = torch.cat([ones, scale.expand(out, in_per_group, self.num_basis, *kernel)], 2)
        return weight * full.flatten(1, 2)  # (out, in/groups * m, *kernel), the layer's weight layout


def add_spline_scaler(layer: KANLayer) -> KANLayer:
    """Give a KANLinear/KANConvNd efficient-kan's spline scaler (see :class:`SplineScaler`); returns the layer.

    Adds ``out * (in / groups) * prod(kernel)`` parameters and leaves the function unchanged at initialisation.
    The weight becomes a parametrised tensor (``layer.parametrizations.weight.original``, the unscaled
    coefficients). ``update_grid`` maps those coefficients and keeps the scales, which computes the same function
    as mapping the scaled ones.
    """
    if not isinstance(layer, KANLayer):
        raise ValueError(f"add_spline_scaler needs a KANLinear or KANConvNd layer, got {type(layer).__name__}")
    parametrize.register_parametrization(layer, "weight", SplineScaler(layer))
    return layer
