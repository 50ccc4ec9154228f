"""The allow-list that stands between a file and ``hydra.utils.instantiate``."""

from pathlib import Path

import pytest

import kanvision
from kanvision.utils.safe_config import UnsafeConfigError, check_file_config, is_allowed_target

CONFIG_DIR = Path(kanvision.__file__).parent / "configs"

PICKLE_CHAIN = {
    "_target_": "torch.load",
    "f": {"_target_": "io.BytesIO", "_args_": [b"payload"]},
    "weights_only": False,
}


@pytest.mark.parametrize(
    "target",
    [
        "kanvision.training.data.CIFAR10DataModule",
        "kanvision.training.data.DigitsDataModule",
        "torch.optim.AdamW",
        "torch.optim.lr_scheduler.OneCycleLR",
        "timm.optim.create_optimizer_v2",
        "timm.optim.Lamb",
        "timm.scheduler.CosineLRScheduler",
        "kanvision.training.optim.cosine_with_warmup",
        "kanvision.training.module.ImageClassifier",
    ],
)
def test_kanvision_builders_allowed(target):
    assert is_allowed_target(target)
    config = {"data": {"_target_": target, "_partial_": True, "lr": 0.1, "betas": [0.9, 0.99]}}
    assert check_file_config(config, "ckpt") == config


@pytest.mark.parametrize(
    "target",
    [
        "torch.load",
        "io.BytesIO",
        "os.system",
        "builtins.eval",
        "kanvision.training.data.CIFARDataset",  # exported, but not a DataModule
        "kanvision.training.data.__class__DataModule",
        "kanvision.training.data.load_data_pickle",
        "torch.optim.Optimizer.__init__",
        "torch.optim.__class__",
        "torch.optim._functional",
        "timm.optim.param_groups_weight_decay",
        "torch.optim.lr_scheduler.LambdaLR.__reduce__",
        42,
    ],
)
def test_other_targets_refused(target):
    assert not is_allowed_target(target)


@pytest.mark.parametrize(
    "config, key",
    [
        (PICKLE_CHAIN, "data._target_"),
        ({"_target_": "torch.optim.AdamW", "betas": [PICKLE_CHAIN, 0.9]}, "data.betas[0]._target_"),
        ({"_target_": "kanvision.training.data.CIFAR10DataModule", "augment": {"x": PICKLE_CHAIN}}, "data.augment.x"),
        ({"lr": "${oc.env:HOME}"}, "data.lr"),
        ({"lr": b"bytes"}, "data.lr"),
        ({"_target_": "torch.optim.AdamW", "_wrap_": 1}, "data._wrap_"),
    ],
)
def test_unsafe_configs_refused_with_key_path(config, key):
    with pytest.raises(UnsafeConfigError) as error:
        check_file_config(config, "checkpoint run.ckpt", key="data")
    assert "checkpoint run.ckpt" in str(error.value) and key in str(error.value)


def test_no_target_where_none_belongs():
    with pytest.raises(UnsafeConfigError, match="model_kwargs.act._target_"):
        check_file_config({"act": {"_target_": "torch.optim.AdamW"}}, "f", key="model_kwargs", allow_targets=False)
    assert check_file_config({"depth": 2, "img_size": [32, 32]}, "f", allow_targets=False) == {
        "depth": 2,
        "img_size": [32, 32],
    }


def test_omegaconf_node_checked_unresolved():
    from omegaconf import OmegaConf

    with pytest.raises(UnsafeConfigError, match="interpolation"):
        check_file_config(OmegaConf.create({"root": "${oc.env:HOME}"}), "f")


