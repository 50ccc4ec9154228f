"""Optimizer and learning-rate schedule of :class:`~kanvision.training.module.ImageClassifier`, from Hydra configs.

Both are Hydra ``_partial_`` targets, as in lightning-hydra-template: ``model.optimizer`` is any callable that takes
the parameter groups first (a torch or timm optimizer class, or ``timm.optim.create_optimizer_v2`` with ``opt=``),
``model.scheduler`` any callable that takes the optimizer first (a torch ``lr_scheduler`` class, a timm scheduler,
or :func:`cosine_with_warmup`, DeiT's per-step schedule; Touvron et al., arXiv 2012.12877). A scheduler whose
signature has ``total_steps``, ``steps_per_epoch`` or ``updates_per_epoch`` gets the run's numbers there.

Weight-decay groups follow timm (no decay on norms, biases and the model's ``no_weight_decay()`` embeddings); they
are decided by parameter name once, on the unwrapped network (FSDP flattens sharded parameters to 1-D, which would
exempt every weight under timm's 1-D rule), and named ``decay``, ``no_decay`` and ``rational`` so that learning
rates are logged as ``lr/decay`` etc. The ``rational`` group holds the coefficients of every group activation
(:class:`~kanvision.layers.GroupActivation`: KAT's GroupRational, KAT-X's GroupKAN); ``decay_rational`` decides
its weight decay.
"""

from __future__ import annotations

import copy
import fnmatch
import functools
import inspect
import logging
import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import hydra
import torch
from timm.optim import param_groups_weight_decay
from timm.scheduler import CosineLRScheduler
from torch import nn

log = logging.getLogger(__name__)

__all__ = [
    "RATIONAL_PARAM_PATTERNS",
    "build_param_groups",
    "cosine_with_warmup",
    "create_optimizer",
    "create_scheduler",
    "decay_group_of",
    "factory_from_config",
    "group_activation_parameters",
    "restart_schedule",
    "run_length",
    "schedule_snapshot",
    "scheduler_changes",
]

# GroupRational coefficients (kanvision.layers.rational, KAT's GR-KAN). They are 2-D, so timm's 1-D rule decays
# them, which is what the official KAT runs did; ``model.param_groups.decay_rational=false`` excludes them instead.
# GroupKAN's ``weight``/``base_weight`` share their names with Linear layers: they are found by module type
# (:func:`group_activation_parameters`) and join the same group.
RATIONAL_PARAM_PATTERNS = ("*weight_numerator", "*weight_denominator")

# Wrappers that insert themselves into parameter names (FSDP, activation checkpointing, torch.compile).
_WRAPPER_PREFIXES = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")

# The run's length, handed to schedulers whose signature asks for it (updates_per_epoch: timm's create_scheduler_v2).
_RUN_LENGTH_ARGUMENTS = ("total_steps", "steps_per_epoch", "updates_per_epoch")


def factory_from_config(config: Mapping[str, Any] | Callable | None, key: str) -> Callable | None:
    """A ``_partial_`` Hydra config (or an already built callable) as a callable; ``key`` names it in errors."""
    if config is None or callable(config):
        return config
    if not isinstance(config, Mapping) or "_target_" not in config:
        raise ValueError(f"{key} must be a Hydra config with _target_ and _partial_: true, got {config!r}")
    if config.get("_partial_") is not True:
        first = "the parameter groups" if key.endswith("optimizer") else "the optimizer"
        raise ValueError(
            f"{key} (_target_: {config['_target_']}) needs _partial_: true: its first argument ({first}) is added "
            "when training starts"
        )
    try:
        return hydra.utils.instantiate(dict(config), _convert_="all")
    except Exception as exc:
        raise ValueError(f"{key}: cannot build _target_ {config['_target_']!r}: {exc}") from exc


def group_activation_parameters(model: nn.Module) -> set[str]:
    """Names of the parameters of every group activation in ``model`` (GroupRational, GroupKAN) and of any parameter
    matching :data:`RATIONAL_PARAM_PATTERNS`: the ``rational`` group."""
    from kanvision.layers.group_activation import GroupActivation

    names = {n for n, _ in model.named_parameters() if any(fnmatch.fnmatch(n, p) for p in RATIONAL_PARAM_PATTERNS)}
    for prefix, module in model.named_modules():
        if isinstance(module, GroupActivation):
            names |= {f"{prefix}.{n}" if prefix else n for n, _ in module.named_parameters()}
    return names


