"""``kanvision-bench``: the zoo's results table, every kanvision model measured against its timm baseline.

    kanvision-bench                        # every registered kanvision model at its default input size
    kanvision-bench 'kat_*' --batch-size 16
    kanvision-bench --quick                # tiny sizes, a smoke run of the whole zoo
    kanvision-bench 'kat_tiny*' --compile  # both models under torch.compile (inductor, or --compile BACKEND)
    kanvision-bench --out results/         # where the CSV and JSON go (default: the current directory)

For each model (and its baseline, built and measured in the same process): parameters, forward GFLOPs per image at
the measured size (``torch.utils.flop_counter`` on the meta device, custom ops included), inference images/s
(``eval``, ``no_grad``), training images/s (AdamW steps) and peak memory. Model and baseline alternate step by step
(one step of each per round, in ABBA order as kanvision's layer benchmark) so that the load of a shared machine
slows both alike; each round gives one ratio, and the table reports the median ratio with its spread
(half the interquartile range of the per-round ratios, relative to the median). Peak memory is measured for one
model at a time over its first two training steps: CUDA ``max_memory_allocated``, on CPU the weights plus the rise
of the process' peak resident set (gradients, optimizer state and activations) after one untimed forward and
backward, which loads what is built once per process.

Writes ``zoo-<device>-<date>.csv`` and ``.json`` into ``--out`` (``zoo-<device>-<date>-compiled.*`` with
``--compile``: model and baseline both run under ``torch.compile``, compiled by the warm-up steps).
"""

from __future__ import annotations

import argparse
import csv
import ctypes
import datetime as dt
import gc
import json
import re
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import timm
import torch
import torch.nn.functional as F

import kanvision  # noqa: F401  (registers the models)
from kanvision.bench.throughput import _cpu_peak_rss_bytes, _reset_cpu_peak_rss, build_model, machine_info
from kanvision.bench.zoo import kanvision_models
from kanvision.utils.cli import non_negative_int, positive_int
from kanvision.utils.flops import count_forward_flops

__all__ = ["ZooRow", "baseline_for", "measure_pair", "run", "read_csv", "main"]

# (pattern, baseline): the first matching rule names the plain timm model a kanvision model is compared with
_BASELINE_RULES: list[tuple[str, str | Callable[[re.Match], str]]] = [
    (r"kat_(tiny|small|base|large)_patch16_(\d+)", lambda m: f"vit_{m[1]}_patch16_{m[2]}"),
    (r"vit_kan_(tiny|small|base)_patch16_(\d+)", lambda m: f"vit_{m[1]}_patch16_{m[2]}"),
    (r"katx_(tiny|small|base|large)_[a-z0-9]+_patch16_(\d+)", lambda m: f"vit_{m[1]}_patch16_{m[2]}"),  # KAT-X
    (r"rkan_generic", "resnet50"),  # its default backbone
    (r"rkan_(resnet\d+_cifar)", lambda m: m[1]),  # kanvision.models.baselines: the same CIFAR stem
    (r"rkan_(.+)", lambda m: m[1]),
    (r"kan_resnet(18|34)(_cifar)?", lambda m: f"resnet{m[1]}{m[2] or ''}"),
    (r"kan_vgg11_.*", "vgg11_bn"),
]


def baseline_for(name: str) -> str | None:
    """The timm model ``name`` is compared with, or None (Bodner's and torch-conv-kan's small nets have none)."""
    for pattern, baseline in _BASELINE_RULES:
        match = re.fullmatch(pattern, name)
        if match:
            return baseline(match) if callable(baseline) else baseline
    return None


@dataclass
class ZooRow:
    model: str
    baseline: str
    params: int
    baseline_params: int | None
    gflops: float
    baseline_gflops: float | None
    input_size: str
    batch_size: int
    infer_img_s: float
    infer_x_baseline: float | None
    infer_spread: float
    train_img_s: float
    train_x_baseline: float | None
    train_spread: float
    peak_mem_mib: float
    mem_x_baseline: float | None


def _input_size(name: str, img_size: int | None) -> tuple[int, int, int]:
    cfg = timm.get_pretrained_cfg(name)
    chans, h, w = tuple(cfg.input_size) if cfg is not None else (3, 224, 224)
    return (chans, h, w) if img_size is None else (chans, img_size, img_size)


