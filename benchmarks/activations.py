"""Activation benchmark: GroupRational (KAT's GR-KAN unit) against GELU, forward+backward on a token tensor.

Both run on the same ``(tokens, C)`` input (default 16 x 197 tokens of ViT-T's MLP width 768, float32) with a dense
upstream gradient. Each round times GELU and GroupRational back to back (ABBA order, so neither always runs
first), each as the fastest of ``--steps-per-round`` consecutive steps (a step that another process interrupted is
only ever slower); the ratio of a round compares the two under the same machine load, and the summary is the
median of the per-round ratios with its quartiles. ``--reference`` adds the plain PyTorch formula
(``group_rational_pytorch``). Prints a table and writes JSON.

    python -m benchmarks.activations [--device cpu] [--tokens 3152] [--channels 768] [--rounds 40]
        [--steps-per-round 5]
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.common import benchmark_parser, print_table_header, result_header, run_benchmark
from kanvision.bench.throughput import time_callable
from kanvision.layers import GroupRational
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
) -> dict:
    dev = torch.device(device)
    gen = torch.Generator(device=dev).manual_seed(0)
    x = torch.randn(tokens, channels, device=dev, generator=gen).requires_grad_()
    grad = torch.randn(tokens, channels, device=dev, generator=gen)
    rational = GroupRational(channels, groups=groups, init="gelu").to(dev)
    contenders = {"GroupRational": (rational, list(rational.parameters()))}
    if reference:
        contenders["GroupRational (PyTorch reference)"] = (_ReferenceRational(rational), list(rational.parameters()))
    gelu_step = _step(F.gelu, [], x, grad)
    steps = {name: _step(fn, params, x, grad) for name, (fn, params) in contenders.items()}
    for step in (gelu_step, *steps.values()):  # warm-up (and the compiled kernels' first compile)
        time_callable(step, dev, warmup=warmup, reps=0)
    gelu_ms: list[float] = []
    times: dict[str, list[float]] = {name: [] for name in steps}
    ratios: dict[str, list[float]] = {name: [] for name in steps}
    for i in range(rounds):
        for name, step in steps.items():
            pair = (gelu_step, step) if i % 2 == 0 else (step, gelu_step)
            first, second = (min(time_callable(s, dev, warmup=0, reps=steps_per_round)) for s in pair)
            gelu, other = (first, second) if i % 2 == 0 else (second, first)
            gelu_ms.append(gelu)
            times[name].append(other)
            ratios[name].append(other / gelu)
    rows = [{"activation": "GELU", "ms": statistics.median(gelu_ms), "ms_quartiles": _quartiles(gelu_ms)}]
    for name in steps:
        row = {"activation": name, "ms": statistics.median(times[name]), "ms_quartiles": _quartiles(times[name])}
        row["x_gelu"] = statistics.median(ratios[name])
        row["x_gelu_quartiles"] = _quartiles(ratios[name])
        rows.append(row)
    return {
        **result_header("benchmarks.activations", dev),
        "shape": [tokens, channels],
        "groups": groups,
        "timing": (
            f"{rounds} rounds after {warmup} warm-up steps; a round times GELU and GroupRational forward+backward "
            f"back to back (ABBA order), each the fastest of {steps_per_round} consecutive steps; ms = median with "
            "quartiles, x_gelu = median of the per-round ratios with quartiles"
        ),
        "goal": "GroupRational forward+backward <= 1.5x GELU's",
        "rows": rows,
    }


def print_table(result: dict) -> None:
    settings = f"input {tuple(result['shape'])}, groups {result['groups']}, {result['timing']}"
    columns = f"{'activation':34s} {'ms':>9s} {'ms q1-q3':>17s} {'x GELU':>7s} {'x GELU q1-q3':>13s}"
    print_table_header(result, settings, columns)
    for r in result["rows"]:
        low, high = r["ms_quartiles"]
        line = f"{r['activation']:34s} {r['ms']:9.2f} {low:8.2f}-{high:<8.2f}"
        if "x_gelu" in r:
            q1, q3 = r["x_gelu_quartiles"]
            line += f" {r['x_gelu']:7.2f} {q1:6.2f}-{q3:<6.2f}"
        print(line)


def main(argv: list[str] | None = None) -> dict:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--tokens", type=int, default=16 * 197)
    parser.add_argument("--channels", type=int, default=768)
    parser.add_argument("--groups", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--steps-per-round", type=positive_int, default=5, help="steps per timing; the fastest counts")
    parser.add_argument("--reference", action="store_true", help="also time the plain PyTorch formula")
    return run_benchmark(parser, argv, "rounds", run, print_table)


if __name__ == "__main__":
    main()
