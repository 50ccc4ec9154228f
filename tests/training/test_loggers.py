"""Loggers: wandb offline (a resume continues the same run) and the CSV logger read back (live metrics)."""

from __future__ import annotations

import pytest
import torch

from kanvision.training.checkpoint import read_checkpoint
from kanvision.training.train import train

from .test_train import TINY


def test_wandb_offline_writes_run_files_and_resume_keeps_the_run_id(make_cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    common = [
        *TINY,
        "model=kan_cnn_tiny",
        "data.img_size=8",
        "logger=wandb",
        "logger.wandb.offline=true",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "test=false",
    ]
    train(make_cfg(*common, "+callbacks.stop._target_=tests.training.test_train.StopAfterFirstEpoch"))
    (run,) = (tmp_path / "wandb").glob("offline-run-*")
    run_id = run.name.rsplit("-", 1)[1]
    data = run / f"run-{run_id}.wandb"
    assert data.is_file() and data.stat().st_size > 0
    assert read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["kanvision"]["wandb_run_id"] == run_id

    train(make_cfg(*common, "ckpt_path=last"))
    runs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(r.name.endswith(f"-{run_id}") for r in runs)


def test_csv_logger_gets_live_speed_memory_flops_and_named_learning_rates(make_cfg, tmp_path):
    """Read the CSV logger's file back: throughput, step time, peak memory, GFLOPs and lr per named group."""
    import csv

    from kanvision.training.callbacks import forward_flops
    from kanvision.training.train import train

    cfg = make_cfg(
        "data=synthetic", "data.num_train=64", "data.num_val=16", "data.num_test=16", "data.batch_size=16",
        "model=kan_cnn_tiny", "data.img_size=8", "trainer.max_epochs=1", "trainer.log_every_n_steps=1", "logger=csv",
    )  # fmt: skip
    metrics = train(cfg)
    files = list(tmp_path.rglob("metrics.csv"))
    assert len(files) == 1
    rows = list(csv.DictReader(files[0].open()))
    columns = set(rows[0])
    for key in ("train/img_per_s", "train/step_time_s", "train/peak_mem_gib", "model/gflops_per_image"):
        assert key in columns, (key, sorted(columns))
    assert {"lr/decay", "lr/no_decay"} <= columns, sorted(columns)
    speeds = [float(r["train/img_per_s"]) for r in rows if r.get("train/img_per_s")]
    assert len(speeds) == 4 and all(s > 0 for s in speeds)  # 64 images / batch 16, logged every step
    peak = [float(r["train/peak_mem_gib"]) for r in rows if r.get("train/peak_mem_gib")]
    assert all(0.01 < p < 64 for p in peak)
    # the logged GFLOPs are the network's forward FLOPs on one 8x8 image, counted independently here
    import kanvision

    network = kanvision.load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    expected = forward_flops(network, torch.zeros(1, 3, 8, 8)) / 1e9
    gflops = [float(r["model/gflops_per_image"]) for r in rows if r.get("model/gflops_per_image")]
    assert gflops == [pytest.approx(expected)] * 4 and expected > 0
    assert metrics["gflops"] == pytest.approx(expected) and metrics["peak_mem_bytes"] > 0
