"""Bad input, hostile files and failing disks: each fails early with an error naming the value, and nothing is lost."""

from __future__ import annotations

import errno
import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL
import pytest
import timm
import torch
from PIL import Image

from kanvision.training import checkpoint_io
from kanvision.training.checkpoint import read_checkpoint
from kanvision.training.checkpoint_io import AtomicCheckpointIO, CheckpointError, check_writable
from kanvision.training.data import (
    CIFAR10DataModule,
    DataRootError,
    ImageFolderDataModule,
    SyntheticDataModule,
    pillow_safe,
    posterize,
)
from kanvision.training.train import train
from kanvision.training.validate import ConfigError, validate_config

TINY = ["data=synthetic", "data.num_train=32", "data.num_val=16", "data.num_test=16", "data.batch_size=16"]
RUN = [*TINY, "model=kan_cnn_tiny", "data.img_size=8", "trainer.max_epochs=1", "trainer.limit_train_batches=1"]


# ------------------------------------------------------------------------------------------ augmentation
def test_timm_posterize_fails_at_zero_bits_and_kanvision_gives_black():
    """The upstream failure (timm asks Pillow for 0 bits), and the replacement's result: Pillow < 13's black."""
    from timm.data import auto_augment

    image = Image.fromarray(np.random.default_rng(0).integers(1, 256, (32, 32, 3), dtype=np.uint8))
    op = auto_augment.AugmentOp("PosterizeIncreasing", prob=1.0, magnitude=10)  # level 10 -> keep 0 bits
    assert op.level_fn(10, op.hparams) == (0,)
    try:
        op(image)
        upstream_ok = True
    except ValueError:
        upstream_ok = False
    pillow_safe(op)
    out = np.asarray(op(image))
    assert out.shape == (32, 32, 3) and not out.any()
    # bits 1..8 still go through Pillow: the top bits of every value are kept
    pixels = np.asarray(image)
    for bits in (1, 4, 8):
        kept = np.asarray(posterize(image, bits))
        np.testing.assert_array_equal(kept, pixels & ((0xFF << (8 - bits)) & 0xFF))
    # Pillow 13 refuses 0 bits (the crash this replaces); older Pillow returned the black image asserted above
    assert upstream_ok == (int(PIL.__version__.split(".")[0]) < 13)


def augment_ops(node) -> list:
    """Every timm AugmentOp inside a transform (Compose, RandAugment, AutoAugment policies, AugMix)."""
    found = []
    if isinstance(node, (list, tuple)):
        for child in node:
            found += augment_ops(child)
    if hasattr(node, "aug_fn"):
        found.append(node)
    for attr in ("transforms", "ops", "policy"):
        if getattr(node, attr, None) is not None:
            found += augment_ops(getattr(node, attr))
    return found


def test_pillow_safe_replaces_every_posterize_in_timm_transforms():
    from timm.data import auto_augment, create_transform

    for aa in ("rand-m9-mstd0.5-inc1", "rand-m9-mstd0.5", "original", "augmix-m5-w4-d2"):
        ops = augment_ops(pillow_safe(create_transform(32, is_training=True, auto_augment=aa)))
        assert ops, aa
        assert all(op.aug_fn is not auto_augment.posterize for op in ops), aa
        assert any(op.aug_fn is posterize for op in ops) or aa.startswith("augmix"), aa


# ------------------------------------------------------------------------------------------ data security
class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _cifar10(root: Path, meta_obj) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        entry = {"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), "labels": [0, 1, 2, 3]}
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
    (folder / "batches.meta").write_bytes(pickle.dumps(meta_obj, protocol=2))
    return root


def test_malicious_cifar_meta_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    root = _cifar10(tmp_path / "data", {"label_names": [f"c{i}" for i in range(10)], "x": _Exploit(marker)})
    with pytest.raises(DataRootError, match=r"batches\.meta refers to .*was not loaded"):
        CIFAR10DataModule(root=str(root), img_size=32).check_data()
    assert not marker.exists()


def test_real_format_cifar_with_numpy_and_bytes_loads(tmp_path):
    """The release's own types (numpy arrays, bytes filenames at protocol 2, str) pass the restricted unpickler."""
    meta = {"label_names": [f"c{i}" for i in range(10)], "num_cases_per_batch": 4, "filenames": [b"a.png"]}
    root = _cifar10(tmp_path / "data", meta)
    data = CIFAR10DataModule(root=str(root), img_size=32)
    data.check_data()
    assert data.num_train_samples == 20


def test_cifar_labels_beyond_the_class_count_fail_in_check_data(tmp_path):
    root = _cifar10(tmp_path / "data", {"label_names": [f"c{i}" for i in range(10)]})
    batch = root / "cifar-10-batches-py" / "test_batch"
    batch.write_bytes(pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [3, 10]}, protocol=2))
    with pytest.raises(DataRootError, match=r"test_batch: labels must be in \[0, 10\), got 3\.\.10"):
        CIFAR10DataModule(root=str(root), img_size=32).check_data()


