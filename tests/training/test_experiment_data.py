"""Every experiment names a data config that exists, and its DataModule reads files in the real on-disk format.

The generated roots: CIFAR python batches (pickles), MNIST IDX files, ImageFolder JPEG trees. A new user's
``kanvision-train experiment=kan_kkan_mnist data.root=<IDX files>`` trains end to end.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import open_dict
from torch.utils.data import default_collate

from kanvision.training.train import train
from kanvision.training.utils import instantiate
from tests.training.conftest import CONFIG_DIR
from tests.training.test_data import write_cifar, write_image_tree
from tests.training.test_data_mnist import write_mnist

EXPERIMENTS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))
DATA_CONFIGS = sorted(p.stem for p in (CONFIG_DIR / "data").glob("*.yaml"))
NEEDS_NO_FILES = {"DigitsDataModule", "SyntheticDataModule"}


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, Path]:
    """DataModule class name -> a generated root in its real on-disk format."""
    base = tmp_path_factory.mktemp("roots")
    write_cifar(base / "cifar10", 10)
    write_cifar(base / "cifar100", 100)
    write_mnist(base / "mnist")
    write_mnist(base / "fashion", "FashionMNIST")
    tree = {"train": {"n01440764": 2, "n01443537": 2}, "val": {"n01440764": 1, "n01443537": 1}}
    write_image_tree(base / "imagenet", tree, "jpg", size=20)
    return {
        "CIFAR10DataModule": base / "cifar10",
        "CIFAR100DataModule": base / "cifar100",
        "MNISTDataModule": base / "mnist",
        "FashionMNISTDataModule": base / "fashion",
        "ImageFolderDataModule": base / "imagenet",
    }


def _data_choice(name: str):
    """The experiment's data group choice and its composed ``data`` node."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose("train", overrides=[f"experiment={name}"], return_hydra_config=True)
    return cfg.hydra.runtime.choices["data"], cfg.data


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_data_config_exists_and_loads_a_batch(name, roots):
    choice, data = _data_choice(name)
    assert choice in DATA_CONFIGS, f"{name} names data={choice}, which configs/data lacks"
    target = data._target_.rsplit(".", 1)[-1]
    assert target in NEEDS_NO_FILES or target in roots, f"{name}: no generated files for {target}"
    with open_dict(data):
        if "root" in data.keys():
            data.root = str(roots[target])
        data.num_workers = 0
        data.pin_memory = False
        data.drop_last = False
        data.batch_size = data.eval_batch_size = 2
        if target == "ImageFolderDataModule":
            data.num_classes = None  # the generated tree has 2 classes
    datamodule = instantiate(data)
    datamodule.check_data()
    datamodule.setup("fit")
    x, y = next(iter(datamodule.train_dataloader()))
    assert x.shape == (2, datamodule.in_chans, *datamodule.data_config["img_size"])
    assert 0 <= int(y.min()) and int(y.max()) < datamodule.num_classes
    x, _ = default_collate([datamodule.val_set[0]])
    assert x.shape[1:] == (datamodule.in_chans, *datamodule.data_config["img_size"])


def test_mnist_experiments_use_the_mnist_data(tmp_path):
    for name in ("kan_kkan_mnist", "kan_kanc_mlp_mnist"):
        assert _data_choice(name)[0] == "mnist"


@pytest.mark.parametrize("name", ["kan_kkan_mnist"])
def test_mnist_experiment_trains_on_idx_files(name, make_cfg, tmp_path):
    """``kanvision-train experiment=kan_kkan_mnist data.root=<IDX files>`` with tiny limits."""
    write_mnist(tmp_path / "mnist", num_train=16, num_test=8, gz=True)
    cfg = make_cfg(
        f"experiment={name}", f"data.root={tmp_path / 'mnist'}", "data.num_workers=0", "data.pin_memory=false",
        "data.batch_size=8", "trainer.max_epochs=1", "trainer.max_steps=2", "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1", "trainer.devices=1", "logger=csv",
    )  # fmt: skip
    metrics = train(cfg)
    assert metrics["global_step"] == 2 and metrics["model"] == name
    assert math.isfinite(metrics["val/loss"]) and 0.0 <= metrics["test/acc1"] <= 1.0
