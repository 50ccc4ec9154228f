"""One run per run directory: ``<run dir>/.run.lock`` is held (``fcntl.flock``) while a run writes there.

A second ``kanvision-train`` given the same ``hydra.run.dir`` fails at once, naming the process that holds the
directory, instead of overwriting its checkpoints and metrics. The lock file records ``pid``, ``host`` and the SLURM
job id; the kernel drops the ``flock`` when its process dies (even by SIGKILL), so a lock file left by a dead
process is taken over without any guessing. A requeued SLURM job (same job id, a higher ``SLURM_RESTART_COUNT``)
takes over too, with a new lock file.
The other ranks of a multi-process run (``LOCAL_RANK``/``RANK`` > 0, set by Lightning's launcher and torchrun)
write through rank 0 and take no lock.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

__all__ = ["HydraRunLock", "RunDirectoryBusyError", "RunDirLock", "is_secondary_rank"]

LOCK_NAME = ".run.lock"
# run directories this process holds: a flock conflicts with another open file of the same process, so a nested
# holder (train() inside the Hydra callback's lock) shares the outer one's
_HELD: set[str] = set()
_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID")


class RunDirectoryBusyError(RuntimeError):
    """Another live run holds the run directory."""


def is_secondary_rank() -> bool:
    """True in a process that is not rank 0 of its run (by the launcher's environment variables)."""
    for name in _RANK_VARIABLES:
        value = os.environ.get(name, "0").strip() or "0"
        if value != "0":
            return True
    return False


def _holder(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _restart_count(value: str) -> int | None:
    """``SLURM_RESTART_COUNT`` as an int (``None`` if it is not a non-negative integer: then nothing is taken over)."""
    value = value.strip() or "0"
    return int(value) if value.isdigit() else None


class RunDirLock:
    """Hold ``<run_dir>/.run.lock`` from :meth:`acquire` to :meth:`release` (also a context manager); a holder
    inside another holder of the same directory in this process holds nothing itself."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> RunDirLock:
        if self._fd is not None or is_secondary_rank():
            return self
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if os.path.realpath(self.run_dir) in _HELD:
            return self
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                holder = _holder(self.path)
                if not self._same_slurm_job(holder):
                    raise RunDirectoryBusyError(
                        f"run directory {self.run_dir} is in use by process {holder.get('pid', '?')} on "
                        f"{holder.get('host', '?')} ({self.path}); give another hydra.run.dir, or wait for that run"
                    ) from None
                log.warning(
                    "Taking over %s from attempt %s of SLURM job %s",
                    self.path,
                    holder.get("slurm_restart", 0),
                    holder["slurm_job"],
                )
                # the old holder may still hold its file: lock a new file (a new inode) at the path instead
                self.path.unlink(missing_ok=True)
                continue
            # the file may have been unlinked by its previous holder between our open and our lock: lock the file
            # that is at the path now
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        previous = _holder(self.path)
        if previous:
            log.info("Took over %s left by process %s on %s", self.path, previous.get("pid"), previous.get("host"))
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "slurm_job": os.environ.get("SLURM_JOB_ID"),
            "slurm_restart": _restart_count(os.environ.get("SLURM_RESTART_COUNT", "0")),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        self._fd = fd
        _HELD.add(os.path.realpath(self.run_dir))
        return self

    @staticmethod
    def _same_slurm_job(holder: dict[str, Any]) -> bool:
        """A requeued SLURM job (same job id, a higher ``SLURM_RESTART_COUNT`` than the holder's) may take its own
        directory back; another step of the same attempt (same restart count) may not."""
        job = os.environ.get("SLURM_JOB_ID")
        if not job or holder.get("slurm_job") != job:
            return False
        mine = _restart_count(os.environ.get("SLURM_RESTART_COUNT", "0"))
        theirs = holder.get("slurm_restart", 0)
        if mine is None or isinstance(theirs, bool) or not isinstance(theirs, int):
            return False
        return mine > theirs

    def release(self) -> None:
        if self._fd is None:
            return
        _HELD.discard(os.path.realpath(self.run_dir))
        try:
            # a requeued attempt may have taken the path over with a file of its own: leave that one in place
            try:
                ours = os.fstat(self._fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                ours = False
            if ours:
                self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> RunDirLock:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()


class HydraRunLock(Callback):
    """Hydra callback (``hydra.callbacks``): lock ``hydra.run.dir`` before Hydra writes ``.hydra/`` and the log
    there, so that a second run in a busy directory changes nothing in it."""

    def __init__(self) -> None:
        self._lock: RunDirLock | None = None

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            run_dir = OmegaConf.select(config, "hydra.run.dir", throw_on_resolution_failure=True)
        except Exception:  # noqa: BLE001 (it needs Hydra's run-time values): train() takes the lock instead
            return
        if run_dir:
            try:
                self._lock = RunDirLock(run_dir).acquire()
            except RunDirectoryBusyError as error:
                # Hydra turns a callback's exceptions into warnings and goes on; this must stop the run
                raise SystemExit(f"Error: {error}") from None

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None
