"""KANConv1d/2d/3d: per-pixel basis expansion followed by ONE (grouped) convolution over it.

(With zero padding a second, one-channel convolution of the constant border mask adds what the padded
zeros contribute; it does not depend on the input.)

A KAN convolution has one univariate function per (out channel, in channel, kernel position); that is
exactly an ordinary convolution over the per-pixel basis expansion with C_in * m channels (torch-conv-kan,
Drokin arXiv 2407.01092), 60-2,000x faster than unfolding patches (Bodner et al., arXiv 2406.13155).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from kanvision.layers.bases import Basis
from kanvision.layers.helpers import check_floating, is_int
from kanvision.layers.kan_layer import KANLayer

__all__ = ["KANConv1d", "KANConv2d", "KANConv3d"]

_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _tuple(name: str, value: int | tuple[int, ...], n: int, minimum: int) -> tuple[int, ...]:
    if isinstance(value, (numbers.Real)) and not isinstance(value, bool):
        values = (value,) * n
    elif isinstance(value, (tuple, list)):
        values = tuple(value)
    else:
        raise TypeError(f"{name} must be an integer >= {minimum} or a tuple of {n} such integers, got {value!r}")
    if len(values) != n or any(not is_int(v) or v < minimum for v in values):
        error = TypeError if not all(map(is_int, values)) else ValueError
        raise error(f"{name} must be an integer >= {minimum} or a tuple of {n} such integers, got {value!r}")
    return tuple(int(v) for v in values)


class _KANConvNd(KANLayer):
    """A KAN convolution with nn.ConvNd's arguments and semantics (padding modes and 'same'/'valid').

    Parameters: ``out_channels * (in_channels / groups) * m * prod(kernel_size) (+ out_channels with bias)``,
    m = basis.num_functions + 1 with a base branch.

    ``border`` decides what a zero-padded pixel contributes (``padding_mode="zeros"`` only; other modes pad with
    copies of real pixels, which go through phi like any other):

    - ``"function"`` (default; Bodner et al.'s unfold-based layers): the layer is a KAN on the zero-padded input
      patches, so a padded pixel contributes phi(0). For symmetric padding the convolution pads the expansion
      itself and phi(0)'s share of the border is added as a one-channel convolution of the border mask.
    - ``"zero"`` (torch-conv-kan's layers: the basis is computed on the unpadded input and the convolution pads the
      expansion): a padded pixel contributes 0. Cheaper: no border term.
    See :class:`~kanvision.layers.kan_layer.KANLayer` for ``basis``, ``base_activation``, ``drop_rate`` and
    ``recompute_basis``.
    """

    _channel_dim = 1
    _spatial_dims: int
    _conv: Callable[..., Tensor]

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, ...],
        stride: int | tuple[int, ...] = 1,
        padding: int | tuple[int, ...] | str = 0,
        dilation: int | tuple[int, ...] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        basis: str | Basis = "chebyshev",
        basis_kwargs: dict | None = None,
        base_activation: str | Callable[[Tensor], Tensor] | None = "silu",
        drop_rate: float = 0.0,
        recompute_basis: bool = False,
        border: str = "function",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ):
        nd = self._spatial_dims
        if border not in ("function", "zero"):
            raise ValueError(f"border must be 'function' (phi(0) at padded pixels) or 'zero', got {border!r}")
        if border == "zero" and padding_mode != "zeros":
            raise ValueError(f"border='zero' applies to padding_mode='zeros' only, got padding_mode={padding_mode!r}")
        self.border = border
        self.kernel_size = _tuple("kernel_size", kernel_size, nd, 1)
        self.stride = _tuple("stride", stride, nd, 1)
        self.dilation = _tuple("dilation", dilation, nd, 1)
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"padding must be 'same', 'valid', an integer or a tuple of {nd}, got {padding!r}")
            if padding == "same" and any(s != 1 for s in self.stride):
                raise ValueError(f"padding='same' needs stride 1, got stride={stride!r}")
            self.padding = padding
        else:
            self.padding = _tuple("padding", padding, nd, 0)
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {_PADDING_MODES}, got {padding_mode!r}")
        self.padding_mode = padding_mode
        super().__init__(
            in_features=in_channels, out_features=out_channels, kernel_size=self.kernel_size, groups=groups,
            basis=basis, basis_kwargs=basis_kwargs, base_activation=base_activation, bias=bias, drop_rate=drop_rate,
            recompute_basis=recompute_basis, device=device, dtype=dtype,
        )  # fmt: skip
        self.in_channels = self._in
        self.out_channels = self._out
        self._pad = self._explicit_padding()
        # zero padding with equal sides: the convolution pads, _border_term adds what the padded zeros contribute
        symmetric = all(a == b for a, b in zip(self._pad[::2], self._pad[1::2], strict=True))
        self._conv_padding = tuple(reversed(self._pad[::2])) if padding_mode == "zeros" and symmetric else None
        # border="zero": the expansion is padded (by the convolution, or explicitly when the sides differ)
        self._pad_expansion = border == "zero" and any(self._pad)

    def _explicit_padding(self) -> tuple[int, ...]:
        """F.pad's list (last spatial dim first, (left, right) each)."""
        if self.padding == "valid":
            pads = [(0, 0)] * self._spatial_dims
        elif self.padding == "same":  # like torch: the extra pixel of an even total goes right
            totals = [d * (k - 1) for d, k in zip(self.dilation, self.kernel_size, strict=True)]
            pads = [(t // 2, t - t // 2) for t in totals]
        else:
            pads = [(p, p) for p in self.padding]
        return tuple(v for pair in reversed(pads) for v in pair)

    def _padded(self, x: Tensor, value: float = 0.0) -> Tensor:
        """``x`` with the layer's padding; ``value`` fills zero padding."""
        if not any(self._pad):
            return x
        if self.padding_mode == "zeros":
            return F.pad(x, self._pad, value=value)
        return F.pad(x, self._pad, mode=self.padding_mode)

    def _pad_input(self, x: Tensor) -> Tensor:
        return x if self._conv_padding is not None or self._pad_expansion else self._padded(x)

    def _pad_keep(self, keep: Tensor) -> Tensor:
        # a padded copy of a pixel shares its draw; zero padding is not an input and is never dropped
        return keep if self._conv_padding is not None or self._pad_expansion else self._padded(keep, value=1.0)

    def _batched(self, x: Tensor) -> Tensor:
        check_floating(type(self).__name__, x)
        nd = self._spatial_dims
        if x.dim() not in (nd + 1, nd + 2) or x.shape[-nd - 1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__} expects a {nd + 2}-D (N, {self.in_channels}, ...) or {nd + 1}-D "
                f"({self.in_channels}, ...) input, got shape {tuple(x.shape)}"
            )
        return x.unsqueeze(0) if x.dim() == nd + 1 else x

    def _prepare(self, x: Tensor) -> Tensor:
        """What the basis sees (``update_grid``'s samples: the grid must cover them): the padded input, or with
        ``border="zero"`` the input alone."""
        x = self._batched(x)
        return x if self.border == "zero" else self._padded(x)

    def forward(self, x: Tensor) -> Tensor:
        out = self._apply_layer(self._batched(x))
        return out.squeeze(0) if x.dim() == self._spatial_dims + 1 else out

    def _op(self, feats: Tensor) -> Tensor:  # (N, C_in * m, *S)
        if feats.dim() == 4 and torch.compiler.is_compiling():
            # Inductor (torch 2.14) cannot order the strides of a contiguous 4-D conv input made from the 5-D expansion
            # once the image size is dynamic (a second image size recompiles so), and fails to compile. It would make
            # that input channels-last for the CPU convolution anyway; given so, it compiles.
            feats = feats.contiguous(memory_format=torch.channels_last)
        padding = self._conv_padding or 0
        if self._pad_expansion and self._conv_padding is None:  # uneven sides: pad the expansion with zeros
            feats = F.pad(feats, self._pad)
        out = type(self)._conv(feats, self.weight, self.bias, self.stride, padding, self.dilation, self.groups)
        if self.border == "function" and self._conv_padding is not None and any(self._conv_padding):
            out = out + self._border_term(feats)
        return out

    def _border_term(self, feats: Tensor) -> Tensor:
        """What the zero-padded pixels add: phi_{o,c,tap}(0) summed over the padded taps, (1, C_out, *S_out)."""
        m = self.num_terms
        at_zero = self.basis(feats.new_zeros(1), -1, self.base_activation).flatten()  # (m,): b(0), B_k(0)
        weight = self.weight.view(self.out_channels, -1, m, *self.kernel_size)
        phi0 = torch.einsum("ocm...,m->o...", weight, at_zero.to(weight.dtype)).unsqueeze(1)  # (C_out, 1, *k)
        border = F.pad(feats.new_zeros(1, 1, *feats.shape[2:]), self._pad, value=1.0)
        return type(self)._conv(border.to(phi0.dtype), phi0, None, self.stride, 0, self.dilation)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, "
            f"bias={self.bias is not None}, padding_mode={self.padding_mode}, border={self.border!r}"
        )


class KANConv1d(_KANConvNd):
    __doc__ = _KANConvNd.__doc__
    _spatial_dims = 1
    _conv = F.conv1d


class KANConv2d(_KANConvNd):
    __doc__ = _KANConvNd.__doc__
    _spatial_dims = 2
    _conv = F.conv2d


class KANConv3d(_KANConvNd):
    __doc__ = _KANConvNd.__doc__
    _spatial_dims = 3
    _conv = F.conv3d
