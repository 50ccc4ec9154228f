"""The console scripts of the optional parts, and the one-line error that names the extra they need.

``pip install kanvision`` installs the layers and models only; training needs ``kanvision[train]`` and
interpretation ``kanvision[interpret]``. Each script below imports its command's module when it runs (so that a
missing extra is reported, not a traceback) and then calls that module's ``main``.
"""

from __future__ import annotations

import importlib
import sys

__all__ = ["EXTRAS", "missing_extra_message"]

# extra -> (what it is called in messages, the top-level modules it provides)
EXTRAS: dict[str, tuple[str, frozenset[str]]] = {
    "train": (
        "training",
        frozenset({"lightning", "hydra", "omegaconf", "wandb", "torchmetrics", "rich", "sklearn", "matplotlib"}),
    ),
    "interpret": ("interpret", frozenset({"matplotlib", "scipy"})),
}


def missing_extra_message(command: str, extra: str, error: ModuleNotFoundError) -> str | None:
    """The line naming the extra to install when ``error`` is a module of an extra (``extra`` first), else None."""
    module = (error.name or "").partition(".")[0]
    for candidate in (extra, *EXTRAS):
        label, modules = EXTRAS[candidate]
        if module in modules:
            return f"{command} needs the {label} extra: pip install 'kanvision[{candidate}]'"
    return None


def _run(command: str, extra: str, module: str) -> None:
    try:
        main = importlib.import_module(module).main
        main()
    except ModuleNotFoundError as error:
        message = missing_extra_message(command, extra, error)
        if message is None:
            raise
        sys.exit(message)


def train() -> None:
    _run("kanvision-train", "train", "kanvision.training.train")


def evaluate() -> None:
    _run("kanvision-eval", "train", "kanvision.training.evaluate")


def convert() -> None:
    _run("kanvision-convert", "train", "kanvision.training.convert")


def export() -> None:
    _run("kanvision-export", "train", "kanvision.training.checkpoint")


def compare() -> None:
    _run("kanvision-compare", "train", "kanvision.training.compare")


def inspect() -> None:
    _run("kanvision-inspect", "interpret", "kanvision.interpret.cli")
