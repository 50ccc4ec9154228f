"""Small helpers shared by the training entry points: the one ``instantiate`` route, loggers, callbacks, metrics files.

Follows lightning-hydra-template (https://github.com/ashleve/lightning-hydra-template): every object comes from a
config group through :func:`instantiate`, which always converts OmegaConf containers to plain Python so that
hyper-parameters stored in checkpoints load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

__all__ = [
    "instantiate",
    "instantiate_callbacks",
    "instantiate_loggers",
    "to_container",
    "write_metrics",
    "tensor_metrics_to_floats",
    "get_metric_value",
    "config_differences",
    "quiet_known_noise",
    "summary_line",
]


def to_container(cfg: Any) -> Any:
    """An OmegaConf node as plain dicts/lists (resolved); anything else unchanged."""
    if OmegaConf.is_config(cfg):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg


def instantiate(cfg: Any, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` with every nested config passed as plain Python (``_convert_="all"``)."""
    return hydra.utils.instantiate(cfg, _convert_="all", **kwargs)


def _targets(cfg: DictConfig | Mapping | None, what: str) -> list[Any]:
    objects: list[Any] = []
    if not cfg:
        return objects
    if not isinstance(cfg, (DictConfig, Mapping)):
        raise ValueError(f"{what} config must be a mapping of name -> {{_target_: ...}}, got {type(cfg).__name__}")
    for name, sub in cfg.items():
        if sub is None:  # a disabled entry, e.g. `callbacks.rich_progress_bar=null`
            continue
        if not isinstance(sub, (DictConfig, Mapping)) or "_target_" not in sub:
            raise ValueError(f"{what} entry {name!r} must be a mapping with a _target_, got {sub!r}")
        objects.append(instantiate(sub))
    return objects


def instantiate_callbacks(cfg: DictConfig | None) -> list[Any]:
    """All callbacks of the ``callbacks`` group (entries set to null are skipped)."""
    return _targets(cfg, "callbacks")


def instantiate_loggers(cfg: DictConfig | None) -> list[Any]:
    """All loggers of the ``logger`` group (entries set to null are skipped)."""
    return _targets(cfg, "logger")


def tensor_metrics_to_floats(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Lightning's ``callback_metrics`` (tensors) as plain floats, sorted by name."""
    out = {}
    for key, value in metrics.items():
        value = float(value.item() if hasattr(value, "item") else value)
        out[key] = value if math.isfinite(value) else str(value)
    return dict(sorted(out.items()))


def write_metrics(path: str | os.PathLike, metrics: Mapping[str, Any]) -> Path:
    """Write ``metrics`` as JSON (written to a temporary file first, so a crash never leaves half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(dict(metrics), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    log.info("Wrote %s", path)
    return path


def get_metric_value(metrics: Mapping[str, Any], name: str | None) -> float | None:
    """``metrics[name]`` as a float, for a Hydra sweeper to optimize (None when ``name`` is None)."""
    if name is None:
        return None
    if name not in metrics:
        numeric = sorted(k for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
        raise ValueError(f"optimized_metric={name!r} is not a metric of this run: expected one of {numeric}")
    return float(metrics[name])


def _leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, Mapping) and node:
        out: dict[str, Any] = {}
        for key, value in node.items():
            out |= _leaves(value, f"{prefix}.{key}" if prefix else str(key))
        return out
    return {prefix: node}


def config_differences(cfg: DictConfig, defaults: DictConfig) -> DictConfig:
    """The keys of ``cfg`` whose values differ from ``defaults`` (unresolved), nested as in ``cfg``; a key that
    ``cfg`` lacks appears as ``~key: null``."""
    mine = _leaves(OmegaConf.to_container(cfg, resolve=False))
    theirs = _leaves(OmegaConf.to_container(defaults, resolve=False))
    out = OmegaConf.create({})
    for key, value in mine.items():
        if key not in theirs or theirs[key] != value:
            OmegaConf.update(out, key, value, force_add=True)
    for key in sorted(theirs.keys() - mine.keys()):
        parts = key.split(".")
        replaced = any(".".join(parts[:i]) in mine for i in range(1, len(parts)))  # e.g. a group set to null
        if not replaced and not any(k.startswith(key + ".") for k in mine):
            parent, _, name = key.rpartition(".")
            OmegaConf.update(out, f"{parent}.~{name}" if parent else f"~{name}", None, force_add=True)
    return out


def summary_line(name: str, metrics: Mapping[str, Any], seconds: float, output_dir: str | os.PathLike) -> str:
    """``digits_kan: val/acc1 97.2 %, test/acc1 96.9 % in 41 s -> logs/train/runs/...`` (accuracies in percent)."""
    shown = [
        f"{key} {100 * metrics[key]:.1f} %"
        for key in ("val/acc1", "val_ema/acc1", "test/acc1", "test_ema/acc1")
        if isinstance(metrics.get(key), (int, float))
    ]
    where = Path(output_dir)
    try:
        where = where.resolve().relative_to(Path.cwd())
    except ValueError:
        pass
    return f"{name}: {', '.join(shown) or 'no accuracy'} in {seconds:.0f} s -> {where}"


# Messages of dependencies that the user of kanvision-train cannot act on, by the logger or module that emits them.
_NOISE_LOGS = {
    "torch.utils.cpp_extension": ("No CUDA runtime is found",),  # CUDA_HOME exists, the GPU does not
    "lightning.pytorch.utilities.rank_zero": (
        "💡 Tip:",  # advertisements for Lightning's cloud services
        "TPU available: False",
        "Trainer already configured with model summary callbacks",  # callbacks.model_summary is the one we want
        "Loading `train_dataloader` to estimate number of stepping batches",
    ),
}


class _DropMessages(logging.Filter):
    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


def quiet_known_noise(in_process_data: bool = False) -> None:
    """Silence the known console noise of kanvision-train's dependencies (for its command line only).

    Each message is dropped by its text at the logger or module that emits it, nothing else from those sources.
    ``in_process_data``: the data loads in the main process on purpose (``data.num_workers=0``), so Lightning's
    advice to add workers does not apply.
    """
    import warnings

    for name, prefixes in _NOISE_LOGS.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) for f in logger.filters):
            logger.addFilter(_DropMessages(prefixes))
    # torch deprecated LeafSpec; Lightning's own pytree copy still calls it
    warnings.filterwarnings(
        "ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", module=r"lightning\.pytorch\.utilities"
    )
    if in_process_data:
        warnings.filterwarnings("ignore", message=r"The '\w+' does not have many workers", module=r"lightning\.pytorch")