def _num_classes(name: str) -> int:
    cfg = timm.get_pretrained_cfg(name)
    return cfg.num_classes if cfg is not None and cfg.num_classes else 1000


def _build(name: str, input_size: tuple[int, int, int], num_classes: int) -> torch.nn.Module:
    return build_model(name, input_size[1], in_chans=input_size[0], num_classes=num_classes)


def _spread(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return (q3 - q1) / 2 / statistics.median(values)


class _Runner:
    """One model with its optimizer, batch and step functions."""

    def __init__(
        self, name: str, input_size, batch_size: int, device: torch.device, amp, num_classes: int, compile_backend
    ):
        torch.manual_seed(0)
        self.name, self.device, self.amp = name, device, amp
        self.model = _build(name, input_size, num_classes).to(device)
        # the compiled module shares the model's parameters; the optimizer and memory count use the model itself
        self.forward = torch.compile(self.model, backend=compile_backend) if compile_backend else self.model
        self.params = sum(p.numel() for p in self.model.parameters())
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        g = torch.Generator().manual_seed(0)
        self.images = torch.randn(batch_size, *input_size, generator=g).to(device)
        self.labels = torch.randint(0, num_classes, (batch_size,), generator=g).to(device)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def infer(self) -> float:
        self.model.eval()
        t0 = time.perf_counter()
        with torch.no_grad(), torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
            self.forward(self.images)
        self._sync()
        return time.perf_counter() - t0

    def _forward_backward(self) -> None:
        self.model.train()
        with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
            loss = F.cross_entropy(self.forward(self.images), self.labels)
        loss.backward()

    def train(self) -> float:
        t0 = time.perf_counter()
        self._forward_backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self._sync()
        return time.perf_counter() - t0

    def peak_memory_bytes(self) -> int:
        """Peak memory of the model's first two training steps (the first creates the optimizer state): CUDA
        ``max_memory_allocated``; on CPU the weights' bytes plus the rise of the process' peak resident set over the
        steps, after returning freed heap memory to the system (``malloc_trim``, glibc) so that it is not reused.
        A forward and backward without an optimizer step comes first, so that what is built once per process on
        first use (kernels compiled or loaded, lazily imported modules, a compiled model's graphs) is not counted
        as the model's memory."""
        self._forward_backward()
        self.model.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.train(), self.train()
            return torch.cuda.max_memory_allocated(self.device)
        gc.collect()
        _malloc_trim()
        if not _reset_cpu_peak_rss():
            return 0
        start = _cpu_peak_rss_bytes() or 0
        self.train(), self.train()
        weights = sum(t.numel() * t.element_size() for t in (*self.model.parameters(), *self.model.buffers()))
        return weights + (_cpu_peak_rss_bytes() or 0) - start


def _malloc_trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: freed memory may be reused and the rise underestimated
        pass


def measure_pair(
    name: str,
    baseline: str | None,
    batch_size: int,
    img_size: int | None,
    rounds: int,
    warmup: int,
    device: torch.device,
    amp: torch.dtype | None,
    num_classes: int | None = None,
    compile_backend: str | None = None,
) -> ZooRow:
    """Measure ``name`` against ``baseline`` (alternating step by step) at the model's input size (or ``img_size``)
    and number of classes; the baseline is built for the same input and classes. ``compile_backend``: run both
    under ``torch.compile`` with that backend (needs ``warmup`` >= 1, the steps that compile)."""
    if compile_backend and warmup < 1:
        raise ValueError(f"compiling needs warmup >= 1 (the first steps compile), got warmup={warmup}")
    input_size, num_classes = _input_size(name, img_size), num_classes or _num_classes(name)
    names = [name] + ([baseline] if baseline else [])
    flops = []
    for n in names:
        with torch.device("meta"):
            flops.append(count_forward_flops(_build(n, input_size, num_classes), torch.zeros(1, *input_size)) / 1e9)
    runners, memory = [], []
    for n in names:  # memory first, one model at a time, before the other one's steps
        runners.append(_Runner(n, input_size, batch_size, device, amp, num_classes, compile_backend))
        memory.append(runners[-1].peak_memory_bytes() / 2**20)
    for _ in range(warmup):
        for runner in runners:
            runner.infer(), runner.train()
    infer: list[list[float]] = [[] for _ in runners]
    train: list[list[float]] = [[] for _ in runners]
    for r in range(rounds):
        # ABBA: a step runs after a different kind of step each round (an inference step frees less memory than a
        # training step, and the allocator's state then favours whichever follows the larger step)
        order = list(enumerate(runners)) if r % 2 == 0 else list(enumerate(runners))[::-1]
        for i, runner in order:
            infer[i].append(batch_size / runner.infer())
        for i, runner in order:
            train[i].append(batch_size / runner.train())
    del runners
    gc.collect()

    def ratio(series: list[list[float]]) -> tuple[float | None, float]:
        if len(series) < 2:
            return None, _spread(series[0])
        per_round = [a / b for a, b in zip(series[0], series[1], strict=True)]
        return statistics.median(per_round), _spread(per_round)

    infer_x, infer_spread = ratio(infer)
    train_x, train_spread = ratio(train)
    has_base = baseline is not None
    return ZooRow(
        model=name,
        baseline=baseline or "",
        params=sum(p.numel() for p in _meta_params(name, input_size, num_classes)),
        baseline_params=sum(p.numel() for p in _meta_params(baseline, input_size, num_classes)) if has_base else None,
        gflops=round(flops[0], 4),
        baseline_gflops=round(flops[1], 4) if has_base else None,
        input_size="x".join(map(str, input_size)),
        batch_size=batch_size,
        infer_img_s=round(statistics.median(infer[0]), 2),
        infer_x_baseline=_round(infer_x),
        infer_spread=round(infer_spread, 4),
        train_img_s=round(statistics.median(train[0]), 2),
        train_x_baseline=_round(train_x),
        train_spread=round(train_spread, 4),
        peak_mem_mib=round(memory[0], 1),
        mem_x_baseline=_round(memory[0] / memory[1]) if has_base and memory[1] > 0 else None,
    )


def _meta_params(name: str, input_size, num_classes: int):
    with torch.device("meta"):
        return list(_build(name, input_size, num_classes).parameters())


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def run(
    patterns: Sequence[str] = ("*",),
    batch_size: int = 2,
    img_size: int | None = None,
    rounds: int = 5,
    warmup: int = 1,
    device: str = "cpu",
    amp: str = "none",
    out_dir: str | Path = ".",
    log: Callable[[str], None] = print,
    baselines: bool = True,
    num_classes: int | None = None,
    merge: bool = False,
    compile_backend: str | None = None,
) -> tuple[Path, list[ZooRow]]:
    """Measure every kanvision model matching ``patterns`` (against its baseline unless ``baselines=False``); write
    the CSV and JSON; return the CSV path and the rows measured. ``num_classes``: override every model's head size.
    ``merge``: keep the other models' rows of the same day's file (re-measure some models, e.g. after a change);
    the JSON lists the settings of every run that contributed. ``compile_backend``: both models under
    ``torch.compile`` with that backend, written to ``zoo-<device>-<date>-compiled.csv``."""
    amp_dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}.get(amp, "bad")
    if amp_dtype == "bad":
        raise ValueError(f"amp must be one of ['bf16', 'fp16', 'none'], got {amp!r}")
    if batch_size < 1 or rounds < 1 or warmup < 0:
        raise ValueError(f"batch_size ({batch_size}) and rounds ({rounds}) must be >= 1, warmup ({warmup}) >= 0")
    names = kanvision_models(patterns)
    if not names:
        raise ValueError(f"no kanvision model matches {list(patterns)}; see kanvision-models")
    dev = torch.device(device)
    date = dt.date.today().isoformat()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / f"zoo-{dev.type}-{date}{'-compiled' if compile_backend else ''}.csv"
    settings = dict(batch_size=batch_size, img_size=img_size, rounds=rounds, warmup=warmup, amp=amp,
                    threads=torch.get_num_threads(), patterns=list(patterns), num_classes=num_classes,
                    compile_backend=compile_backend, machine=machine_info(dev))  # fmt: skip
    previous: list[dict] = []
    runs = [settings]
    if merge and csv_path.exists():
        previous = read_csv(csv_path)
        runs = json.loads(csv_path.with_suffix(".json").read_text()).get("runs", []) + runs
    meta = dict(
        benchmark="kanvision-bench",
        date=date,
        machine=machine_info(dev),
        torch=torch.__version__,
        timm=timm.__version__,
        runs=runs,
    )
    rows: list[ZooRow] = []
    for name in names:
        baseline = baseline_for(name) if baselines else None
        rows.append(
            measure_pair(
                name, baseline, batch_size, img_size, rounds, warmup, dev, amp_dtype, num_classes, compile_backend
            )
        )
        log(_format_row(rows[-1]))
        _write(csv_path, rows, meta, previous)  # after every model: a run cut short keeps what it measured
    log(f"wrote {csv_path} and {csv_path.with_suffix('.json').name}")
    return csv_path, rows


