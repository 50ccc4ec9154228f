"""Resume from a checkpoint alone: the model and data configs come from what the checkpoint recorded.

``kanvision-train ckpt_path=<run>/checkpoints/last.ckpt`` (or ``hydra.run.dir=<run> ckpt_path=last``) needs no
``model=...``/``data=...`` overrides: every checkpoint written by ``kanvision-train`` holds the model's
hyper-parameters (name, kwargs, class and channel counts, optimizer, scheduler, ...) and the DataModule config it was
trained with. Those replace the composed ``model`` and ``data`` groups unless the command line chose them (``model=``,
``model.name=``, ``data=``, ``experiment=``); single keys given on the command line (``data.root=/new/place``,
``model.optimizer.lr=1e-4``) still apply on top. A model chosen on the command line that is not the checkpoint's fails.
Everything read from the checkpoint passes :func:`~kanvision.utils.safe_config.check_file_config` first.
"""

from __future__ import annotations

import logging
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from kanvision.training.checkpoint import check_metadata, checkpoint_hparams, read_checkpoint
from kanvision.training.validate import ConfigError
from kanvision.utils.safe_config import check_file_config

log = logging.getLogger(__name__)

__all__ = ["command_line_keys", "config_from_checkpoint"]

# the ImageClassifier arguments its checkpoints record as hyper-parameters
_MODEL_KEYS = (
    "name", "kwargs", "num_classes", "in_chans", "optimizer", "scheduler", "param_groups", "scheduler_interval",
    "label_smoothing", "mixup", "ema", "compile", "grad_checkpointing", "channels_last",
)  # fmt: skip
_IMAGE_CLASSIFIER = "kanvision.training.module.ImageClassifier"
# the recorded model keys that name code (see check_file_config); the rest are data
_TARGET_KEYS = {"optimizer": "optimizer", "scheduler": "scheduler"}


def command_line_keys() -> list[str] | None:
    """The config keys (``model.name``) and groups (``model``, ``model.scheduler``) set on the command line of the
    running Hydra app; None outside one."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if not HydraConfig.initialized():
        return None
    task = list(OmegaConf.select(HydraConfig.get(), "overrides.task", default=None) or [])
    return [o.key_or_group.replace("/", ".") for o in OverridesParser.create().parse_overrides(task)]


def _given(keys: list[str], group: str) -> list[str]:
    return [k for k in keys if k == group or k.startswith(group + ".")]


def config_from_checkpoint(cfg: DictConfig, ckpt_path: str, keys: list[str] | None) -> None:
    """Set ``cfg.model`` and ``cfg.data`` from the checkpoint at ``ckpt_path`` (in place), as described above.

    Args:
        keys: :func:`command_line_keys`; None (no command line known) keeps the composed groups and only checks
            that the model is the checkpoint's.
    """
    checkpoint = read_checkpoint(ckpt_path)
    source = f"checkpoint {ckpt_path}"
    # checked whether or not the model comes from it: Lightning's fit reads the same file (on_load_checkpoint);
    # the stored kwargs come without the initial-weight arguments (pretrained, checkpoint_path, ...)
    hparams = checkpoint_hparams(checkpoint, source) if "hyper_parameters" in checkpoint else {}
    meta = check_metadata(checkpoint["kanvision"], source) if checkpoint.get("kanvision") is not None else {}
    name = hparams.get("name") or meta.get("model_name")
    if not name or OmegaConf.select(cfg, "model._target_", default=None) != _IMAGE_CLASSIFIER:
        return  # not written by kanvision-train's ImageClassifier: Lightning compares the weights itself
    model_chosen = keys is None or "experiment" in keys or "model" in keys or "model.name" in keys
    composed_name = OmegaConf.select(cfg, "model.name", default=None)
    if model_chosen and composed_name != name:
        raise ConfigError(
            f"model.name={composed_name} contradicts {source}, which holds a {name}: resume without a model "
            "override, or start a new run (ckpt_path=null)"
        )
    if keys is None:
        return
    with open_dict(cfg):
        if not model_chosen:
            recorded = {
                k: check_file_config(hparams[k], source, f"model.{k}", allow_targets=_TARGET_KEYS.get(k, False))
                for k in _MODEL_KEYS
                if k in hparams
            }
            cfg.model = _with_command_line(cfg, "model", {**_plain(cfg.model, "_"), **recorded}, keys)
            log.info("Model from %s: %s", source, name)
        data = meta.get("data")
        if data and "experiment" not in keys and "data" not in keys:
            recorded = check_file_config(data, source, "kanvision.data", allow_targets="datamodule")
            cfg.data = _with_command_line(cfg, "data", recorded, keys)
            log.info("Data from %s: %s", source, recorded.get("_target_"))


def _plain(node: Any, prefix: str) -> dict[str, Any]:
    """The Hydra keys (``_target_``, ``_recursive_``) of a composed group."""
    return {k: v for k, v in OmegaConf.to_container(node, resolve=False).items() if k.startswith(prefix)}


def _with_command_line(cfg: DictConfig, group: str, recorded: dict[str, Any], keys: list[str]) -> DictConfig:
    """``recorded`` with the values of the command line's ``<group>.<key>`` overrides (as composed) on top."""
    node = OmegaConf.create(recorded)
    for key in _given(keys, group):
        if key == group:
            continue
        value = OmegaConf.select(cfg, key, default=None)
        OmegaConf.update(node, key[len(group) + 1 :], value, merge=False, force_add=True)
    return node
