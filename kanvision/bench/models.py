"""Model benchmark: training img/s and peak memory of the KAN CNN families against their plain-CNN baselines.

Pairs (issue 4): ``rkan_resnet50`` vs ``resnet50`` and ``kan_resnet18`` with the Chebyshev, B-spline and RBF
bases vs ``resnet18``, all at 224 px, measured by :func:`kanvision.bench.throughput.measure_training` (real AdamW
steps on random images, median step time, peak memory of the measured steps). Each row reports its ratio to the
baseline of its group, measured in the same process. A model that is not registered (e.g. while its family is
being written) is recorded as missing instead of failing the run. Prints a table and writes JSON to
``benchmarks/results/models-<device>-<date>.json``.

    python -m kanvision.bench.models                      # CPU defaults: batch 2, fp32, 2 + 1 steps
    python -m kanvision.bench.models --device cuda --batch-size 64 --amp bf16 --channels-last

Goal (H200, bf16): rkan_resnet50 >= 0.9x resnet50's training throughput (the paper's implementation: 0.78x).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
from pathlib import Path

import timm
import torch

import kanvision  # noqa: F401  (registers the kan_* and rkan_* models)
from kanvision.bench.throughput import measure_training

RESULTS_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / "results"

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


def _machine(device: torch.device) -> dict:
    info = {"platform": platform.platform(), "cpu_threads": torch.get_num_threads(), "cpu_count": os.cpu_count()}
    if device.type == "cuda":
        info["device"] = torch.cuda.get_device_name(device)
    else:
        model = platform.processor()
        try:
            with open("/proc/cpuinfo") as f:
                model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
        except OSError:
            pass
        info["device"] = model or "cpu"
    return info


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
    rows = []
    for baseline, members in GROUPS:
        base_ips = None
        for label, name, kwargs in members:
            if only and label not in only and name not in only:
                continue
            if not timm.is_model(name):
                rows.append(dict(label=label, model=name, group=baseline, missing="not registered with timm"))
                continue
            torch.manual_seed(0)
            r = measure_training(
                name, batch_size, img_size, device=dev, amp_dtype=_AMP_DTYPES[amp], steps=steps, warmup=warmup,
                compile=compile, channels_last=channels_last, model_kwargs=kwargs,
            ).as_dict()  # fmt: skip
            r.update(label=label, group=baseline, model_kwargs=kwargs)
            if label == baseline:
                base_ips = r["img_per_s"]
            r["x_baseline_img_per_s"] = r["img_per_s"] / base_ips if base_ips else None
            rows.append(r)
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    return {
        "benchmark": "kanvision.bench.models",
        "date": dt.date.today().isoformat(),
        "machine": _machine(dev),
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
        ),  # fmt: skip
        "timing": f"median of {steps} training steps after {warmup} warm-up steps; x_baseline = img/s / baseline img/s",
        "goal": "H200 bf16: rkan_resnet50 >= 0.9x resnet50 training img/s (paper implementation 0.78x)",
        "rows": rows,
    }


def print_table(result: dict) -> None:
    s = result["settings"]
    print(f"{result['benchmark']}  {result['date']}  {result['machine']['device']}  torch {result['torch']}")
    print(
        f"batch {s['batch_size']} x {s['img_size']} px, amp {s['amp']}, channels_last {s['channels_last']}, "
        f"{result['timing']}"
    )
    header = f"{'model':26s} {'params':>12s} {'img/s':>9s} {'x base':>7s} {'step ms':>9s} {'peak GiB':>9s}"
    print(header)
    print("-" * len(header))
    for r in result["rows"]:
        if "missing" in r:
            print(f"{r['label']:26s} {'missing: ' + r['missing']}")
            continue
        ratio = r["x_baseline_img_per_s"] if r["x_baseline_img_per_s"] is not None else float("nan")
        print(
            f"{r['label']:26s} {r['num_params']:12,d} {r['img_per_s']:9.2f} {ratio:7.3f} "
            f"{r['step_ms_median']:9.1f} {r['peak_memory_gib']:9.3f}"
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
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--only", nargs="+", default=None, help="row labels or model names to run")
    parser.add_argument("--note", default="", help="free text stored in the JSON (e.g. 'shared machine')")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default: benchmarks/results/...)")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device!r} requested but CUDA is not available; use --device cpu")
    cuda = torch.device(args.device).type == "cuda"
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
    out = args.out or RESULTS_DIR / f"models-{torch.device(args.device).type}-{result['date']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
