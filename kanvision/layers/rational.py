"""GroupRational: the group-rational activation of GR-KAN (Yang & Wang, "Kolmogorov-Arnold Transformer",
arXiv 2409.10594, ICLR 2025; official code github.com/Adamdad/kat and github.com/Adamdad/rational_kat_cu).

Each group of contiguous channels applies the safe Pade form of the released code,

    F(x) = (a_0 + a_1 x + ... + a_m x^m) / (1 + |b_1| |x| + |b_2| |x|^2 + ... + |b_n| |x|^n),

whose denominator is >= 1, so F is defined everywhere. As released, the numerator is shared by all groups and each
group owns its denominator (the paper's text says the reverse; the authors confirmed that as a typo).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from kanvision.kernels.rational_reference import group_rational_pytorch
from kanvision.layers.group_activation import GroupActivation, check_group_arguments
from kanvision.layers.helpers import check_bool
from kanvision.layers.rational_fused import group_rational_fused

__all__ = ["GroupRational", "group_rational_pytorch", "list_rational_inits", "RATIONAL_INITS"]

# (numerator a_0..a_5, denominator b_1..b_4) for order (5, 4). Sources and measured errors in GroupRational's docstring.
RATIONAL_INITS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "identity": ((0.0, 1.0, 0.0, 0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 0.0)),
    # Published "swish" entry of rational_kat_cu (kat_rational/init.json), fitted under the released form.
    "swish": (
        (3.055e-07, 0.500001, 0.249998, 0.0532663, 0.00580303, 0.000275196),
        (-4.11e-06, 0.106529, -1.27e-06, 0.000550233),
    ),
    # kanvision's fits under the released form (scripts/fit_rational.py): near-minimax on [-8, 8].
    "gelu": (
        (0.0, 0.5, 0.414231596, 0.122188666, 0.0152137372, 0.000677558989),
        (0.000168658774, 0.244207252, 5.01669961e-05, 0.00135068645),
    ),
    "relu": (
        (0.0, 0.577672673, 1.70537448, 1.21734865, 0.283202438, 0.0200193245),
        (0.833321171, 1.81713901, 0.15118715, 0.0291818953),
    ),
}

# The identity init's b_i are exactly 0; with d|b|/db = sign(b) and sign(0) = 0 they would never train. Exact zeros
# in an init's denominator are therefore set to this tiny positive value: small enough that 1 + sum_i |b_i| |x|^i
# rounds to exactly 1 in float32 for |x| <= 1 and deviates by <= 1.1e-4 relative at |x| = 10, large enough to be a
# normal float32/bfloat16 number (it underflows to 0 in float16 parameters).
DENOMINATOR_TIE_BREAK = 1e-8


def list_rational_inits() -> list[str]:
    """Names accepted by ``GroupRational(init=...)``."""
    return sorted(RATIONAL_INITS)


class GroupRational(GroupActivation):
    """Group-rational activation of GR-KAN (KAT, arXiv 2409.10594), in the released form.

    Channels (axis ``channel_dim``; -1 for tokens (B, L, C), 1 for NCHW) split into ``groups`` contiguous groups.
    ``weight_numerator`` is (1, m+1) when ``share_numerator`` (the released layout, 6 + 8*4 = 38 parameters for the
    default order (5, 4)) or (groups, m+1); ``weight_denominator`` is (groups, n). Names and shapes match the official
    checkpoints.

    ``init`` names a row of :data:`RATIONAL_INITS` (see :func:`list_rational_inits`) or gives the coefficients as
    ``(numerator, denominator)``. Named inits other than identity are for order (5, 4). Measured in float64
    (``scripts/fit_rational.py`` prints this table; alpha from :meth:`variance_gain`, the paper's value in brackets):

    ========  ===========================================  ============  ============  ================
    init      source                                       max err       max err       alpha
                                                           on [-3, 3]    on [-8, 8]
    ========  ===========================================  ============  ============  ================
    identity  published (exact; tie-break below)           0 (3.6e-6)    0 (3.7e-4)    1.000 (1)
    swish     published (rational_kat_cu init.json)        1.4e-6        0.049         2.811 (2.8178)
    gelu      kanvision fit, F(0) = 0, F'(0) = 0.5         0.0040        0.0040        2.351 (2.3568)
    relu      kanvision fit, F(0) = 0                      0.046         0.046         2.063 (2)
    ========  ===========================================  ============  ============  ================

    The published "gelu" entry was fitted under the paper's denominator and is off by 1.46 under the released one,
    hence kanvision's own fit.

    Tie-break: the identity init has b_i = 0 exactly, and the gradient convention shared with the Triton kernel is
    PyTorch's abs backward, d|b|/db = sign(b) with sign(0) = 0, so those coefficients would never leave 0. Every
    exact zero of an init's denominator is therefore set to ``DENOMINATOR_TIE_BREAK`` = 1e-8 (> 0): the function is
    the published one to float32 rounding for |x| <= 1 (1.1e-4 relative at |x| = 10) and every b_i gets a gradient.
    (The identity row's errors in brackets are those of the init with the tie-break, as the module applies it.)

    ``use_kernel``: None (auto) runs the fused Triton kernel (``kanvision.kernels.group_rational``, imported lazily)
    on CUDA inputs that are not float64 (the kernel computes in float32; float64 keeps the exact PyTorch path);
    True forces the kernel, False forces PyTorch. Everywhere the Triton kernel does not run (CPU, float64, False),
    the PyTorch path is ``kanvision.layers.rational_fused``: the formula of ``group_rational_pytorch`` as one
    autograd Function that keeps only x (on CPU as inductor-generated loops, one per pass). All paths share the
    gradient convention above.
    """

    def __init__(
        self,
        num_channels: int,
        groups: int = 8,
        order: tuple[int, int] = (5, 4),
        init: str | tuple[Sequence[float], Sequence[float]] = "identity",
        share_numerator: bool = True,
        channel_dim: int = -1,
        use_kernel: bool | None = None,
    ):
        super().__init__()
        check_group_arguments("GroupRational", num_channels, groups, channel_dim)
        if (
            not isinstance(order, Sequence)
            or len(order) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in order)
        ):
            raise TypeError(f"GroupRational: order must be two ints (m, n), got {order!r}")
        if order[0] < 0 or order[1] < 1:
            raise ValueError(f"GroupRational: order=(m, n) needs m >= 0 and n >= 1, got {order}")
        if use_kernel not in (None, True, False):
            raise ValueError(f"GroupRational: use_kernel must be None (auto), True or False, got {use_kernel!r}")
        self.num_channels = num_channels
        self.groups = groups
        self.order = (int(order[0]), int(order[1]))
        self.share_numerator = check_bool("GroupRational: share_numerator", share_numerator)
        self.channel_dim = int(channel_dim)
        self.use_kernel = use_kernel
        self.init = init if isinstance(init, str) else "custom"
        self._init_numerator, self._init_denominator = self._init_coefficients(init)  # (1, m+1), (1, n)
        self.weight_numerator = nn.Parameter(torch.empty(1 if share_numerator else groups, self.order[0] + 1))
        self.weight_denominator = nn.Parameter(torch.empty(groups, self.order[1]))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Every group back to the init function (timm's ``init_weights`` calls this)."""
        self.weight_numerator.copy_(self._init_numerator.expand_as(self.weight_numerator))
        self.weight_denominator.copy_(self._init_denominator.expand_as(self.weight_denominator))

    def _init_coefficients(self, init: str | tuple[Sequence[float], Sequence[float]]) -> tuple[Tensor, Tensor]:
        m, n = self.order
        if isinstance(init, str):
            if init not in RATIONAL_INITS:
                raise ValueError(f"GroupRational: unknown init {init!r}; valid: {list_rational_inits()}")
            numerator, denominator = RATIONAL_INITS[init]
            if init == "identity" and m >= 1:  # defined for every order
                numerator, denominator = [0.0, 1.0] + [0.0] * (m - 1), [0.0] * n
        else:
            numerator, denominator = init
        # on the CPU explicitly, so that reset_parameters works after building under torch.device("meta")
        numerator = torch.tensor(list(numerator), dtype=torch.float32, device="cpu").reshape(1, -1)
        denominator = torch.tensor(list(denominator), dtype=torch.float32, device="cpu").reshape(1, -1)
        if numerator.shape[1] != m + 1 or denominator.shape[1] != n:
            raise ValueError(
                f"GroupRational: init {self.init!r} has {numerator.shape[1]} numerator and {denominator.shape[1]} "
                f"denominator coefficients, order {self.order} needs {m + 1} and {n}"
            )
        for name, values in (("numerator", numerator), ("denominator", denominator)):
            if not torch.isfinite(values).all():
                raise ValueError(f"GroupRational: init's {name} coefficients must be finite, got {values.tolist()[0]}")
        denominator = torch.where(denominator == 0, torch.full_like(denominator, DENOMINATOR_TIE_BREAK), denominator)
        return numerator, denominator

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        channels_last = x.movedim(self.channel_dim, -1) if self.channel_dim not in (-1, x.dim() - 1) else x
        if self.uses_kernel(x):
            # Imported lazily so that CPU use never imports triton.
            from kanvision.kernels.group_rational import group_rational

            y = group_rational(channels_last, self.weight_numerator, self.weight_denominator, self.groups)
        else:
            y = group_rational_fused(channels_last, self.weight_numerator, self.weight_denominator, self.groups)
        return y.movedim(-1, self.channel_dim) if channels_last is not x else y

    def uses_kernel(self, x: Tensor) -> bool:
        """Whether ``forward(x)`` runs the fused Triton kernel (see ``use_kernel``)."""
        return bool(self.use_kernel or (self.use_kernel is None and x.is_cuda and x.dtype != torch.float64))

    def group_functions(self, x: Tensor) -> Tensor:
        numerator, denominator = (w.to(x.dtype) for w in (self.weight_numerator, self.weight_denominator))
        return group_rational_pytorch(x.contiguous(), numerator, denominator, self.groups)

    @torch.no_grad()
    def variance_gain(self, num_points: int = 128) -> float:
        """alpha = Var[x] / E[F(x)^2] for x ~ N(0, 1) (KAT section 4.4), by Gauss-Hermite quadrature in float64.

        Averaged over groups (each group's function has its own gain; they are equal at init).
        """
        import numpy as np

        nodes, weights = np.polynomial.hermite_e.hermegauss(num_points)  # weight exp(-x^2/2)
        x = torch.as_tensor(nodes, dtype=torch.float64)
        w = torch.as_tensor(weights / math.sqrt(2 * math.pi), dtype=torch.float64)
        xs = x[:, None].expand(-1, self.groups)  # one column per group
        numerator, denominator = (
            w.detach().to("cpu", torch.float64) for w in (self.weight_numerator, self.weight_denominator)
        )
        f = group_rational_pytorch(xs.contiguous(), numerator, denominator, self.groups)
        second_moment = (w[:, None] * f.square()).sum(0).mean()
        return float(1.0 / second_moment)

    def extra_repr(self) -> str:
        return (
            f"{self.num_channels}, groups={self.groups}, order={self.order}, init={self.init!r}, "
            f"share_numerator={self.share_numerator}, channel_dim={self.channel_dim}"
        )
