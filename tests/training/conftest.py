"""Compose the REAL configs (kanvision/configs) with Hydra's compose API, forced onto the CPU with tiny limits."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

import kanvision

CONFIG_DIR = Path(kanvision.__file__).parent / "configs"


def compose_config(
    overrides: Sequence[str] = (), config_name: str = "train", output_dir: str | os.PathLike | None = None
) -> DictConfig:
    """``config_name`` with ``overrides``; Hydra's run-time values set so that ``${hydra:...}`` resolves, paths in
    ``output_dir``, CPU only, no progress bar."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)
    with open_dict(cfg):
        if output_dir is not None:
            cfg.hydra.runtime.output_dir = str(output_dir)
            cfg.paths.root_dir = str(output_dir)
            cfg.paths.output_dir = str(output_dir)
        cfg.hydra.runtime.cwd = os.getcwd()
        HydraConfig().set_config(cfg)
        del cfg["hydra"]  # a Hydra-launched task never sees this node either
        if "trainer" in cfg:
            cfg.trainer.accelerator = "cpu"
            cfg.trainer.enable_progress_bar = False
            cfg.trainer.enable_model_summary = False
        if cfg.get("callbacks"):
            cfg.callbacks.pop("rich_progress_bar", None)
            cfg.callbacks.pop("model_summary", None)
        cfg.print_config = False
    return cfg


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models gain nothing from intra-op threads, and on a shared machine they lose a lot to spinning."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def make_cfg(tmp_path):
    """``make_cfg(*overrides, config_name="train", output_dir=tmp_path)``."""

    def make(*overrides: str, config_name: str = "train", output_dir: str | os.PathLike | None = None) -> DictConfig:
        return compose_config(overrides, config_name, output_dir or tmp_path)

    return make
