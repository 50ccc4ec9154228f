"""KANLinear: basis expansion followed by one GEMM (the efficient-kan form; Liu et al., arXiv 2404.19756)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from kanvision.layers.bases import Basis
from kanvision.layers.helpers import check_floating
from kanvision.layers.kan_layer import KANLayer

__all__ = ["KANLinear"]


class KANLinear(KANLayer):
    """A KAN layer with nn.Linear's interface: y_j = bias_j + sum_i phi_ji(x_i).

    Parameters: ``out_features * in_features * m (+ out_features with bias)``, where
    m = basis.num_functions + 1 with a base branch (else + 0). Input (..., in_features).
    See :class:`~kanvision.layers.kan_layer.KANLayer` for ``basis``, ``base_activation``, ``drop_rate``
    and ``recompute_basis``.
    """

    _channel_dim = -1

    def __init__(
        self,
        in_features: int,
        out_features: int,
        basis: str | Basis = "chebyshev",
        basis_kwargs: dict | None = None,
        base_activation: str | Callable[[Tensor], Tensor] | None = "silu",
        bias: bool = True,
        drop_rate: float = 0.0,
        recompute_basis: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__(
            in_features=in_features, out_features=out_features, kernel_size=(), groups=1, basis=basis,
            basis_kwargs=basis_kwargs, base_activation=base_activation, bias=bias, drop_rate=drop_rate,
            recompute_basis=recompute_basis, device=device, dtype=dtype,
        )  # fmt: skip
        self.in_features = self._in
        self.out_features = self._out

    def _prepare(self, x: Tensor) -> Tensor:
        check_floating("KANLinear", x)
        if x.dim() < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"KANLinear expects input of shape (..., {self.in_features}), got {tuple(x.shape)}")
        return x

    def forward(self, x: Tensor) -> Tensor:
        return self._apply_layer(self._prepare(x))

    def _op(self, feats: Tensor) -> Tensor:
        return F.linear(feats, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
