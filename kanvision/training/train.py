"""``kanvision-train``: train any kanvision or timm classifier from the Hydra configs in ``kanvision/configs``.

    kanvision-train experiment=digits_kan
    kanvision-train model=resnet18 data=cifar10 data.root=/data/cifar trainer=gpu
    kanvision-train ckpt_path=<run dir>/checkpoints/last.ckpt     # resume: model and data from the checkpoint
    kanvision-train hydra.run.dir=<run dir> ckpt_path=last          # resume in the run's own directory
    kanvision-train -m hparams_search=digits_optuna                 # Optuna search; main returns optimized_metric

:func:`train` is a plain function of the composed config (lightning-hydra-template); ``main`` is its Hydra
wrapper. One run at a time per run directory (``.run.lock``). Each run writes ``metrics.json`` (final validation
and test metrics, fractions in [0, 1]) and, unless ``export_safetensors=false``, ``model.safetensors`` into its output
directory. ``print_config=true`` prints what differs from the defaults, ``print_config=full`` the whole config.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from kanvision.training.callbacks import MonitoredMetricCheck, ThroughputMeter, latest_checkpoint
from kanvision.training.checkpoint import check_metadata, checkpoint_metadata, read_checkpoint, save_safetensors
from kanvision.training.checkpoint_io import AtomicCheckpointIO, CheckpointError, check_checkpoint_file, check_writable
from kanvision.training.resume import command_line_keys, config_from_checkpoint
from kanvision.training.run_lock import RunDirLock, is_secondary_rank
from kanvision.training.utils import (
    config_differences,
    get_metric_value,
    instantiate,
    instantiate_callbacks,
    instantiate_loggers,
    quiet_known_noise,
    summary_line,
    tensor_metrics_to_floats,
    to_container,
    write_metrics,
)
from kanvision.training.validate import ConfigError, validate_config

log = logging.getLogger(__name__)

__all__ = ["train", "resolve_ckpt_path", "follow_data_img_size", "main"]


def resolve_ckpt_path(ckpt_path: str | None, cfg: DictConfig) -> str | None:
    """``ckpt_path=last`` -> ``last.ckpt`` in the run's checkpoint directory; any other value must be a file."""
    if not ckpt_path:
        return None
    if ckpt_path == "last":
        dirpath = OmegaConf.select(cfg, "callbacks.last_checkpoint.dirpath", default=None)
        path = Path(dirpath or Path(cfg.paths.output_dir) / "checkpoints") / "last.ckpt"
        if not path.is_file():
            raise ValueError(
                f"ckpt_path=last but {path} does not exist; resume in the previous run's directory "
                "(hydra.run.dir=<run dir>) or give ckpt_path=<file>"
            )
        return str(check_checkpoint_file(path))
    if not Path(ckpt_path).is_file():
        raise ValueError(f"ckpt_path={ckpt_path} does not exist; give a .ckpt file or 'last'")
    return str(check_checkpoint_file(ckpt_path))


