"""End-to-end: train(cfg) / evaluate(cfg) on synthetic data through the real configs, resume, checkpoints."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from lightning.pytorch.callbacks import Callback

import kanvision
from kanvision.training.callbacks import NonFiniteLossError
from kanvision.training.checkpoint import main as export_main
from kanvision.training.checkpoint import read_checkpoint
from kanvision.training.data import SyntheticDataModule
from kanvision.training.evaluate import evaluate
from kanvision.training.train import train

# (model, input size): one KAN model and one timm baseline, both tiny
MODELS = [("kan_cnn_tiny", 8), ("resnet18", 16)]
TINY = ["data=synthetic", "data.num_train=64", "data.num_val=32", "data.num_test=32", "data.batch_size=16"]


def _metrics(path) -> dict:
    return json.loads((path / "metrics.json").read_text())


@pytest.mark.parametrize(
    ("name", "size", "precision"), [(*m, "32-true") for m in MODELS] + [(*MODELS[0], "bf16-mixed")]
)
def test_fast_dev_run_train(make_cfg, tmp_path, name, size, precision):
    cfg = make_cfg(*TINY, f"model={name}", f"data.img_size={size}", "debug=fdr", f"trainer.precision={precision}")
    metrics = train(cfg)
    assert metrics["global_step"] == 1
    written = _metrics(tmp_path)
    for key in ("val/acc1", "val/acc5", "test/acc1", "test/acc5"):
        assert 0.0 <= written[key] <= 1.0, key
    assert math.isfinite(written["val/loss"]) and math.isfinite(written["test/loss"])


@pytest.mark.parametrize(("name", "size"), MODELS)
def test_train_then_evaluate(make_cfg, tmp_path, name, size):
    """A short run writes a checkpoint; kanvision-eval on it equals a hand-computed accuracy of the rebuilt model."""
    run_dir, eval_dir = tmp_path / "run", tmp_path / "eval"
    cfg = make_cfg(
        *TINY,
        f"model.name={name}",
        f"data.img_size={size}",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "logger=csv",
        output_dir=run_dir,
    )
    train(cfg)
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()

    eval_cfg = make_cfg(*TINY, f"ckpt_path={ckpt}", config_name="eval", output_dir=eval_dir)
    metrics = evaluate(eval_cfg)
    assert _metrics(eval_dir)["val/acc1"] == pytest.approx(metrics["val/acc1"])

    # independent reference: rebuild from the checkpoint alone, run the validation images by hand
    model = kanvision.load_checkpoint(ckpt)
    data = SyntheticDataModule(num_train=64, num_val=32, num_test=32, img_size=size)
    data.setup()
    images, labels = data.val_set.tensors
    with torch.no_grad():
        logits = model(images)
    acc1 = (logits.argmax(1) == labels).double().mean().item()
    top5 = logits.topk(5, dim=1).indices
    acc5 = (top5 == labels[:, None]).any(1).double().mean().item()
    loss = torch.nn.functional.cross_entropy(logits.double(), labels).item()
    assert metrics["val/acc1"] == pytest.approx(acc1, abs=1e-6)
    assert metrics["val/acc5"] == pytest.approx(acc5, abs=1e-6)
    assert metrics["val/loss"] == pytest.approx(loss, rel=1e-4)

    # the exported safetensors file rebuilds the same network
    exported = kanvision.load_checkpoint(run_dir / "model.safetensors")
    export_main([str(ckpt), str(tmp_path / "export.safetensors")])  # python -m kanvision.training.checkpoint
    again = kanvision.load_checkpoint(tmp_path / "export.safetensors")
    with torch.no_grad():
        torch.testing.assert_close(exported(images), logits)
        torch.testing.assert_close(again(images), logits)


# ------------------------------------------------------------------------------------------------ resume
class Recorder(Callback):
    """Records, per run, the state right after a resume and the learning rate used at every step."""

    runs: list[dict] = []

    def on_train_start(self, trainer, pl_module):
        optimizer = trainer.optimizers[0]
        Recorder.runs.append(
            dict(
                global_step=trainer.global_step,
                epoch=trainer.current_epoch,
                optimizer=copy.deepcopy(optimizer.state_dict()),
                ema={k: v.clone() for k, v in pl_module.model_ema.module.state_dict().items()},
                lrs={},
            )
        )

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        Recorder.runs[-1]["lrs"][trainer.global_step] = trainer.optimizers[0].param_groups[0]["lr"]


class StopAfterFirstEpoch(Callback):
    """An interruption: the first run ends after epoch 0 (its checkpoint written), as a pre-empted job would."""

    def on_validation_end(self, trainer, pl_module):
        trainer.should_stop = True


def _naive_lr(step, total, warmup, lr, warmup_lr, min_lr):
    if step < warmup:
        return warmup_lr + step * (lr - warmup_lr) / warmup
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))


def test_resume_from_last_restores_step_optimizer_scheduler_ema(make_cfg, tmp_path):
    Recorder.runs = []
    common = [
        *TINY,
        "model=kan_cnn_tiny",
        "data.img_size=8",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=3",
        "trainer.limit_val_batches=1",
        "test=false",
        "model.ema.enabled=true",
        "model.ema.decay=0.5",
        "model.scheduler.warmup_steps=2",
        "model.scheduler.warmup_lr=1e-4",
        "model.scheduler.min_lr=1e-5",
        "model.optimizer.lr=1e-2",
        "+callbacks.recorder._target_=tests.training.test_train.Recorder",
    ]
    train(make_cfg(*common, "+callbacks.stop._target_=tests.training.test_train.StopAfterFirstEpoch"))
    saved = read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert saved["global_step"] == 3 and saved["epoch"] == 0

    metrics = train(make_cfg(*common, "ckpt_path=last"))
    resumed = Recorder.runs[1]
    assert resumed["global_step"] == 3 and resumed["epoch"] == 1
    assert metrics["global_step"] == 6
    assert read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == 6

    # the optimizer continues from the saved moments and step counts, not from zero
    state, saved_state = resumed["optimizer"]["state"], saved["optimizer_states"][0]["state"]
    assert state.keys() == saved_state.keys() and len(state) > 0
    for index in state:
        for key, value in saved_state[index].items():
            torch.testing.assert_close(state[index][key], value, rtol=0, atol=0)
    ema_saved = {k[len("model_ema.module.") :]: v for k, v in saved["state_dict"].items() if k.startswith("model_ema.")}
    for key, value in resumed["ema"].items():
        torch.testing.assert_close(value, ema_saved[key], rtol=0, atol=0)
    ema_model = kanvision.load_checkpoint(tmp_path / "checkpoints" / "last.ckpt", ema=True)
    final = read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["state_dict"]
    for key, value in ema_model.state_dict().items():
        torch.testing.assert_close(value, final[f"model_ema.module.{key}"], rtol=0, atol=0)

    # one warm-up + cosine schedule across the interruption, step by step (total 6, warm-up 2)
    lrs = {**Recorder.runs[0]["lrs"], **resumed["lrs"]}
    assert sorted(lrs) == list(range(6))
    for step, lr in lrs.items():
        assert lr == pytest.approx(_naive_lr(step, 6, 2, 1e-2, 1e-4, 1e-5), rel=1e-9), step


@pytest.mark.parametrize("scheduler", ["cosine", "onecycle"])
def test_resume_with_a_longer_run_follows_the_longer_schedule(make_cfg, tmp_path, scheduler, caplog):
    """Raising trainer.max_epochs on resume trains on with this run's schedule (timm's train.py rebuilds its scheduler
    too), not the checkpoint's: a cosine already at its end would train every added step at min_lr."""
    Recorder.runs = []
    common = [
        *TINY,
        "model=kan_cnn_tiny",
        "data.img_size=8",
        "trainer.limit_train_batches=3",
        "trainer.limit_val_batches=1",
        "test=false",
        "model.ema.enabled=true",
        f"model/scheduler={scheduler}",
        "model.optimizer.lr=1e-2",
        "+callbacks.recorder._target_=tests.training.test_train.Recorder",
    ]
    if scheduler == "cosine":
        common += ["model.scheduler.warmup_steps=2", "model.scheduler.warmup_lr=1e-4", "model.scheduler.min_lr=0"]
    train(make_cfg(*common, "trainer.max_epochs=1"))
    with caplog.at_level("WARNING", logger="kanvision.training.module"):
        metrics = train(make_cfg(*common, "trainer.max_epochs=2", "ckpt_path=last"))
    assert metrics["global_step"] == 6
    assert "resumed with this run's learning-rate schedule, not the checkpoint's" in caplog.text
    resumed = Recorder.runs[1]["lrs"]
    assert sorted(resumed) == [3, 4, 5]
    if scheduler == "cosine":  # the 6-step schedule from step 3 on: t_initial 4 (was 1)
        for step, lr in resumed.items():
            assert lr == pytest.approx(_naive_lr(step, 6, 2, 1e-2, 1e-4, 0.0), rel=1e-9), step
        assert "t_initial: 1 -> 4" in caplog.text
    else:  # torch's OneCycleLR built for 6 steps, stepped to where the checkpoint was
        optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1e-2)
        reference = hydra_instantiate_onecycle(optimizer, total_steps=6)
        expected = []
        for _ in range(6):
            expected.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            reference.step()
        for step, lr in resumed.items():
            assert lr == pytest.approx(expected[step], rel=1e-9), step
        assert "total_steps: 3 -> 6" in caplog.text