@pytest.mark.parametrize(
    "kind, config, key",
    [
        # a DataModule whose argument builds a network that fetches weights from the hub
        (
            "datamodule",
            {
                "_target_": "kanvision.training.data.CIFAR10DataModule",
                "model": {"_target_": "timm.create_model", "model_name": "hf-hub:x/y", "pretrained": True},
            },
            "kanvision.data.model._target_",
        ),
        ("datamodule", {"root": "d", "extra": [{"_target_": "torch.optim.SGD"}]}, "kanvision.data.extra[0]._target_"),
        ("optimizer", {"_target_": "torch.optim.SGD", "params": {"_target_": "torch.optim.SGD"}}, "params._target_"),
        ("scheduler", {"_target_": "torch.optim.lr_scheduler.OneCycleLR", "x": {"_target_": "torch.optim.SGD"}}, "x."),
    ],
)
def test_a_config_of_one_kind_carries_no_nested_target(kind, config, key):
    with pytest.raises(UnsafeConfigError, match="no _target_ belongs here") as error:
        check_file_config(
            config, "checkpoint run.ckpt", key="kanvision.data" if kind == "datamodule" else "", allow_targets=kind
        )
    assert "checkpoint run.ckpt" in str(error.value) and key in str(error.value)


@pytest.mark.parametrize(
    "kind, target, actual",
    [
        ("datamodule", "timm.create_model", "model"),
        ("datamodule", "torch.optim.AdamW", "optimizer"),
        ("optimizer", "kanvision.training.module.ImageClassifier", "model"),
        ("optimizer", "kanvision.training.optim.cosine_with_warmup", "scheduler"),
        ("scheduler", "timm.optim.create_optimizer_v2", "optimizer"),
        ("scheduler", "kanvision.training.data.CIFAR10DataModule", "datamodule"),
        ("model", "torch.optim.lr_scheduler.OneCycleLR", "scheduler"),
    ],
)
def test_a_target_of_another_kind_is_refused_with_the_key_path(kind, target, actual):
    with pytest.raises(
        UnsafeConfigError, match=rf"hyper_parameters\.{kind}\._target_: .*a {actual} where only a {kind}"
    ):
        check_file_config({"_target_": target}, "checkpoint run.ckpt", f"hyper_parameters.{kind}", allow_targets=kind)


@pytest.mark.parametrize(
    "kind, target",
    [
        ("datamodule", "kanvision.training.data.DigitsDataModule"),
        ("optimizer", "torch.optim.AdamW"),
        ("optimizer", "timm.optim.Lamb"),
        ("optimizer", "timm.optim.create_optimizer_v2"),
        ("scheduler", "torch.optim.lr_scheduler.OneCycleLR"),
        ("scheduler", "timm.scheduler.CosineLRScheduler"),
        ("scheduler", "timm.scheduler.create_scheduler_v2"),
        ("scheduler", "kanvision.training.optim.cosine_with_warmup"),
        ("model", "timm.create_model"),
        ("model", "kanvision.training.module.ImageClassifier"),
    ],
)
def test_a_top_level_target_of_its_kind_is_allowed(kind, target):
    config = {"_target_": target, "_partial_": True, "betas": [0.9, 0.99], "augment": {"scale": [0.08, 1.0]}}
    assert check_file_config(config, "f", allow_targets=kind) == config


def test_an_unknown_kind_is_a_programming_error():
    with pytest.raises(ValueError, match=r"allow_targets must be .*'datamodule'.*got 'optimiser'"):
        check_file_config({}, "f", allow_targets="optimiser")


@pytest.mark.parametrize(
    "group, kind",
    [
        *[(f"data={p.stem}", "datamodule") for p in sorted((CONFIG_DIR / "data").glob("*.yaml"))],
        *[
            (f"model/optimizer={p.stem}", "optimizer")
            for p in sorted((CONFIG_DIR / "model" / "optimizer").glob("*.yaml"))
        ],
        *[
            (f"model/scheduler={p.stem}", "scheduler")
            for p in sorted((CONFIG_DIR / "model" / "scheduler").glob("*.yaml"))
        ],
    ],
)
def test_the_shipped_configs_pass_their_kind(group, kind):
    """What kanvision-train stores (the resolved group) passes the check that reading it back applies."""
    from omegaconf import OmegaConf

    from tests.training.conftest import compose_config

    cfg = compose_config([group], "train", "/tmp/unused")
    node = cfg.data if kind == "datamodule" else cfg.model[kind]
    stored = OmegaConf.to_container(node, resolve=True)
    assert check_file_config(stored, "f", kind, allow_targets=kind) == stored