def _write(csv_path: Path, rows: list[ZooRow], meta: dict, previous: list[dict]) -> None:
    """Rows in registry order; ``previous`` rows (CSV strings) fill in the models not measured now."""
    new = {r.model: {k: "" if v is None else v for k, v in asdict(r).items()} for r in rows}
    merged = {**{r["model"]: r for r in previous}, **new}
    order = {name: i for i, name in enumerate(kanvision_models())}
    ordered = sorted(merged.values(), key=lambda r: (order.get(r["model"], len(order)), r["model"]))
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[fl.name for fl in fields(ZooRow)])
        writer.writeheader()
        writer.writerows(ordered)
    csv_path.with_suffix(".json").write_text(json.dumps({**meta, "rows": ordered}, indent=2) + "\n")


def _format_row(r: ZooRow) -> str:
    def x(v):
        return f"{v:.2f}x" if v is not None else "–"

    head = f"{r.model:28s} vs {r.baseline or '–':24s} {r.params / 1e6:8.2f}M {r.gflops:8.2f} GF"
    infer = f"infer {r.infer_img_s:8.1f} ({x(r.infer_x_baseline)} ±{r.infer_spread:.0%})"
    train = f"train {r.train_img_s:8.1f} ({x(r.train_x_baseline)} ±{r.train_spread:.0%})"
    return f"{head}  {infer}  {train}  mem {r.peak_mem_mib:8.1f} MiB ({x(r.mem_x_baseline)})"


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="kanvision-bench", description=__doc__.splitlines()[0])
    parser.add_argument("patterns", nargs="*", default=["*"], help="fnmatch patterns of kanvision model names")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=positive_int, default=None, help="default: 2 on CPU, 64 on CUDA")
    parser.add_argument("--img-size", type=positive_int, default=None, help="default: each model's own input size")
    parser.add_argument("--rounds", type=positive_int, default=5, help="alternating rounds (one step of each model)")
    parser.add_argument("--warmup", type=non_negative_int, default=1)
    parser.add_argument("--amp", default=None, help="bf16, fp16 or none (default: none on CPU, bf16 on CUDA)")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    quick_help = "64 px, 10 classes, batch 2, 1 round (a warm-up step only to compile): a smoke run"
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--no-baseline", action="store_true", help="measure the kanvision models alone")
    parser.add_argument("--num-classes", type=positive_int, default=None, help="default: each model's own")
    parser.add_argument(
        "--out", "--out-dir", dest="out", type=Path, default=Path("."), metavar="DIR",
        help="folder for the CSV and JSON (default: the current directory)",
    )  # fmt: skip
    parser.add_argument("--merge", action="store_true", help="keep the other models' rows of today's CSV")
    parser.add_argument(
        "--compile", nargs="?", const="inductor", default=None, metavar="BACKEND",
        help="run model and baseline under torch.compile (default backend: inductor)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    backends = torch.compiler.list_backends(exclude_tags=())
    if args.compile is not None and args.compile not in backends:
        parser.error(f"--compile {args.compile!r} is not a torch.compile backend; valid: {', '.join(backends)}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device!r} requested but CUDA is not available; use --device cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")
    if args.quick:
        args.img_size, args.batch_size, args.rounds, args.num_classes = 64, 2, 1, 10
        args.warmup = 1 if args.compile else 0
    run(
        args.patterns, args.batch_size or (64 if cuda else 2), args.img_size, args.rounds, args.warmup, args.device,
        args.amp or ("bf16" if cuda else "none"), args.out, baselines=not args.no_baseline,
        num_classes=args.num_classes, merge=args.merge, compile_backend=args.compile,
    )  # fmt: skip


if __name__ == "__main__":
    main()