def hydra_instantiate_onecycle(optimizer, total_steps):
    """The onecycle config's scheduler for ``optimizer``, as the training module builds it."""
    from pathlib import Path

    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    import kanvision.configs

    config = OmegaConf.load(Path(kanvision.configs.__file__).parent / "model" / "scheduler" / "onecycle.yaml")
    return instantiate(config)(optimizer, total_steps=total_steps)


def test_missing_last_checkpoint_is_an_error(make_cfg):
    with pytest.raises(ValueError, match="last.ckpt does not exist"):
        train(make_cfg(*TINY, "ckpt_path=last"))


# ------------------------------------------------------------------------------------------------ NaN guard
class PoisonInputs(Callback):
    """NaN inputs from step 3 on: the loss of step 3 is NaN."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step >= 3:
            batch[0].fill_(float("nan"))


def _poisoned_cfg(make_cfg, callback: str):
    """kan_cnn_tiny for 3 epochs, a checkpoint every step, and the named poisoning callback of this module."""
    return make_cfg(
        *TINY,
        "model=kan_cnn_tiny",
        "data.img_size=8",
        "trainer.max_epochs=3",
        "test=false",
        "callbacks.last_checkpoint.every_n_train_steps=1",
        f"+callbacks.poison._target_=tests.training.test_train.{callback}",
    )


def test_nan_guard_stops_at_the_step_and_keeps_the_last_good_checkpoint(make_cfg, tmp_path):
    cfg = _poisoned_cfg(make_cfg, "PoisonInputs")
    with pytest.raises(NonFiniteLossError, match=r"non-finite training loss \(nan\) at step 3 .*last\.ckpt"):
        train(cfg)
    last = tmp_path / "checkpoints" / "last.ckpt"
    saved = read_checkpoint(last)
    assert saved["global_step"] == 3
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values() if v.is_floating_point())
    model = kanvision.load_checkpoint(last)
    with torch.no_grad():
        assert torch.isfinite(model(torch.randn(4, 3, 8, 8))).all()


class PoisonBatchNormStatistics(Callback):
    """An overflowing BatchNorm statistic at step 2 while every loss stays finite (training uses batch statistics)."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == 2:
            bn = next(m for m in pl_module.modules() if isinstance(m, torch.nn.BatchNorm2d))
            bn.running_var.fill_(float("inf"))


