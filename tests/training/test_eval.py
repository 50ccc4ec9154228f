"""One checkpoint story: kanvision-eval rebuilds model AND data from a checkpoint; kanvision-export writes a file
that kanvision.load_checkpoint rebuilds with identical logits."""

from __future__ import annotations

import json

import pytest
import torch

import kanvision
from kanvision.training.checkpoint import main as export_main
from kanvision.training.evaluate import evaluate
from kanvision.training.train import train

from .test_robustness import _cifar10


@pytest.fixture
def cifar_run(make_cfg, tmp_path):
    root = _cifar10(tmp_path / "data", {"label_names": [f"c{i}" for i in range(10)]})
    run_dir = tmp_path / "run"
    cfg = make_cfg(
        "data=cifar10", f"data.root={root}", "data.batch_size=4", "data.img_size=16", "model=kan_cnn_tiny",
        "trainer.max_epochs=1", "test=false", output_dir=run_dir,
    )  # fmt: skip
    metrics = train(cfg)
    return run_dir, metrics


def test_eval_without_data_reproduces_the_runs_validation(make_cfg, cifar_run, tmp_path):
    run_dir, run_metrics = cifar_run
    cfg = make_cfg(f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}", config_name="eval", output_dir=tmp_path / "e")
    metrics = evaluate(cfg)
    assert metrics["val/acc1"] == pytest.approx(run_metrics["val/acc1"], abs=1e-6)
    assert metrics["val/loss"] == pytest.approx(run_metrics["val/loss"], rel=1e-5)
    # an override still applies on top of the stored data config
    cfg = make_cfg(
        f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}", "data.root=/nonexistent/cifar",
        config_name="eval", output_dir=tmp_path / "e2",
    )  # fmt: skip
    with pytest.raises(ValueError, match="/nonexistent/cifar"):
        evaluate(cfg)
    # a batch larger than the training split is a training problem only: evaluation never draws a training batch
    cfg = make_cfg(
        f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}", "data.batch_size=4096", "+data.drop_last=true",
        config_name="eval", output_dir=tmp_path / "e3",
    )  # fmt: skip
    assert evaluate(cfg)["val/acc1"] == pytest.approx(run_metrics["val/acc1"], abs=1e-6)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 cut short"])
def test_export_and_load_checkpoint_name_a_broken_checkpoint(tmp_path, capsys, content):
    from kanvision.training.checkpoint_io import CheckpointError

    broken = tmp_path / "last.ckpt"
    broken.write_bytes(content)
    with pytest.raises(CheckpointError, match=rf"checkpoint {broken} (is empty|is not a PyTorch checkpoint)"):
        kanvision.load_checkpoint(broken)
    with pytest.raises(SystemExit) as exit_info:
        export_main([str(broken), str(tmp_path / "out.safetensors")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith(f"kanvision-export: error: checkpoint {broken} ")
    assert not (tmp_path / "out.safetensors").exists()


@pytest.mark.parametrize("ema", [False, True])
def test_export_command_rebuilds_identical_logits(make_cfg, tmp_path, ema, capsys):
    run_dir = tmp_path / "run"
    overrides = ["data=synthetic", "data.num_train=32", "data.num_val=16", "data.num_test=16", "data.batch_size=16"]
    overrides += ["model=kan_cnn_tiny", "data.img_size=8", "trainer.max_epochs=1", "model.ema.enabled=true"]
    train(make_cfg(*overrides, output_dir=run_dir))
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    out = tmp_path / "exported.safetensors"
    export_main([str(ckpt), str(out), *(["--ema"] if ema else [])])
    assert str(out) in capsys.readouterr().out
    from safetensors import safe_open

    with safe_open(str(out), "pt") as handle:
        meta = json.loads(handle.metadata()["kanvision"])
    assert meta["model_name"] == "kan_cnn_tiny" and meta["ema"] is ema and meta["data_config"]["img_size"] == [8, 8]
    exported = kanvision.load_checkpoint(out)
    reference = kanvision.load_checkpoint(ckpt, ema=ema)
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(exported(x), reference(x), rtol=0, atol=0)
