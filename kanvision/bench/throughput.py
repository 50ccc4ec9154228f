"""Training throughput and peak memory of a vision model, measured the same way for every model.

``measure_training`` runs real AdamW training steps (forward, cross-entropy, backward, optimizer step) on random
images, optionally under autocast and ``torch.compile``, and reports images per second from the MEDIAN step time
(robust to the odd slow step) and the peak memory of the measured steps. ``time_callable`` times any function the
same way (CUDA events on GPU, ``perf_counter`` on CPU).

Peak memory: on CUDA it is ``torch.cuda.max_memory_allocated`` (tensors only, allocator cache excluded) after a reset
that follows model creation, so it includes weights, gradients, optimizer state and activations. On CPU there is no
allocator counter; we reset the kernel's peak-RSS counter (``/proc/self/clear_refs``, Linux) before the steps and read
``VmHWM`` after them, i.e. the PROCESS peak resident set during the steps (interpreter, libraries and everything else
in the process included), falling back to ``getrusage`` ``ru_maxrss`` (process lifetime peak) where that reset is not
possible. ``TrainingThroughput.memory_kind`` says which one was measured.

Command line::

    python -m kanvision.bench.throughput --model vit_tiny_patch16_224 --batch-size 8 --img-size 224 --device cpu
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from kanvision.utils.cli import positive_int

__all__ = [
    "TrainingThroughput",
    "build_model",
    "machine_info",
    "measure_training",
    "positive_int",
    "profile_training",
    "time_callable",
]


def machine_info(device: torch.device) -> dict:
    """Where a benchmark ran: platform, CPU threads and count, load average, and the CPU or GPU model."""
    info = {"platform": platform.platform(), "cpu_threads": torch.get_num_threads(), "cpu_count": os.cpu_count()}
    if hasattr(os, "getloadavg"):  # a shared machine's other work shows here and slows every row alike
        info["load_average_1_5_15min_at_start"] = [round(v, 2) for v in os.getloadavg()]
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


_GIB = float(1 << 30)


@dataclasses.dataclass
class TrainingThroughput:
    """Result of ``measure_training``. ``img_per_s`` is ``batch_size / median step time``."""

    model: str
    batch_size: int
    img_size: int
    device: str
    amp_dtype: str | None
    compiled: bool
    channels_last: bool
    img_per_s: float
    step_ms_median: float
    step_ms_min: float
    step_ms_max: float
    steps: int
    warmup: int
    peak_memory_gib: float
    memory_kind: str
    num_params: int
    final_loss: float

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def build_model(name: str, img_size: int, in_chans: int = 3, num_classes: int = 1000, **kwargs) -> nn.Module:
    """Create a timm model by name (kanvision models included) at ``img_size``.

    ``img_size`` is passed to models that take it (ViT-style); CNNs that reject it are built without it, since they
    accept any input size.
    """
    import timm

    import kanvision  # noqa: F401  (registers kat_*, rkan_*, kan_* with timm)

    if not timm.is_model(name):
        raise ValueError(f"unknown model {name!r}: not registered with timm (see timm.list_models())")
    try:
        return timm.create_model(name, img_size=img_size, in_chans=in_chans, num_classes=num_classes, **kwargs)
    except TypeError as err:
        if "img_size" not in str(err):
            raise
        return timm.create_model(name, in_chans=in_chans, num_classes=num_classes, **kwargs)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_cpu_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # "5" resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def _cpu_peak_rss_bytes() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _memory_start(device: torch.device) -> str:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return "cuda_max_memory_allocated"
    if _reset_cpu_peak_rss() and _cpu_peak_rss_bytes() is not None:
        return "cpu_process_peak_rss"
    return "cpu_process_lifetime_maxrss"


def _memory_peak_bytes(device: torch.device, kind: str) -> int:
    if kind == "cuda_max_memory_allocated":
        return torch.cuda.max_memory_allocated(device)
    if kind == "cpu_process_peak_rss":
        return _cpu_peak_rss_bytes() or 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


def time_callable(fn: Callable[[], object], device: str | torch.device, warmup: int = 3, reps: int = 10) -> list[float]:
    """Run ``fn`` ``warmup`` times untimed, then ``reps`` times; return each timed call's duration in ms."""
    device = torch.device(device)
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    if device.type == "cuda":
        for _ in range(reps):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
    else:
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times.append((time.perf_counter() - t0) * 1e3)
    return times


