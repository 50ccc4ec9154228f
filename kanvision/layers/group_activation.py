"""What the group-shared activations of GR-KAN form share (KAT, Yang & Wang, arXiv 2409.10594, section 4).

Channels (axis ``channel_dim``) split into ``groups`` contiguous groups; every channel of group g goes through the
same learnable univariate function phi_g. :class:`~kanvision.layers.GroupRational` (phi_g rational, KAT's GR-KAN)
and :class:`~kanvision.layers.GroupKAN` (phi_g of any registered basis) are the two members; models and
:mod:`kanvision.interpret` treat both through this base: :meth:`GroupActivation.group_functions` evaluates every
phi_g at given points, :meth:`GroupActivation.variance_gain` gives KAT's variance-preserving gain.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn

from kanvision.layers.helpers import is_int

__all__ = ["GroupActivation", "check_group_arguments", "gaussian_second_moment"]


def check_group_arguments(owner: str, num_channels: int, groups: int, channel_dim: int) -> None:
    """TypeError/ValueError naming ``owner`` and the bad argument: ints, ``groups`` dividing ``num_channels``."""
    for name, value in (("num_channels", num_channels), ("groups", groups)):
        if not is_int(value):
            raise TypeError(f"{owner}: {name} must be an int, got {value!r} ({type(value).__name__})")
    if groups < 1 or num_channels < 1 or num_channels % groups != 0:
        raise ValueError(f"{owner}: num_channels={num_channels} must be a positive multiple of groups={groups}")
    if not is_int(channel_dim):
        raise TypeError(f"{owner}: channel_dim must be an int (-1 for channels last, 1 for NCHW), got {channel_dim!r}")


def gaussian_second_moment(functions, num_points: int = 20001, limit: float = 12.0) -> Tensor:
    """E[f(x)^2] for x ~ N(0, 1) of every column of ``functions(x)`` ((P,) float64 -> (P, K)), by composite Simpson
    on [-limit, limit] in float64: exact to ~1e-10 for piecewise-polynomial and smooth functions alike (Gauss-Hermite
    nodes converge slowly across the kinks of splines and ReLU bumps); beyond 12 sigma the density is < 1e-31."""
    x = torch.linspace(-limit, limit, num_points | 1, dtype=torch.float64)
    step = (x[1] - x[0]).item()
    simpson = torch.ones_like(x)
    simpson[1:-1:2], simpson[2:-1:2] = 4.0, 2.0
    weights = simpson * step / 3 * torch.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    return (weights[:, None] * functions(x).square()).sum(0)


class GroupActivation(nn.Module):
    """Base of the group-shared activations: ``num_channels`` split into ``groups`` on axis ``channel_dim``.

    Subclasses implement ``forward`` and :meth:`group_functions`.
    """

    num_channels: int
    groups: int
    channel_dim: int
    init: str

    def group_functions(self, x: Tensor) -> Tensor:
        """phi_g(x[:, g]) for points ``x`` (P, groups), as (P, groups), by plain differentiable ops in x's dtype."""
        raise NotImplementedError

    def _check_input(self, x: Tensor) -> None:
        if not -x.dim() <= self.channel_dim < x.dim() or x.shape[self.channel_dim] != self.num_channels:
            raise ValueError(
                f"{type(self).__name__} expects {self.num_channels} channels on dim channel_dim={self.channel_dim} "
                f"(valid for this input: -{x.dim()}..{x.dim() - 1}), got {tuple(x.shape)}"
            )

    @torch.no_grad()
    def variance_gain(self) -> float:
        """alpha = Var[x] / E[phi(x)^2] for x ~ N(0, 1) (KAT section 4.4), averaged over groups as E[phi^2] (the
        groups are equal at init); ``fc`` layers after this activation use std sqrt(alpha / fan_in)."""
        module = copy.deepcopy(self).to("cpu", torch.float64)  # the points are CPU float64, wherever the model is
        second_moment = gaussian_second_moment(
            lambda x: module.group_functions(x[:, None].expand(-1, self.groups).contiguous())
        )
        return float(1.0 / second_moment.mean())
