"""SharedKANConv2d: k*k KAN kernels shared by every input channel, each channel convolved on its own.

Two published layers are this one module with different options:

- the KAN convolution of Bodner et al.'s first paper version (Convolutional KANs, arXiv 2406.13155,
  ``multiple_convs_kan_conv2d``): ``kernels`` efficient-kan ``KANLinear(k*k -> 1)`` kernels, B-spline basis, SiLU base
  branch, spline scaler, no padding;
- RKAN's side-path KAN conv (Yu et al., arXiv 2410.05500): one Chebyshev kernel with a per-position scale; the
  defaults are the newest official ``ChebyshevKANLinear`` (``KAN_Conv/chebyshevkan.py``, ``skip_activation=True``:
  identity base branch), the earlier releases a SiLU base branch and the input factor x * T_d(tanh x).

Computed as a 1 -> ``kernels`` :class:`~kanvision.layers.KANConv2d` over the channels folded into the batch, so every
KANConv2d option (any registered basis, border convention, fused expansion) applies unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrize import is_parametrized

from kanvision.layers.bases import Basis, create_basis
from kanvision.layers.expansion import has_derivative
from kanvision.layers.helpers import check_bool, check_int, check_kwargs
from kanvision.layers.kan_conv import KANConv2d
from kanvision.layers.spline_scaler import add_spline_scaler

__all__ = ["SharedKANConv2d", "InputScaledBasis"]

_INITS = ("normal", "uniform")


class InputScaledBasis(Basis):
    """The functions x * B_d(x) of another basis (RKAN's first release: x * T_d(tanh x)); n as that basis."""

    def __init__(self, basis: Basis):
        super().__init__()
        self.basis = basis
        self.num_functions = basis.num_functions

    def values(self, x: Tensor) -> Tensor:
        return self.basis.values(x) * x

    def derivative(self, x: Tensor) -> Tensor:
        # d/dx x B_d(x) = x B_d'(x) + B_d(x); a basis without a closed form gives B_d' by forward-mode AD
        if has_derivative(self.basis):
            inner, slope = self.basis.values(x), self.basis.derivative(x)
        else:
            inner, slope = torch.func.jvp(self.basis.values, (x,), (torch.ones_like(x),))
        return x * slope + inner


class SharedKANConv2d(nn.Module):
    """``kernels`` k*k KAN kernels shared by all channels: C_out = C_in * kernels, parameters independent of C_in.

    Output channel ``c * kernels + j`` is input channel c convolved on its own with kernel j (Bodner's channel-major
    order), ``sum_p phi_jp(x_c at kernel position p)`` with n basis functions B_d::

        phi_jp(x) = w_jp * b(x) + s_jp * g(x) * sum_d c_jpd B_d(x)

    Args:
        kernel_size, stride: square kernel and stride.
        padding: zero padding on every side (default ``kernel_size // 2``).
        basis, basis_kwargs: any registered basis (default Chebyshev T_d(tanh x), degree 3).
        base_activation: b, a name, a callable or None (no base branch; default ``identity``).
        scale_by_input: g(x) = x (RKAN's first release) instead of 1.
        kernels: kernels per channel (Bodner's ``n_convs``; RKAN: 1).
        spline_scaler: the per-kernel-position scale s (efficient-kan's spline scaler, RKAN's ``scale``), starting
            at 1; without it s = 1.
        border: ``function`` (a padded pixel contributes phi(0), as unfold-based codes) or ``zero``: see KANConv2d.
        init: ``normal`` (RKAN's release: c ~ N(0, 1 / (k^2 n)), w ~ U(-1/k, 1/k)) or ``uniform`` (KANConv2d's,
            as Bodner's efficient-kan kernels).

    Parameters: ``kernels * k^2 * (n + 1 with a base branch + 1 with the scaler)``: 54 for RKAN's 3x3 degree-3
    kernel, 90 per kernel for Bodner's 3x3 B-splines on grid 5. The weights live in ``conv`` (a 1 -> ``kernels``
    KANConv2d, sampled by :mod:`kanvision.interpret` as such); ``coefficients``, ``base_weight`` and ``scale`` are
    views of them in the notation above.
    """

    def __init__(
        self,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        basis: str | Basis = "chebyshev",
        basis_kwargs: dict | None = None,
        base_activation: str | Callable[[Tensor], Tensor] | None = "identity",
        scale_by_input: bool = False,
        *,
        kernels: int = 1,
        spline_scaler: bool = True,
        border: str = "function",
        init: str = "normal",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        self.kernel_size = check_int("kernel_size", kernel_size, 1)
        self.stride = check_int("stride", stride, 1)
        self.padding = check_int("padding", kernel_size // 2 if padding is None else padding, 0)
        self.kernels = check_int("kernels", kernels, 1)
        self.scale_by_input = check_bool("scale_by_input", scale_by_input)
        check_bool("spline_scaler", spline_scaler)
        if init not in _INITS:
            raise ValueError(f"init must be one of {_INITS}, got {init!r}")
        self.init = init
        if scale_by_input:
            basis_kwargs = check_kwargs("basis_kwargs", basis_kwargs)
            basis, basis_kwargs = InputScaledBasis(create_basis(basis, **basis_kwargs)), None
        self.conv = KANConv2d(
            1, kernels, kernel_size, stride, self.padding, bias=False, basis=basis, basis_kwargs=basis_kwargs,
            base_activation=base_activation, border=border, device=device, dtype=dtype,
        )  # fmt: skip
        if spline_scaler:
            add_spline_scaler(self.conv)
        if init == "normal":  # KANConv2d starts uniform
            self.reset_parameters()

    @property
    def basis(self) -> Basis:
        return self.conv.basis

    @property
    def base_activation(self) -> Callable[[Tensor], Tensor] | None:
        return self.conv.base_activation

    def _weight(self) -> Tensor:
        """The learnable (kernels, m, k, k) weight, base branch first, before the scaler."""
        conv = self.conv
        return conv.parametrizations.weight.original if is_parametrized(conv, "weight") else conv.weight

    @property
    def coefficients(self) -> Tensor:
        """c: (n, kernels, k, k), a view of the weight."""
        weight = self._weight()
        return weight[:, weight.shape[1] - self.basis.num_functions :].transpose(0, 1)

    @property
    def base_weight(self) -> Tensor | None:
        """w: (kernels, k, k), a view of the weight; None without a base branch."""
        return None if self.base_activation is None else self._weight()[:, 0]

    @property
    def scale(self) -> Tensor | None:
        """s: (kernels, k, k), the spline scaler; None without one."""
        conv = self.conv
        return conv.parametrizations.weight[0].scale[:, 0] if is_parametrized(conv, "weight") else None

    @torch.no_grad()
    def reset_parameters(self) -> None:
        weight = self._weight()
        if self.init == "uniform":
            bound = weight[0].numel() ** -0.5
            weight.uniform_(-bound, bound)
        else:
            k2 = self.kernel_size**2
            self.coefficients.normal_(std=1.0 / (k2 * self.basis.num_functions))
            if self.base_weight is not None:
                self.base_weight.uniform_(-(k2**-0.5), k2**-0.5)
        if self.scale is not None:
            self.scale.fill_(1.0)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"SharedKANConv2d expects a 4-D (N, C, H, W) input, got shape {tuple(x.shape)}")
        n, c, h, w = x.shape
        y = self.conv(x.reshape(n * c, 1, h, w))  # (N*C, kernels, H', W')
        return y.reshape(n, c * self.kernels, *y.shape[2:])

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints of the former RKAN-only layer held c (n, k, k), w (k, k) and s (k, k) next to its basis
        if prefix + "coefficients" in state_dict:
            coefficients = state_dict.pop(prefix + "coefficients")
            base_weight = state_dict.pop(prefix + "base_weight")
            weight = torch.cat([base_weight[None], coefficients])  # (1 + n, k, k), base branch first
            state_dict[prefix + "conv.parametrizations.weight.original"] = weight[None]
            state_dict[prefix + "conv.parametrizations.weight.0.scale"] = state_dict.pop(prefix + "scale")[None, None]
            basis = prefix + ("conv.basis.basis." if self.scale_by_input else "conv.basis.")
            for key in [k for k in state_dict if k.startswith(prefix + "basis.")]:
                state_dict[basis + key[len(prefix + "basis.") :]] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return (
            f"kernels={self.kernels}, kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"scale_by_input={self.scale_by_input}, init={self.init!r}"
        )