def _requeue_checkpoint(output_dir: Path) -> str | None:
    """Lightning's SLURM requeue checkpoint (``hpc_ckpt_<n>.ckpt`` in the run directory); Lightning resumes from
    it by itself, so only the wandb run id has to be taken from it."""
    if "SLURM_JOB_ID" not in os.environ:
        return None
    found = sorted(output_dir.glob("hpc_ckpt_*.ckpt"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    return str(found[-1]) if found else None


def _resume_wandb(cfg: DictConfig, ckpt_path: str) -> None:
    """Continue the checkpoint's wandb run (its id is stored in the checkpoint) unless an id was given."""
    # a checkpoint without a kanvision entry (another LightningModule's) resumes too; it just names no run
    meta = read_checkpoint(ckpt_path).get("kanvision")
    run_id = None if meta is None else check_metadata(meta, f"checkpoint {ckpt_path}").get("wandb_run_id")
    if not run_id or not cfg.get("logger"):
        return
    with open_dict(cfg):
        for sub in cfg.logger.values():
            if sub is not None and str(sub.get("_target_", "")).endswith("WandbLogger") and not sub.get("id"):
                sub.id = run_id
                log.info("Resuming wandb run %s", run_id)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train (and test) the model of ``cfg``; return the metrics also written to ``<output_dir>/metrics.json``.

    The run directory is locked (:class:`~kanvision.training.run_lock.RunDirLock`) while the run writes it.
    """
    cfg = copy.deepcopy(cfg)
    validate_config(cfg)
    start = time.perf_counter()
    with RunDirLock(cfg.paths.output_dir):
        metrics = _train(cfg)
    if not is_secondary_rank():
        log.info(summary_line(_run_name(cfg), metrics, time.perf_counter() - start, cfg.paths.output_dir))
    return metrics


def _run_name(cfg: DictConfig) -> str:
    """The experiment's name when one was chosen, else the model's."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        experiment = OmegaConf.select(HydraConfig.get(), "runtime.choices.experiment", default=None)
        if experiment:
            return str(experiment)
    return str(OmegaConf.select(cfg, "model.name", default="run"))


def _config_text(cfg: DictConfig) -> str:
    """The whole config (``print_config=full``), or only what differs from the config's defaults."""
    from hydra import compose
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    full = "Config:\n" + OmegaConf.to_yaml(cfg, resolve=False)
    if cfg.get("print_config") == "full" or not (HydraConfig.initialized() and GlobalHydra.instance().is_initialized()):
        return full
    hydra_cfg = HydraConfig.get()
    try:
        defaults = compose(config_name=hydra_cfg.job.config_name)
    except Exception:  # noqa: BLE001 (a config that only composes with its overrides): print all of it
        return full
    overrides = " ".join(hydra_cfg.overrides.task) or "none"
    changed = config_differences(cfg, defaults)
    body = OmegaConf.to_yaml(changed, resolve=False) if changed else "(the defaults)\n"
    return f"Config: overrides {overrides}; what differs from the defaults (print_config=full for all):\n{body}"


def _train(cfg: DictConfig) -> dict[str, Any]:
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), cfg)
    if ckpt_path:
        config_from_checkpoint(cfg, ckpt_path, command_line_keys())
        validate_config(cfg)
    if cfg.get("print_config"):
        log.info(_config_text(cfg))
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    if cfg.get("float32_matmul_precision"):
        torch.set_float32_matmul_precision(cfg.float32_matmul_precision)
    output_dir = Path(cfg.paths.output_dir)

    # The data first: a missing or malformed data.root fails here, before any (possibly huge) model is built.
    datamodule = instantiate(cfg.data)
    datamodule.check_data()
    for key in ("mean", "std"):
        value = OmegaConf.select(cfg, f"data.{key}", default=None)
        if value is not None and len(value) not in (1, datamodule.in_chans):
            raise ConfigError(
                f"data.{key}={list(value)} has {len(value)} values but the model takes {datamodule.in_chans} "
                f"channel(s): expected 1 or {datamodule.in_chans} values, or null for the model's"
            )

    resume_from = ckpt_path or _requeue_checkpoint(output_dir)
    if resume_from:
        _resume_wandb(cfg, resume_from)

    follow_data_img_size(cfg)
    # a stem that does not take the data's channels, or a head without an output for some label, fails at its first
    # batch; a larger head (e.g. a pretrained one kept whole) trains, with outputs no label uses
    given_chans, given_classes = cfg.model.get("in_chans"), cfg.model.get("num_classes")
    for key, given, data_value, bad in (
        ("in_chans", given_chans, datamodule.in_chans, given_chans is not None and given_chans != datamodule.in_chans),
        ("num_classes", given_classes, datamodule.num_classes, (given_classes or 1e9) < datamodule.num_classes),
    ):
        if bad:
            raise ValueError(
                f"model.{key}={given} but the data gives {data_value}: leave model.{key} unset (it follows the data)"
            )
    if given_classes is not None and given_classes > datamodule.num_classes:
        log.warning(
            "model.num_classes=%d but the data has %d classes: %d outputs no label uses",
            given_classes, datamodule.num_classes, given_classes - datamodule.num_classes,
        )  # fmt: skip
    model = instantiate(
        cfg.model,
        num_classes=cfg.model.get("num_classes") or datamodule.num_classes,
        in_chans=cfg.model.get("in_chans") or datamodule.in_chans,
    )
    model.data_config = datamodule.configure_for_model(model.model_data_config())
    model.check_input_size(model.data_config)
    model.data_module_config = to_container(cfg.data)
    # one image of the training size: Lightning's model summary counts FLOPs on it, and so does the monitor
    model.example_input_array = torch.zeros(1, datamodule.in_chans, *model.data_config["img_size"])
    log.info(
        "Model %s: %.3fM parameters, data %s", model.hparams.name, _num_params(model.model) / 1e6, model.data_config
    )

    meter = ThroughputMeter()
    callbacks = instantiate_callbacks(cfg.get("callbacks")) + [meter]
    monitors = {
        f"callbacks.{name}.monitor": sub.monitor
        for name, sub in (cfg.get("callbacks") or {}).items()
        if sub is not None and sub.get("monitor")
    }
    if monitors and cfg.get("train", True):
        callbacks.append(MonitoredMetricCheck(monitors))
    loggers = instantiate_loggers(cfg.get("logger"))
    plugins = list(cfg.trainer.get("plugins") or []) + [AtomicCheckpointIO()]
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, plugins=plugins)
    if cfg.get("train", True):
        _check_checkpoint_dirs(trainer)
    hparams = {k: to_container(v) for k, v in cfg.items() if k != "hydra"} | {"num_params": _num_params(model.model)}
    for logger in trainer.loggers:
        logger.log_hyperparams(hparams)

    try:
        metrics = _fit_and_test(cfg, trainer, model, datamodule, meter, ckpt_path)
    finally:
        _close_loggers(trainer)
    if trainer.is_global_zero:
        if ckpt_path:
            metrics = _keep_earlier_metrics(output_dir / "metrics.json", metrics)
        write_metrics(output_dir / "metrics.json", metrics)
        if cfg.get("export_safetensors") and cfg.get("train", True):
            _export(model, trainer, output_dir)
    return metrics