def build_param_groups(
    model: nn.Module, weight_decay: float, decay_rational: bool = True, no_weight_decay: tuple[str, ...] = ()
) -> list[dict]:
    """timm's weight-decay groups: no decay for 1-D parameters (norms, biases), the model's ``no_weight_decay()``
    names (position/class embeddings) and ``no_weight_decay`` patterns, plus the group activations' coefficients
    (:func:`group_activation_parameters`) when ``decay_rational`` is False."""
    skip = set(no_weight_decay)
    if hasattr(model, "no_weight_decay"):
        skip |= set(model.no_weight_decay())
    if not decay_rational:
        skip |= set(RATIONAL_PARAM_PATTERNS) | group_activation_parameters(model)
    return param_groups_weight_decay(model, weight_decay, no_weight_decay_list=sorted(skip))


def _plain_name(name: str) -> str:
    for prefix in _WRAPPER_PREFIXES:
        name = name.replace(prefix, "")
    return name


def decay_group_of(
    model: nn.Module, decay_rational: bool = True, no_weight_decay: tuple[str, ...] = ()
) -> dict[str, str]:
    """Each parameter name's group: ``decay``, ``no_decay`` or ``rational`` (every group activation's coefficients,
    1-D ones included; decayed only with ``decay_rational``)."""
    groups = build_param_groups(model, 1.0, decay_rational, no_weight_decay)
    exempt = {id(p) for group in groups if group["weight_decay"] == 0.0 for p in group["params"]}
    rational = group_activation_parameters(model)
    names = {}
    for name, param in model.named_parameters():
        if name in rational:
            names[name] = "rational"
        else:
            names[name] = "no_decay" if id(param) in exempt else "decay"
    return names


def _default_weight_decay(factory: Callable) -> float:
    """The weight decay a partial optimizer factory sets (its keyword, else the target's own default, else 0)."""
    if isinstance(factory, functools.partial) and "weight_decay" in factory.keywords:
        return float(factory.keywords["weight_decay"])
    try:
        default = inspect.signature(factory).parameters["weight_decay"].default
    except (KeyError, TypeError, ValueError):
        return 0.0
    return float(default) if isinstance(default, (int, float)) else 0.0


def create_optimizer(
    factory: Callable, model: nn.Module, group_of: Mapping[str, str], decay_rational: bool = True
) -> torch.optim.Optimizer:
    """``factory(groups)`` with named weight-decay groups; ``group_of`` maps plain parameter names to groups."""
    weight_decay = _default_weight_decay(factory)
    params: dict[str, list] = {"decay": [], "no_decay": [], "rational": []}
    for name, param in model.named_parameters():
        if param.requires_grad:
            plain = _plain_name(name)
            if plain not in group_of:
                raise KeyError(f"parameter {plain!r} appeared after the weight-decay groups were built")
            params[group_of[plain]].append(param)
    decays = {"decay": weight_decay, "no_decay": 0.0, "rational": weight_decay if decay_rational else 0.0}
    groups = [{"name": k, "params": v, "weight_decay": decays[k]} for k, v in params.items() if v]
    return factory(groups)


def create_scheduler(factory: Callable, optimizer: torch.optim.Optimizer, run_length: Callable[[], tuple[int, int]]):
    """``factory(optimizer, ...)`` with the run's ``(total_steps, steps_per_epoch)`` (from ``run_length``) passed to
    the arguments of those names that the factory has and leaves open. A factory returning a tuple (timm's
    ``create_scheduler_v2``) gives its first item."""
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        parameters = {}
    bound = factory.keywords if isinstance(factory, functools.partial) else {}
    wanted = [name for name in _RUN_LENGTH_ARGUMENTS if name in parameters and name not in bound]
    kwargs = {}
    if wanted:
        total, per_epoch = run_length()
        values = {"total_steps": total, "steps_per_epoch": per_epoch, "updates_per_epoch": per_epoch}
        kwargs = {name: values[name] for name in wanted}
    scheduler = factory(optimizer, **kwargs)
    return scheduler[0] if isinstance(scheduler, tuple) else scheduler


def cosine_with_warmup(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    steps_per_epoch: int,
    warmup_epochs: float = 0.0,
    warmup_steps: int | None = None,
    warmup_lr: float = 1e-6,
    min_lr: float = 0.0,
) -> CosineLRScheduler:
    """Linear warm-up from ``warmup_lr`` over ``warmup_steps`` (or ``warmup_epochs``), then a cosine decay to
    ``min_lr`` at ``total_steps``; timm's ``CosineLRScheduler`` stepped per optimizer update, as DeiT's recipe.

    A warm-up that is not shorter than the run (a long recipe under debug limits) is cut to half the run.
    """
    if warmup_steps is None:
        warmup_steps = int(round(float(warmup_epochs) * steps_per_epoch))
    warmup_steps = int(warmup_steps)
    if warmup_steps < 0:
        raise ValueError(f"model.scheduler: warm-up must be >= 0 steps, got {warmup_steps}")
    if warmup_steps >= total_steps:
        log.warning("warm-up of %d steps is not shorter than the run (%d steps)", warmup_steps, total_steps)
        warmup_steps = total_steps // 2
    return CosineLRScheduler(
        optimizer,
        t_initial=max(1, total_steps - warmup_steps),
        lr_min=float(min_lr),
        warmup_t=warmup_steps,
        warmup_lr_init=float(warmup_lr),
        warmup_prefix=True,
        t_in_epochs=False,
    )