def test_cifar_with_one_channel_gives_the_luma_of_the_rgb_images(tmp_path):
    root = _cifar10(tmp_path / "data", {"label_names": [f"c{i}" for i in range(10)]})
    data = CIFAR10DataModule(root=str(root), img_size=32, in_chans=1, mean=(0.0,), std=(1.0,))
    data.check_data()
    data.setup("validate")
    image, _ = data.val_set[1]
    assert image.shape == (1, 32, 32)
    rgb = pickle.loads((root / "cifar-10-batches-py" / "test_batch").read_bytes())["data"][1].reshape(3, 32, 32)
    luma = (0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]) / 255  # ITU-R 601-2, Pillow's "L"
    torch.testing.assert_close(image[0].double(), torch.from_numpy(luma), rtol=0, atol=1.01 / 255)


# ------------------------------------------------------------------------------------------ config values
@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("data.batch_size=1.5", "data.batch_size"),
        ("data.batch_size=abc", "data.batch_size"),
        ("trainer.max_epochs=abc", "trainer.max_epochs"),
        ("trainer.max_epochs=0", "trainer.max_epochs"),
        ("trainer.max_steps=0", "trainer.max_steps"),
        ("model.optimizer.lr=abc", "model.optimizer.lr"),
        ("model.optimizer.lr=-0.1", "model.optimizer.lr"),
    ],
)
def test_bad_config_values_fail_before_anything_is_built(make_cfg, tmp_path, override, key):
    cfg = make_cfg(*RUN, override)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        train(cfg)
    assert not (tmp_path / "metrics.json").exists() and not (tmp_path / "checkpoints").exists()


DIGITS = ["data=digits", "model=kan_cnn_tiny", "trainer.max_epochs=1", "trainer.limit_train_batches=1"]


@pytest.mark.parametrize(
    ("base", "overrides", "message"),
    [
        (RUN, ["trainer.max_epochs=-1", "trainer.max_steps=-1", "model.scheduler=null"], "trainer.max_epochs=-1"),
        (RUN, ["model.optimizer.lr=inf"], "model.optimizer.lr=inf"),
        (DIGITS, ["data.mean=[nan]"], "data.mean=[nan]"),
        (RUN, ["trainer.min_epochs=abc"], "trainer.min_epochs='abc'"),
        (RUN, ["trainer.gradient_clip_val=-1"], "trainer.gradient_clip_val=-1"),
        (RUN, ["trainer.log_every_n_steps=-1"], "trainer.log_every_n_steps=-1"),
        (RUN, ["model.ema.decay=2"], "model.ema.decay=2"),
        (RUN, ["model.mixup.mixup_alpha=-1"], "model.mixup.mixup_alpha=-1"),
        (RUN, ["float32_matmul_precision=ultra"], "float32_matmul_precision='ultra'.*'highest', 'high', 'medium'"),
        (DIGITS, ["data.mean=[0.5,0.5,0.5]"], "data.mean=.* 3 values but the model takes 1 channel"),
        (RUN, ["trainer.devices=0"], "trainer.devices=0"),
        (RUN, ["trainer.precision=bogus"], "trainer.precision='bogus'.*bf16-mixed"),
        (RUN, ["trainer.check_val_every_n_epoch=0"], "trainer.check_val_every_n_epoch=0"),
        (RUN, ["trainer.limit_train_batches=0"], "trainer.limit_train_batches=0 trains nothing"),
        (RUN, ["model.scheduler.min_lr=-1"], "model.scheduler.min_lr=-1"),
        (RUN, ["model.optimizer.opt=nonexistent"], "model.optimizer.opt='nonexistent'.*adamw, .*sgd"),
    ],
)
def test_bad_values_fail_before_the_model_is_built_naming_the_key(make_cfg, monkeypatch, base, overrides, message):
    def no_model(*args, **kwargs):
        raise AssertionError("the model was built")

    monkeypatch.setattr(timm, "create_model", no_model)
    cfg = make_cfg(*base, *overrides)
    with pytest.raises(ConfigError, match=re.escape(message).replace(r"\.\*", ".*")):
        train(cfg)