def test_nan_guard_never_writes_a_checkpoint_with_non_finite_buffers(make_cfg, tmp_path):
    cfg = _poisoned_cfg(make_cfg, "PoisonBatchNormStatistics")
    with pytest.raises(
        NonFiniteLossError, match=r"non-finite weights or buffers at step \d+: \['model\.features.*running_var"
    ):
        train(cfg)
    saved = read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values() if v.is_floating_point())
    model = kanvision.load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    with torch.no_grad():
        assert torch.isfinite(model.eval()(torch.randn(4, 3, 8, 8))).all()


# ------------------------------------------------------------------------------------------------ switches
class CompileProbe(Callback):
    compiled: list[bool] = []

    def on_train_start(self, trainer, pl_module):
        CompileProbe.compiled.append(getattr(pl_module.model, "_compiled_call_impl", None) is not None)


def test_compiled_network_checkpoint_has_plain_keys(make_cfg, tmp_path):
    CompileProbe.compiled = []
    cfg = make_cfg(
        *TINY,
        "model=kan_cnn_tiny",
        "data.img_size=8",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "test=false",
        "+model.compile.backend=eager",
        "+callbacks.probe._target_=tests.training.test_train.CompileProbe",
    )
    train(cfg)
    assert CompileProbe.compiled == [True]
    saved = read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert not any("_orig_mod" in k for k in saved["state_dict"])
    assert saved["kanvision"]["model_name"] == "kan_cnn_tiny"
    assert saved["kanvision"]["model_kwargs"] == {"num_classes": 10, "in_chans": 3}
    kanvision.load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")  # strict load of the plain keys


