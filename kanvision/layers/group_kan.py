"""GroupKAN: KAT's group-shared activation (GR-KAN, Yang & Wang, arXiv 2409.10594) for any registered KAN basis.

Channels split into ``groups`` contiguous groups; every channel of group g goes through one learnable function

    phi_g(x) = w_g b(x) + sum_k c_{g,k} B_k(x),

with B_0..B_{n-1} a basis of :mod:`kanvision.layers.bases` (B-spline, RBF, ReLU bumps, Chebyshev, Fourier, Gram, ...)
and b an optional base activation, as in :class:`~kanvision.layers.KANLinear`. The rational of KAT is the same
family's ``rational`` member (:class:`~kanvision.layers.GroupRational`). Parameters: ``weight`` (groups, n) and,
with a base branch, ``base_weight`` (groups,): ``groups * (n + 1)`` in all, independent of the width.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kanvision.layers.activations import resolve_activation
from kanvision.layers.bases import Basis, basis_parameters, create_basis, list_bases
from kanvision.layers.group_activation import GroupActivation, check_group_arguments
from kanvision.layers.group_kan_fused import group_kan_fused
from kanvision.layers.helpers import check_kwargs

__all__ = ["GroupKAN", "group_kan_reference", "list_group_kan_inits", "list_kans", "GROUP_KAN_INITS"]

_logger = logging.getLogger(__name__)

# The functions a GroupKAN can start from by name (float64 in, float64 out).
GROUP_KAN_INITS: dict[str, Callable[[Tensor], Tensor]] = {
    "identity": lambda x: x,
    "swish": F.silu,
    "gelu": F.gelu,
    "relu": F.relu,
}


def list_kans() -> list[str]:
    """The group activations by name: ``"rational"`` (:class:`~kanvision.layers.GroupRational`, KAT's GR-KAN) and
    every basis of :func:`~kanvision.layers.list_bases` (:class:`GroupKAN`; a basis with learnable parameters, like
    ``kagn``, needs ``basis_kwargs=dict(learnable=False)``)."""
    return ["rational", *list_bases()]


def list_group_kan_inits() -> list[str]:
    """Names accepted by ``GroupKAN(init=...)`` (besides a callable)."""
    return sorted(GROUP_KAN_INITS)


def _compute(x: Tensor) -> Tensor:
    """Half precision computes in float32 (the basis functions need the mantissa)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def group_kan_reference(
    x: Tensor,
    weight: Tensor,
    base_weight: Tensor | None,
    basis: Basis,
    activation: Callable[[Tensor], Tensor] | None,
    groups: int,
) -> Tensor:
    """phi_g of every element of the channels-last ``x`` (..., C) by plain differentiable ops, x's shape and dtype.

    ``weight`` (groups, n), ``base_weight`` (groups,) or None; computed in float32 for half-precision inputs.
    Materialises the (..., C, n) expansion: the fused path of :class:`GroupKAN` computes the same without it.
    """
    dtype = x.dtype
    xc = _compute(x)
    per_group = x.shape[-1] // groups
    xg = xc.reshape(-1, 1, per_group)  # (R * groups, 1, C / groups): the basis' (P, 1, Q) form
    values = basis.values(xg).reshape(-1, groups, basis.num_functions, per_group)  # (R, groups, n, C / groups)
    y = (values * weight.to(xc.dtype)[None, :, :, None]).sum(2)  # (R, groups, C / groups)
    if activation is not None:
        y = y + base_weight.to(xc.dtype)[None, :, None] * activation(xg.reshape(y.shape))
    return y.reshape(x.shape).to(dtype)


class GroupKAN(GroupActivation):
    """Group-shared KAN activation (KAT's GR-KAN form, arXiv 2409.10594) with any basis; see the module docstring.

    Args:
        num_channels, groups, channel_dim: as :class:`~kanvision.layers.GroupRational` (-1: tokens (B, L, C);
            1: NCHW); ``groups`` must divide ``num_channels``.
        basis: registry name (``kanvision.layers.list_bases()``) or a :class:`~kanvision.layers.Basis` (copied).
        basis_kwargs: hyper-parameters of a named basis, e.g. ``dict(degree=4)``. A basis on a grid gets
            ``grid_range=init_range`` unless given: the inputs of a transformer's activations are about N(0, 1).
        base_activation: b(x) of the base branch (``"silu"``, ``"gelu"``, ``"identity"``, ...) or None.
        init: the function every group starts from: a name of :func:`list_group_kan_inits` or a callable
            (float64 tensor -> tensor), fitted by least squares weighted by the N(0, 1) density on ``init_range``
            (with the base weight as one more unknown; an init equal to the base activation gets exactly
            ``w = 1, c = 0``). ``init_error`` is the fit's largest error on ``init_range``, logged at construction.
        init_range: the interval (low, high) of the fit.
    """

    def __init__(
        self,
        num_channels: int,
        groups: int = 8,
        basis: str | Basis = "chebyshev",
        basis_kwargs: dict | None = None,
        base_activation: str | Callable[[Tensor], Tensor] | None = "silu",
        init: str | Callable[[Tensor], Tensor] = "identity",
        init_range: tuple[float, float] = (-3.0, 3.0),
        channel_dim: int = -1,
    ):
        super().__init__()
        check_group_arguments("GroupKAN", num_channels, groups, channel_dim)
        if (
            not isinstance(init_range, Sequence)
            or len(init_range) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in init_range)
            or not init_range[0] < init_range[1]
        ):
            raise ValueError(
                f"GroupKAN: init_range must be two finite numbers (low, high), low < high, got {init_range!r}"
            )
        if not (callable(init) or (isinstance(init, str) and init in GROUP_KAN_INITS)):
            raise ValueError(f"GroupKAN: unknown init {init!r}; valid: {list_group_kan_inits()} or a callable")
        basis_kwargs = check_kwargs("GroupKAN: basis_kwargs", basis_kwargs)
        if isinstance(basis, str) and "grid_range" in basis_parameters(basis):
            basis_kwargs.setdefault("grid_range", tuple(float(v) for v in init_range))
        # the init is a least-squares fit in float64 on the CPU (LAPACK's gelsd), whatever the default device (meta
        # for a model built before loading weights, CUDA): the basis is built there and moved with the parameters
        ambient = torch.empty(0).device
        with torch.device("cpu"):
            self.basis = create_basis(copy.deepcopy(basis) if isinstance(basis, Basis) else basis, **basis_kwargs)
        if any(True for _ in self.basis.parameters()):
            raise ValueError(
                f"GroupKAN: basis {self.basis.registry_name or type(self.basis).__name__!r} has learnable parameters; "
                "a group activation needs a fixed basis (e.g. kagn(learnable=False))"
            )
        self.num_channels, self.groups, self.channel_dim = int(num_channels), int(groups), int(channel_dim)
        self.base_activation = resolve_activation(base_activation)
        self.init = init if isinstance(init, str) else getattr(init, "__name__", "custom")
        self.init_range = (float(init_range[0]), float(init_range[1]))
        self._init_function = GROUP_KAN_INITS[init] if isinstance(init, str) else init
        n = self.basis.num_functions
        self.weight = nn.Parameter(torch.empty(groups, n))
        self.base_weight = nn.Parameter(torch.empty(groups)) if self.base_activation is not None else None
        with torch.device("cpu"):
            self._init_coefficients, self.init_error = self._fit(self._init_function)
        self.basis.to(ambient)
        _logger.debug("GroupKAN %s init %r: largest fit error %.3g on %s", self.basis, self.init, self.init_error,
                      self.init_range)  # fmt: skip
        self.reset_parameters()

    def _design(self, x: Tensor) -> Tensor:
        """(P, n (+1)) float64: [b(x),] B_0(x)..B_{n-1}(x) at the points x (P,)."""
        basis = copy.deepcopy(self.basis).to("cpu", torch.float64)
        columns = basis.values(x.reshape(-1, 1, 1)).reshape(x.shape[0], -1)
        if self.base_activation is not None:
            columns = torch.cat([self.base_activation(x)[:, None], columns], 1)
        return columns

    @torch.no_grad()
    def _fit(self, function: Callable[[Tensor], Tensor]) -> tuple[Tensor, float]:
        """Least-squares coefficients ([w,] c_0..c_{n-1}) of ``function`` weighted by the N(0, 1) density on
        ``init_range``, and the largest error on a grid twice as fine."""
        low, high = self.init_range
        x = torch.linspace(low, high, 2049, dtype=torch.float64)
        target = torch.as_tensor(function(x), dtype=torch.float64).reshape(-1)
        if target.shape != x.shape or not torch.isfinite(target).all():
            raise ValueError(f"GroupKAN: init {self.init!r} must map a float64 tensor to finite values of its shape")
        design = self._design(x)
        if self.base_activation is not None and torch.equal(design[:, 0], target):
            # the base activation itself (identity init with an identity base, ...): phi = b exactly, everywhere; the
            # least-squares solution could split it between b and a basis that reproduces it on init_range only
            coefficients = torch.zeros(design.shape[1], dtype=torch.float64)
            coefficients[0] = 1.0
            return coefficients.float(), 0.0
        density = torch.exp(-0.25 * x * x)  # the square root of the N(0, 1) density (up to a constant)
        solution = torch.linalg.lstsq(design * density[:, None], (target * density)[:, None], driver="gelsd")
        coefficients = solution.solution[:, 0]
        fine = torch.linspace(low, high, 4097, dtype=torch.float64)
        fit_error = (self._design(fine) @ coefficients - torch.as_tensor(function(fine), dtype=torch.float64)).abs()
        return coefficients.float(), float(fit_error.max())

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Every group back to the init function (timm's ``init_weights`` calls this)."""
        coefficients = self._init_coefficients.to(self.weight.device)
        if self.base_weight is not None:
            self.base_weight.copy_(coefficients[0].expand_as(self.base_weight))
            coefficients = coefficients[1:]
        self.weight.copy_(coefficients.expand_as(self.weight))

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        channels_last = x.movedim(self.channel_dim, -1) if self.channel_dim not in (-1, x.dim() - 1) else x
        y = group_kan_fused(
            channels_last,
            self.weight,
            self.base_weight,
            self.basis,
            self.base_activation,
            self.groups,
            group_kan_reference,
        )
        return y.movedim(-1, self.channel_dim) if channels_last is not x else y

    def group_functions(self, x: Tensor) -> Tensor:
        weight = self.weight.to(x.dtype)
        base_weight = self.base_weight.to(x.dtype) if self.base_weight is not None else None
        return group_kan_reference(x, weight, base_weight, self.basis, self.base_activation, self.groups)

    def extra_repr(self) -> str:
        base = getattr(self.base_activation, "__name__", type(self.base_activation).__name__)
        name = self.basis.registry_name or type(self.basis).__name__
        return (
            f"{self.num_channels}, groups={self.groups}, basis={name}, "
            f"base_activation={base if self.base_activation is not None else None}, init={self.init!r}, "
            f"channel_dim={self.channel_dim}"
        )
