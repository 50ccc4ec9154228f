"""``ImageClassifier``: one LightningModule for every kanvision and timm image classifier.

The network is built by name through ``timm.create_model`` (kanvision registers its models with timm on import).
The recipe follows DeiT / timm's train.py (Touvron et al., arXiv 2012.12877; the KAT runs of Yang & Wang,
arXiv 2409.10594, used it unchanged): timm optimizers with no weight decay on norms, biases and embeddings,
per-step warm-up + cosine schedule, label smoothing, Mixup/CutMix with soft-target cross-entropy, model EMA
evaluated alongside the raw weights, top-1/top-5 accuracy per stage.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

import lightning as L
import timm
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from omegaconf.errors import MissingMandatoryValue
from timm.data import Mixup
from timm.data.mixup import mixup_target
from timm.loss import SoftTargetCrossEntropy
from timm.utils import ModelEmaV3
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

import kanvision  # noqa: F401  (registers kanvision's models with timm)
from kanvision.models._checkpoint import INIT_ONLY_KWARGS  # initial-weight arguments, never stored or rebuilt from
from kanvision.models.kanification import check_kanify_config, kanify_recipe
from kanvision.models.kanification import kanify as kanify_model
from kanvision.training.optim import (
    create_optimizer,
    create_scheduler,
    decay_group_of,
    factory_from_config,
    restart_schedule,
    run_length,
    schedule_snapshot,
    scheduler_changes,
)

log = logging.getLogger(__name__)

__all__ = ["ImageClassifier"]


_DEFAULT_OPTIMIZER = {
    "_target_": "timm.optim.create_optimizer_v2",
    "_partial_": True,
    "opt": "adamw",
    "lr": 1e-3,
    "weight_decay": 0.05,
    "momentum": 0.9,
}
_DEFAULT_SCHEDULER = {"_target_": "kanvision.training.optim.cosine_with_warmup", "_partial_": True}


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True, throw_on_missing=True) if OmegaConf.is_config(value) else value


def _check_no_missing(value: Any, key: str) -> None:
    """Raise for a ``???`` (mandatory, unset) value left in a config that Hydra passed on as plain Python."""
    if isinstance(value, Mapping):
        for name, item in value.items():
            _check_no_missing(item, f"{key}.{name}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_no_missing(item, f"{key}[{index}]")
    elif value == "???":
        raise MissingMandatoryValue(f"Missing mandatory value: {key} (set it on the command line or in the config)")


def _from_old_recipe(optimizer: Any, scheduler: Any, param_groups: Any) -> tuple[Any, Any, Any]:
    """Checkpoints written before the optimizer and scheduler became ``_partial_`` targets stored timm's
    ``create_optimizer_v2`` arguments (with the weight-decay group options) and a schedule ``name``; they map onto
    today's targets one to one."""
    if isinstance(optimizer, Mapping) and "_target_" not in optimizer:
        if param_groups is None:
            param_groups = {k: optimizer[k] for k in _GROUP_OPTIONS if k in optimizer}
        optimizer = {**_DEFAULT_OPTIMIZER, **{k: v for k, v in optimizer.items() if k not in _GROUP_OPTIONS}}
    if isinstance(scheduler, Mapping) and "_target_" not in scheduler:
        options = {k: v for k, v in scheduler.items() if k != "name"}
        name = scheduler.get("name", "cosine")
        if name not in ("cosine", "constant"):
            raise ValueError(f"model.scheduler.name must be 'cosine' or 'constant' (or give a _target_), got {name!r}")
        scheduler = {**_DEFAULT_SCHEDULER, **options} if name == "cosine" else None
    return optimizer, scheduler, param_groups


_GROUP_OPTIONS = ("decay_rational", "no_weight_decay")


def _accuracy_metrics(num_classes: int, prefix: str) -> MetricCollection:
    # average="micro": the fraction of correct samples (torchmetrics' default "macro" averages per class).
    return MetricCollection(
        {
            "acc1": MulticlassAccuracy(num_classes, top_k=1, average="micro"),
            "acc5": MulticlassAccuracy(num_classes, top_k=min(5, num_classes), average="micro"),
        },
        prefix=prefix,
    )


