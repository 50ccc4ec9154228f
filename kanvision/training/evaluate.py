"""``kanvision-eval``: top-1, top-5 and loss of a kanvision checkpoint on a data split.

    kanvision-eval ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt
    kanvision-eval ckpt_path=... data.root=/new/place/of/the/data split=test
    kanvision-eval ckpt_path=... data=imagenet data.root=/data/imagenet split=val trainer=gpu

The network AND the data are rebuilt from the checkpoint (model name, kwargs and the run's ``data`` config are
stored in it, and read as data: see :meth:`~kanvision.training.module.ImageClassifier.from_checkpoint`); ``data.*``
values override the stored ones and ``data=<group>`` replaces them. Input size and normalisation are the ones the
network was trained with unless ``data.img_size``/``data.mean``/``data.std`` are set.
Prints the metrics and writes them to ``metrics.json`` in the run's output directory.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from omegaconf import DictConfig, OmegaConf

from kanvision.training.checkpoint import checkpoint_metadata
from kanvision.training.module import ImageClassifier
from kanvision.training.train import resolve_ckpt_path
from kanvision.training.utils import instantiate, instantiate_loggers, write_metrics

log = logging.getLogger(__name__)

__all__ = ["evaluate", "main"]


def data_config(data: DictConfig, meta: dict[str, Any], ckpt_path: str) -> DictConfig:
    """``data`` itself, or (for the ``from_checkpoint`` group) the checkpoint's stored data config with the values
    set in ``data`` applied on top."""
    if not data.get("from_checkpoint"):
        return data
    stored = meta.get("data")
    if not stored:
        raise ValueError(
            f"checkpoint {ckpt_path} stores no data config (written by an older kanvision-train); "
            "choose the data with data=<group> (e.g. data=cifar10 data.root=...)"
        )
    overrides = {k: v for k, v in data.items() if k != "from_checkpoint" and v is not None}
    return OmegaConf.merge(OmegaConf.create(stored), overrides)


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate ``cfg.ckpt_path`` on ``cfg.split`` (``val`` or ``test``) of ``cfg.data``; return the metrics."""
    cfg = copy.deepcopy(cfg)
    split = cfg.get("split", "val")
    if split not in ("val", "test"):
        raise ValueError(f"split must be 'val' or 'test', got {split!r}")
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), cfg)
    if ckpt_path is None:
        raise ValueError("kanvision-eval needs ckpt_path=<checkpoint written by kanvision-train>")
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)

    meta = checkpoint_metadata(ckpt_path)  # checked: only the stored data config may name code (a DataModule)
    datamodule = instantiate(data_config(cfg.data, meta, ckpt_path))
    datamodule.check_data(training=False)  # evaluation never draws a training batch
    model = ImageClassifier.from_checkpoint(ckpt_path, map_location="cpu", compile=False)
    # a head larger than the class count is what training accepts too (outputs no label uses)
    if datamodule.num_classes > model.hparams.num_classes or datamodule.in_chans != model.hparams.in_chans:
        raise ValueError(
            f"the checkpoint's {meta['model_name']} takes {model.hparams.in_chans}-channel images of "
            f"{model.hparams.num_classes} classes, but the data gives {datamodule.in_chans} channels and "
            f"{datamodule.num_classes} classes"
        )
    model.data_config = datamodule.configure_for_model(meta.get("data_config") or model.model_data_config())
    model.check_input_size(model.data_config)

    loggers = instantiate_loggers(cfg.get("logger"))
    trainer: L.Trainer = instantiate(cfg.trainer, logger=loggers or False)
    run = trainer.validate if split == "val" else trainer.test
    results = run(model, datamodule=datamodule)
    metrics: dict[str, Any] = {k: float(v) for result in results for k, v in result.items()}
    metrics.update(model=meta["model_name"], ckpt_path=str(ckpt_path), split=split)
    if trainer.is_global_zero:
        for key in (f"{split}/acc1", f"{split}/acc5", f"{split}/loss", f"{split}_ema/acc1", f"{split}_ema/acc5"):
            if key in metrics:
                print(f"{key:>14s}  {metrics[key]:.4f}")
        write_metrics(Path(cfg.paths.output_dir) / "metrics.json", metrics)
    return metrics


@hydra.main(version_base="1.3", config_path="../configs", config_name="eval")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
