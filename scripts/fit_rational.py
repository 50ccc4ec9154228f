"""Fit GroupRational init coefficients under the released KAT form (kanvision.layers.rational).

    F(x) = (a_0 + a_1 x + ... + a_5 x^5) / (1 + |b_1| |x| + |b_2| x^2 + |b_3| |x|^3 + |b_4| x^4)

The published "gelu" entry of the official code was fitted under the paper's denominator and is wrong under this one
(max error 1.46 on [-3, 3]), so kanvision fits its own: a near-minimax fit of max |F - f| on [-R, R] by L-BFGS on
weighted L_p norms with growing p (a smooth stand-in for the max), in float64, with the constraints pinned exactly
(GELU: a_0 = 0 so F(0) = 0, a_1 = 0.5 so F'(0) = 0.5). Prints the coefficients to paste into RATIONAL_INITS and a
table of max errors.

Usage: python scripts/fit_rational.py [gelu relu ...] [--range 8]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from kanvision.layers.rational import RATIONAL_INITS

TARGETS = {
    "gelu": (F.gelu, {0: 0.0, 1: 0.5}),  # pinned numerator coefficients: F(0) = 0, F'(0) = 0.5
    "relu": (F.relu, {0: 0.0}),
    "swish": (F.silu, {0: 0.0, 1: 0.5}),
}


def rational(x: torch.Tensor, numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """The released formula by plain Horner steps in float64 (on the fitted range no power comes near overflow)."""
    p = torch.zeros_like(x)
    for a in reversed(numerator):
        p = p * x + a
    q = torch.zeros_like(x)
    for b in reversed(denominator):
        q = q * x.abs() + b.abs()
    return p / (1.0 + q * x.abs())


def fit(name: str, radius: float, order: tuple[int, int] = (5, 4), steps: int = 200) -> tuple[list, list, float]:
    target, pinned = TARGETS[name]
    m, n = order
    x = torch.linspace(-radius, radius, 16001, dtype=torch.float64)
    y = target(x)
    free = [k for k in range(m + 1) if k not in pinned]
    start_num, start_den = RATIONAL_INITS["swish"]  # a smooth ReLU-like start that already has b_4 > 0
    theta = torch.tensor([start_num[k] for k in free] + list(start_den), dtype=torch.float64, requires_grad=True)

    def coefficients(theta):
        numerator = torch.zeros(m + 1, dtype=torch.float64)
        numerator[list(pinned)] = torch.tensor(list(pinned.values()), dtype=torch.float64)
        numerator = numerator.index_put((torch.tensor(free),), theta[: len(free)])
        return numerator, theta[len(free) :]

    for p in (2, 4, 8, 16, 32, 64, 128):
        optimizer = torch.optim.LBFGS([theta], lr=1, max_iter=steps, line_search_fn="strong_wolfe")

        def closure(p=p, optimizer=optimizer):
            optimizer.zero_grad()
            err = (rational(x, *coefficients(theta)) - y).abs()
            scale = err.detach().max()  # normalise so that high powers stay finite
            loss = scale * ((err / scale) ** p).mean() ** (1 / p)
            loss.backward()
            return loss

        optimizer.step(closure)
    numerator, denominator = coefficients(theta.detach())
    max_err = (rational(x, numerator, denominator) - y).abs().max().item()
    return numerator.tolist(), denominator.abs().tolist(), max_err


def max_error(name: str, radius: float) -> float:
    target = TARGETS[name][0] if name in TARGETS else (lambda t: t)
    x = torch.linspace(-radius, radius, 16001, dtype=torch.float64)
    numerator, denominator = (torch.tensor(c, dtype=torch.float64) for c in RATIONAL_INITS[name])
    return (rational(x, numerator, denominator) - target(x)).abs().max().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=["gelu", "relu"], choices=sorted(TARGETS))
    parser.add_argument("--range", type=float, default=8.0, dest="radius")
    args = parser.parse_args()
    torch.set_printoptions(precision=10)
    for name in args.names:
        numerator, denominator, err = fit(name, args.radius)
        print(f'"{name}": (')
        print(f"    ({', '.join(f'{c:.9g}' for c in numerator)}),")
        print(f"    ({', '.join(f'{c:.9g}' for c in denominator)}),")
        print(f"),  # max |F - {name}| on [-{args.radius:g}, {args.radius:g}] = {err:.3g}")
    print("\n| init | max error on [-3, 3] | on [-8, 8] |\n|---|---|---|")
    for name in sorted(RATIONAL_INITS):
        if name in TARGETS or name == "identity":
            print(f"| {name} | {max_error(name, 3):.2g} | {max_error(name, 8):.2g} |")


if __name__ == "__main__":
    main()
