"""One run per run directory: a second run fails at once naming the first; a dead run's lock is taken over."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import timm

from kanvision.training.run_lock import LOCK_NAME, RunDirectoryBusyError, RunDirLock
from kanvision.training.train import train

TINY = ["data=synthetic", "data.num_train=32", "data.num_val=16", "data.num_test=16", "data.batch_size=16"]
RUN = [*TINY, "model=kan_cnn_tiny", "data.img_size=8", "trainer.max_epochs=1", "trainer.limit_train_batches=1"]

_HOLD = (
    "import sys, time\nfrom kanvision.training.run_lock import RunDirLock\n"
    "with RunDirLock(sys.argv[1]):\n    print('locked', flush=True)\n    time.sleep(60)\n"
)


@pytest.fixture
def holder(tmp_path):
    """Another process holding ``tmp_path`` as its run directory."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK")}
    process = subprocess.Popen([sys.executable, "-c", _HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env)
    assert process.stdout.readline().strip() == "locked"
    yield process
    process.kill()
    process.wait()


def _no_model(*args, **kwargs):
    raise AssertionError("the model was built")


def test_a_second_run_in_a_busy_directory_fails_at_once_naming_the_first(make_cfg, tmp_path, holder, monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setattr(timm, "create_model", _no_model)
    cfg = make_cfg(*RUN)
    start = time.perf_counter()
    with pytest.raises(RunDirectoryBusyError, match=f"in use by process {holder.pid} on "):
        train(cfg)
    assert time.perf_counter() - start < 5
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "metrics.json").exists()
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == holder.pid  # the holder's record is untouched


def test_other_ranks_of_the_same_run_take_no_lock(tmp_path, holder, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")
    with RunDirLock(tmp_path):  # no error: rank 1 writes through its rank 0
        pass
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(RunDirectoryBusyError):
        RunDirLock(tmp_path).acquire()


def test_the_lock_of_a_dead_process_is_taken_over_and_removed_at_the_end(make_cfg, tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": int(dead.stdout), "host": os.uname().nodename}))
    train(make_cfg(*RUN))
    assert (tmp_path / "metrics.json").is_file()
    assert not (tmp_path / LOCK_NAME).exists()


def test_the_lock_is_released_when_the_run_fails(tmp_path):
    with pytest.raises(RuntimeError, match="the run failed"), RunDirLock(tmp_path):
        raise RuntimeError("the run failed")
    with RunDirLock(tmp_path):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()


def test_resuming_a_finished_run_keeps_its_validation_metrics(make_cfg, tmp_path):
    first = train(make_cfg(*RUN, "test=false"))
    again = train(make_cfg(*RUN, "test=false", "ckpt_path=last"))
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert again["global_step"] == first["global_step"] == 1
    for key in ("val/acc1", "val/acc5", "val/loss"):
        assert written[key] == pytest.approx(first[key], rel=1e-6), key
    assert written["train/loss_epoch"] == first["train/loss_epoch"]  # not recomputed: kept from the first part
    # without the earlier metrics.json the validation metrics are computed again from the checkpoint's weights
    (tmp_path / "metrics.json").unlink()
    recomputed = train(make_cfg(*RUN, "test=false", "ckpt_path=last"))
    for key in ("val/acc1", "val/acc5", "val/loss"):
        assert recomputed[key] == pytest.approx(first[key], rel=1e-6), key


def test_the_cli_fails_in_a_busy_directory_before_hydra_writes_there(tmp_path, holder):
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK")}
    command = [sys.executable, "-m", "kanvision.train", *RUN, f"hydra.run.dir={tmp_path}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode != 0
    assert f"in use by process {holder.pid} on " in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK_NAME]  # no .hydra/, no log, no checkpoints


def test_a_resumed_run_that_trains_on_drops_the_metrics_of_the_older_weights(make_cfg, tmp_path):
    assert "test/acc1" in train(make_cfg(*RUN, "test=true"))
    train(make_cfg(*RUN, "test=false", "trainer.max_epochs=2", "ckpt_path=last"))
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["global_step"] == 2 and "val/acc1" in written and "test/acc1" not in written
