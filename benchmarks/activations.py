"""Activation benchmark: GroupRational (KAT's GR-KAN unit) against GELU, forward+backward on a token tensor.

All run on the same ``(tokens, C)`` input (default 16 x 197 tokens of ViT-T's MLP width 768, float32) with a dense
upstream gradient. Each round times GELU and every contender back to back (the order reversed every other round,
so none always runs first), each as the fastest of ``--steps-per-round`` consecutive steps (a step that another
process interrupted is only ever slower); the ratios of a round compare them under the same machine load, and the
summary is the median of the per-round ratios with its quartiles. ``--reference`` adds the plain PyTorch formula
(``group_rational_pytorch``); ``--group-kan`` adds GroupKAN with Chebyshev (degree 4), RBF (8 centres) and B-spline
(grid 5, order 3) bases, with their ratios to GroupRational. Every row gives the bytes autograd saves for backward
(``saved_MiB``). Prints a table and writes JSON.

    python -m benchmarks.activations [--device cpu] [--tokens 3152] [--channels 768] [--rounds 40]
        [--steps-per-round 5] [--group-kan]
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.common import benchmark_parser, print_table_header, result_header, run_benchmark
from kanvision.bench.throughput import time_callable
from kanvision.layers import GroupKAN, GroupRational
from kanvision.layers.rational import group_rational_pytorch
from kanvision.utils.cli import positive_int


class _ReferenceRational(nn.Module):
    def __init__(self, rational: GroupRational):
        super().__init__()
        self.rational = rational

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.rational
        return group_rational_pytorch(x, r.weight_numerator, r.weight_denominator, r.groups)


def _step(fn: Callable[[torch.Tensor], torch.Tensor], params: list[nn.Parameter], x: torch.Tensor, grad: torch.Tensor):
    def step() -> None:
        x.grad = None
        for p in params:
            p.grad = None
        fn(x).backward(grad)

    return step


# GroupKAN's bases in the benchmark: KAT-sized (about as many coefficients per group as the rational's 10)
GROUP_KAN_BASES = {
    "chebyshev": dict(degree=4),
    "rbf": dict(num_centers=8),
    "bspline": dict(grid_size=5, spline_order=3),
}


def saved_mib(fn: Callable[[torch.Tensor], torch.Tensor], params: list[nn.Parameter], x: torch.Tensor) -> float:
    """MiB of the distinct tensors autograd saves for backward in one forward of ``fn``, parameters not counted
    (the input is)."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(x)
    skip = {p.untyped_storage().data_ptr() for p in params}
    return sum(v for k, v in seen.items() if k not in skip) / 2**20


def _quartiles(values: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return q[0], q[2]


def run(
    device: str,
    tokens: int,
    channels: int,
    groups: int,
    rounds: int,
    warmup: int,
    steps_per_round: int,
    reference: bool,
    group_kan: bool,
) -> dict:
    dev = torch.device(device)
    gen = torch.Generator(device=dev).manual_seed(0)
    x = torch.randn(tokens, channels, device=dev, generator=gen).requires_grad_()
    grad = torch.randn(tokens, channels, device=dev, generator=gen)
    rational = GroupRational(channels, groups=groups, init="gelu").to(dev)
    contenders = {"GELU": (F.gelu, []), "GroupRational": (rational, list(rational.parameters()))}
    if reference:
        contenders["GroupRational (PyTorch reference)"] = (_ReferenceRational(rational), list(rational.parameters()))
    if group_kan:
        for basis, kwargs in GROUP_KAN_BASES.items():
            module = GroupKAN(channels, groups=groups, basis=basis, basis_kwargs=kwargs, init="gelu").to(dev)
            contenders[f"GroupKAN {basis}"] = (module, list(module.parameters()))
    steps = {name: _step(fn, params, x, grad) for name, (fn, params) in contenders.items()}
    for step in steps.values():  # warm-up (and the compiled kernels' first compile)
        time_callable(step, dev, warmup=warmup, reps=0)
    times: dict[str, list[float]] = {name: [] for name in steps}
    for i in range(rounds):
        order = list(steps) if i % 2 == 0 else list(reversed(steps))
        for name in order:
            times[name].append(min(time_callable(steps[name], dev, warmup=0, reps=steps_per_round)))
    rows = []
    for name, (fn, params) in contenders.items():
        row = {"activation": name, "ms": statistics.median(times[name]), "ms_quartiles": _quartiles(times[name])}
        for key, base in (("x_gelu", "GELU"), ("x_group_rational", "GroupRational")):
            if name != base and (key == "x_gelu" or name.startswith("GroupKAN")):
                ratios = [t / b for t, b in zip(times[name], times[base], strict=True)]
                row[key], row[f"{key}_quartiles"] = statistics.median(ratios), _quartiles(ratios)
        row["saved_MiB"] = saved_mib(fn, params, x)
        rows.append(row)
    goals = ["GroupRational forward+backward <= 1.5x GELU's"]
    if group_kan:
        goals.append("GroupKAN forward+backward <= 1.5x GroupRational's, saved memory <= 1.1x GroupRational's")
    return {
        **result_header("benchmarks.activations", dev),
        "shape": [tokens, channels],
        "groups": groups,
        "group_kan_bases": GROUP_KAN_BASES if group_kan else None,
        "timing": (
            f"{rounds} rounds after {warmup} warm-up steps; a round times every activation's forward+backward back "
            f"to back (order reversed every other round), each the fastest of {steps_per_round} consecutive steps; "
            "ms = median with quartiles, x_gelu / x_group_rational = median of the per-round ratios with quartiles; "
            "saved_MiB = tensors autograd saves for backward (the input included, parameters not)"
        ),
        "goal": "; ".join(goals),
        "rows": rows,
    }


def print_table(result: dict) -> None:
    settings = f"input {tuple(result['shape'])}, groups {result['groups']}, {result['timing']}"
    columns = (
        f"{'activation':34s} {'ms':>9s} {'ms q1-q3':>17s} {'x GELU':>7s} {'x GELU q1-q3':>13s} "
        f"{'x GR':>6s} {'x GR q1-q3':>11s} {'saved MiB':>9s}"
    )
    print_table_header(result, settings, columns)
    for r in result["rows"]:
        low, high = r["ms_quartiles"]
        line = f"{r['activation']:34s} {r['ms']:9.2f} {low:8.2f}-{high:<8.2f}"
        for key, width in (("x_gelu", (7, 6)), ("x_group_rational", (6, 5))):
            if key in r:
                q1, q3 = r[f"{key}_quartiles"]
                line += f" {r[key]:{width[0]}.2f} {q1:{width[1]}.2f}-{q3:<{width[1]}.2f}"
            else:
                line += " " * (width[0] + 2 * width[1] + 3)
        print(line + f" {r['saved_MiB']:9.2f}")


def main(argv: list[str] | None = None) -> dict:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--tokens", type=int, default=16 * 197)
    parser.add_argument("--channels", type=int, default=768)
    parser.add_argument("--groups", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--steps-per-round", type=positive_int, default=5, help="steps per timing; the fastest counts")
    parser.add_argument("--reference", action="store_true", help="also time the plain PyTorch formula")
    parser.add_argument("--group-kan", action="store_true", help="also time GroupKAN (chebyshev, rbf, bspline)")
    return run_benchmark(parser, argv, "rounds", run, print_table)


if __name__ == "__main__":
    main()
