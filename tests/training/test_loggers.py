"""logger=wandb in offline mode: run files written without network, and a resume continues the same run."""

from __future__ import annotations

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
