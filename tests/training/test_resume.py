"""Resume from the run directory alone: the model and data come from the checkpoint, not from the command line."""

from __future__ import annotations

import json

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from kanvision.training.checkpoint import read_checkpoint
from kanvision.training.train import train
from kanvision.training.validate import ConfigError
from kanvision.utils.safe_config import UnsafeConfigError

# neither the default model (kan_cnn_tiny) nor the default data (digits)
TINY = ["data=synthetic", "data.num_train=32", "data.num_val=16", "data.num_test=16", "data.batch_size=16"]
RUN = [*TINY, "model=resnet18", "data.img_size=16", "trainer.limit_train_batches=1", "test=false"]


class DataRecorder(Callback):
    seen: list = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        data = trainer.datamodule
        DataRecorder.seen.append((type(data).__name__, len(batch[0]), data.num_train_samples))


@pytest.fixture
def run(make_cfg, tmp_path):
    run_dir = tmp_path / "run"
    train(make_cfg(*RUN, "trainer.max_epochs=1", "model.optimizer.lr=0.01", output_dir=run_dir))
    return run_dir


def test_resume_from_the_checkpoint_alone(make_cfg, tmp_path, run):
    last = run / "checkpoints" / "last.ckpt"
    saved = read_checkpoint(last)
    metrics = train(make_cfg(f"ckpt_path={last}", "trainer.max_epochs=2", "trainer.limit_train_batches=1",
                             "test=false", output_dir=tmp_path / "resumed"))  # fmt: skip
    assert metrics["model"] == "resnet18" and metrics["global_step"] == 2
    resumed = read_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.ckpt")
    assert resumed["hyper_parameters"] == saved["hyper_parameters"]  # the recorded lr 0.01, not the default's
    assert resumed["kanvision"]["data"] == saved["kanvision"]["data"]  # the synthetic data, not the digits
    assert resumed["state_dict"].keys() == saved["state_dict"].keys()


def test_resume_in_the_run_directory_with_a_changed_data_key(make_cfg, run):
    DataRecorder.seen = []
    recorder = f"+callbacks.data._target_={__name__}.DataRecorder"
    overrides = ["ckpt_path=last", "trainer.max_epochs=2", "trainer.limit_train_batches=1", "data.batch_size=8"]
    metrics = train(make_cfg(*overrides, "test=false", recorder, output_dir=run))
    assert metrics["global_step"] == 2
    # the command line's key on the recorded data: batches of 8 from the 32 synthetic images
    assert DataRecorder.seen == [("SyntheticDataModule", 8, 32)]
    assert json.loads((run / "metrics.json").read_text())["model"] == "resnet18"


@pytest.mark.parametrize("override", ["model=kan_cnn_tiny", "model.name=resnet34"])
def test_a_model_override_that_contradicts_the_checkpoint_fails_in_one_line(make_cfg, run, override):
    cfg = make_cfg(f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", override, output_dir=run.parent / "other")
    with pytest.raises(ConfigError, match=r"^model\.name=\w+ contradicts checkpoint .*last\.ckpt, which holds a "
                       r"resnet18: [^\n]*$"):  # fmt: skip
        train(cfg)


def test_a_hostile_recorded_config_is_refused(make_cfg, run, tmp_path):
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    checkpoint["kanvision"]["data"] = {"_target_": "os.system", "command": "touch pwned"}
    torch.save(checkpoint, tmp_path / "hostile.ckpt")
    with pytest.raises(UnsafeConfigError, match="os.system"):
        train(make_cfg(f"ckpt_path={tmp_path / 'hostile.ckpt'}", output_dir=tmp_path / "other"))


def _save(tmp_path, checkpoint, name="made.ckpt"):
    path = tmp_path / name
    torch.save(checkpoint, path)
    return str(path)


def test_the_recorded_model_comes_without_initial_weight_arguments(make_cfg, tmp_path):
    from kanvision.training.resume import config_from_checkpoint

    kwargs = {"pretrained": True, "pretrained_cfg_overlay": {"file": "/elsewhere.pth"}, "checkpoint_path": "/x.pth"}
    hparams = {"name": "resnet18", "kwargs": {**kwargs, "drop_rate": 0.1}, "num_classes": 10, "in_chans": 3}
    path = _save(tmp_path, {"hyper_parameters": hparams, "kanvision": {"model_name": "resnet18"}})
    cfg = make_cfg()
    config_from_checkpoint(cfg, path, keys=[])
    assert cfg.model.name == "resnet18" and cfg.model.num_classes == 10
    assert dict(cfg.model.kwargs) == {"drop_rate": 0.1}


@pytest.mark.parametrize("hparams", [False, True])
def test_a_kanvision_entry_that_is_not_a_mapping_is_named(make_cfg, tmp_path, hparams):
    from kanvision.training.resume import config_from_checkpoint

    checkpoint = {"kanvision": ["resnet18"]}
    if hparams:
        checkpoint["hyper_parameters"] = {"name": "resnet18", "kwargs": {}, "num_classes": 10, "in_chans": 3}
    path = _save(tmp_path, checkpoint)
    with pytest.raises(ValueError, match=r"made\.ckpt: kanvision must be a mapping, got a list"):
        config_from_checkpoint(make_cfg(), path, keys=[])


def test_wandb_resume_reads_the_run_id_only_from_a_kanvision_entry(make_cfg, tmp_path):
    from kanvision.training.train import _resume_wandb

    foreign = _save(tmp_path, {"state_dict": {}, "pytorch-lightning_version": "2.0"}, "foreign.ckpt")
    cfg = make_cfg("logger=wandb")
    _resume_wandb(cfg, foreign)  # another LightningModule's checkpoint: nothing to continue
    assert not cfg.logger.wandb.get("id")
    ours = _save(tmp_path, {"kanvision": {"model_name": "resnet18", "wandb_run_id": "run42"}}, "ours.ckpt")
    _resume_wandb(cfg, ours)
    assert cfg.logger.wandb.id == "run42"
