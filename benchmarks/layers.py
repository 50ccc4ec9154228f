"""Layer benchmark: KANConv2d and KANLinear for every basis against the ops they are built on.

For each basis: forward+backward time and memory of KANConv2d(C -> C, 3x3) on a (B, C, H, W) input, against
nn.Conv2d(C -> C) and nn.Conv2d(C*m -> C), the convolution the layer cannot avoid (m = basis size + 1 with
the base branch); likewise KANLinear(F -> F) on a (N, F) input against nn.Linear(F -> F) and nn.Linear(F*m -> F).
Memory is the bytes autograd saves for backward (any device) and, on CUDA, the peak allocated during the step.
Prints a table and writes JSON.

    python -m benchmarks.layers [--layer conv|linear|all] [--device cuda] [--compile] [--reps 30]
        [--batch 16] [--channels 64] [--size 32] [--tokens 4096] [--features 256]
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import torch
from torch import nn

from benchmarks.common import benchmark_parser, print_table_header, result_header, run_benchmark
from kanvision.bench.throughput import time_callable
from kanvision.layers import KANConv2d, KANLinear, list_bases


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
    row = {"ms": statistics.median(times), **_quartiles(times, "ms"), "saved_MiB": _saved_mib(module, x)}
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
    """Time the layer and its wide op in alternating single steps: (layer row, wide row, ratio).

    Shared machines drift by tens of percent within seconds; alternating step by step (in ABBA order, so
    neither always runs first) compares the two under the same conditions. The ratio is that of the medians; the
    layer's row also gets the quartiles of the step-by-step ratios (``x_wide_q1``, ``x_wide_q3``).
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
        row = {"ms": statistics.median(acc), **_quartiles(acc, "ms")}
        row["saved_MiB"] = _saved_mib(module, inp, measure=not compiled)
        if x.device.type == "cuda":
            row["peak_MiB"] = _peak_mib(module, inp, step)
        rows.append(row)
    rows[0].update(_quartiles([a / b for a, b in zip(*times, strict=True)], "x_wide"))
    return rows[0], rows[1], rows[0]["ms"] / rows[1]["ms"]


def _quartiles(values: list[float], name: str) -> dict:
    """``<name>_q1`` and ``<name>_q3`` of ``values`` (both the value itself for a single one)."""
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else values * 3
    return {f"{name}_q1": q1, f"{name}_q3": q3}


def _kan_rows(
    kind: str,
    key: str,
    make_kan: Callable[[str, bool], nn.Module],
    make_wide: Callable[[int], tuple[nn.Module, torch.Tensor]],
    x: torch.Tensor,
    base_ms: float,
    reps: int,
    warmup: int,
    compile: bool,
) -> list[dict]:
    """Rows of the KAN layer ``KAN<kind>`` for every basis and variant, each after the row of its wide op; the
    layer's ratios are ``x_<key>`` (to ``base_ms``) and ``x_wide_<key>``."""
    rows = []
    # all eager rows first: compiling changes the process (allocator, thread pools) for what runs after it
    for variant in ("eager", "recompute") + (("compiled",) if compile else ()):
        for name in list_bases():
            compiled = variant == "compiled"
            kan = make_kan(name, variant == "recompute").to(x.device)
            m = kan.num_terms
            wide, wide_x = make_wide(m)
            if compiled:  # a compiled layer is compared with the compiled wide op
                kan, wide = torch.compile(kan), torch.compile(wide)
            row, ref, ratio = paired(kan, x, wide, wide_x, reps, warmup, compiled)
            suffix = f" {variant}" if variant != "eager" else ""
            rows.append({"layer": f"{kind}({x.shape[1]}*{m}->{x.shape[1]})" + suffix, "m": m, **ref})
            rows.append(
                {
                    "layer": f"KAN{kind}[{name}]" + suffix,
                    "m": m,
                    **row,
                    f"x_{key}": row["ms"] / base_ms,
                    f"x_wide_{key}": ratio,
                }
            )
    return rows


def conv_rows(dev: torch.device, batch: int, channels: int, size: int, reps: int, warmup: int, compile: bool) -> list:
    """Conv2d(C -> C), then every basis' KANConv2d(C -> C, 3x3) after its Conv2d(C*m -> C)."""
    x = torch.randn(batch, channels, size, size, device=dev, requires_grad=True)
    conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False).to(dev)
    rows = [{"layer": f"Conv2d({channels}->{channels})", **bench_module(conv, x, reps, warmup)}]

    def make_kan(name: str, recompute: bool) -> nn.Module:
        return KANConv2d(channels, channels, 3, padding=1, bias=False, basis=name, recompute_basis=recompute)

    def make_wide(m: int) -> tuple[nn.Module, torch.Tensor]:
        wide = nn.Conv2d(channels * m, channels, 3, padding=1, bias=False).to(dev)
        return wide, torch.randn(batch, channels * m, size, size, device=dev, requires_grad=True)

    return rows + _kan_rows("Conv2d", "conv", make_kan, make_wide, x, rows[0]["ms"], reps, warmup, compile)