def measure_training(
    model_or_name: nn.Module | str,
    batch_size: int,
    img_size: int,
    device: str | torch.device = "cuda",
    amp_dtype: torch.dtype | None = torch.bfloat16,
    steps: int = 20,
    warmup: int = 5,
    compile: bool = False,
    compile_backend: str = "inductor",
    channels_last: bool = False,
    in_chans: int = 3,
    num_classes: int = 1000,
    lr: float = 1e-3,
    weight_decay: float = 0.05,
    model_kwargs: dict | None = None,
) -> TrainingThroughput:
    """Measure training images/s and peak memory of AdamW steps on random data.

    Args:
        model_or_name: an ``nn.Module`` (moved to ``device``; its parameters are trained in place) or a timm model
            name (built with ``build_model``; kanvision's models are registered).
        batch_size, img_size: input batch ``(batch_size, in_chans, img_size, img_size)``.
        amp_dtype: autocast dtype (``torch.bfloat16`` default, ``None`` for full precision).
        steps, warmup: timed and untimed steps; with ``compile=True`` the warm-up absorbs compilation.
        compile_backend: ``torch.compile`` backend (``"inductor"``; ``"aot_eager"`` for quick CPU smoke runs).
        channels_last: convert model and input to ``torch.channels_last`` (faster convolutions on GPU).
    """
    if batch_size < 1 or img_size < 1 or steps < 1 or warmup < 0:
        raise ValueError(
            f"batch_size ({batch_size}), img_size ({img_size}) and steps ({steps}) must be >= 1 and warmup ({warmup})"
            " >= 0"
        )
    device = torch.device(device)
    name, model, train_step = _training_step(
        model_or_name, batch_size, img_size, device, amp_dtype, compile=compile, compile_backend=compile_backend,
        channels_last=channels_last, in_chans=in_chans, num_classes=num_classes, lr=lr, weight_decay=weight_decay,
        model_kwargs=model_kwargs,
    )  # fmt: skip
    num_params = sum(p.numel() for p in model.parameters())

    memory_kind = _memory_start(device)
    loss = None
    for _ in range(warmup):
        loss = train_step()
    _sync(device)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        loss = train_step()
        _sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    peak = _memory_peak_bytes(device, memory_kind)
    median = statistics.median(times)
    return TrainingThroughput(
        model=name,
        batch_size=batch_size,
        img_size=img_size,
        device=str(device),
        amp_dtype=None if amp_dtype is None else str(amp_dtype).removeprefix("torch."),
        compiled=compile,
        channels_last=channels_last,
        img_per_s=batch_size / (median / 1e3),
        step_ms_median=median,
        step_ms_min=min(times),
        step_ms_max=max(times),
        steps=steps,
        warmup=warmup,
        peak_memory_gib=peak / _GIB,
        memory_kind=memory_kind,
        num_params=num_params,
        final_loss=float(loss.detach()),
    )


