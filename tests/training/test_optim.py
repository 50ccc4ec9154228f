"""Optimizers and schedules as Hydra ``_partial_`` targets: any torch/timm class from config, groups built once."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from hydra import compose, initialize_config_module

from kanvision.training.module import ImageClassifier
from kanvision.training.optim import cosine_with_warmup, create_scheduler, run_length


def _net(**kwargs):
    torch.manual_seed(0)
    return ImageClassifier("kan_cnn_tiny", num_classes=10, in_chans=1, **kwargs)


def _attach(module, total=20, batches=5, max_epochs=4, accumulate=1):
    module._trainer = SimpleNamespace(
        estimated_stepping_batches=total,
        num_training_batches=batches,
        max_epochs=max_epochs,
        accumulate_grad_batches=accumulate,
    )
    return module


def _groups(optimizer):
    return {group["name"]: group["weight_decay"] for group in optimizer.param_groups}


def test_a_torch_optimizer_class_gets_the_named_weight_decay_groups():
    sgd = dict(_target_="torch.optim.SGD", _partial_=True, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    module = _attach(_net(optimizer=sgd, scheduler=None))
    config = module.configure_optimizers()
    optimizer = config["optimizer"]
    assert type(optimizer) is torch.optim.SGD and "lr_scheduler" not in config
    assert _groups(optimizer) == {"decay": 1e-4, "no_decay": 0.0}
    assert all(group["nesterov"] and group["lr"] == 0.1 for group in optimizer.param_groups)
    counted = sum(p.numel() for group in optimizer.param_groups for p in group["params"])
    assert counted == sum(p.numel() for p in module.model.parameters())  # every parameter, exactly once


def test_weight_decay_defaults_to_the_optimizer_class_default():
    module = _attach(_net(optimizer=dict(_target_="torch.optim.AdamW", _partial_=True, lr=1e-3), scheduler=None))
    assert _groups(module.configure_optimizers()["optimizer"])["decay"] == 0.01  # AdamW's own default


def test_rational_coefficients_form_their_own_group():
    optimizer = dict(_target_="torch.optim.AdamW", _partial_=True, lr=1e-3, weight_decay=0.05)
    kat = dict(img_size=32, patch_size=8, depth=1)
    for decay_rational, expected in ((True, 0.05), (False, 0.0)):
        module = ImageClassifier(
            "kat_tiny_patch16_224", num_classes=3, kwargs=kat, optimizer=optimizer, scheduler=None,
            param_groups=dict(decay_rational=decay_rational),
        )  # fmt: skip
        groups = module.configure_optimizers()["optimizer"].param_groups
        rational = next(group for group in groups if group["name"] == "rational")
        assert rational["weight_decay"] == expected
        names = {id(p): n for n, p in module.model.named_parameters()}
        assert all(names[id(p)].endswith(("weight_numerator", "weight_denominator")) for p in rational["params"])


def test_cosine_schedule_follows_the_formula_per_step():
    """Warm-up linear from warmup_lr to lr over 2 epochs of 5 steps, then cosine to min_lr at step 20."""
    lr, warmup_lr, min_lr = 0.1, 1e-3, 1e-4
    scheduler = dict(
        _target_="kanvision.training.optim.cosine_with_warmup", _partial_=True, warmup_epochs=2,
        warmup_lr=warmup_lr, min_lr=min_lr,
    )  # fmt: skip
    optimizer = dict(_target_="torch.optim.SGD", _partial_=True, lr=lr)
    module = _attach(_net(optimizer=optimizer, scheduler=scheduler), total=20, batches=5)
    config = module.configure_optimizers()
    sched, opt = config["lr_scheduler"]["scheduler"], config["optimizer"]
    assert config["lr_scheduler"]["interval"] == "step"
    for step in range(20):
        sched.step_update(num_updates=step)
        if step < 10:
            expected = warmup_lr + step * (lr - warmup_lr) / 10
        else:
            expected = min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * (step - 10) / 10))
        assert opt.param_groups[0]["lr"] == pytest.approx(expected, rel=1e-9), step


def test_run_length_is_handed_to_schedulers_that_ask_for_it():
    onecycle = dict(_target_="torch.optim.lr_scheduler.OneCycleLR", _partial_=True, max_lr=0.1)
    module = _attach(_net(optimizer=dict(_target_="torch.optim.SGD", _partial_=True, lr=0.1), scheduler=onecycle))
    sched = module.configure_optimizers()["lr_scheduler"]["scheduler"]
    assert type(sched) is torch.optim.lr_scheduler.OneCycleLR and sched.total_steps == 20
    timm_factory = dict(_target_="timm.scheduler.create_scheduler_v2", _partial_=True, sched="step", decay_epochs=1)
    module = _attach(_net(scheduler=timm_factory, scheduler_interval="epoch"), batches=7, accumulate=2)
    sched = module.configure_optimizers()["lr_scheduler"]["scheduler"]  # create_scheduler_v2 returns a pair
    assert type(sched).__name__ == "StepLRScheduler"


@pytest.mark.parametrize(
    ("trainer", "expected"),
    [
        (dict(estimated_stepping_batches=1000, max_epochs=300, num_training_batches=10), (1000, 10)),
        (dict(estimated_stepping_batches=1000, max_epochs=300, num_training_batches=10, accumulate=4), (1000, 3)),
        (dict(estimated_stepping_batches=12, max_epochs=4, num_training_batches=None), (12, 3)),
    ],
)
def test_run_length_uses_the_epoch_length_when_max_steps_ends_the_run(trainer, expected):
    accumulate = trainer.pop("accumulate", 1)
    assert run_length(SimpleNamespace(**trainer, accumulate_grad_batches=accumulate)) == expected


def test_run_length_needs_a_finite_run():
    endless = SimpleNamespace(estimated_stepping_batches=float("inf"), max_epochs=-1, num_training_batches=10)
    with pytest.raises(ValueError, match="finite trainer.max_epochs or trainer.max_steps"):
        run_length(endless)


@pytest.mark.parametrize(("warmup_epochs", "max_epochs", "expected"), [(1, 4, 3), (5, 1, 1), (0, 2, 0)])
def test_warmup_longer_than_a_short_run_is_capped(warmup_epochs, max_epochs, expected):
    """A long recipe's warm-up under debug limits keeps half the run for the decay instead of failing."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = cosine_with_warmup(optimizer, total_steps=3 * max_epochs, steps_per_epoch=3, warmup_epochs=warmup_epochs)
    assert sched.warmup_t == expected and sched.t_initial == max(1, 3 * max_epochs - expected)