def linear_rows(dev: torch.device, tokens: int, features: int, reps: int, warmup: int, compile: bool) -> list:
    """Linear(F -> F), then every basis' KANLinear(F -> F) after its Linear(F*m -> F); all with a bias."""
    x = torch.randn(tokens, features, device=dev, requires_grad=True)
    linear = nn.Linear(features, features).to(dev)
    rows = [{"layer": f"Linear({features}->{features})", **bench_module(linear, x, reps, warmup)}]

    def make_kan(name: str, recompute: bool) -> nn.Module:
        return KANLinear(features, features, basis=name, recompute_basis=recompute)

    def make_wide(m: int) -> tuple[nn.Module, torch.Tensor]:
        wide = nn.Linear(features * m, features).to(dev)
        return wide, torch.randn(tokens, features * m, device=dev, requires_grad=True)

    return rows + _kan_rows("Linear", "linear", make_kan, make_wide, x, rows[0]["ms"], reps, warmup, compile)


LAYERS = ("conv", "linear", "all")


def run(
    device: str,
    batch: int,
    channels: int,
    size: int,
    reps: int,
    warmup: int,
    compile: bool = False,
    layer: str = "all",
    tokens: int = 4096,
    features: int = 256,
) -> dict:
    if layer not in LAYERS:
        raise ValueError(f"layer must be one of {LAYERS}, got {layer!r}")
    dev = torch.device(device)
    result = result_header("benchmarks.layers", dev)
    rows, goals = [], []
    if layer in ("conv", "all"):
        result["shape"] = [batch, channels, size, size]
        rows += conv_rows(dev, batch, channels, size, reps, warmup, compile)
        goals.append("KANConv2d / Conv2d(C*m -> C) <= 1.3x for chebyshev, rbf, bspline")
    if layer in ("linear", "all"):
        result["linear_shape"] = [tokens, features]
        rows += linear_rows(dev, tokens, features, reps, warmup, compile)
        goals.append("KANLinear / Linear(F*m -> F) <= 1.3x for every basis")
    return {
        **result,
        "timing": (
            f"median of {reps} forward+backward steps after {warmup} warm-up steps; each KAN layer alternates step "
            "by step with its wide op, x_wide_conv / x_wide_linear = ratio of the two medians, x_wide_q1 / x_wide_q3 "
            "= quartiles of the step-by-step ratios"
        ),
        "goal": "; ".join(goals),
        "rows": rows,
    }


def print_table(result: dict) -> None:
    columns = (
        f"{'layer':34s} {'ms':>9s} {'q1':>8s} {'q3':>8s} {'x base':>7s} {'x wide':>7s} {'(q1':>6s} {'q3)':>6s} "
        f"{'saved MiB':>10s} {'peak MiB':>9s}"
    )
    shapes = (("conv", "shape"), ("linear", "linear_shape"))
    settings = ", ".join(f"{name} input {tuple(result[key])}" for name, key in shapes if key in result)
    print_table_header(result, f"{settings}; {result['timing']}", columns)
    nan = float("nan")
    for r in result["rows"]:
        saved = r["saved_MiB"] if r["saved_MiB"] is not None else nan
        base = r.get("x_conv", r.get("x_linear", nan))
        wide = r.get("x_wide_conv", r.get("x_wide_linear", nan))
        print(
            f"{r['layer']:34s} {r['ms']:9.2f} {r.get('ms_q1', nan):8.2f} {r.get('ms_q3', nan):8.2f} {base:7.2f} "
            f"{wide:7.2f} {r.get('x_wide_q1', nan):6.2f} {r.get('x_wide_q3', nan):6.2f} {saved:10.1f} "
            f"{r.get('peak_MiB', nan):9.1f}"
        )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> dict:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--tokens", type=_positive_int, default=4096, help="rows of the linear layers' input")
    parser.add_argument("--features", type=_positive_int, default=256, help="linear layers' in and out features")
    parser.add_argument("--layer", choices=LAYERS, default="all", help="which table(s): KANConv2d, KANLinear or both")
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--compile", action="store_true", help="also time the torch.compile'd layers")
    return run_benchmark(parser, argv, "reps", run, print_table)


if __name__ == "__main__":
    main()
