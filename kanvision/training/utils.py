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
