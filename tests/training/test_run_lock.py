"""One run per run directory: a second run fails at once naming the first; a dead run's lock is taken over."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time

import pytest
import timm

from kanvision.training import run_lock
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


def _slurm_holder(run_dir, restart):
    """Another process of SLURM job 4242 (attempt ``restart``) holding ``run_dir``."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "SLURM_PROCID")}
    env.update(SLURM_JOB_ID="4242", SLURM_RESTART_COUNT=str(restart))
    process = subprocess.Popen([sys.executable, "-c", _HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True, env=env)
    assert process.stdout.readline().strip() == "locked"
    return process


def _is_flocked(path) -> bool:
    """Whether some open file holds the flock of the file now at ``path`` (another open file conflicts even here)."""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_a_requeued_slurm_job_takes_over_with_a_new_locked_file(tmp_path, monkeypatch):
    old = _slurm_holder(tmp_path, restart=0)
    try:
        old_inode = os.stat(tmp_path / LOCK_NAME).st_ino
        monkeypatch.delenv("LOCAL_RANK", raising=False)
        monkeypatch.delenv("SLURM_PROCID", raising=False)
        monkeypatch.setenv("SLURM_JOB_ID", "4242")
        monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
        lock = RunDirLock(tmp_path).acquire()
        try:
            record = json.loads((tmp_path / LOCK_NAME).read_text())
            assert record["pid"] == os.getpid() and record["slurm_restart"] == 1
            assert os.stat(tmp_path / LOCK_NAME).st_ino != old_inode
            assert _is_flocked(tmp_path / LOCK_NAME)  # the run writes with the lock held
        finally:
            lock.release()
        assert not (tmp_path / LOCK_NAME).exists()
    finally:
        old.kill()
        old.wait()


def test_another_step_of_the_same_slurm_attempt_does_not_take_over(tmp_path, monkeypatch):
    old = _slurm_holder(tmp_path, restart=1)
    try:
        monkeypatch.delenv("LOCAL_RANK", raising=False)
        monkeypatch.delenv("SLURM_PROCID", raising=False)
        monkeypatch.setenv("SLURM_JOB_ID", "4242")
        for restart in ("1", "0"):
            monkeypatch.setenv("SLURM_RESTART_COUNT", restart)
            with pytest.raises(RunDirectoryBusyError, match=f"in use by process {old.pid} on "):
                RunDirLock(tmp_path).acquire()
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == old.pid
        assert _is_flocked(tmp_path / LOCK_NAME)
    finally:
        old.kill()
        old.wait()


def test_the_previous_attempt_releasing_late_leaves_the_new_lock_file(tmp_path, monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.delenv("SLURM_PROCID", raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "0")
    old = RunDirLock(tmp_path).acquire()
    run_lock._HELD.clear()  # act as another process: the same-process sharing would otherwise hold nothing
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    new = RunDirLock(tmp_path).acquire()
    old.release()
    assert json.loads((tmp_path / LOCK_NAME).read_text())["slurm_restart"] == 1
    assert _is_flocked(tmp_path / LOCK_NAME)
    new.release()
    assert not (tmp_path / LOCK_NAME).exists()
