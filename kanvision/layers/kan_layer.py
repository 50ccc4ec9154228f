"""What every KAN layer shares: basis + base branch expansion, DropKAN, grid update, recompute option.

A KAN layer computes y_j = bias_j + sum_i phi_ji(x_i), phi_ji(x) = w_ji b(x) + sum_k c_jik B_k(x)
(Liu et al., arXiv 2404.19756). Expanding every input into its m = n (+1 with the base branch b)
values makes the whole layer ONE ``F.linear`` / ``F.convNd`` with weights over C_in * m features.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.utils.checkpoint import checkpoint

from kanvision.layers.activations import resolve_activation
from kanvision.layers.bases import MAX_GRID_INTERVALS, Basis, GridBasis, check_grid_state, create_basis
from kanvision.layers.helpers import check_bool, check_int, check_kwargs

__all__ = ["KANLayer", "resolve_activation"]


class KANLayer(nn.Module):
    """Base of :class:`KANLinear` and ``KANConvNd``; subclasses provide ``_prepare`` and ``_op``.

    Args (shared by every KAN layer):
        basis: registry name (``kanvision.layers.list_bases()``) or a :class:`Basis` instance (copied).
        basis_kwargs: hyper-parameters of a named basis, e.g. ``dict(degree=4)``.
        base_activation: b(x) of the base branch (``"silu"`` as in pykan), or None for a pure basis.
        drop_rate: DropKAN probability (Altarabichi, arXiv 2407.13044), GEMM-compatible exact form: in
            training, each (sample, input) is dropped with this probability, i.e. phi_ji(x_i) is zeroed for
            ALL outputs j at once (for convolutions: all kernel positions reading that pixel; padding is never
            dropped), basis and base branch together, and kept values are scaled by 1 / (1 - p). Not the
            per-edge mask of the paper, which cannot go through one GEMM.
        recompute_basis: save only the input for backward and recompute the (m times larger) expansion
            and the GEMM/conv there (activation checkpointing): less memory, one more forward of the op.
    """

    _channel_dim: int  # where the input's channels are: -1 for linear, 1 for convolutions

    def __init__(
        self,
        *,
        in_features: int,
        out_features: int,
        kernel_size: tuple[int, ...],
        groups: int,
        basis: str | Basis,
        basis_kwargs: dict | None,
        base_activation: str | Callable[[Tensor], Tensor] | None,
        bias: bool,
        drop_rate: float,
        recompute_basis: bool,
        device: torch.device | str | None,
        dtype: torch.dtype | None,
    ):
        super().__init__()
        in_features, out_features, groups = (
            check_int(name, value, 1)
            for name, value in (("in_features", in_features), ("out_features", out_features), ("groups", groups))
        )
        check_bool("bias", bias)
        check_bool("recompute_basis", recompute_basis)
        if in_features % groups or out_features % groups:
            valid = [g for g in range(1, in_features + 1) if in_features % g == 0 and out_features % g == 0]
            raise ValueError(
                f"groups={groups} must divide both the input channels ({in_features}) and the output channels "
                f"({out_features}); valid groups: {valid}"
            )
        if isinstance(drop_rate, bool) or not isinstance(drop_rate, (int, float)) or not 0.0 <= drop_rate < 1.0:
            raise ValueError(f"drop_rate must be a number in [0, 1), got {drop_rate!r}")
        # an instance is copied: a shared one would let one layer's update_grid move another layer's grid
        basis_kwargs = check_kwargs("basis_kwargs", basis_kwargs)
        self.basis = create_basis(copy.deepcopy(basis) if isinstance(basis, Basis) else basis, **basis_kwargs)
        if any(True for _ in self.basis.parameters()):  # a learnable basis (e.g. kagn) follows the layer's dtype
            self.basis.to(device=device, dtype=dtype)
        self.base_activation = resolve_activation(base_activation)
        self.num_terms = self.basis.num_functions + (self.base_activation is not None)
        self.drop_rate = float(drop_rate)
        self.recompute_basis = recompute_basis
        self.groups = groups
        self._kernel_numel = math.prod(kernel_size)
        self._in = in_features
        self._out = out_features
        factory = dict(device=device, dtype=dtype)
        self.weight = nn.Parameter(
            torch.empty(out_features, in_features // groups * self.num_terms, *kernel_size, **factory)
        )
        self.bias = nn.Parameter(torch.empty(out_features, **factory)) if bias else None
        self.basis.to(device)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Same scale as nn.Linear/nn.Conv over the C_in * m * K fan-in: unit-order features sum like a linear layer.
        fan_in = self.weight[0].numel()
        bound = fan_in**-0.5
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    # -- forward ---------------------------------------------------------------------------------------
    def _prepare(self, x: Tensor) -> Tensor:
        """Validate ``x`` and return what the expansion sees (batched, padded)."""
        raise NotImplementedError

    def expand(self, x: Tensor) -> Tensor:
        """(.., C, ..) -> (.., C * m, ..): base branch and basis values of every input, DropKAN applied.

        ``x`` is the batched input; padding the op does not do itself is applied here (``_pad_input``).
        """
        cdim = self._channel_dim % x.dim()
        # fused expansion: saves only x, so autograd holds ~1x the expansion (the op's input), not 6x
        feats = self.basis(self._pad_input(x), cdim + 1, self.base_activation)  # (.., C, m, ..)
        if self.training and self.drop_rate > 0:
            keep = torch.rand_like(x).ge_(self.drop_rate).to(feats.dtype).div_(1.0 - self.drop_rate)
            feats = feats * self._pad_keep(keep).unsqueeze(cdim + 1)
        return feats.flatten(cdim, cdim + 1)

    def _pad_input(self, x: Tensor) -> Tensor:
        """The padding the op leaves to the expansion (convolutions with non-zero or uneven padding)."""
        return x

    def _pad_keep(self, keep: Tensor) -> Tensor:
        """The DropKAN mask of the inputs, padded like ``_pad_input`` pads them."""
        return keep

    def _expand_and_op(self, x: Tensor) -> Tensor:
        return self._op(self.expand(x))

    def _op(self, feats: Tensor) -> Tensor:
        raise NotImplementedError

    def _apply_layer(self, x: Tensor) -> Tensor:
        if self.recompute_basis and torch.is_grad_enabled():
            return checkpoint(self._expand_and_op, x, use_reentrant=False)
        return self._expand_and_op(x)

    # -- grid update -----------------------------------------------------------------------------------
    def _coefficient_view(self, weight: Tensor) -> Tensor:
        """Basis coefficients of a weight of this layer's layout as (groups, C_in/groups, n, C_out/groups, K)."""
        g, k, m = self.groups, self._kernel_numel, self.num_terms
        w = weight.view(g, self._out // g, self._in // g, m, k)
        return w[:, :, :, m - self.basis.num_functions :, :].permute(0, 2, 3, 1, 4)

    def _stored_weight(self) -> Tensor:
        """The Parameter behind ``weight``: itself, or the original of a parametrised weight (see
        :func:`~kanvision.layers.add_spline_scaler`)."""
        return self.parametrizations.weight.original if parametrize.is_parametrized(self, "weight") else self.weight

    def _weight_parametrizations(self) -> list[nn.Module]:
        """The weight's parametrisations, each one that ``update_grid`` can carry over, else a ValueError.

        A grid change maps each edge's basis coefficients linearly; it commutes with a parametrisation that
        multiplies all basis coefficients of an edge by one factor (``scales_edges = True``), which then only
        needs the new number of basis functions (``resize_basis(n)``).
        """
        if not parametrize.is_parametrized(self, "weight"):
            return []
        found = list(self.parametrizations.weight)
        unsupported = [type(p).__name__ for p in found if not getattr(p, "scales_edges", False)]
        if unsupported:
            raise ValueError(
                f"update_grid cannot carry the weight's parametrisations {unsupported} over to a new grid; only "
                "per-edge scales such as SplineScaler (scales_edges = True) can be"
            )
        return found

    @torch.no_grad()
    def update_grid(
        self,
        x: Tensor,
        keep_size: bool = False,
        margin: float = 0.01,
        max_intervals: int = 256,
        max_samples: int = 8192,
    ) -> float:
        """Move the grid to cover the samples in ``x`` and refit the coefficients (pykan's grid update).

        Default: the grid keeps its spacing and grows along its own lattice until it covers the old range and
        [min, max] of ``x``; every old function is one of the new ones, so the coefficients move over exactly
        and the layer's function does not change anywhere. The number of basis functions grows, so ``weight``
        is replaced by a new Parameter: build the optimizer again afterwards (as after pykan's grid
        extension); ``load_state_dict`` resizes a fresh layer to match. ``max_intervals`` bounds the growth
        (one far outlier would otherwise blow the grid up).
        ``keep_size=True`` keeps the parameter shapes: the grid is stretched over [min, max] widened by
        ``margin`` of the span and each function is refitted by float64 least squares on the samples; the
        change grows when the new cells are much coarser than the old ones.
        Returns the relative L2 change of the basis part of the functions on all samples of ``x`` (0 in the
        default); the least-squares fit uses at most ``max_samples`` of them per input (evenly spaced, plus the
        extremes). Only grid bases (``bspline``, ``rbf``, ``relu``) have a grid.
        """
        check_bool("keep_size", keep_size)
        max_intervals = check_int("max_intervals", max_intervals, 1, MAX_GRID_INTERVALS)
        max_samples = check_int("max_samples", max_samples, 1)
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin < math.inf:
            raise ValueError(f"margin must be a finite number >= 0, got {margin!r}")
        old = self.basis
        if not isinstance(old, GridBasis):
            raise ValueError(
                f"update_grid needs a grid basis (bspline, rbf, relu); this layer's basis is "
                f"{old.registry_name or type(old).__name__!r}"
            )
        parametrizations = self._weight_parametrizations()
        x = self._prepare(x)
        if x.numel() == 0:
            raise ValueError(f"update_grid needs at least one sample to fit the grid to, got an empty {tuple(x.shape)}")
        all_samples = x.detach().movedim(self._channel_dim, 0).reshape(self._in, -1).to("cpu", torch.float64)
        bad = (~torch.isfinite(all_samples)).sum().item()
        if bad:
            raise ValueError(f"update_grid got {bad} non-finite values in its samples; pass finite inputs")
        samples = all_samples
        if samples.shape[1] > max_samples:  # an even subsample, plus the extremes the grid must cover
            idx = torch.linspace(0, samples.shape[1] - 1, max_samples).long()
            samples = torch.cat([samples[:, idx], samples.amin(1, keepdim=True), samples.amax(1, keepdim=True)], 1)
        lo, hi = samples.min().item(), samples.max().item()
        n = old.num_functions
        if keep_size:
            if hi - lo <= 0:  # constant samples: keep the old width around them
                lo, hi = lo - (old.high - old.low) / 2, hi + (old.high - old.low) / 2
            span = hi - lo
            new = old.resized(lo - margin * span, hi + margin * span, old.intervals)
            old_design, new_design = old(samples, -1), new(samples, -1)  # (C_in, N, n), (C_in, N, n')
            # projection of the old functions onto the new span: (C_in, n', n), independent of the outputs
            projection = torch.linalg.lstsq(new_design, old_design, driver="gelsd").solution
        else:
            new, below = old.extended(lo, hi)
            if new.intervals > max_intervals:
                raise ValueError(
                    f"update_grid would need {new.intervals} grid intervals (spacing {old.spacing:g}) to cover "
                    f"[{min(lo, old.low):g}, {max(hi, old.high):g}], more than max_intervals={max_intervals}; "
                    "normalise the inputs, raise max_intervals, or use keep_size=True"
                )
            projection = torch.zeros(new.num_functions, n, dtype=torch.float64)
            projection[below + torch.arange(n), torch.arange(n)] = 1.0
            projection = projection.expand(self._in, -1, -1)

        def per_input(weight: Tensor) -> Tensor:  # (C_in, n, C_out/groups * K) in float64
            return self._coefficient_view(weight).reshape(self._in, n, -1).to("cpu", torch.float64)

        coef_in = per_input(self.weight)  # the coefficients the layer computes with (after a parametrisation)
        # ||R c||^2 = tr(c^T (R^T R) c): the change on all samples without an (N, outputs) tensor, the Gram
        # matrices accumulated over chunks of samples
        residual_gram = torch.zeros(self._in, n, n, dtype=torch.float64)
        old_gram = torch.zeros(self._in, n, n, dtype=torch.float64)
        for chunk in all_samples.split(max(max_samples, 1024), dim=1):
            old_chunk = old(chunk, -1)  # (C_in, N', n)
            residual = new(chunk, -1) @ projection - old_chunk
            residual_gram += residual.mT @ residual
            old_gram += old_chunk.mT @ old_chunk
        change = torch.einsum("cnr,cnm,cmr->", coef_in, residual_gram, coef_in)
        total = torch.einsum("cnr,cnm,cmr->", coef_in, old_gram, coef_in)
        # the stored coefficients are mapped: per-edge scales commute with the map, so they stay as they are
        stored = self._stored_weight()
        g, cg, og, k = self.groups, self._in // self.groups, self._out // self.groups, self._kernel_numel
        fitted = (projection @ per_input(stored)).view(g, cg, new.num_functions, og, k).permute(0, 3, 1, 2, 4)
        if self.base_activation is not None:  # the base branch's column stays in front, untouched
            base_column = stored.detach().view(g, og, cg, self.num_terms, k)[:, :, :, :1].cpu().double()
            fitted = torch.cat([base_column, fitted], 3)
        self.basis = new.to(stored.device)
        self._resize_weight(fitted.reshape(self._out, -1, *stored.shape[2:]).to(stored))
        for parametrization in parametrizations:
            parametrization.resize_basis(new.num_functions)
        return (change.clamp(min=0) / total.clamp(min=1e-300)).sqrt().item()

    def _resize_weight(self, weight: Tensor) -> None:
        """Give the stored weight (see :meth:`_stored_weight`) these values, re-allocated if the shape changes."""
        self.num_terms = self.basis.num_functions + (self.base_activation is not None)
        stored = self._stored_weight()
        if weight.shape == stored.shape:
            stored.copy_(weight)
            return
        resized = nn.Parameter(weight, requires_grad=stored.requires_grad)
        if parametrize.is_parametrized(self, "weight"):
            self.parametrizations.weight.original = resized
        else:
            self.weight = resized

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # a checkpoint written after update_grid may hold a larger grid: resize before the copy
        grid = state_dict.get(prefix + "basis.grid")
        weight = state_dict.get(prefix + "weight", state_dict.get(prefix + "parametrizations.weight.original"))
        if isinstance(self.basis, GridBasis) and grid is not None and weight is not None:
            low, high, intervals = check_grid_state(grid, prefix + "basis.grid")
            if intervals != self.basis.intervals:
                parametrizations = self._weight_parametrizations()
                stored = self._stored_weight()
                self.basis = self.basis.resized(low, high, intervals)
                with torch.no_grad():
                    self._resize_weight(torch.empty(weight.shape, dtype=stored.dtype, device=stored.device))
                for parametrization in parametrizations:
                    parametrization.resize_basis(self.basis.num_functions)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