# What a scheduler writes into its optimizer's parameter groups (torch's OneCycleLR: max_lr, min_lr, momenta), and
# what its state holds of the run so far rather than of its settings.
_SCHEDULE_GROUP_KEYS = ("lr", "initial_lr", "max_lr", "min_lr", "base_momentum", "max_momentum")
_RUNNING_STATE = {"last_epoch", "_step_count", "T_cur", "T_i", "best", "num_bad_epochs", "cooldown_counter"}


def schedule_snapshot(scheduler) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(state, what it set in each parameter group): a scheduler as built, for :func:`scheduler_changes` and
    :func:`restart_schedule`."""
    groups = [{k: g[k] for k in _SCHEDULE_GROUP_KEYS if k in g} for g in scheduler.optimizer.param_groups]
    return copy.deepcopy(scheduler.state_dict()), copy.deepcopy(groups)


def scheduler_changes(old: tuple[dict[str, Any], list[dict]], new: tuple[dict[str, Any], list[dict]]) -> list[str]:
    """``key: old -> new`` for each setting (a plain value: number, string, bool, None) that differs between two
    :func:`schedule_snapshot` s, its position and running state left out. A metric-driven scheduler (plateau) has
    no position to move to: none."""
    plain = (int, float, str, bool, type(None))
    (old_state, old_groups), (new_state, new_groups) = old, new
    if "num_bad_epochs" in new_state:  # ReduceLROnPlateau, timm's PlateauLRScheduler
        return []
    changes = [
        f"{key}: {old_state[key]!r} -> {new_state[key]!r}"
        for key in sorted(old_state.keys() & new_state.keys() - _RUNNING_STATE)
        if isinstance(old_state[key], plain) and isinstance(new_state[key], plain) and old_state[key] != new_state[key]
    ]
    for index, (before, after) in enumerate(zip(old_groups, new_groups, strict=False)):
        changes += [
            f"param group {index} {key}: {before[key]!r} -> {after[key]!r}"
            for key in sorted(before.keys() & after.keys() - {"lr"})
            if before[key] != after[key]
        ]
    return changes


def restart_schedule(scheduler, fresh: tuple[dict[str, Any], list[dict]], position: int, per_step: bool) -> None:
    """Put ``scheduler`` back to how it was built (``fresh``, a :func:`schedule_snapshot`) and move it to
    ``position`` (optimizer steps, or epochs unless ``per_step``).

    For a resumed run whose schedule differs from the checkpoint's (``trainer.max_epochs`` raised to train longer, a
    new ``min_lr``): the run follows its own schedule from where the checkpoint stopped, as timm's ``train.py``
    rebuilds its scheduler on resume. Restoring the checkpoint's would bring back the old length: a cosine already at
    ``min_lr`` would train every added step at that rate.
    """
    state, groups = fresh
    scheduler.load_state_dict(copy.deepcopy(state))
    for group, values in zip(scheduler.optimizer.param_groups, groups, strict=True):
        group.update(values)
    if hasattr(scheduler, "step_update"):  # timm: stateless given the position
        if per_step:
            scheduler.step_update(num_updates=position)
        else:
            scheduler.step(epoch=position)
        return
    with warnings.catch_warnings():  # torch warns of a scheduler step before the first optimizer step
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(position):
            scheduler.step()


def run_length(trainer) -> tuple[int, int]:
    """(total optimizer steps, optimizer steps per epoch) of the trainer's run."""
    total = trainer.estimated_stepping_batches
    if not 0 < total < float("inf"):
        raise ValueError("the learning-rate schedule needs a finite trainer.max_epochs or trainer.max_steps")
    total = int(total)
    batches = getattr(trainer, "num_training_batches", None)
    if batches is not None and 0 < batches < float("inf"):
        # also when trainer.max_steps ends the run before max_epochs
        return total, math.ceil(batches / max(1, getattr(trainer, "accumulate_grad_batches", 1)))
    epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None
    return total, max(1, round(total / epochs)) if epochs else total