def test_valid_trainer_values_pass(make_cfg):
    """The same checks accept Lightning's other spellings (precision aliases, device lists, -1 epochs with steps)."""
    for overrides in (
        ["trainer.precision=bf16-mixed", "trainer.devices=auto"],
        ["trainer.precision=16", "trainer.devices=[0]"],
        [
            "trainer.devices='0,1'",
            "trainer.max_epochs=-1",
            "trainer.max_steps=10",
            "model.optimizer.opt=Lookahead_AdamW",
        ],
        ["trainer.limit_train_batches=0", "train=false", "trainer.log_every_n_steps=0", "trainer.gradient_clip_val=0"],
    ):
        validate_config(make_cfg(*RUN, *overrides))


def test_lightning_still_has_the_private_precision_parser():
    """validate_config's precision check uses this private Lightning function and skips itself without it: a
    Lightning release that moves it fails here instead of the check going quiet."""
    from lightning.fabric.connector import _convert_precision_to_unified_args

    assert _convert_precision_to_unified_args("bf16-mixed") == "bf16-mixed"
    with pytest.raises(ValueError, match="bogus"):
        _convert_precision_to_unified_args("bogus")


def test_without_the_precision_parser_the_config_check_leaves_precision_to_the_trainer(make_cfg, monkeypatch):
    monkeypatch.setitem(sys.modules, "lightning.fabric.connector", None)  # any import of it raises ImportError
    validate_config(make_cfg(*RUN, "trainer.precision=bogus"))
    with pytest.raises(ConfigError, match="trainer.devices=0"):  # the other checks still run
        validate_config(make_cfg(*RUN, "trainer.precision=bogus", "trainer.devices=0"))


def test_a_monitored_metric_that_is_never_logged_fails_at_the_first_validation(make_cfg, tmp_path):
    cfg = make_cfg(*RUN, "callbacks.model_checkpoint.monitor=val/acc99")
    with pytest.raises(ValueError, match=r"callbacks\.model_checkpoint\.monitor='val/acc99' .*val/acc1, val/acc5"):
        train(cfg)
    assert not (tmp_path / "metrics.json").exists()


def test_bad_value_through_the_cli_names_the_key(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "kanvision.train", *RUN, "data.batch_size=abc", f"hydra.run.dir={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "data.batch_size='abc'" in result.stderr and "positive integer" in result.stderr


def test_batch_larger_than_the_training_split_with_drop_last(make_cfg):
    cfg = make_cfg(*RUN, "data.batch_size=64", "+data.drop_last=true")
    with pytest.raises(ValueError, match=r"data\.batch_size=64 is larger than the training split \(32 samples\)"):
        train(cfg)


def test_mean_std_of_the_wrong_length():
    with pytest.raises(ValueError, match=r"data\.mean has 2 values"):
        SyntheticDataModule(in_chans=3, mean=(0.5, 0.5))
    with pytest.raises(ValueError, match=r"data\.std has 4 values"):
        SyntheticDataModule(in_chans=3, std=(0.2, 0.2, 0.2, 0.2))


def _image_tree(root: Path, classes: dict[str, int]) -> Path:
    for split in ("train", "val"):
        for name, count in classes.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (12, 12), (i * 40, 0, 0)).save(folder / f"{i}.jpg")
    return root


def test_imagefolder_class_folders_without_images(tmp_path):
    root = _image_tree(tmp_path, {"cat": 0, "dog": 0})
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    with pytest.raises(DataRootError, match=r"2 of 2 class folders hold no images"):
        ImageFolderDataModule(root=str(root)).check_data()


def test_an_empty_class_folder_in_an_evaluation_split_fails_too(tmp_path):
    root = _image_tree(tmp_path, {"cat": 2, "dog": 2})
    for image in (root / "val" / "dog").iterdir():
        image.unlink()
    with pytest.raises(DataRootError, match=r"val: 1 of 2 class folders hold no images \(\['dog'\]"):
        ImageFolderDataModule(root=str(root)).check_data()


@pytest.mark.parametrize(
    ("override", "message"),
    [("num_classes=5", "num_classes=5 but the data gives 10"), ("in_chans=1", "in_chans=1 but the data gives 3")],
)
def test_a_model_head_or_stem_that_does_not_fit_the_data_fails_before_training(make_cfg, override, message):
    with pytest.raises(ValueError, match=rf"model\.{message}: leave model\.\w+ unset"):
        train(make_cfg(*RUN, f"model.{override}"))


