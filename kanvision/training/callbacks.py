"""Training callbacks: the non-finite-loss guard and a training-throughput meter."""

from __future__ import annotations

import os
import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

__all__ = ["NonFiniteLossError", "NonFiniteLossGuard", "ThroughputMeter", "latest_checkpoint"]


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


class ThroughputMeter(Callback):
    """Training images per second over all processes, from the wall time of training batches (forward, backward,
    optimizer step; data loading and validation excluded), skipping the first ``skip_steps`` batches (compilation,
    allocator warm-up)."""

    def __init__(self, skip_steps: int = 2) -> None:
        self.skip_steps = skip_steps
        self.images = 0
        self.seconds = 0.0
        self._seen = 0
        self._start = 0.0

    @staticmethod
    def _sync(pl_module: L.LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

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
        self._seen += 1
        if self._seen > self.skip_steps:
            self.images += len(batch[0]) * trainer.world_size
            self.seconds += elapsed

    def summary(self) -> dict[str, float]:
        """``train/img_per_s`` and ``train/measured_s`` (empty when too few batches were timed)."""
        if self.seconds <= 0:
            return {}
        return {"train/img_per_s": self.images / self.seconds, "train/measured_s": self.seconds}
