"""A checkpoint's stored model arguments never make a loader fetch weights or read a file: the initial-weight
arguments (``pretrained``, ``pretrained_cfg_overlay``, ``checkpoint_path``, ...) are dropped, and the network is
rebuilt from the checkpoint's own weights."""

from __future__ import annotations

import logging

import pytest
import torch

import kanvision
from kanvision.training.checkpoint import check_metadata, checkpoint_hparams, read_checkpoint
from kanvision.training.module import ImageClassifier


@pytest.fixture(scope="module")
def fetching_checkpoint(trained_run, tmp_path_factory):
    """The trained checkpoint with initial-weight arguments naming files that do not exist (a loader that honours
    them fails to read them)."""
    run_dir, _ = trained_run
    tmp = tmp_path_factory.mktemp("fetch")
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    fetch = {
        "pretrained": True,
        "pretrained_cfg_overlay": {"file": str(tmp / "elsewhere.safetensors")},
        "checkpoint_path": str(tmp / "elsewhere.pth"),
        "pretrained_strict": False,
    }
    checkpoint["hyper_parameters"]["kwargs"].update(fetch)
    checkpoint["kanvision"]["model_kwargs"].update(fetch)
    path = tmp / "fetching.ckpt"
    torch.save(checkpoint, path)
    return path, checkpoint


def test_from_checkpoint_rebuilds_from_the_files_weights(fetching_checkpoint, caplog):
    path, checkpoint = fetching_checkpoint
    with caplog.at_level(logging.INFO, logger="kanvision.models._checkpoint"):
        model = ImageClassifier.from_checkpoint(path)
    assert "pretrained" not in model.hparams.kwargs and "checkpoint_path" not in model.hparams.kwargs
    assert "'checkpoint_path', 'pretrained', 'pretrained_cfg_overlay', 'pretrained_strict'" in caplog.text
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, checkpoint["state_dict"][key], rtol=0, atol=0)


def test_load_checkpoint_and_metadata_ignore_initial_weight_arguments(fetching_checkpoint):
    path, checkpoint = fetching_checkpoint
    meta = check_metadata(checkpoint["kanvision"], "f")
    assert not {"pretrained", "pretrained_cfg_overlay", "checkpoint_path", "pretrained_strict"} & set(
        meta["model_kwargs"]
    )
    assert meta["model_kwargs"]["stages"] == [3, 4]  # the other arguments are kept
    assert "checkpoint_path" not in checkpoint_hparams(read_checkpoint(path))["kwargs"]
    model = kanvision.load_checkpoint(path)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, checkpoint["state_dict"][f"model.{key}"], rtol=0, atol=0)