def test_a_head_larger_than_the_class_count_trains_with_a_warning(make_cfg, caplog, tmp_path):
    with caplog.at_level("WARNING", logger="kanvision.training.train"):
        metrics = train(make_cfg(*RUN, "model.num_classes=12"))
    assert metrics["global_step"] == 1
    assert "model.num_classes=12 but the data has 10 classes: 2 outputs no label uses" in caplog.text
    from kanvision.training.evaluate import evaluate

    checkpoint = tmp_path / "checkpoints" / "last.ckpt"
    evaluated = evaluate(make_cfg(f"ckpt_path={checkpoint}", config_name="eval", output_dir=tmp_path / "eval"))
    assert 0.0 <= evaluated["val/acc1"] <= 1.0


def test_imagenet_config_on_a_tree_with_other_class_count(make_cfg, tmp_path):
    root = _image_tree(tmp_path / "tree", {"cat": 2, "dog": 2, "eel": 2})
    cfg = make_cfg("data=imagenet", f"data.root={root}", "model=kan_cnn_tiny", "data.batch_size=2")
    with pytest.raises(DataRootError, match=r"has 3 classes, but data\.num_classes=1000.*data\.num_classes=3"):
        train(cfg)
    data = ImageFolderDataModule(root=str(root), num_classes=None)
    data.check_data()
    assert data.num_classes == 3 and data.num_train_samples == 6


# ------------------------------------------------------------------------------------------ checkpoints
def test_unwritable_checkpoint_directory_fails_before_training(make_cfg, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    cfg = make_cfg(*RUN, f"callbacks.last_checkpoint.dirpath={blocker}/ckpts", output_dir=tmp_path / "run")
    with pytest.raises(CheckpointError, match=r"a_file/ckpts is not writable"):
        train(cfg)
    assert not (tmp_path / "run" / "metrics.json").exists()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_checkpoint_directory_fails_before_training(make_cfg, tmp_path):
    read_only = tmp_path / "ro"
    read_only.mkdir()
    read_only.chmod(0o555)
    cfg = make_cfg(*RUN, f"callbacks.last_checkpoint.dirpath={read_only}", output_dir=tmp_path / "run")
    try:
        with pytest.raises(CheckpointError, match="not writable"):
            train(cfg)
    finally:
        read_only.chmod(0o755)


def _failing_save(obj, path, *args, **kwargs):
    with open(path, "wb") as f:
        f.write(b"PK\x03\x04 half a checkpoint")
    raise OSError(errno.ENOSPC, "No space left on device")


def test_failed_write_leaves_no_truncated_checkpoint(tmp_path, monkeypatch):
    target = tmp_path / "ckpts" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"a": torch.ones(3)}, target)
    before = target.read_bytes()
    monkeypatch.setattr(checkpoint_io.torch, "save", _failing_save)
    with pytest.raises(CheckpointError, match="No space left"):
        AtomicCheckpointIO().save_checkpoint({"a": torch.zeros(3)}, target)
    assert target.read_bytes() == before  # the previous checkpoint survives, whole
    assert sorted(p.name for p in target.parent.iterdir()) == ["last.ckpt"]  # no temporary left behind


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path):
    """Only a temporary file whose writer died on this host is deleted; live writers and other hosts keep theirs."""
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(finished.stdout)
    host = checkpoint_io._host()
    names = {
        "dead": f".last.ckpt.{host}-{dead_pid}.abc123.tmp",
        "alive": f".last.ckpt.{host}-{os.getpid()}.def456.tmp",
        "other_host": f".last.ckpt.{host}x-{dead_pid}.ghi789.tmp",
        "foreign": ".notes.tmp",
    }
    for name in names.values():
        (tmp_path / name).write_bytes(b"PK partial")
    (tmp_path / "last.ckpt").write_bytes(b"whole")
    assert check_writable(tmp_path) == tmp_path
    remaining = sorted(p.name for p in tmp_path.iterdir())
    assert remaining == sorted([names["alive"], names["other_host"], names["foreign"], "last.ckpt"])


