"""A 2-process DDP run on the CPU (gloo) through the real CLI, i.e. train(cfg) behind Hydra's main."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import torch

import kanvision
from kanvision.training.checkpoint import read_checkpoint


def test_ddp_cpu_two_processes_train_and_write_a_checkpoint(tmp_path):
    command = [
        sys.executable, "-m", "kanvision.train", "trainer=ddp_cpu", "model=kan_cnn_tiny",
        "data=synthetic", "data.num_train=64", "data.num_val=32", "data.num_test=32", "data.batch_size=16",
        "data.img_size=8", "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
        "test=false", "callbacks.rich_progress_bar=null", "callbacks.model_summary=null",
        "+trainer.enable_progress_bar=false", "print_config=false", f"hydra.run.dir={tmp_path}",
    ]  # fmt: skip
    # a port free now (Lightning's own pick can race other processes of a parallel test run)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in result.stdout + result.stderr

    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["global_step"] == 2
    assert 0.0 <= metrics["val/acc1"] <= 1.0
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    assert read_checkpoint(ckpt)["global_step"] == 2
    model = kanvision.load_checkpoint(ckpt)
    with torch.no_grad():
        assert model(torch.randn(2, 3, 8, 8)).shape == (2, 10)
