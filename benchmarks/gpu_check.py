"""One-GPU check of kanvision's fast paths, sized for one H200 in under 9 minutes (``scripts/gpu_check.sh``).

Sections, each under its own time budget (a failure or time-out is recorded and the next section still runs):

a. kernel    the fused GroupRational kernel against the PyTorch path and a float64 reference, fp32 and bf16, at
             KAT shapes (values and the x, numerator and denominator gradients);
b. act       GroupRational forward+backward against F.gelu on a (256*197, 768) bf16 tensor: kernel, PyTorch eager,
             PyTorch compiled (goal: kernel <= 1.25x GELU);
   group_kan GroupKAN (chebyshev degree 4, rbf 8 centres, bspline grid 5 order 3; its CUDA path: the fused formulas
             under torch.compile) forward+backward on the same tensor against F.gelu and GroupRational's kernel, with
             its error against a float64 reference and peak memory (goals: <= 1.5x GroupRational's time, <= 1.1x
             its peak memory);
c. cnn       rkan_resnet50 vs resnet50 and kan_resnet18 (chebyshev, bspline, rbf) vs resnet18 at 224 px,
             channels_last;
d. kat       KAT-T/S against timm's ViT-T/S training, batch 256, bf16 autocast, AdamW, eager and torch.compile,
             img/s and peak memory (goals: KAT-T >= 0.92x ViT-T's img/s, <= 1.1x its peak memory);
e. zoo       ``kanvision-bench`` on the GPU for KAT-T/S, rkan_resnet50 and kan_resnet18 against their baselines
             (bf16, alternating step by step; writes benchmarks/results/zoo-cuda-<date>.csv);
   profile   where the training steps of KAT-T/S and ViT-T/S spend their time (``torch.profiler``: host and device
             time per step, the top kernels and host operators), at the kat section's and the zoo's batch sizes;
   zoo_compiled  the zoo's pairs under torch.compile (``kanvision-bench --compile``, zoo-cuda-<date>-compiled.csv),
             the cheapest compiles first, each pair written as soon as it is measured;
f. layers    ``python -m benchmarks.layers`` rows;
g. kat_pt    KAT-T with the plain PyTorch rational (``use_kernel=False``), for the before/after, if time is left.

Prints a table per section and writes ``benchmarks/results/gpu-<date>.json`` with the date, device, torch, triton
and timm versions. ``--device cpu --quick`` runs every code path on tiny shapes (the kernel in Triton's
interpreter, ``aot_eager`` for compilation) as a smoke test.

    python -m benchmarks.gpu_check                       # on the GPU machine (scripts/gpu_check.sh)
    python -m benchmarks.gpu_check --device cpu --quick  # seconds, any machine
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import gc
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks.common import RESULTS_DIR

# (label, timm name, model kwargs); the first row of each group is its baseline.
KAT_GROUPS = [
    ("vit_tiny", [("vit_tiny_patch16_224", "vit_tiny_patch16_224", {}), ("kat_tiny", "kat_tiny_patch16_224", {})]),
    (
        "vit_small",
        [("vit_small_patch16_224", "vit_small_patch16_224", {}), ("kat_small", "kat_small_patch16_224", {})],
    ),
]
CNN_GROUPS = [
    ("resnet50", [("resnet50", "resnet50", {}), ("rkan_resnet50", "rkan_resnet50", {})]),
    (
        "resnet18",
        [("resnet18", "resnet18", {})]
        + [(f"kan_resnet18[{b}]", "kan_resnet18", dict(basis=b)) for b in ("chebyshev", "bspline", "rbf")],
    ),
]
# --quick: the same code paths on one group each, with models shrunk to seconds on a CPU.
QUICK_VIT = dict(depth=1, embed_dim=48, num_heads=3)
# On CPU the KAT row forces the kernel (Triton's interpreter) so that the custom op runs inside a compiled model.
QUICK_KAT_GROUPS = [
    (
        "vit_tiny",
        [
            ("vit_tiny_patch16_224", "vit_tiny_patch16_224", QUICK_VIT),
            ("kat_tiny", "kat_tiny_patch16_224", {**QUICK_VIT, "use_kernel": True}),
        ],
    )
]
QUICK_CNN_GROUPS = [
    (
        "resnet18",
        [
            (label, name, {**kwargs, "layers": (1, 1, 1, 1), "channels": (8, 16, 32, 64)})
            for label, name, kwargs in CNN_GROUPS[1][1][:2]
        ],
    )
]
# cheap, must-have measurements first
SECTIONS = ("kernel", "act", "cnn", "kat", "group_kan", "zoo", "profile", "zoo_compiled", "layers", "kat_pt")
# kanvision-bench's pairs on the GPU: KAT-T/S vs ViT-T/S, rkan_resnet50 vs resnet50, kan_resnet18 vs resnet18
ZOO_MODELS = ("kat_tiny_patch16_224", "kat_small_patch16_224", "rkan_resnet50", "kan_resnet18")
# compiled: the cheapest compiles first, so that the section's budget measures as many pairs as it can
ZOO_COMPILED_MODELS = ("kan_resnet18", "kat_tiny_patch16_224", "rkan_resnet50", "kat_small_patch16_224")
GOALS = {
    "act_kernel_x_gelu_max": 1.25,
    "kat_tiny_img_s_ratio_min": 0.92,
    "kat_tiny_peak_memory_ratio_max": 1.1,
    "group_kan_x_group_rational_max": 1.5,
    "group_kan_peak_memory_x_group_rational_max": 1.1,
}
# GroupKAN's bases in the group_kan section (those of benchmarks.activations)
GROUP_KAN_BASES = {
    "chebyshev": dict(degree=4),
    "rbf": dict(num_centers=8),
    "bspline": dict(grid_size=5, spline_order=3),
}


class _Deadline:
    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.end - time.monotonic()


@contextlib.contextmanager
def _time_limit(seconds: float):
    """Raise TimeoutError in the main thread after ``seconds`` (interrupts Python code, not a running kernel)."""

    def handler(signum, frame):
        raise TimeoutError(f"time budget of {seconds:.0f} s exceeded")

    previous = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _guarded(fn: Callable[[], dict], budget_s: float, deadline: _Deadline, min_s: float = 5.0) -> dict:
    """Run ``fn`` within min(budget, time left); a failure becomes {"error": ...}, a lack of time {"skipped": ...}."""
    limit = min(budget_s, deadline.remaining())
    if limit < min_s:
        return {"skipped": f"time budget ({limit:.0f} s left)"}
    start = time.monotonic()
    try:
        with _time_limit(limit):
            out = fn()
    except Exception as err:  # noqa: BLE001 - a failing item is recorded, the run goes on
        traceback.print_exc(limit=3)
        out = {"error": f"{type(err).__name__}: {str(err)[:500]}"}
    finally:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    out["seconds"] = round(time.monotonic() - start, 1)
    return out


def _relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    expected = expected.double()
    return ((actual.double() - expected).norm() / expected.norm().clamp_min(1e-30)).item()


def _coefficients(groups: int, shared: bool, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    # Around the swish init, perturbed so that every coefficient (odd denominator ones included) is non-zero.
    from kanvision.layers.rational import RATIONAL_INITS

    numerator, denominator = RATIONAL_INITS["swish"]
    a = torch.tensor(numerator).repeat(1 if shared else groups, 1)
    b = torch.tensor(denominator).repeat(groups, 1)
    a = a + 0.02 * torch.randn_like(a)
    b = b + 0.05 * torch.randn_like(b)
    return a.to(device).requires_grad_(), b.to(device).requires_grad_()


# ---- a. kernel correctness -----------------------------------------------------------------------------------------


def check_kernel_case(shape, groups, shared, dtype, device, sliced=False) -> dict:
    from kanvision.kernels.group_rational import group_rational
    from kanvision.layers.rational import group_rational_pytorch

    torch.manual_seed(0)
    if sliced:  # a strided view: the first half of the channels of a wider tensor (row stride 2C)
        x = (torch.randn(*shape[:-1], 2 * shape[-1], device=device) * 2)[..., : shape[-1]].to(dtype)
    else:
        x = (torch.randn(shape, device=device) * 2).to(dtype)
    x.requires_grad_()
    a, b = _coefficients(groups, shared, device)
    grad_output = torch.randn(shape, device=device).to(dtype)
    inputs = (x, a, b)

    def run(fn, *args):
        y = fn(*args, groups)
        return (y.detach(), *torch.autograd.grad(y, args, grad_output.to(y.dtype)))

    kernel = run(group_rational, *inputs)
    pytorch = run(group_rational_pytorch, *inputs)
    reference = run(group_rational_pytorch, *(t.detach().double().requires_grad_() for t in inputs))
    del inputs, x
    names = ("y", "dx", "d_numerator", "d_denominator")
    row = {"shape": list(shape), "groups": groups, "shared_numerator": shared, "dtype": str(dtype)[6:]}
    row["strided"] = sliced
    for name, k, p, r in zip(names, kernel, pytorch, reference, strict=True):
        row[f"{name}_kernel_err"] = _relative_error(k, r)
        row[f"{name}_pytorch_err"] = _relative_error(p, r)
    tolerance = 1e-5 if dtype == torch.float32 else 1e-2
    # The kernel passes when it is within the tolerance of float64 or no worse than twice the PyTorch path (which
    # measures how conditioned the problem is at this dtype).
    row["ok"] = all(
        row[f"{n}_kernel_err"] <= max(tolerance if n in ("y", "dx") else 1e-4, 2 * row[f"{n}_pytorch_err"])
        for n in names
    )
    return row


def section_kernel(device: torch.device, quick: bool) -> dict:
    if quick:
        cases = [((2, 5, 48), 8, True, False), ((3, 40), 4, False, True)]
    else:
        cases = [
            ((256, 197, 192), 8, True, False),  # KAT-T act1
            ((256, 197, 768), 8, True, False),  # KAT-T act2 / KAT-S act1
            ((64, 197, 3072), 8, False, False),  # KAT-B act2, per-group numerator
            ((4096, 200), 8, True, False),  # C/groups = 25, not a power of two
            ((128, 197, 768), 8, True, True),  # strided view
        ]
    rows = []
    for shape, groups, shared, sliced in cases:
        for dtype in (torch.float32, torch.bfloat16):
            rows.append(check_kernel_case(shape, groups, shared, dtype, device, sliced))
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return {"rows": rows, "ok": all(r["ok"] for r in rows)}


# ---- b. activation timing ------------------------------------------------------------------------------------------


def section_activation(device: torch.device, quick: bool, compile_backend: str) -> dict:
    import torch.nn.functional as F

    from kanvision.bench.throughput import time_callable
    from kanvision.kernels.group_rational import group_rational
    from kanvision.layers.rational import group_rational_pytorch

    shape = (64, 32) if quick else (256 * 197, 768)
    reps, warmup = (2, 1) if quick else (20, 5)
    groups = 8
    torch.manual_seed(0)
    x = torch.randn(shape, device=device, dtype=torch.bfloat16, requires_grad=True)
    grad_output = torch.randn_like(x)
    a, b = _coefficients(groups, True, device)
    compiled_pytorch = torch.compile(group_rational_pytorch, backend=compile_backend, dynamic=False)
    candidates = {
        "F.gelu": (lambda: F.gelu(x), (x,)),
        "GroupRational kernel": (lambda: group_rational(x, a, b, groups), (x, a, b)),
        "GroupRational PyTorch eager": (lambda: group_rational_pytorch(x, a, b, groups), (x, a, b)),
        "GroupRational PyTorch compiled": (lambda: compiled_pytorch(x, a, b, groups), (x, a, b)),
    }
    # Minimum traffic of forward + backward: read x, write y; read x and dy, write dx.
    min_bytes = 5 * x.numel() * x.element_size()
    rows = []
    for name, (forward, inputs) in candidates.items():

        def step(forward=forward, inputs=inputs):
            torch.autograd.grad(forward(), inputs, grad_output)

        row = {"name": name}
        try:
            times = time_callable(step, device, warmup=warmup, reps=reps)
            row["ms"] = statistics.median(times)
            row["min_bytes_GB_s"] = min_bytes / (row["ms"] * 1e-3) / 1e9
            if device.type == "cuda":
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
                base = torch.cuda.memory_allocated(device)
                step()
                torch.cuda.synchronize(device)
                row["peak_extra_MiB"] = (torch.cuda.max_memory_allocated(device) - base) / 2**20
        except Exception as err:  # noqa: BLE001
            row["error"] = f"{type(err).__name__}: {str(err)[:300]}"
        rows.append(row)
    gelu_ms = rows[0].get("ms")
    for row in rows:
        if gelu_ms and "ms" in row:
            row["x_gelu"] = row["ms"] / gelu_ms
    kernel_ratio = rows[1].get("x_gelu")
    return {
        "shape": list(shape),
        "dtype": "bfloat16",
        "timing": f"median of {reps} forward+backward calls after {warmup} warm-up calls",
        "rows": rows,
        "goal_kernel_x_gelu_max": GOALS["act_kernel_x_gelu_max"],
        "goal_met": None if kernel_ratio is None else kernel_ratio <= GOALS["act_kernel_x_gelu_max"],
    }


def section_group_kan(device: torch.device, quick: bool) -> dict:
    """GroupKAN's fused path on ``device`` against F.gelu and GroupRational's kernel, forward+backward in bf16."""
    import torch.nn.functional as F

    from kanvision.bench.throughput import time_callable
    from kanvision.kernels import compiled
    from kanvision.kernels.group_rational import group_rational
    from kanvision.layers import GroupKAN
    from kanvision.layers.group_kan import group_kan_reference

    shape = (64, 32) if quick else (256 * 197, 768)
    reps, warmup = (2, 1) if quick else (20, 5)
    groups = 8
    torch.manual_seed(0)
    x = torch.randn(shape, device=device, dtype=torch.bfloat16, requires_grad=True)
    grad_output = torch.randn_like(x)
    a, b = _coefficients(groups, True, device)
    candidates = {
        "F.gelu": (lambda: F.gelu(x), (x,), None),
        "GroupRational kernel": (lambda: group_rational(x, a, b, groups), (x, a, b), None),
    }
    for basis, kwargs in GROUP_KAN_BASES.items():
        module = GroupKAN(shape[-1], groups=groups, basis=basis, basis_kwargs=kwargs, init="gelu").to(device)
        with torch.no_grad():
            module.weight.add_(0.1 * torch.randn_like(module.weight))
        candidates[f"GroupKAN {basis}"] = (lambda m=module: m(x), (x, module.weight, module.base_weight), module)
    rows = []
    for name, (forward, inputs, module) in candidates.items():

        def step(forward=forward, inputs=inputs):
            torch.autograd.grad(forward(), inputs, grad_output)

        row = {"name": name}
        try:
            if module is not None:  # the fused path against float64 plain ops: values and x's gradient
                y = forward()
                gx = torch.autograd.grad(y, x, grad_output)[0]
                x64 = x.detach().double().requires_grad_()
                weights = (module.weight.double(), module.base_weight.double())
                reference = group_kan_reference(x64, *weights, module.basis, module.base_activation, groups)
                gx64 = torch.autograd.grad(reference, x64, grad_output.double())[0]
                row["y_err"] = _relative_error(y, reference)
                row["dx_err"] = _relative_error(gx, gx64)
            times = time_callable(step, device, warmup=warmup, reps=reps)
            row["ms"] = statistics.median(times)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
                base = torch.cuda.memory_allocated(device)
                step()
                torch.cuda.synchronize(device)
                row["peak_extra_MiB"] = (torch.cuda.max_memory_allocated(device) - base) / 2**20
        except Exception as err:  # noqa: BLE001
            row["error"] = f"{type(err).__name__}: {str(err)[:300]}"
        rows.append(row)
    gelu, rational = rows[0], rows[1]
    for row in rows:
        if "ms" in row and "ms" in gelu:
            row["x_gelu"] = row["ms"] / gelu["ms"]
        if row["name"].startswith("GroupKAN") and "ms" in row and "ms" in rational:
            row["x_group_rational"] = row["ms"] / rational["ms"]
            if "peak_extra_MiB" in row and rational.get("peak_extra_MiB"):
                row["peak_x_group_rational"] = row["peak_extra_MiB"] / rational["peak_extra_MiB"]
    kan_rows = [r for r in rows if r["name"].startswith("GroupKAN")]
    met = [
        r.get("x_group_rational", math.inf) <= GOALS["group_kan_x_group_rational_max"]
        and r.get("peak_x_group_rational", 0.0) <= GOALS["group_kan_peak_memory_x_group_rational_max"]
        for r in kan_rows
    ]
    return {
        "shape": list(shape),
        "dtype": "bfloat16",
        "timing": f"median of {reps} forward+backward calls after {warmup} warm-up calls",
        "rows": rows,
        # the CUDA path fell back to plain ops (a compile failed) for these functions
        "compile_failed": sorted(
            f"{key[0].__name__}[{getattr(key[1], '__name__', key[1])}]" for key in compiled._failed if key[2] == "cuda"
        ),
        "goal_met": all(met) if device.type == "cuda" else None,
    }


def _print_group_kan_table(result: dict) -> None:
    if "shape" in result:
        print(f"  shape {tuple(result['shape'])}, {result['timing']}")
    print(f"  {'':24s} {'ms':>8s} {'x gelu':>7s} {'x GR':>6s} {'peak MiB':>9s} {'y err':>8s} {'dx err':>8s}")
    nan = float("nan")
    for r in result.get("rows", []):
        if "error" in r:
            print(f"  {r['name']:24s} {r['error']}")
            continue
        print(
            f"  {r['name']:24s} {r['ms']:8.3f} {r.get('x_gelu', nan):7.2f} {r.get('x_group_rational', nan):6.2f} "
            f"{r.get('peak_extra_MiB', nan):9.1f} {r.get('y_err', nan):8.1e} {r.get('dx_err', nan):8.1e}"
        )
    if result.get("compile_failed"):
        print(f"  compile failed (plain ops ran): {result['compile_failed']}")


# ---- c/d/f. training throughput ------------------------------------------------------------------------------------


def _training_row(label, name, kwargs, device, settings, compile_flag) -> dict:
    from kanvision.bench.throughput import measure_training

    if compile_flag:
        torch.compiler.reset()
    r = measure_training(
        name,
        settings["batch_size"],
        settings["img_size"],
        device=device,
        amp_dtype=settings["amp_dtype"],
        steps=settings["steps"],
        warmup=settings["compile_warmup"] if compile_flag else settings["warmup"],
        compile=compile_flag,
        compile_backend=settings["compile_backend"],
        channels_last=settings.get("channels_last", False),
        num_classes=settings.get("num_classes", 1000),
        model_kwargs=kwargs,
    )
    return {"label": label, "status": "ok", **r.as_dict()}


def run_training_groups(groups, device, settings, modes, deadline, per_row_s) -> dict:
    rows = []
    for group, members in groups:
        for compile_flag in modes:
            baseline = None  # the group's first row, when it ran
            for index, (label, name, kwargs) in enumerate(members):
                row = _guarded(
                    lambda label=label, name=name, kwargs=kwargs, c=compile_flag: _training_row(
                        label, name, kwargs, device, settings, c
                    ),
                    per_row_s * (4 if compile_flag else 1),
                    deadline,
                )
                row.setdefault("label", label)
                row.setdefault("compiled", compile_flag)
                row["group"] = group
                if row.get("status") == "ok":
                    if index == 0:
                        baseline = row
                    elif baseline is not None:
                        row["img_s_ratio"] = row["img_per_s"] / baseline["img_per_s"]
                        row["peak_memory_ratio"] = row["peak_memory_gib"] / baseline["peak_memory_gib"]
                rows.append(row)
                print(_format_training_row(row), flush=True)
    return {"settings": {k: str(v) for k, v in settings.items()}, "rows": rows}


def _format_training_row(r: dict) -> str:
    mode = "compiled" if r.get("compiled") else "eager"
    if r.get("status") != "ok":
        why = r.get("status") or r.get("error") or r.get("skipped")
        return f"  {r['label']:28s} {mode:9s} {why}"
    ratio = f"{r['img_s_ratio']:6.2f}x" if "img_s_ratio" in r else "   base"
    memory = f"{r['peak_memory_ratio']:6.2f}x" if "peak_memory_ratio" in r else "   base"
    return (
        f"  {r['label']:28s} {mode:9s} {r['img_per_s']:10.1f} img/s {ratio}  "
        f"{r['peak_memory_gib']:7.2f} GiB {memory}  ({r['seconds']:.0f} s)"
    )


def _kat_goals(rows: list[dict]) -> dict:
    goals = {}
    for mode in ("eager", "compiled"):
        kat = [r for r in rows if r.get("label") == "kat_tiny" and bool(r.get("compiled")) == (mode == "compiled")]
        if kat and "img_s_ratio" in kat[0]:
            goals[f"kat_tiny_{mode}_img_s_ratio"] = kat[0]["img_s_ratio"]
            goals[f"kat_tiny_{mode}_img_s_goal_met"] = kat[0]["img_s_ratio"] >= GOALS["kat_tiny_img_s_ratio_min"]
            goals[f"kat_tiny_{mode}_peak_memory_ratio"] = kat[0]["peak_memory_ratio"]
            goals[f"kat_tiny_{mode}_memory_goal_met"] = (
                kat[0]["peak_memory_ratio"] <= GOALS["kat_tiny_peak_memory_ratio_max"]
            )
    return goals


# ---- profile of training steps -------------------------------------------------------------------------------------

# (model, batch size): the kat section's batch for the tiny pair, the zoo's for the small one
PROFILE_CASES = [
    ("vit_tiny_patch16_224", 256),
    ("kat_tiny_patch16_224", 256),
    ("vit_small_patch16_224", 64),
    ("kat_small_patch16_224", 64),
]


def section_profile(device: torch.device, quick: bool, deadline: _Deadline, per_model_s: float) -> dict:
    from kanvision.bench.throughput import profile_training

    if quick:
        cases = [(name, 2, 32, kwargs) for _, name, kwargs in QUICK_KAT_GROUPS[0][1]]
    else:
        cases = [(name, batch, 224, {}) for name, batch in PROFILE_CASES]
    rows = []
    for name, batch, size, kwargs in cases:
        row = _guarded(
            lambda name=name, batch=batch, size=size, kwargs=kwargs: profile_training(
                name, batch, size, device=device, amp_dtype=torch.bfloat16, top=12, model_kwargs=kwargs
            ),
            per_model_s,
            deadline,
        )
        row.setdefault("model", name)
        rows.append(row)
        if "step_ms" in row:
            kernels = ", ".join(f"{r['op'][:40]} {r['self_device_ms']:.2f}" for r in row["top_device"][:3])
            print(
                f"  {name:24s} batch {batch:4d}  step {row['step_ms']:8.2f} ms  host {row['cpu_ms']:8.2f} ms  "
                f"(sync {row['sync_ms']:.2f})  device {row['device_ms']:8.2f} ms  {kernels}",
                flush=True,
            )
        else:
            print(f"  {name:24s} {row}", flush=True)
    return {"rows": rows}


# ---- e. layer benchmark --------------------------------------------------------------------------------------------


def section_layers(device: torch.device, quick: bool, timeout_s: float, out_dir: Path) -> dict:
    out = (out_dir / f"layers-{device.type}-{dt.date.today().isoformat()}.json").resolve()
    cmd = [sys.executable, "-m", "benchmarks.layers", "--device", device.type, "--out", str(out)]
    if quick:
        cmd += ["--batch", "1", "--channels", "4", "--size", "8", "--reps", "1", "--warmup", "0"]
    root = Path(__file__).resolve().parents[1]  # `-m benchmarks.layers` runs from the repository root
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=max(timeout_s, 1), cwd=root)
    print(proc.stdout[-6000:], flush=True)
    result = {"command": " ".join(cmd[1:]), "returncode": proc.returncode}
    if proc.returncode != 0:
        result["error"] = proc.stderr[-2000:]
    elif out.exists():
        result["result"] = json.loads(out.read_text())
    return result


# ---- driver --------------------------------------------------------------------------------------------------------


def _print_kernel_table(result: dict) -> None:
    print(f"  {'shape':22s} {'dtype':9s} {'y':>9s} {'dx':>9s} {'d_num':>9s} {'d_den':>9s}   (rel. error vs float64)")
    for r in result.get("rows", []):
        errs = " ".join(f"{r[f'{n}_kernel_err']:9.1e}" for n in ("y", "dx", "d_numerator", "d_denominator"))
        torch_errs = " ".join(f"{r[f'{n}_pytorch_err']:9.1e}" for n in ("y", "dx", "d_numerator", "d_denominator"))
        shape = "x".join(map(str, r["shape"])) + (" strided" if r["strided"] else "")
        print(f"  {shape:22s} {r['dtype']:9s} {errs}   kernel {'ok' if r['ok'] else 'FAIL'}")
        print(f"  {'':22s} {'':9s} {torch_errs}   pytorch path")


def _print_activation_table(result: dict) -> None:
    if "shape" in result:
        print(f"  shape {tuple(result['shape'])}, {result['timing']}")
    print(f"  {'':32s} {'ms':>8s} {'x gelu':>7s} {'GB/s':>7s} {'peak MiB':>9s}")
    for r in result.get("rows", []):
        if "error" in r:
            print(f"  {r['name']:32s} {r['error']}")
            continue
        print(
            f"  {r['name']:32s} {r['ms']:8.3f} {r.get('x_gelu', float('nan')):7.2f} {r['min_bytes_GB_s']:7.0f} "
            f"{r.get('peak_extra_MiB', float('nan')):9.1f}"
        )


def _versions(device: torch.device) -> dict:
    versions = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda}
    for module in ("triton", "timm"):
        try:
            versions[module] = __import__(module).__version__
        except ImportError:
            versions[module] = None
    import kanvision

    versions["kanvision"] = kanvision.__version__
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10)
        versions["git_commit"] = commit.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        versions["git_commit"] = None
    return versions


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny shapes and one step each (smoke test)")
    parser.add_argument("--budget", type=float, default=None, help="total seconds (default 480; quick: 300)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated subset, in this order")
    parser.add_argument("--output", type=Path, default=None, help="JSON path (default benchmarks/results/gpu-*)")
    parser.add_argument("--copy-to", type=Path, default=None, help="a folder that also receives the JSON")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown sections {sorted(unknown)}; valid: {','.join(SECTIONS)}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda requested but CUDA is not available; use --device cpu --quick")
    if device.type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1" and argv is None:
        # On CPU the kernel runs only in Triton's interpreter, which must be selected before triton is first
        # imported, and `import kanvision` (timm -> torch._dynamo) already did: start again with it selected.
        os.environ["TRITON_INTERPRET"] = "1"
        os.execv(sys.executable, [sys.executable, "-m", "benchmarks.gpu_check", *sys.argv[1:]])
    deadline = _Deadline(args.budget or (300.0 if args.quick else 480.0))
    slack = 4.0 if args.quick else 1.0  # per-item budgets: a shared CPU is slow and noisy
    started = time.monotonic()

    import kanvision  # noqa: F401  (registers kat_*, rkan_*, kan_* with timm)

    if args.quick:
        compile_backend = "aot_eager"
        training = dict(batch_size=2, img_size=32, steps=1, warmup=1, compile_warmup=1, num_classes=10)
        cnn = dict(batch_size=2, img_size=32, steps=1, warmup=1, compile_warmup=1, num_classes=10)
        kat_groups, cnn_groups = QUICK_KAT_GROUPS, QUICK_CNN_GROUPS
    else:
        kat_groups, cnn_groups = KAT_GROUPS, CNN_GROUPS
        compile_backend = "inductor"
        training = dict(batch_size=256, img_size=224, steps=15, warmup=5, compile_warmup=3)
        cnn = dict(batch_size=256, img_size=224, steps=10, warmup=3, compile_warmup=3)
    amp = torch.bfloat16
    training.update(amp_dtype=amp, compile_backend=compile_backend)
    cnn.update(amp_dtype=amp, compile_backend=compile_backend, channels_last=True)
    date = dt.date.today().isoformat()
    out = args.output or RESULTS_DIR / f"gpu-{date}{'-quick-' + device.type if args.quick else ''}.json"
    result = {
        "benchmark": "benchmarks.gpu_check",
        "date": date,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "quick": args.quick,
        "machine": {"platform": platform.platform(), "cpu_threads": torch.get_num_threads()},
        "versions": _versions(device),
        "goals": dict(GOALS),
        "sections": {},
    }
    out.parent.mkdir(parents=True, exist_ok=True)

    # --copy-to: a second folder that receives the JSON after every section (e.g. one a remote runner returns)
    copies = [out] + ([Path(args.copy_to) / out.name] if args.copy_to else [])

    def save() -> None:
        result["total_seconds"] = round(time.monotonic() - started, 1)
        for path in copies:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(result, indent=2, default=str))

    print(f"kanvision gpu_check  {date}  {result['device']}  {result['versions']}")

    def run_kat() -> dict:
        kat = run_training_groups(kat_groups, device, training, (False, True), deadline, per_row_s=40 * slack)
        kat["goals"] = _kat_goals(kat["rows"])
        return kat

    def run_kat_pytorch() -> dict:
        vit, kat = kat_groups[0][1]
        groups = [("vit_tiny", [vit, ("kat_tiny[pytorch]", kat[1], {**kat[2], "use_kernel": False})])]
        return run_training_groups(groups, device, training, (False,), deadline, per_row_s=40 * slack)

    def run_zoo(compiled: bool = False) -> dict:
        from kanvision.bench import benchmark

        if args.quick:  # one pair on tiny shapes, written outside the results folder
            models, out_dir = ZOO_MODELS[:1], Path(tempfile.mkdtemp(prefix="zoo-quick-"))
            size = dict(batch_size=2, img_size=64, rounds=1, warmup=int(compiled), num_classes=10)
        else:
            models = ZOO_COMPILED_MODELS if compiled else ZOO_MODELS
            out_dir, size = out.parent, dict(batch_size=64, rounds=5, warmup=1 + 2 * compiled)
        backend = compile_backend if compiled else None
        path, rows = benchmark.run(
            models, device=device.type, amp="bf16", out_dir=out_dir, compile_backend=backend, **size
        )
        return {"csv": str(path), "rows": [dataclasses.asdict(r) for r in rows]}

    plan = {
        "kernel": (
            "[a] GroupRational kernel vs PyTorch path, relative L2 error vs float64",
            lambda: _guarded(lambda: section_kernel(device, args.quick), 120 * slack, deadline),
            _print_kernel_table,
        ),
        "act": (
            "[b] activation forward+backward, bf16, against F.gelu",
            lambda: _guarded(lambda: section_activation(device, args.quick, compile_backend), 90 * slack, deadline),
            _print_activation_table,
        ),
        "kat": ("[d] KAT vs ViT training (bf16 autocast, AdamW)", run_kat, None),
        "group_kan": (
            "[b] GroupKAN forward+backward, bf16, against F.gelu and GroupRational's kernel",
            lambda: _guarded(lambda: section_group_kan(device, args.quick), 120 * slack, deadline),
            _print_group_kan_table,
        ),
        "cnn": (
            "[c] KAN CNNs vs ResNets (channels_last, bf16 autocast, AdamW)",
            lambda: run_training_groups(cnn_groups, device, cnn, (False,), deadline, per_row_s=30 * slack),
            None,
        ),
        "zoo": (
            "[e] kanvision-bench pairs (bf16)",
            lambda: _guarded(run_zoo, 120 * slack, deadline),
            None,
        ),
        "zoo_compiled": (
            "[e] kanvision-bench pairs (bf16) under torch.compile",
            lambda: _guarded(lambda: run_zoo(compiled=True), 300 * slack, deadline),
            None,
        ),
        "profile": (
            "[-] training steps under torch.profiler (bf16 autocast, AdamW)",
            lambda: section_profile(device, args.quick, deadline, 30 * slack),
            None,
        ),
        "layers": (
            "[f] python -m benchmarks.layers",
            lambda: _guarded(
                lambda: section_layers(device, args.quick, min(60 * slack, deadline.remaining()), out.parent),
                60 * slack,
                deadline,
            ),
            None,
        ),
        "kat_pt": ("[g] KAT-T with the plain PyTorch rational (before the kernel)", run_kat_pytorch, None),
    }
    try:
        for name in sections:
            title, run, show = plan[name]
            print(f"\n{title}", flush=True)
            result["sections"][name] = run()
            if show is not None:
                show(result["sections"][name])
            save()
    except KeyboardInterrupt:  # scripts/gpu_check.sh's overall time limit: keep what was measured
        result["interrupted"] = True
        print("interrupted: writing the sections measured so far", flush=True)
    save()
    print(f"\ntotal {result['total_seconds']:.0f} s; wrote {out}")
    summary = {
        "kernel_ok": result["sections"].get("kernel", {}).get("ok"),
        "act_goal_met": result["sections"].get("act", {}).get("goal_met"),
        "group_kan_goal_met": result["sections"].get("group_kan", {}).get("goal_met"),
        **result["sections"].get("kat", {}).get("goals", {}),
    }
    print("summary: " + json.dumps(summary))
    return result


if __name__ == "__main__":
    main()
