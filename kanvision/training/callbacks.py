"""Training callbacks: the non-finite-loss guard and the live throughput, memory and FLOPs monitor."""

from __future__ import annotations

import os
import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from kanvision.utils.flops import count_forward_flops  # also registers the CPU attention formula

__all__ = [
    "MonitoredMetricCheck",
    "NonFiniteLossError",
    "NonFiniteLossGuard",
    "ThroughputMeter",
    "forward_flops",
    "latest_checkpoint",
]


def latest_checkpoint(trainer: L.Trainer) -> str | None:
    """The most recently written checkpoint of the trainer's ModelCheckpoint callbacks (None if none yet)."""
    paths = set()
    for callback in trainer.checkpoint_callbacks:
        paths |= {getattr(callback, "last_model_path", ""), getattr(callback, "best_model_path", "")}
    existing = [p for p in paths if p and os.path.isfile(p)]
    return max(existing, key=os.path.getmtime) if existing else None


class NonFiniteLossError(FloatingPointError):
    """Training stopped because the loss became NaN or infinite."""


class NonFiniteLossGuard(Callback):
    """Stop training at the first non-finite loss, before its backward pass and optimizer update.

    The check runs in ``on_before_backward``, so the weights in memory and every checkpoint already written keep
    the last finite state. Under DDP the decision is reduced over all processes (a NaN on one rank stops every
    rank at the same step instead of leaving the others waiting in a collective).
    """

    def __init__(self) -> None:
        self._batch_idx = -1

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._batch_idx = batch_idx

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        bad = not bool(torch.isfinite(loss.detach()).all())
        if not trainer.strategy.reduce_boolean_decision(bad, all=False):
            return
        last = latest_checkpoint(trainer)
        saved = f"the last good checkpoint is {last}" if last else "no checkpoint had been written yet"
        raise NonFiniteLossError(
            f"non-finite training loss ({loss.detach().float().item()}) at step {trainer.global_step} "
            f"(epoch {trainer.current_epoch}, batch {self._batch_idx}); training stopped before this update, "
            f"{saved}. Lower the learning rate, add warm-up or gradient clipping, or train in float32."
        )

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        # A finite loss does not prove finite weights (BatchNorm statistics can overflow first): never write a
        # checkpoint that holds non-finite tensors, so the last one written stays the last good one.
        bad = [
            k for k, v in checkpoint.get("state_dict", {}).items() if torch.is_tensor(v) and not torch.isfinite(v).all()
        ]
        if bad:
            last = latest_checkpoint(trainer) if trainer is not None else None
            saved = f"the last good checkpoint is {last}" if last else "no checkpoint had been written yet"
            raise NonFiniteLossError(
                f"non-finite weights or buffers at step {checkpoint.get('global_step')}: {bad[:5]}"
                f"{' ...' if len(bad) > 5 else ''}; this checkpoint was not written, {saved}. Lower the learning "
                "rate, add warm-up or gradient clipping, or train in float32."
            )


class MonitoredMetricCheck(Callback):
    """Fail after the first validation when a callback monitors a metric that no one logs.

    Lightning's ModelCheckpoint only warns (once) and then never writes a best checkpoint. The check runs at the end
    of the training epoch in which validation first ran, when both the validation and the epoch's training metrics
    have been logged.

    Args:
        monitors: config key -> monitored metric, e.g. ``{"callbacks.model_checkpoint.monitor": "val/acc1"}``.
    """

    def __init__(self, monitors: dict[str, str]) -> None:
        self.monitors = dict(monitors)
        self._validated = False
        self._checked = False

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._validated = True

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check(trainer)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check(trainer)

    def _check(self, trainer: L.Trainer) -> None:
        if self._checked or not self._validated:
            return
        self._checked = True
        # ModelCheckpoint also offers the trainer's epoch and step
        logged = sorted(set(trainer.callback_metrics) | {"epoch", "step"})
        missing = {key: name for key, name in self.monitors.items() if name not in logged}
        if missing:
            raise ValueError(
                ", ".join(f"{key}={name!r}" for key, name in missing.items())
                + f" is not a logged metric: expected one of {', '.join(logged)}"
            )


def forward_flops(model: torch.nn.Module, example: torch.Tensor) -> int:
    """FLOPs of one forward pass on ``example`` (:func:`kanvision.utils.flops.count_forward_flops`)."""
    return count_forward_flops(model, example)


def _peak_memory_bytes(device: torch.device) -> int:
    """Peak memory so far: CUDA ``max_memory_allocated`` on a GPU, else the process's peak resident set size."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, KiB on Linux


class ThroughputMeter(Callback):
    """Live training speed and memory, logged to every logger and the progress bar, plus a run summary.

    Per training batch (at the trainer's ``log_every_n_steps``): ``train/img_per_s`` (images over all processes per
    second of the batch's forward, backward and optimizer step; data loading and validation excluded),
    ``train/step_time_s`` and ``train/peak_mem_gib`` (CUDA ``max_memory_allocated``, or the CPU process's peak
    RSS). Once at the start of fit: ``model/gflops_per_image``, the network's forward FLOPs on one image of the
    training size (:func:`forward_flops`). The first ``skip_steps`` batches (compilation, allocator warm-up) are
    left out of the run's mean throughput (:meth:`summary`).
    """

    def __init__(self, skip_steps: int = 2) -> None:
        self.skip_steps = skip_steps
        self.images = 0
        self.seconds = 0.0
        self.gflops: float | None = None
        self.peak_bytes = 0
        self._seen = 0
        self._start = 0.0

    @staticmethod
    def _sync(pl_module: L.LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        example = getattr(pl_module, "example_input_array", None)
        network = getattr(pl_module, "model", pl_module)
        if torch.is_tensor(example):
            self.gflops = forward_flops(network, example[:1].to(pl_module.device)) / 1e9

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._sync(pl_module)
        self._start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._sync(pl_module)
        elapsed = time.perf_counter() - self._start
        images = len(batch[0]) * trainer.world_size
        self._seen += 1
        if self._seen > self.skip_steps:
            self.images += images
            self.seconds += elapsed
        self.peak_bytes = max(self.peak_bytes, _peak_memory_bytes(pl_module.device))
        values = {
            "train/img_per_s": images / max(elapsed, 1e-9),
            "train/step_time_s": elapsed,
            "train/peak_mem_gib": self.peak_bytes / 2**30,
        }
        if self.gflops is not None:
            values["model/gflops_per_image"] = self.gflops
        pl_module.log_dict(values, on_step=True, on_epoch=False, batch_size=len(batch[0]))
        pl_module.log("img_s", values["train/img_per_s"], prog_bar=True, logger=False, on_step=True, on_epoch=False)

    def summary(self) -> dict[str, float]:
        """Run totals for ``metrics.json``: ``train/img_per_s`` and ``train/measured_s`` (when enough batches were
        timed), ``peak_mem_bytes`` and ``gflops`` (forward GFLOPs per image)."""
        out: dict[str, float] = {}
        if self.seconds > 0:
            out |= {"train/img_per_s": self.images / self.seconds, "train/measured_s": self.seconds}
        if self.peak_bytes:
            out["peak_mem_bytes"] = self.peak_bytes
        if self.gflops is not None:
            out["gflops"] = self.gflops
        return out