def test_last_checkpoint_follows_training_not_the_best(make_cfg, tmp_path):
    """last.ckpt must hold the latest weights even when the monitored metric stops improving (here: never after
    epoch 0), which Lightning's own save_last no longer guarantees."""
    cfg = make_cfg(
        *TINY, "model=kan_cnn_tiny", "data.img_size=8", "trainer.max_epochs=3", "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1", "callbacks.model_checkpoint.monitor=epoch",
        "callbacks.model_checkpoint.mode=min", "test=true", "test_ckpt_path=best",
    )  # fmt: skip
    metrics = train(cfg)
    assert read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == 6
    assert read_checkpoint(tmp_path / "checkpoints" / "epoch_000.ckpt")["global_step"] == 2
    # test_ckpt_path=best tested the epoch-0 weights, not the final ones
    data = SyntheticDataModule(num_train=64, num_val=32, num_test=32, img_size=8)
    data.setup()
    images, labels = data.test_set.tensors
    with torch.no_grad():
        logits = kanvision.load_checkpoint(tmp_path / "checkpoints" / "epoch_000.ckpt")(images)
    loss = torch.nn.functional.cross_entropy(logits.double(), labels).item()
    assert metrics["test/loss"] == pytest.approx(loss, rel=1e-4)


def test_checkpoint_without_kanvision_metadata_names_the_file(tmp_path):
    from kanvision.training.checkpoint import checkpoint_metadata

    plain = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, plain)
    with pytest.raises(ValueError, match=rf"checkpoint {plain} has no 'kanvision' entry"):
        checkpoint_metadata(plain)


def test_fixed_size_model_follows_data_img_size(make_cfg, tmp_path):
    """KAT at 32 px with data.img_size alone: the patch grid is built for the data (2 x 2 patches of 16)."""
    limits = ("trainer.max_epochs=1", "trainer.limit_train_batches=1", "trainer.limit_val_batches=1", "test=false")
    cfg = make_cfg(*TINY, "model=kat_tiny", "data.img_size=32", "+model.kwargs.depth=1", *limits)
    metrics = train(cfg)
    assert metrics["global_step"] == 1
    network = kanvision.load_checkpoint(tmp_path / "model.safetensors")
    assert tuple(network.patch_embed.img_size) == (32, 32) and network.patch_embed.num_patches == 4
    # an explicit model.kwargs.img_size still wins (and then must match the data)
    cfg = make_cfg(*TINY, "model=kat_tiny", "data.img_size=32", "+model.kwargs.depth=1", "+model.kwargs.img_size=64")
    with pytest.raises(ValueError, match=r"img_size=\[32, 32\] but kat_tiny_patch16_224 was built for \[64, 64\]"):
        train(cfg)
