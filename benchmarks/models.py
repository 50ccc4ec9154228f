"""Model benchmark: training img/s and peak memory of the KAN CNN families against their plain-CNN baselines.

Pairs: ``rkan_resnet50`` vs ``resnet50`` and ``kan_resnet18`` with the Chebyshev, B-spline and RBF
bases vs ``resnet18``, all at 224 px, measured by :func:`kanvision.bench.throughput.measure_training` (real AdamW
steps on random images, median step time, peak memory of the measured steps). Each row reports its ratio to the
baseline of its group, measured in the same process. Prints a table and writes JSON to
``benchmarks/results/models-<device>-<date>.json``.

On CPU the wall-clock img/s of a shared machine depends on whatever else runs, so every CPU row also reports the
process CPU time per training step (``cpu_ms_per_step``: CPU seconds of the warm-up and measured steps divided by
their number, model construction excluded) and its ratio to the baseline (``x_baseline_cpu``), which is what the
work costs; by default the CPU run uses one thread (``--threads``), so that CPU time is not inflated by idle
spinning of OpenMP threads that wait for each other.

    python -m benchmarks.models                      # CPU defaults: batch 2, fp32, 1 thread, 1 + 2 steps
    python -m benchmarks.models --device cuda --batch-size 64 --amp bf16 --channels-last

Goal (H200, bf16): rkan_resnet50 >= 0.9x resnet50's training throughput (the paper's implementation: 0.78x).
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from pathlib import Path

import timm
import torch

import kanvision  # noqa: F401  (registers the kan_* and rkan_* models)
from benchmarks.common import print_table_header, write_result
from kanvision.bench.throughput import build_model, machine_info, measure_training

# (group baseline, [(row label, timm name, model kwargs)]); the baseline is the first row of its group
GROUPS: list[tuple[str, list[tuple[str, str, dict]]]] = [
    ("resnet50", [("resnet50", "resnet50", {}), ("rkan_resnet50", "rkan_resnet50", {})]),
    (
        "resnet18",
        [
            ("resnet18", "resnet18", {}),
            ("kan_resnet18[chebyshev]", "kan_resnet18", dict(basis="chebyshev")),
            ("kan_resnet18[bspline]", "kan_resnet18", dict(basis="bspline")),
            ("kan_resnet18[rbf]", "kan_resnet18", dict(basis="rbf")),
        ],
    ),
]
_AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def _ratio(value: float | None, base: float | None) -> float | None:
    return value / base if value is not None and base else None


def run(
    device: str,
    batch_size: int,
    img_size: int,
    amp: str,
    steps: int,
    warmup: int,
    channels_last: bool,
    compile: bool = False,
    only: list[str] | None = None,
) -> dict:
    if amp not in _AMP_DTYPES:
        raise ValueError(f"amp must be one of {sorted(_AMP_DTYPES)}, got {amp!r}")
    dev = torch.device(device)
    machine = machine_info(dev)
    rows = []
    for baseline, members in GROUPS:
        base: dict = {}
        for label, name, kwargs in members:
            if only and label not in only and name not in only:
                continue
            torch.manual_seed(0)
            model = build_model(name, img_size, **kwargs)
            cpu_start = time.process_time()
            r = measure_training(
                model, batch_size, img_size, device=dev, amp_dtype=_AMP_DTYPES[amp], steps=steps, warmup=warmup,
                compile=compile, channels_last=channels_last,
            ).as_dict()  # fmt: skip
            cpu_s = time.process_time() - cpu_start
            del model
            r.update(model=name, label=label, group=baseline, model_kwargs=kwargs)
            if dev.type == "cpu":
                r["cpu_ms_per_step"] = cpu_s * 1e3 / (steps + warmup)
            if label == baseline:
                base = r
            r["x_baseline_img_per_s"] = _ratio(r["img_per_s"], base.get("img_per_s"))
            if dev.type == "cpu":
                r["x_baseline_cpu"] = _ratio(base.get("cpu_ms_per_step"), r["cpu_ms_per_step"])
            rows.append(r)
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    return {
        "benchmark": "benchmarks.models",
        "date": dt.date.today().isoformat(),
        "machine": machine,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "settings": dict(
            batch_size=batch_size,
            img_size=img_size,
            amp=amp,
            steps=steps,
            warmup=warmup,
            channels_last=channels_last,
            compile=compile,
            optimizer="AdamW",
            threads=torch.get_num_threads(),
        ),  # fmt: skip
        "timing": (
            f"img/s from the median of {steps} training steps after {warmup} warm-up steps; x_baseline = img/s / "
            "baseline img/s; on CPU also cpu_ms_per_step (process CPU time over warm-up + measured steps) and "
            "x_baseline_cpu = baseline cpu_ms_per_step / cpu_ms_per_step (throughput ratio by CPU work)"
        ),
        "goal": "H200 bf16: rkan_resnet50 >= 0.9x resnet50 training img/s (paper implementation 0.78x)",
        "rows": rows,
    }


def print_table(result: dict) -> None:
    s = result["settings"]
    settings = (
        f"batch {s['batch_size']} x {s['img_size']} px, amp {s['amp']}, channels_last {s['channels_last']}, "
        f"threads {s['threads']}\n{result['timing']}"
    )
    columns = (
        f"{'model':26s} {'params':>12s} {'img/s':>9s} {'x base':>7s} {'step ms':>9s} {'cpu ms':>9s} "
        f"{'x base cpu':>10s} {'peak GiB':>9s}"
    )
    print_table_header(result, settings, columns)
    nan = float("nan")
    for r in result["rows"]:
        print(
            f"{r['label']:26s} {r['num_params']:12,d} {r['img_per_s']:9.2f} {r['x_baseline_img_per_s'] or nan:7.3f} "
            f"{r['step_ms_median']:9.1f} {r.get('cpu_ms_per_step', nan):9.1f} {r.get('x_baseline_cpu') or nan:10.3f} "
            f"{r['peak_memory_gib']:9.3f}"
        )
    kinds = sorted({r["memory_kind"] for r in result["rows"] if "memory_kind" in r})
    print(f"peak memory: {', '.join(kinds)}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=None, help="default: 2 on CPU, 64 on CUDA")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--amp", default=None, help="bf16, fp16 or none (default: none on CPU, bf16 on CUDA)")
    parser.add_argument("--steps", type=int, default=None, help="default: 2 on CPU, 20 on CUDA")
    parser.add_argument("--warmup", type=int, default=None, help="default: 1 on CPU, 5 on CUDA")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: 1 on CPU)")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--only", nargs="+", default=None, help="row labels or model names to run")
    parser.add_argument("--note", default="", help="free text stored in the JSON (e.g. 'shared machine')")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default: benchmarks/results/...)")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device!r} requested but CUDA is not available; use --device cpu")
    cuda = torch.device(args.device).type == "cuda"
    if args.threads is not None or not cuda:
        torch.set_num_threads(args.threads or 1)
    result = run(
        args.device,
        args.batch_size or (64 if cuda else 2),
        args.img_size,
        args.amp or ("bf16" if cuda else "none"),
        args.steps or (20 if cuda else 2),
        args.warmup if args.warmup is not None else (5 if cuda else 1),
        args.channels_last,
        args.compile,
        args.only,
    )
    if args.note:
        result["note"] = args.note
    print_table(result)
    write_result(result, args.out, f"models-{torch.device(args.device).type}-{result['date']}.json")
    return result


if __name__ == "__main__":
    main()
