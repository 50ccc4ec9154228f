"""The allow-list that stands between a file and ``hydra.utils.instantiate``."""

import pytest

from kanvision.utils.safe_config import UnsafeConfigError, check_file_config, is_allowed_target

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
