"""Every config of every group composes with train.yaml, and its objects instantiate (on the CPU, tiny)."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from hydra.utils import instantiate as hydra_instantiate
from omegaconf import OmegaConf, open_dict

from kanvision.training.data import ImageDataModule
from kanvision.training.module import ImageClassifier
from kanvision.training.utils import instantiate, instantiate_callbacks, instantiate_loggers

from .conftest import CONFIG_DIR


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def test_every_group_has_its_configs():
    expected = {
        "data": {"cifar10", "cifar100", "imagenet", "imagefolder", "digits", "synthetic"},
        "trainer": {"default", "cpu", "gpu", "ddp", "ddp_cpu", "fsdp", "multi_node"},
        "logger": {"csv", "tensorboard", "wandb"},
        "callbacks": {"default", "model_checkpoint", "lr_monitor", "rich_progress_bar", "early_stopping"},
        "debug": {"fdr", "limit", "overfit"},
        "hparams_search": {"digits_optuna"},
    }
    for group, names in expected.items():
        assert names <= set(_options(group)), group


@pytest.mark.parametrize("name", _options("model"))
def test_model_configs(make_cfg, name):
    cfg = make_cfg(f"model={name}")
    if name == "classifier":  # the shared base: the name comes from the command line
        assert OmegaConf.is_missing(cfg.model, "name")
        cfg = make_cfg(f"model={name}", "model.name=resnet18")
    with torch.device("meta"):  # full-size networks without allocating them
        module = instantiate(cfg.model, num_classes=10, in_chans=3)
    assert isinstance(module, ImageClassifier) and module.hparams.name == cfg.model.name
    assert sum(p.numel() for p in module.model.parameters()) > 0


# from_checkpoint: kanvision-eval's placeholder for the data config stored in a checkpoint (see test_eval.py)
@pytest.mark.parametrize("name", [n for n in _options("data") if n != "from_checkpoint"])
def test_data_configs(make_cfg, tmp_path, name):
    cfg = make_cfg(f"data={name}")
    with open_dict(cfg):
        if "root" in cfg.data.keys():  # `in` alone is False for a missing (???) value
            cfg.data.root = str(tmp_path)
    dm = instantiate(cfg.data)
    assert isinstance(dm, ImageDataModule) and dm.batch_size >= 1
    if name in ("digits", "synthetic"):
        dm.check_data()
        assert dm.num_classes == 10


@pytest.mark.parametrize("name", _options("trainer"))
def test_trainer_configs(make_cfg, name):
    cfg = make_cfg(f"trainer={name}")
    with open_dict(cfg):  # the machine has no GPU: keep each config's strategy and sizes, run them on the CPU
        cfg.trainer.accelerator = "cpu"
        cfg.trainer.precision = "32-true"
        if cfg.trainer.devices == -1:
            cfg.trainer.devices = 2
    if name == "fsdp":
        strategy = hydra_instantiate(cfg.trainer.strategy)
        assert type(strategy).__name__ == "FSDPStrategy"
        return
    trainer = instantiate(cfg.trainer, logger=False)
    assert isinstance(trainer, L.Trainer)
    if name in ("ddp", "ddp_cpu", "multi_node"):
        assert type(trainer.strategy).__name__ == "DDPStrategy"
        assert trainer.num_nodes == cfg.trainer.num_nodes


@pytest.mark.parametrize("name", _options("logger"))
def test_logger_configs(make_cfg, tmp_path, monkeypatch, name):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    loggers = instantiate_loggers(make_cfg(f"logger={name}").logger)
    assert len(loggers) == 1 and type(loggers[0]).__name__.lower().startswith(name[:3])


@pytest.mark.parametrize("name", _options("callbacks"))
def test_callback_configs(make_cfg, name):
    cfg = make_cfg(f"callbacks={name}")
    callbacks = instantiate_callbacks(cfg.callbacks)
    assert len(callbacks) == len([v for v in (cfg.callbacks or {}).values() if v is not None])
    if name == "default":
        kinds = {type(c).__name__ for c in callbacks}
        assert {"ModelCheckpoint", "LearningRateMonitor", "NonFiniteLossGuard"} <= kinds


@pytest.mark.parametrize("group", ["debug", "paths", "hydra", "hparams_search"])
def test_other_groups_compose(make_cfg, group):
    for name in _options(group):
        cfg = make_cfg(f"{group}={name}")
        if group == "debug":
            assert cfg.task_name == "debug" and cfg.trainer.max_epochs >= 1
        if group == "paths":
            assert cfg.paths.output_dir


def test_default_experiment_and_eval_compose(make_cfg, tmp_path):
    cfg = make_cfg("experiment=digits_kan")
    assert cfg.model.name == "kan_cnn_tiny" and cfg.data._target_.endswith("DigitsDataModule")
    eval_cfg = make_cfg(f"ckpt_path={tmp_path / 'x.ckpt'}", config_name="eval")
    assert eval_cfg.ckpt_path.endswith("x.ckpt") and eval_cfg.split == "val"