class ImageClassifier(L.LightningModule):
    """Any ``timm.create_model(name, num_classes=, in_chans=, **kwargs)`` network trained as an image classifier.

    Args:
        name: a registered timm model name (kanvision's ``kat_*``, ``rkan_*``, ``kan_*`` or any timm model).
        kwargs: further ``timm.create_model`` arguments (``drop_path_rate``, ``pretrained``, ``basis``, ...).
        kanify: :func:`kanvision.kanify` arguments (``kan``, ``where``, ``groups``, ``pattern``, ``kan_kwargs``) applied
            to the network right after it is built, e.g. ``{"kan": "chebyshev"}``; None: the network as timm builds it.
        num_classes, in_chans: set from the data by ``train(cfg)`` unless given.
        optimizer: a Hydra ``_partial_`` config (or a callable) taking the parameter groups first: any torch or timm
            optimizer class, or ``timm.optim.create_optimizer_v2`` with ``opt=`` (the default: AdamW, lr 1e-3, weight
            decay 0.05); see :mod:`kanvision.training.optim`.
        scheduler: a Hydra ``_partial_`` config (or a callable) taking the optimizer first, e.g.
            :func:`~kanvision.training.optim.cosine_with_warmup` or a torch ``lr_scheduler``; ``None``: constant.
        param_groups: ``decay_rational`` (weight decay on group-activation coefficients, GroupRational and GroupKAN,
            as in the official KAT runs; default True) and ``no_weight_decay`` (extra fnmatch patterns of parameter
            names).
        scheduler_interval: ``step`` (per optimizer update) or ``epoch``.
        label_smoothing: for the hard-target loss and for Mixup's soft targets.
        mixup: timm ``Mixup`` arguments (``mixup_alpha``, ``cutmix_alpha``, ``prob``, ``switch_prob``, ``mode``);
            ``None``, both alphas 0 or ``prob`` 0 disable it.
        ema: timm ``ModelEmaV3`` arguments (``decay``, ``use_warmup``, ...) and ``enabled`` (default: True when
            given); ``None`` disables it. The EMA weights are validated and tested alongside the raw ones
            (``val_ema/*``, ``test_ema/*``).
        compile: ``torch.compile`` the network only (True or a dict of ``torch.compile`` arguments); it compiles in
            place, so checkpoint keys carry no ``_orig_mod.``.
        grad_checkpointing: timm's ``set_grad_checkpointing``.
        channels_last: channels-last memory format for network and inputs.
    """

    def __init__(
        self,
        name: str,
        kwargs: Mapping[str, Any] | None = None,
        kanify: Mapping[str, Any] | None = None,
        num_classes: int | None = None,
        in_chans: int | None = None,
        optimizer: Mapping[str, Any] | Callable | None = None,
        scheduler: Mapping[str, Any] | Callable | None = None,
        param_groups: Mapping[str, Any] | None = None,
        scheduler_interval: str = "step",
        label_smoothing: float = 0.0,
        mixup: Mapping[str, Any] | None = None,
        ema: Mapping[str, Any] | None = None,
        compile: bool | Mapping[str, Any] = False,
        grad_checkpointing: bool = False,
        channels_last: bool = False,
    ):
        super().__init__()
        kwargs = dict(_plain(kwargs) or {})
        _check_no_missing(kwargs, "model.kwargs")
        for key in ("num_classes", "in_chans"):
            if key in kwargs:
                raise ValueError(f"set model.{key}, not model.kwargs.{key} (got kwargs.{key}={kwargs[key]})")
        if num_classes is None or int(num_classes) < 1:
            raise ValueError(f"model.num_classes must be a positive integer (it follows the data), got {num_classes}")
        in_chans = 3 if in_chans is None else int(in_chans)
        kanify = _plain(kanify)
        _check_no_missing(kanify, "model.kanify")
        kanify = check_kanify_config(kanify, "model.kanify")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"model.label_smoothing must be in [0, 1), got {label_smoothing}")
        optimizer, scheduler, param_groups = _from_old_recipe(
            _DEFAULT_OPTIMIZER if optimizer is None else _plain(optimizer), _plain(scheduler), _plain(param_groups)
        )
        param_groups = dict(param_groups or {})
        unknown = sorted(set(param_groups) - set(_GROUP_OPTIONS))
        if unknown:
            raise ValueError(f"model.param_groups: unknown options {unknown}; valid: {list(_GROUP_OPTIONS)}")
        self._optimizer_factory = factory_from_config(optimizer, "model.optimizer")
        self._scheduler_factory = factory_from_config(scheduler, "model.scheduler")
        if isinstance(optimizer, Mapping) and "layer_decay" in optimizer:
            raise ValueError("model.optimizer.layer_decay is not supported (weight-decay groups are built by name)")
        if scheduler_interval not in ("step", "epoch"):
            raise ValueError(f"model.scheduler_interval must be 'step' or 'epoch', got {scheduler_interval!r}")
        # "name.tag" selects pretrained weights; "hf-hub:..." / "local-dir:..." are resolved by timm itself
        if ":" not in name and not timm.is_model(name.split(".")[0]):
            close = timm.list_models(f"*{name.split('_')[0]}*")[:8]
            raise ValueError(f"model.name={name!r} is not a registered timm or kanvision model (similar: {close})")
        self.save_hyperparameters(
            dict(
                name=name,
                kwargs=kwargs,
                kanify=kanify,
                num_classes=int(num_classes),
                in_chans=in_chans,
                # a config is kept (checkpoints stay loadable with weights_only=True); a callable is used, not saved
                optimizer=None if callable(optimizer) else optimizer,
                scheduler=None if callable(scheduler) else scheduler,
                param_groups=param_groups,
                scheduler_interval=scheduler_interval,
                label_smoothing=float(label_smoothing),
                mixup=_plain(mixup),
                ema=_plain(ema),
                compile=_plain(compile),
                grad_checkpointing=bool(grad_checkpointing),
                channels_last=bool(channels_last),
            )
        )
        self.model = timm.create_model(name, num_classes=int(num_classes), in_chans=in_chans, **kwargs)
        if kanify is not None:
            try:
                report = kanify_model(self.model, **kanify)
            except ValueError as error:
                raise ValueError(f"model.kanify={kanify} cannot convert {name}: {error}") from error
            log.info("kanify %s: %d modules converted, parameters %d -> %d", name, len(report.replaced),
                     report.params_before, report.params_after)  # fmt: skip
        if grad_checkpointing:
            if not hasattr(self.model, "set_grad_checkpointing"):
                raise ValueError(f"model {name!r} has no set_grad_checkpointing(); set model.grad_checkpointing=false")
            self.model.set_grad_checkpointing(True)
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        # decided once, by name, before any wrapping (see kanvision.training.optim)
        self._decay_group_of = decay_group_of(
            self.model, param_groups.get("decay_rational", True), tuple(param_groups.get("no_weight_decay") or ())
        )
        self.model_ema = None
        ema_args = dict(_plain(ema) or {})
        if ema_args.pop("enabled", bool(ema_args)):
            self.model_ema = ModelEmaV3(self.model, **ema_args)
            self.model_ema.requires_grad_(False)  # never trained: DDP must not wait for its gradients
        self.mixup = None
        mixup_args = dict(_plain(mixup) or {})
        mixup_on = mixup_args.get("mixup_alpha", 1.0) > 0 or mixup_args.get("cutmix_alpha", 0.0) > 0
        if mixup_args and mixup_args.get("prob", 1.0) > 0 and (mixup_on or mixup_args.get("cutmix_minmax")):
            self.mixup = Mixup(**mixup_args, label_smoothing=label_smoothing, num_classes=int(num_classes))
        self.data_config: dict[str, Any] = {}
        self.data_module_config: dict[str, Any] | None = None  # the run's `data` config, for kanvision-eval
        stages = ("train", "val", "test") + (("val_ema", "test_ema") if self.model_ema is not None else ())
        # keys carry a suffix: a ModuleDict key "train" would shadow nn.Module.train
        self.metrics = nn.ModuleDict({f"{s}_metrics": _accuracy_metrics(int(num_classes), f"{s}/") for s in stages})
        self._compiled = False

    # ------------------------------------------------------------------------------------------ properties
    @property
    def model_kwargs(self) -> dict[str, Any]:
        """``timm.create_model`` arguments that rebuild this network (without initial-weight options)."""
        kwargs = {k: v for k, v in self.hparams.kwargs.items() if k not in INIT_ONLY_KWARGS}
        return dict(num_classes=self.hparams.num_classes, in_chans=self.hparams.in_chans, **kwargs)

    def kanvision_metadata(self) -> dict[str, Any]:
        """What a checkpoint needs to rebuild the network alone (see ``kanvision.load_checkpoint``)."""
        wandb_id = None
        for logger in self.trainer.loggers if self._trainer is not None else []:
            if type(logger).__name__ == "WandbLogger":
                wandb_id = logger.version
        return {
            "model_name": self.hparams.name,
            "model_kwargs": self.model_kwargs,
            "kanify": kanify_recipe(self.model, f"model {self.hparams.name}"),
            "data_config": dict(self.data_config),
            "data": self.data_module_config,
            "has_ema": self.model_ema is not None,
            "wandb_run_id": wandb_id,
            "kanvision_version": kanvision.__version__,
        }

    def model_data_config(self) -> dict[str, Any]:
        """The network's timm data config (input size, mean/std, interpolation, crop_pct).

        Fixed-size networks (ViT/KAT patch embeddings) report the size they were built for, which
        ``img_size=`` may have changed from the pretrained_cfg's.
        """
        from timm.data import resolve_model_data_config

        config = resolve_model_data_config(self.model)
        fixed = self.fixed_input_size()
        if fixed is not None:
            config["input_size"] = (config["input_size"][0], *fixed)
        return config

    def check_input_size(self, data_config: Mapping[str, Any]) -> None:
        """Fail before training when the data's image size cannot go through a fixed-size network."""
        fixed = self.fixed_input_size()
        size = tuple(int(s) for s in data_config["img_size"])
        if fixed is not None and size != fixed:
            raise ValueError(
                f"data.img_size={list(size)} but {self.hparams.name} was built for {list(fixed)} inputs; build it for "
                f"the data with +model.kwargs.img_size={size[0]} (or set data.img_size={fixed[0]})"
            )

    def fixed_input_size(self) -> tuple[int, int] | None:
        """(H, W) the network requires, or None when it takes any size."""
        embed = getattr(self.model, "patch_embed", None)
        size = getattr(embed, "img_size", None)
        if size is None or getattr(embed, "dynamic_img_size", False) or not getattr(embed, "strict_img_size", True):
            return None
        return tuple(int(s) for s in size)

    # ------------------------------------------------------------------------------------------ steps
    def forward(self, x: Tensor) -> Tensor:
        if self.hparams.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)

    def configure_model(self) -> None:
        if self.hparams.compile and not self._compiled:
            options = self.hparams.compile if isinstance(self.hparams.compile, Mapping) else {}
            self.model.compile(**options)  # in place: state_dict keys stay free of `_orig_mod.`
            self._compiled = True

    def on_fit_start(self) -> None:
        strategy = type(self.trainer.strategy).__name__
        if self.model_ema is not None and "FSDP" in strategy:
            raise ValueError("model.ema is not supported with FSDP (the EMA copy would be sharded); set model.ema=null")

    def on_train_start(self) -> None:
        fresh, self._fresh_schedule = getattr(self, "_fresh_schedule", None), None
        if fresh is None or not self.trainer.ckpt_path:
            return
        # resumed: the checkpoint's schedule is loaded; a changed one (e.g. a longer run) takes its place
        scheduler = self.trainer.lr_scheduler_configs[0].scheduler
        changes = scheduler_changes(schedule_snapshot(scheduler), fresh)
        if changes:
            log.warning("resumed with this run's learning-rate schedule, not the checkpoint's: %s", "; ".join(changes))
            per_step = self.hparams.scheduler_interval == "step"
            restart_schedule(scheduler, fresh, self.global_step if per_step else self.current_epoch, per_step)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        num_classes = self.hparams.num_classes
        if self.mixup is not None:
            if len(x) % 2 == 0:
                x, target = self.mixup(x, y)
            else:  # timm's Mixup needs an even batch; an odd last batch gets smoothed one-hot targets only
                target = mixup_target(y, num_classes, lam=1.0, smoothing=self.hparams.label_smoothing)
            logits = self(x)
            loss = SoftTargetCrossEntropy()(logits, target)
        else:
            logits = self(x)
            loss = F.cross_entropy(logits, y, label_smoothing=self.hparams.label_smoothing)
            self.metrics["train_metrics"].update(logits.detach(), y)
            self.log_dict(self.metrics["train_metrics"], on_step=False, on_epoch=True)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, sync_dist=True, batch_size=len(x))
        return loss

    def _eval_step(self, batch: tuple[Tensor, Tensor], stage: str) -> None:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        self.metrics[f"{stage}_metrics"].update(logits, y)
        self.log(f"{stage}/loss", loss, on_epoch=True, prog_bar=True, sync_dist=True, batch_size=len(x))
        self.log_dict(self.metrics[f"{stage}_metrics"], on_epoch=True, prog_bar=True)
        if self.model_ema is not None:
            if self.hparams.channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            ema_logits = self.model_ema.module(x)
            self.metrics[f"{stage}_ema_metrics"].update(ema_logits, y)
            self.log(
                f"{stage}_ema/loss", F.cross_entropy(ema_logits, y), on_epoch=True, sync_dist=True, batch_size=len(x)
            )
            self.log_dict(self.metrics[f"{stage}_ema_metrics"], on_epoch=True)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        if self.model_ema is not None:
            self.model_ema.update(self.model, step=self.global_step)

    # ------------------------------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> dict[str, Any]:
        if self._optimizer_factory is None:
            raise ValueError("model.optimizer is null: give a torch or timm optimizer (_target_, _partial_: true)")
        decay_rational = self.hparams.param_groups.get("decay_rational", True)
        optimizer = create_optimizer(self._optimizer_factory, self.model, self._decay_group_of, decay_rational)
        if self._scheduler_factory is None:
            return {"optimizer": optimizer}
        scheduler = create_scheduler(self._scheduler_factory, optimizer, lambda: run_length(self.trainer))
        # as built, before a resume loads the checkpoint's: on_train_start compares the two
        self._fresh_schedule = schedule_snapshot(scheduler)
        interval = self.hparams.scheduler_interval
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": interval, "frequency": 1, "name": "lr"},
        }

    def lr_scheduler_step(self, scheduler: Any, metric: Any) -> None:
        if not hasattr(scheduler, "step_update"):  # a torch scheduler
            super().lr_scheduler_step(scheduler, metric)
        elif self.hparams.scheduler_interval == "step":  # timm schedulers take the update count per step
            scheduler.step_update(num_updates=self.global_step)
        else:
            scheduler.step(epoch=self.current_epoch + 1, metric=metric)

    # ------------------------------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("state_dict", {})
        if any("_orig_mod." in k for k in state):
            checkpoint["state_dict"] = {k.replace("_orig_mod.", ""): v for k, v in state.items()}
        hparams = checkpoint.get("hyper_parameters")
        if hparams is not None:  # never fetch initial weights again when rebuilding from this checkpoint
            hparams["kwargs"] = {k: v for k, v in hparams["kwargs"].items() if k not in INIT_ONLY_KWARGS}
        checkpoint["kanvision"] = self.kanvision_metadata()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # a resumed run copies the stored data config into its own checkpoints: check it (and the rest) first
        from kanvision.training.checkpoint import check_metadata, checkpoint_hparams

        source = self._checkpoint_source()
        if checkpoint.get("hyper_parameters") is not None:
            checkpoint_hparams(checkpoint, source)
        meta = checkpoint.get("kanvision")
        meta = {} if meta is None else check_metadata(meta, source)
        if meta.get("data_config"):
            self.data_config = dict(meta["data_config"])
        self.data_module_config = meta.get("data")
        state = checkpoint.get("state_dict", {})
        if any("_orig_mod." in k for k in state):
            checkpoint["state_dict"] = {k.replace("_orig_mod.", ""): v for k, v in state.items()}

    def _checkpoint_source(self) -> str:
        path = getattr(self, "_loading_from", None)
        if path is None and self._trainer is not None:
            path = self._trainer.ckpt_path
        return f"checkpoint {path}" if path else "checkpoint"

    # ------------------------------------------------------------------------------------------ rebuilding
    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike, map_location: str | torch.device | None = "cpu", **overrides: Any
    ) -> ImageClassifier:
        """The classifier a ``kanvision-train`` checkpoint was saved from, with its weights (strict: same keys,
        shapes and dtype kinds).

        The file is read with ``torch.load(weights_only=True)``; its hyper-parameters and ``kanvision`` entry must pass
        :func:`~kanvision.utils.safe_config.check_file_config` (only the optimizer and scheduler, and the stored
        data config, may name code, and only torch/timm/kanvision optimizers, schedulers and DataModules) before
        anything is built. Stored initial-weight arguments (``kwargs.pretrained``, ``checkpoint_path``, ...; see
        ``INIT_ONLY_KWARGS``) are dropped: the network is rebuilt from the file's weights. ``overrides`` replace
        hyper-parameters (e.g. ``compile=False``).
        """
        from kanvision.training.checkpoint import (
            check_state_dict,
            checkpoint_hparams,
            checkpoint_metadata,
            read_checkpoint,
        )

        source = f"checkpoint {os.fspath(path)}"
        checkpoint = read_checkpoint(path)
        checkpoint_metadata(checkpoint, source)  # before anything is built (on_load_checkpoint uses it)
        hparams = checkpoint_hparams(checkpoint, source)  # kwargs without INIT_ONLY_KWARGS
        unknown = sorted(set(overrides) - set(inspect.signature(cls.__init__).parameters))
        if unknown:
            raise TypeError(f"ImageClassifier.from_checkpoint: unknown hyper-parameters {unknown}")
        try:
            model = cls(**{**hparams, **overrides})
        except TypeError as error:  # a key that is not an ImageClassifier argument
            raise ValueError(f"{source}: its hyper_parameters do not build an ImageClassifier: {error}") from error
        model._loading_from = os.fspath(path)
        try:
            model.on_load_checkpoint(checkpoint)
        finally:
            del model._loading_from
        state = checkpoint.get("state_dict")
        if not isinstance(state, Mapping):
            raise ValueError(f"{source} holds no state_dict")
        check_state_dict(model, state, source)
        model.load_state_dict(state, strict=True)
        return model if map_location is None else model.to(map_location)

    @classmethod
    def load_from_checkpoint(  # type: ignore[override]
        cls,
        checkpoint_path: str | os.PathLike,
        map_location: str | torch.device | None = None,
        hparams_file: str | os.PathLike | None = None,
        strict: bool | None = None,
        weights_only: bool | None = None,
        **kwargs: Any,
    ) -> ImageClassifier:
        """Lightning's loader routed through :meth:`from_checkpoint`: the hyper-parameters are checked before
        anything is built, the file is read with ``weights_only=True`` and the weights load strictly."""
        if hparams_file is not None or strict is False or weights_only is False:
            raise ValueError(
                "ImageClassifier.load_from_checkpoint takes its hyper-parameters from the checkpoint, loads weights "
                "strictly and only with weights_only=True (hparams_file, strict=False and weights_only=False are "
                f"not supported; got hparams_file={hparams_file}, strict={strict}, weights_only={weights_only})"
            )
        return cls.from_checkpoint(checkpoint_path, map_location=map_location, **kwargs)