def follow_data_img_size(cfg: DictConfig) -> None:
    """A fixed-input-size network (ViT/KAT patch grid, flattening CNNs) is built for ``data.img_size`` when that is
    set and ``model.kwargs.img_size`` is not: one setting changes both."""
    import timm

    size = OmegaConf.select(cfg, "data.img_size", default=None)
    name = OmegaConf.select(cfg, "model.name", default=None)
    if size is None or not name or OmegaConf.select(cfg, "model.kwargs.img_size", default=None) is not None:
        return
    pretrained_cfg = timm.models.get_pretrained_cfg(name) if timm.is_model(name) else None
    if pretrained_cfg is not None and pretrained_cfg.fixed_input_size:
        with open_dict(cfg):
            cfg.model.kwargs.img_size = OmegaConf.to_object(size) if OmegaConf.is_config(size) else size
        log.info("model.kwargs.img_size follows data.img_size=%s", size)


def _fit_and_test(cfg, trainer, model, datamodule, meter, ckpt_path) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    if cfg.get("train", True):
        start = time.perf_counter()
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        metrics["train/wall_s"] = time.perf_counter() - start
        _verify_last_checkpoint(trainer)
        if ckpt_path and not trainer.interrupted and not any(k.startswith("val/") for k in trainer.callback_metrics):
            # resuming a run that had already finished: fit restores it and stops at once, without validating
            log.info("The checkpoint's run had finished: validating its weights again")
            trainer.validate(model, datamodule=datamodule, verbose=False)
        metrics.update(tensor_metrics_to_floats(trainer.callback_metrics))
    if cfg.get("test", False):
        test_ckpt = cfg.get("test_ckpt_path")
        if test_ckpt == "best" and not (trainer.checkpoint_callback and trainer.checkpoint_callback.best_model_path):
            log.warning("test_ckpt_path=best but no best checkpoint was saved; testing the final weights")
            test_ckpt = None
        if not cfg.get("train", True) and test_ckpt is None:
            test_ckpt = ckpt_path
        results = trainer.test(model, datamodule=datamodule, ckpt_path=test_ckpt, weights_only=True)
        metrics.update({k: float(v) for result in results for k, v in result.items()})
    metrics.update(meter.summary())
    metrics.update(
        model=model.hparams.name,
        num_params=_num_params(model.model),
        global_step=trainer.global_step,
        epochs=trainer.current_epoch,
        world_size=trainer.world_size,
    )
    return metrics


