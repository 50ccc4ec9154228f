"""Checkpoint writing that never loses a run silently.

- :class:`AtomicCheckpointIO` writes every ``.ckpt`` to a temporary file next to it and renames it into place, so a
  failed write (disk full, quota, a killed process) leaves the previous checkpoint, never a truncated one.
- :func:`check_writable` probes each checkpoint directory before training (Lightning logs a failed save and goes
  on, so an unwritable directory would end a long run "successfully" without any checkpoint) and removes the
  temporary files of writers that died mid-write (SIGKILL, power loss: nothing could clean up after them).
- :func:`check_checkpoint_file` tells a usable checkpoint from a zero-byte or truncated one before torch reads it.
"""

from __future__ import annotations

import os
import re
import socket
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from kanvision.models._checkpoint import CheckpointError, check_checkpoint_file

__all__ = [
    "AtomicCheckpointIO",
    "CheckpointError",
    "check_checkpoint_file",
    "check_writable",
    "remove_stale_temporaries",
]


def _host() -> str:
    return socket.gethostname().replace(".", "_") or "localhost"


def _temporary_prefix(path: Path) -> str:
    # host and pid in the name tell a dead writer's leftover from a live writer's file (see remove_stale_temporaries)
    return f".{path.name}.{_host()}-{os.getpid()}."


_TEMPORARY = re.compile(r"^\.(?P<target>.+)\.(?P<host>[^.]+)-(?P<pid>\d+)\.[^.]+\.tmp$")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def remove_stale_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Delete the temporary checkpoint files in ``directory`` whose writer (a process on this host) no longer runs.

    Files written by live processes or by other hosts (a shared file system) are left alone. Returns what was removed.
    """
    directory = Path(directory)
    removed = []
    host = _host()
    for candidate in directory.glob(".*.tmp") if directory.is_dir() else ():
        match = _TEMPORARY.match(candidate.name)
        if match is None or match["host"] != host or _process_alive(int(match["pid"])):
            continue
        candidate.unlink(missing_ok=True)
        removed.append(candidate)
    return removed


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose saves are all-or-nothing (temporary file + ``os.replace``)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(f"AtomicCheckpointIO takes no storage_options, got {storage_options!r}")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(prefix=_temporary_prefix(path), suffix=".tmp", dir=path.parent)
        os.close(handle)
        try:
            torch.save(checkpoint, tmp)
            os.replace(tmp, path)
        except BaseException as exc:
            Path(tmp).unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise CheckpointError(f"could not write checkpoint {path}: {exc}; nothing was written") from exc
            raise


def check_writable(directory: str | os.PathLike) -> Path:
    """Create ``directory`` if needed and write a probe file into it; raise :class:`CheckpointError` if that fails.

    Temporary files left there by a killed writer are removed (:func:`remove_stale_temporaries`).
    """
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write_probe_"):
            pass
    except OSError as exc:
        raise CheckpointError(
            f"checkpoint directory {directory} is not writable ({exc.strerror or exc}); set "
            "paths.output_dir or callbacks.<name>.dirpath to a writable directory before training"
        ) from exc
    remove_stale_temporaries(directory)
    return directory
