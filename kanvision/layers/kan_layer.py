"""What every KAN layer shares: basis + base branch expansion, DropKAN, grid update, recompute option.

A KAN layer computes y_j = bias_j + sum_i phi_ji(x_i), phi_ji(x) = w_ji b(x) + sum_k c_jik B_k(x)
(Liu et al., arXiv 2404.19756). Expanding every input into its m = n (+1 with the base branch b)
values makes the whole layer ONE ``F.linear`` / ``F.convNd`` with weights over C_in * m features.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from kanvision.layers.bases import Basis, GridBasis, create_basis

__all__ = ["KANLayer", "resolve_activation"]

_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "silu": F.silu,
    "gelu": F.gelu,
    "relu": F.relu,
    "tanh": torch.tanh,
    "identity": lambda x: x,
}


def resolve_activation(activation: str | Callable[[Tensor], Tensor] | None) -> Callable[[Tensor], Tensor] | None:
    """The base-branch function b(x): a name in ``_ACTIVATIONS``, a callable, or None for no branch."""
    if activation is None or callable(activation):
        return activation
    if activation not in _ACTIVATIONS:
        raise ValueError(f"unknown base_activation {activation!r}; valid: {sorted(_ACTIVATIONS)}, a callable or None")
    return _ACTIVATIONS[activation]


class KANLayer(nn.Module):
    """Base of :class:`KANLinear` and ``KANConvNd``; subclasses provide ``_op`` and the channel layout.

    Args (shared by every KAN layer):
        basis: registry name (``kanvision.layers.list_bases()``) or a :class:`Basis` instance (copied).
        basis_kwargs: hyper-parameters of a named basis, e.g. ``dict(degree=4)``.
        base_activation: b(x) of the base branch (``"silu"`` as in pykan), or None for a pure basis.
        drop_rate: DropKAN probability (Altarabichi, arXiv 2407.13044), GEMM-compatible exact form: in
            training, each (sample, input) is dropped with this probability, i.e. phi_ji(x_i) is zeroed for
            ALL outputs j at once (for convolutions: all kernel positions reading that pixel), basis and base
            branch together, and kept values are scaled by 1 / (1 - p). Not the per-edge mask of the paper,
            which cannot go through one GEMM.
        recompute_basis: save only the input for backward and recompute the (m times larger) expansion
            and the GEMM/conv there (activation checkpointing): less memory, one more forward of the op.
    """

    _channel_dim: int  # where the input's channels are: -1 for linear, 1 for convolutions

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_numel: int,
        groups: int,
        basis: str | Basis,
        basis_kwargs: dict | None,
        base_activation: str | Callable[[Tensor], Tensor] | None,
        bias: bool,
        drop_rate: float,
        recompute_basis: bool,
    ):
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features), ("groups", groups)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if in_features % groups or out_features % groups:
            raise ValueError(
                f"groups={groups} must divide both the input channels ({in_features}) and the output channels "
                f"({out_features})"
            )
        if not 0.0 <= drop_rate < 1.0:
            raise ValueError(f"drop_rate must be in [0, 1), got {drop_rate!r}")
        # an instance is copied: a shared one would let one layer's update_grid move another layer's grid
        self.basis = create_basis(copy.deepcopy(basis) if isinstance(basis, Basis) else basis, **(basis_kwargs or {}))
        self.base_activation = resolve_activation(base_activation)
        self.num_terms = self.basis.num_functions + (self.base_activation is not None)
        self.drop_rate = drop_rate
        self.recompute_basis = recompute_basis
        self.groups = groups
        self._kernel_numel = kernel_numel
        self._in = in_features
        self._out = out_features
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None

    def reset_parameters(self) -> None:
        # Same scale as nn.Linear/nn.Conv over the C_in * m * K fan-in: unit-order features sum like a linear layer.
        fan_in = self.weight[0].numel()
        bound = fan_in**-0.5
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    # -- expansion -------------------------------------------------------------------------------------
    def expand(self, x: Tensor) -> Tensor:
        """(.., C, ..) -> (.., C * m, ..): base branch and basis values of every input, DropKAN applied."""
        cdim = self._channel_dim % x.dim()
        feats = self.basis(x, cdim + 1, self.base_activation)  # (.., C, m, ..)
        if self.training and self.drop_rate > 0:
            keep = torch.rand_like(x).ge_(self.drop_rate).to(feats.dtype).unsqueeze(cdim + 1)
            feats = feats * keep / (1.0 - self.drop_rate)
        return feats.flatten(cdim, cdim + 1)

    def _expand_and_op(self, x: Tensor) -> Tensor:
        return self._op(self.expand(x))

    def _op(self, feats: Tensor) -> Tensor:
        raise NotImplementedError

    def _apply_layer(self, x: Tensor) -> Tensor:
        if self.recompute_basis and torch.is_grad_enabled():
            return checkpoint(self._expand_and_op, x, use_reentrant=False)
        return self._expand_and_op(x)

    # -- grid update -----------------------------------------------------------------------------------
    def _grid_samples(self, x: Tensor) -> Tensor:
        """(C_in, N): the values each input's univariate functions see."""
        return x.movedim(self._channel_dim, 0).reshape(self._in, -1)

    def _coefficient_view(self) -> Tensor:
        """Basis coefficients as (groups, C_in/groups, n, C_out/groups, K); a view of ``weight``."""
        g, k, m = self.groups, self._kernel_numel, self.num_terms
        w = self.weight.view(g, self._out // g, self._in // g, m, k)
        return w[:, :, :, m - self.basis.num_functions :, :].permute(0, 2, 3, 1, 4)

    @torch.no_grad()
    def update_grid(self, x: Tensor, keep_size: bool = False, margin: float = 0.01, max_samples: int = 8192) -> None:
        """Move the grid to cover the samples in ``x`` and refit the coefficients (pykan's grid update).

        Default: the grid keeps its spacing and grows or shrinks along its own lattice until it covers
        [min, max] of ``x``; the old functions then lie in the new span and the least-squares refit is exact
        (the layer's function is unchanged on the samples), but the number of basis functions changes, so
        ``weight`` is replaced by a new Parameter: build the optimizer again afterwards (as after pykan's grid
        extension). ``keep_size=True`` keeps the parameter shapes: the grid is stretched over [min, max]
        widened by ``margin`` of the span and the refit is a float64 least-squares projection, whose error
        grows when the new cells are much coarser than the old. The base branch is untouched. Only grid
        bases (``bspline``, ``rbf``, ``relu``) have a grid.
        """
        if not isinstance(self.basis, GridBasis):
            raise ValueError(
                f"update_grid needs a grid basis (bspline, rbf, relu); this layer's basis is "
                f"{self.basis.registry_name or type(self.basis).__name__!r}"
            )
        samples = self._grid_samples(self._pad_input(x)).double()  # (C_in, N)
        if samples.shape[1] > max_samples:  # an even subsample, plus the extremes the grid must cover
            idx = torch.linspace(0, samples.shape[1] - 1, max_samples, device=samples.device).long()
            samples = torch.cat([samples[:, idx], samples.amin(1, keepdim=True), samples.amax(1, keepdim=True)], 1)
        if not torch.isfinite(samples).all():
            raise ValueError("update_grid got non-finite samples")
        lo, hi = samples.min().item(), samples.max().item()
        if keep_size:
            span = max(hi - lo, 1e-3)
            new_basis = self.basis.resized(lo - margin * span, hi + margin * span, self.basis.intervals)
        else:
            new_basis = self.basis.covering(lo, hi)
        new_basis.to(self.weight.device)

        coef = self._coefficient_view()  # (G, Cg, n, Og, K)
        g, cg, n, og, k = coef.shape
        target = copy.deepcopy(self.basis).double()(samples, -1) @ coef.reshape(self._in, n, og * k).double()
        design = copy.deepcopy(new_basis).double()(samples, -1)  # (C_in, N, n')
        driver = "gelsd" if design.device.type == "cpu" else None
        fitted = torch.linalg.lstsq(design, target, driver=driver).solution  # (C_in, n', Og*K)
        n_new = new_basis.num_functions
        fitted = fitted.view(g, cg, n_new, og, k).permute(0, 3, 1, 2, 4).to(self.weight.dtype)  # (G, Og, Cg, n', K)
        if self.base_activation is not None:  # the base branch's column stays in front, untouched
            base_column = self.weight.detach().view(g, og, cg, self.num_terms, k)[:, :, :, :1]
            fitted = torch.cat([base_column, fitted], 3)
        weight = fitted
        self.basis = new_basis
        self.num_terms = weight.shape[3]
        weight = weight.reshape(self._out, cg * self.num_terms, *self.weight.shape[2:])
        if weight.shape == self.weight.shape:
            self.weight.copy_(weight)
        else:
            self.weight = nn.Parameter(weight, requires_grad=self.weight.requires_grad)

    def _pad_input(self, x: Tensor) -> Tensor:
        return x
