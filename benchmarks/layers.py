"""Layer benchmark: KANConv2d for every basis against the convolutions it is built on.

For each basis: forward+backward time and memory of KANConv2d(C -> C, 3x3) on a (B, C, H, W) input, against
nn.Conv2d(C -> C) and nn.Conv2d(C*m -> C), the convolution the layer cannot avoid (m = basis size + 1 with
the base branch). Memory is the bytes autograd saves for backward (any device) and, on CUDA, the peak
allocated during the step. Prints a table and writes JSON.

    python -m benchmarks.layers [--device cuda] [--compile] [--reps 30] [--batch 16] [--channels 64] [--size 32]
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

import torch
from torch import nn

from benchmarks.common import benchmark_parser, print_table_header, result_header, run_benchmark
from kanvision.bench.throughput import time_callable
from kanvision.layers import KANConv2d, list_bases


def saved_tensor_bytes(module: nn.Module, x: torch.Tensor) -> int:
    """Bytes of the distinct non-parameter tensors autograd saves for backward in one forward (input included)."""
    seen: dict[tuple, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.device.type != "meta":
            key = (t.untyped_storage().data_ptr(), t.dtype)
            seen[key] = max(seen.get(key, 0), t.untyped_storage().nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        module(x)
    params = {p.untyped_storage().data_ptr() for p in module.parameters()}
    return sum(v for (ptr, _), v in seen.items() if ptr not in params)


def _step(module: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        module.zero_grad(set_to_none=True)
        x.grad = None
        module(x).sum().backward()

    return step


def _saved_mib(module: nn.Module, x: torch.Tensor, measure: bool = True) -> float | None:
    # autograd hooks do not see inside a compiled graph: callers pass measure=False for compiled modules
    return saved_tensor_bytes(module, x) / 2**20 if measure else None


def _peak_mib(module: nn.Module, x: torch.Tensor, step: Callable[[], None]) -> float:
    """Peak CUDA memory of one step above what stays allocated (gradients of the last step freed first)."""
    module.zero_grad(set_to_none=True)
    x.grad = None
    torch.cuda.synchronize(x.device)
    torch.cuda.reset_peak_memory_stats(x.device)
    base = torch.cuda.memory_allocated(x.device)
    step()
    torch.cuda.synchronize(x.device)
    return (torch.cuda.max_memory_allocated(x.device) - base) / 2**20


def bench_module(module: nn.Module, x: torch.Tensor, reps: int, warmup: int) -> dict:
    step = _step(module, x)
    times = time_callable(step, x.device, warmup=warmup, reps=reps)
    row = {"ms": statistics.median(times), "saved_MiB": _saved_mib(module, x)}
    if x.device.type == "cuda":
        row["peak_MiB"] = _peak_mib(module, x, step)
    return row


def paired(
    kan: nn.Module,
    x: torch.Tensor,
    wide: nn.Module,
    wide_x: torch.Tensor,
    reps: int,
    warmup: int,
    compiled: bool = False,
) -> tuple[dict, dict, float]:
    """Time the layer and its wide convolution in alternating single steps: (layer row, conv row, ratio).

    Shared machines drift by tens of percent within seconds; alternating step by step (in ABBA order, so
    neither always runs first) compares the two under the same conditions. The ratio is that of the medians.
    """
    steps = (_step(kan, x), _step(wide, wide_x))
    for step in steps:
        time_callable(step, x.device, warmup=warmup, reps=0)
    times: tuple[list[float], list[float]] = ([], [])
    for i in range(reps):
        for j in (0, 1) if i % 2 == 0 else (1, 0):
            times[j].extend(time_callable(steps[j], x.device, warmup=0, reps=1))
    rows = []
    for module, inp, step, acc in zip((kan, wide), (x, wide_x), steps, times, strict=True):
        row = {"ms": statistics.median(acc), "saved_MiB": _saved_mib(module, inp, measure=not compiled)}
        if x.device.type == "cuda":
            row["peak_MiB"] = _peak_mib(module, inp, step)
        rows.append(row)
    return rows[0], rows[1], rows[0]["ms"] / rows[1]["ms"]


def run(device: str, batch: int, channels: int, size: int, reps: int, warmup: int, compile: bool = False) -> dict:
    dev = torch.device(device)
    x = torch.randn(batch, channels, size, size, device=dev, requires_grad=True)
    conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False).to(dev)
    rows = [{"layer": f"Conv2d({channels}->{channels})", **bench_module(conv, x, reps, warmup)}]
    # all eager rows first: compiling changes the process (allocator, thread pools) for what runs after it
    for variant in ("eager", "recompute") + (("compiled",) if compile else ()):
        for name in list_bases():
            recompute, compiled = variant == "recompute", variant == "compiled"
            kan = KANConv2d(channels, channels, 3, padding=1, bias=False, basis=name, recompute_basis=recompute)
            kan.to(dev)
            m = kan.num_terms
            wide = nn.Conv2d(channels * m, channels, 3, padding=1, bias=False).to(dev)
            wide_x = torch.randn(batch, channels * m, size, size, device=dev, requires_grad=True)
            if compiled:  # a compiled layer is compared with the compiled wide convolution
                kan, wide = torch.compile(kan), torch.compile(wide)
            row, ref, ratio = paired(kan, x, wide, wide_x, reps, warmup, compiled)
            suffix = f" {variant}" if variant != "eager" else ""
            rows.append({"layer": f"Conv2d({channels}*{m}->{channels})" + suffix, "m": m, **ref})
            row = {"layer": f"KANConv2d[{name}]" + suffix, "m": m, **row}
            row["x_conv"] = row["ms"] / rows[0]["ms"]
            row["x_wide_conv"] = ratio
            rows.append(row)
    return {
        **result_header("benchmarks.layers", dev),
        "shape": [batch, channels, size, size],
        "timing": (
            f"median of {reps} forward+backward steps after {warmup} warm-up steps; each KAN layer alternates step "
            "by step with its wide conv, x_wide_conv = ratio of the two medians"
        ),
        "goal": "KANConv2d / Conv2d(C*m -> C) <= 1.3x for chebyshev, rbf, bspline",
        "rows": rows,
    }


def print_table(result: dict) -> None:
    columns = f"{'layer':34s} {'ms':>9s} {'x conv':>7s} {'x wide':>7s} {'saved MiB':>10s} {'peak MiB':>9s}"
    print_table_header(result, f"input {tuple(result['shape'])}, {result['timing']}", columns)
    for r in result["rows"]:
        nan = float("nan")
        saved = r["saved_MiB"] if r["saved_MiB"] is not None else nan
        print(
            f"{r['layer']:34s} {r['ms']:9.2f} {r.get('x_conv', nan):7.2f} {r.get('x_wide_conv', nan):7.2f} "
            f"{saved:10.1f} {r.get('peak_MiB', nan):9.1f}"
        )


def main(argv: list[str] | None = None) -> dict:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile(KANConv2d)")
    return run_benchmark(parser, argv, "reps", run, print_table)


if __name__ == "__main__":
    main()