def test_atomic_writes_use_the_pid_tagged_temporary_name(tmp_path, monkeypatch):
    seen = []
    real_save = torch.save

    def recording_save(obj, path, *args, **kwargs):
        seen.append(Path(path).name)
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(checkpoint_io.torch, "save", recording_save)
    AtomicCheckpointIO().save_checkpoint({"a": torch.ones(2)}, tmp_path / "last.ckpt")
    match = checkpoint_io._TEMPORARY.match(seen[0])
    assert match and match["target"] == "last.ckpt" and int(match["pid"]) == os.getpid()
    assert match["host"] == checkpoint_io._host()


def test_training_with_a_full_disk_fails_loudly(make_cfg, tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint_io.torch, "save", _failing_save)
    cfg = make_cfg(*RUN, output_dir=tmp_path)
    with pytest.raises(CheckpointError, match="No space left"):
        train(cfg)
    assert not list((tmp_path / "checkpoints").glob("*.ckpt"))
    assert not list((tmp_path / "checkpoints").glob(".*"))


def test_run_verifies_last_checkpoint(make_cfg, tmp_path):
    train(make_cfg(*RUN, output_dir=tmp_path))
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.parametrize("content", [b"", b"garbage, not a zip archive"])
def test_resume_from_a_broken_last_checkpoint(make_cfg, tmp_path, content):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(content)
    cfg = make_cfg(*RUN, "ckpt_path=last", output_dir=tmp_path)
    what = "is empty" if not content else "is not a PyTorch checkpoint"
    with pytest.raises(CheckpointError, match=f"last.ckpt {what}"):
        train(cfg)


# ------------------------------------------------------------------------------------------ crashes
def _train_command(run_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "kanvision.train", *TINY, "model=kan_cnn_tiny", "data.img_size=8", "data.num_train=64",
        "trainer.max_epochs=6", "+callbacks.last_checkpoint.every_n_train_steps=1", "callbacks.rich_progress_bar=null",
        "callbacks.model_summary=null", "trainer.accelerator=cpu", f"hydra.run.dir={run_dir}", *extra,
    ]  # fmt: skip


def test_sigkill_during_training_then_resume(tmp_path):
    """A run killed with SIGKILL (no cleanup at all) leaves only whole checkpoints, and ckpt_path=last finishes it."""
    import signal
    import time

    run_dir = tmp_path / "run"
    last = run_dir / "checkpoints" / "last.ckpt"
    # Each step lasts at least 0.1 s, so the kill lands mid-run however fast the machine is.
    (tmp_path / "throttle.py").write_text(
        "import time\nfrom lightning.pytorch.callbacks import Callback\n\n\n"
        "class Throttle(Callback):\n"
        "    def on_train_batch_end(self, *args, **kwargs):\n        time.sleep(0.1)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    throttle = "+callbacks.throttle._target_=throttle.Throttle"
    process = subprocess.Popen(
        _train_command(run_dir, throttle), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    try:
        deadline = time.monotonic() + 240
        while not last.is_file() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process.poll() is None, "training ended before it could be killed"
        time.sleep(0.5)  # somewhere inside the following steps and their checkpoint writes
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert not (run_dir / "metrics.json").exists()
    killed_at = read_checkpoint(last)["global_step"]  # whole and loadable
    assert 1 <= killed_at < 24
    # a kill inside a write may leave the hidden temporary file; it never replaces a whole checkpoint
    leftovers = [p.name for p in last.parent.iterdir() if p.name.endswith(".tmp")]
    assert all(checkpoint_io._TEMPORARY.match(name) for name in leftovers), leftovers
    result = subprocess.run(
        _train_command(run_dir, throttle, "ckpt_path=last"), capture_output=True, text=True, timeout=300, env=env
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert not [p.name for p in last.parent.iterdir() if p.name.endswith(".tmp")]  # the resumed run removed them
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["global_step"] == 24  # 6 epochs of 4 batches, counted across the kill
    assert read_checkpoint(last)["global_step"] == 24


def test_same_seed_same_run(make_cfg, tmp_path):
    """Two runs with one seed give bit-identical weights and metrics (the determinism a resumed run relies on)."""
    runs = []
    for name in ("a", "b"):
        cfg = make_cfg(*RUN, "trainer.limit_train_batches=2", "trainer.deterministic=true", output_dir=tmp_path / name)
        metrics = train(cfg)
        state = read_checkpoint(tmp_path / name / "checkpoints" / "last.ckpt")["state_dict"]
        runs.append((metrics["val/loss"], state))
    assert runs[0][0] == runs[1][0]
    for key, value in runs[0][1].items():
        assert torch.equal(value, runs[1][1][key]), key