def _training_step(
    model_or_name: nn.Module | str, batch_size: int, img_size: int, device: torch.device,
    amp_dtype: torch.dtype | None, *, compile: bool, compile_backend: str, channels_last: bool, in_chans: int,
    num_classes: int, lr: float, weight_decay: float, model_kwargs: dict | None,
) -> tuple[str, nn.Module, Callable[[], torch.Tensor]]:  # fmt: skip
    """(name, model on ``device``, one AdamW training step on a fixed random batch returning the loss); the keyword
    arguments as in :func:`measure_training`."""
    if isinstance(model_or_name, str):
        name = model_or_name
        model = build_model(name, img_size, in_chans=in_chans, num_classes=num_classes, **(model_kwargs or {}))
    else:
        model = model_or_name
        name = type(model).__name__
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device=device, memory_format=memory_format).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    step_model = torch.compile(model, backend=compile_backend) if compile else model

    generator = torch.Generator(device="cpu").manual_seed(0)
    images = torch.randn(batch_size, in_chans, img_size, img_size, generator=generator)
    images = images.to(device=device, memory_format=memory_format)
    labels = torch.randint(0, num_classes, (batch_size,), generator=generator).to(device)

    def train_step() -> torch.Tensor:
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss = F.cross_entropy(step_model(images), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    return name, model, train_step


def profile_training(
    model_or_name: nn.Module | str,
    batch_size: int,
    img_size: int,
    device: str | torch.device = "cuda",
    amp_dtype: torch.dtype | None = torch.bfloat16,
    steps: int = 2,
    warmup: int = 2,
    top: int = 15,
    model_kwargs: dict | None = None,
) -> dict:
    """Where the training steps of :func:`measure_training` spend their time, by ``torch.profiler``.

    Per step (averaged over ``steps`` after ``warmup`` untimed ones): the wall time, the host operators' summed self
    time (``cpu_ms``, which includes waiting in synchronisations, ``sync_ms`` of it, and in launches when the launch
    queue is full), the device kernels' summed time (``device_ms``; 0 on CPU), and the ``top`` kernels by device time
    and host operators by self time. A step whose device time is far below its wall time while ``cpu_ms - sync_ms``
    approaches it is bound by the launches, not by the kernels.
    """
    if batch_size < 1 or img_size < 1 or steps < 1 or warmup < 0 or top < 1:
        raise ValueError(
            f"batch_size ({batch_size}), img_size ({img_size}), steps ({steps}) and top ({top}) must be >= 1 and "
            f"warmup ({warmup}) >= 0"
        )
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    device = torch.device(device)
    name, _, train_step = _training_step(
        model_or_name, batch_size, img_size, device, amp_dtype, compile=False, compile_backend="inductor",
        channels_last=False, in_chans=3, num_classes=1000, lr=1e-3, weight_decay=0.05, model_kwargs=model_kwargs,
    )  # fmt: skip
    for _ in range(warmup):
        train_step()
    _sync(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            train_step()
        _sync(device)
        wall_ms = (time.perf_counter() - start) * 1e3
    events = prof.key_averages()
    host = [e for e in events if e.device_type == DeviceType.CPU]
    # device kernels and copies; a user annotation on the device (the optimizer step) spans kernels counted already
    kernels = [e for e in events if e.device_type != DeviceType.CPU and not getattr(e, "is_user_annotation", False)]
    synchronizing = [e for e in host if "Synchronize" in e.key]

    def device_us(event) -> float:  # self_device_time_total since torch 2.4, self_cuda_time_total before
        if hasattr(event, "self_device_time_total"):
            return float(event.self_device_time_total)
        return float(getattr(event, "self_cuda_time_total", 0.0))

    def rows(selected, key) -> list[dict]:
        return [
            {
                "op": e.key,
                "calls_per_step": e.count / steps,
                "self_cpu_ms": e.self_cpu_time_total / 1e3 / steps,
                "self_device_ms": device_us(e) / 1e3 / steps,
            }
            for e in sorted(selected, key=key, reverse=True)[:top]
        ]

    return {
        "model": name,
        "batch_size": batch_size,
        "img_size": img_size,
        "amp_dtype": None if amp_dtype is None else str(amp_dtype).removeprefix("torch."),
        "step_ms": wall_ms / steps,
        "cpu_ms": sum(e.self_cpu_time_total for e in host) / 1e3 / steps,
        "sync_ms": sum(e.self_cpu_time_total for e in synchronizing) / 1e3 / steps,
        "device_ms": sum(device_us(e) for e in kernels) / 1e3 / steps,
        "top_device": rows(kernels, device_us),
        "top_cpu": rows(host, lambda e: e.self_cpu_time_total),
    }


def _parse_dtype(name: str) -> torch.dtype | None:
    choices = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    if name not in choices:
        raise ValueError(f"amp dtype {name!r} is not one of {sorted(choices)}")
    return choices[name]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", nargs="+", required=True, help="timm model name(s)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", default="bf16", help="bf16, fp16 or none")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="write the results to this JSON file")
    args = parser.parse_args(argv)
    results = []
    print(f"{'model':40s} {'img/s':>10s} {'step ms':>9s} {'peak GiB':>9s}  memory")
    for name in args.model:
        r = measure_training(
            name,
            args.batch_size,
            args.img_size,
            device=args.device,
            amp_dtype=_parse_dtype(args.amp),
            steps=args.steps,
            warmup=args.warmup,
            compile=args.compile,
            channels_last=args.channels_last,
        )
        results.append(r.as_dict())
        print(f"{name:40s} {r.img_per_s:10.1f} {r.step_ms_median:9.2f} {r.peak_memory_gib:9.3f}  {r.memory_kind}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"torch": torch.__version__, "results": results}, indent=2))


if __name__ == "__main__":
    main()