def test_schedulers_without_run_length_arguments_never_ask_for_it():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)

    def unknown_length():
        raise AssertionError("StepLR takes no run length")

    factory = lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=3)  # noqa: E731
    assert type(create_scheduler(factory, optimizer, unknown_length)) is torch.optim.lr_scheduler.StepLR


def test_checkpoints_of_the_old_recipe_format_still_load():
    """Hyper-parameters saved as timm create_optimizer_v2 arguments and a schedule name map to the same objects."""
    old = _attach(
        _net(
            optimizer=dict(opt="sgd", lr=0.1, weight_decay=0.1, momentum=0.9, decay_rational=False),
            scheduler=dict(name="cosine", warmup_epochs=1, warmup_lr=1e-3, min_lr=0.0),
        )
    )
    assert old.hparams.param_groups == {"decay_rational": False}
    config = old.configure_optimizers()
    assert type(config["optimizer"]).__name__ == "SGD" and _groups(config["optimizer"])["decay"] == 0.1
    assert config["lr_scheduler"]["scheduler"].warmup_t == 5
    assert "lr_scheduler" not in _attach(_net(scheduler=dict(name="constant"))).configure_optimizers()


@pytest.mark.parametrize(("optimizer", "scheduler"), [("timm", "cosine"), ("sgd", "onecycle"), ("adamw", "cosine")])
def test_every_optimizer_and_scheduler_preset_builds(optimizer, scheduler):
    with initialize_config_module(config_module="kanvision.configs", version_base="1.3"):
        cfg = compose("train", overrides=[f"model/optimizer={optimizer}", f"model/scheduler={scheduler}"])
    module = _attach(_net(optimizer=cfg.model.optimizer, scheduler=cfg.model.scheduler))
    config = module.configure_optimizers()
    assert _groups(config["optimizer"])["no_decay"] == 0.0
    assert config["lr_scheduler"]["scheduler"] is not None


def test_scheduler_changes_name_settings_not_the_run_so_far():
    from kanvision.training.optim import schedule_snapshot, scheduler_changes

    def build(cls, **kwargs):
        optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        return cls(optimizer, **kwargs)

    lr_scheduler = torch.optim.lr_scheduler
    for cls, kwargs in [
        (lr_scheduler.CosineAnnealingWarmRestarts, dict(T_0=3)),
        (lr_scheduler.StepLR, dict(step_size=2)),
    ]:
        fresh, trained = build(cls, **kwargs), build(cls, **kwargs)
        for _ in range(5):  # the running state (T_cur, last_epoch) moves; the settings stay
            trained.optimizer.step()
            trained.step()
        assert scheduler_changes(schedule_snapshot(trained), schedule_snapshot(fresh)) == []
    plateau, longer = build(lr_scheduler.ReduceLROnPlateau), build(lr_scheduler.ReduceLROnPlateau, patience=3)
    plateau.step(1.0)
    assert scheduler_changes(schedule_snapshot(plateau), schedule_snapshot(longer)) == []  # metric-driven: kept
    old = build(lr_scheduler.OneCycleLR, max_lr=1e-3, total_steps=10)
    new = build(lr_scheduler.OneCycleLR, max_lr=2e-3, total_steps=20)
    changes = scheduler_changes(schedule_snapshot(old), schedule_snapshot(new))
    assert "total_steps: 10 -> 20" in changes and "param group 0 max_lr: 0.001 -> 0.002" in changes