def _keep_earlier_metrics(path: Path, metrics: dict[str, Any]) -> dict[str, Any]:
    """Resuming a run that had already finished (no step trained) keeps the metrics it does not compute again (e.g.
    the last epoch's training loss); a run that trained on drops them, they belong to older weights."""
    try:
        earlier = json.loads(path.read_text())
    except (OSError, ValueError):
        return metrics
    if not isinstance(earlier, dict) or earlier.get("global_step") != metrics.get("global_step"):
        return metrics
    return {**earlier, **metrics}


def _checkpoint_dir(trainer: L.Trainer, callback) -> Path:
    return Path(callback.dirpath or Path(trainer.default_root_dir) / "checkpoints")


def _check_checkpoint_dirs(trainer: L.Trainer) -> None:
    """Fail before training when a checkpoint directory cannot be written (Lightning would only log it)."""
    if trainer.fast_dev_run:  # Lightning writes no checkpoint in a fast_dev_run
        return
    for callback in trainer.checkpoint_callbacks:
        check_writable(_checkpoint_dir(trainer, callback))


def _verify_last_checkpoint(trainer: L.Trainer) -> None:
    """After fit: the newest checkpoint (``last.ckpt`` where configured) exists, is complete and loads."""
    if trainer.fast_dev_run or trainer.interrupted or not trainer.checkpoint_callbacks or not trainer.is_global_zero:
        return
    dirs = sorted({str(_checkpoint_dir(trainer, cb)) for cb in trainer.checkpoint_callbacks})
    expected = [
        _checkpoint_dir(trainer, cb) / f"last{cb.FILE_EXTENSION}"
        for cb in trainer.checkpoint_callbacks
        if cb.filename == "last" or cb.save_last
    ]
    paths = [p for p in expected if p.is_file()] or ([latest_checkpoint(trainer)] if latest_checkpoint(trainer) else [])
    if expected and not all(p.is_file() for p in expected):
        raise CheckpointError(f"training ended but {[str(p) for p in expected]} was not written (looked in {dirs})")
    if not paths:
        raise CheckpointError(f"training ended without writing any checkpoint into {dirs}")
    for path in paths:
        check_checkpoint_file(path)
        checkpoint_metadata(read_checkpoint(path))
    log.info("Verified checkpoint %s", ", ".join(str(p) for p in paths))


def _close_loggers(trainer: L.Trainer) -> None:
    """Finish the wandb run: ``train`` may be called again in the same process (tests, sweeps)."""
    if any(type(logger).__name__ == "WandbLogger" for logger in trainer.loggers):
        import wandb

        if wandb.run is not None:
            wandb.finish()


def _num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _export(model, trainer: L.Trainer, output_dir: Path) -> None:
    if "FSDP" in type(trainer.strategy).__name__:  # sharded in memory: the full weights are in the checkpoint
        last = latest_checkpoint(trainer)
        if last:
            from kanvision.training.checkpoint import export_safetensors

            log.info("Exported %s", export_safetensors(last, output_dir / "model.safetensors"))
        return
    meta = model.kanvision_metadata()
    log.info("Exported %s", save_safetensors(model.model, meta, output_dir / "model.safetensors"))
    if model.model_ema is not None:
        save_safetensors(model.model_ema.module, meta, output_dir / "model_ema.safetensors", ema=True)


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Train; return ``metrics[cfg.optimized_metric]`` (what a Hydra sweeper optimizes)."""
    quiet_known_noise(in_process_data=OmegaConf.select(cfg, "data.num_workers", default=None) == 0)
    return get_metric_value(train(cfg), cfg.get("optimized_metric"))


if __name__ == "__main__":
    main()
