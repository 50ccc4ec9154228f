"""One tiny trained run (a non-default RKAN on the digits at 32 px) shared by the checkpoint-loading tests."""

from __future__ import annotations

import pytest
import torch

from tests.training.conftest import compose_config

# rkan_resnet18 with side paths around stages 3 and 4 (the default is stage 4 alone): a kwarg that changes the keys
RUN_OVERRIDES = (
    "model=rkan_resnet18", "+model.kwargs.stages=[3,4]", "data=digits", "data.img_size=32", "data.batch_size=16",
    "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "test=false",
)  # fmt: skip


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """(run directory, metrics) of a two-step run; its checkpoint is ``checkpoints/last.ckpt``."""
    from kanvision.training.train import train

    run_dir = tmp_path_factory.mktemp("run")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        metrics = train(compose_config(RUN_OVERRIDES, "train", run_dir))
    finally:
        torch.set_num_threads(threads)
    return run_dir, metrics
