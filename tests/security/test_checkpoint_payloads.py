"""A checkpoint that holds only plain data (it loads under ``torch.load(weights_only=True)``) can still carry a Hydra
``_target_`` chain that unpickles arbitrary code when instantiated. Every route that reads a checkpoint refuses it,
naming the file, the key path and the target, and the payload never runs."""

from __future__ import annotations

import copy
import io
import pathlib
import re

import pytest
import torch

import kanvision
from kanvision.interpret.cli import main as inspect_main
from kanvision.training.checkpoint import main as export_main
from kanvision.training.evaluate import evaluate
from kanvision.training.train import train
from kanvision.utils.safe_config import UnsafeConfigError
from tests.training.conftest import compose_config

from .conftest import RUN_OVERRIDES


class _TouchOnUnpickle:
    """Unpickling it creates ``marker`` (what an attacker's payload would do, harmlessly)."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


def _chain(marker: pathlib.Path) -> dict:
    buffer = io.BytesIO()
    torch.save(_TouchOnUnpickle(marker), buffer)  # a pickle in torch's file format, so torch.load unpickles it
    payload = buffer.getvalue()
    return {"_target_": "torch.load", "f": {"_target_": "io.BytesIO", "_args_": [payload]}, "weights_only": False}


def _poison_data(checkpoint, chain):
    checkpoint["kanvision"]["data"] = chain


def _poison_augment(checkpoint, chain):
    checkpoint["kanvision"]["data"]["augment"] = {"train": chain}


def _poison_scheduler(checkpoint, chain):
    checkpoint["hyper_parameters"]["scheduler"]["warmup_lr"] = chain


def _poison_optimizer(checkpoint, chain):
    checkpoint["hyper_parameters"]["optimizer"]["betas"] = chain


CHAINS = {
    "data": (_poison_data, "kanvision.data._target_"),
    "augment": (_poison_augment, "kanvision.data.augment.train._target_"),
    "scheduler": (_poison_scheduler, "hyper_parameters.scheduler.warmup_lr._target_"),
    "optimizer": (_poison_optimizer, "hyper_parameters.optimizer.betas._target_"),
}


@pytest.fixture(scope="module")
def clean_checkpoint(trained_run):
    run_dir, _ = trained_run
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True, mmap=True)


@pytest.fixture(scope="module", params=sorted(CHAINS))
def poisoned(request, clean_checkpoint, tmp_path_factory):
    """(poisoned .ckpt, marker path, expected key path), written once per chain."""
    poison, key = CHAINS[request.param]
    directory = tmp_path_factory.mktemp(f"poisoned_{request.param}")
    marker = directory / "payload_ran"
    checkpoint = dict(clean_checkpoint)  # the weights are shared, the edited entries copied
    checkpoint["kanvision"] = copy.deepcopy(checkpoint["kanvision"])
    checkpoint["hyper_parameters"] = copy.deepcopy(checkpoint["hyper_parameters"])
    poison(checkpoint, _chain(marker))
    path = directory / "poisoned.ckpt"
    torch.save(checkpoint, path)
    torch.load(path, weights_only=True, mmap=True)  # plain data: weights_only alone does not stop it
    return path, marker, key


def _refusal(path, key) -> str:
    return re.escape(f"checkpoint {path}: refused to build {key}: the _target_ 'torch.load'")


def test_the_payload_is_live(tmp_path):
    """The chain runs when Hydra instantiates it: the tests below would otherwise prove nothing."""
    import hydra

    marker = tmp_path / "payload_ran"
    hydra.utils.instantiate(_chain(marker))
    assert marker.exists()


def test_kanvision_eval_refuses(poisoned, tmp_path):
    path, marker, key = poisoned
    cfg = compose_config([f"ckpt_path={path}"], "eval", tmp_path / "eval")
    with pytest.raises(UnsafeConfigError, match=_refusal(path, key)):
        evaluate(cfg)
    assert not marker.exists()


def test_resume_refuses_and_copies_nothing(poisoned, tmp_path):
    path, marker, key = poisoned
    run_dir = tmp_path / "resumed"
    cfg = compose_config([*RUN_OVERRIDES, f"ckpt_path={path}", "trainer.max_epochs=2"], "train", run_dir)
    with pytest.raises(UnsafeConfigError, match=_refusal(path, key)):
        train(cfg)
    assert not marker.exists()
    assert not list(run_dir.rglob("*.ckpt"))  # nothing of the payload was written into the new run


def test_load_checkpoint_and_from_checkpoint_refuse(poisoned):
    from kanvision.training.module import ImageClassifier

    path, marker, key = poisoned
    for load in (kanvision.load_checkpoint, ImageClassifier.from_checkpoint, ImageClassifier.load_from_checkpoint):
        with pytest.raises(UnsafeConfigError, match=_refusal(path, key)):
            load(path)
    assert not marker.exists()


def test_export_and_inspect_refuse(poisoned, tmp_path, capsys):
    path, marker, key = poisoned
    for main, args in (
        (export_main, [str(path), str(tmp_path / "out.safetensors")]),
        (inspect_main, [str(path), "--out", str(tmp_path / "inspect")]),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert f"checkpoint {path}: refused to build {key}: the _target_ 'torch.load'" in err
    assert not marker.exists()
    assert not (tmp_path / "out.safetensors").exists()
    assert not (tmp_path / "inspect").exists()


def test_safetensors_metadata_and_convert_arguments_refuse_targets(trained_run, tmp_path, capsys):
    """Model kwargs are data: a Hydra node in a safetensors header or in kanvision-convert's --model-arg is refused
    by name (it used to fail deep inside the model with "'dict' object is not callable")."""
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from kanvision.training.convert import main as convert_main

    run_dir, _ = trained_run
    exported = run_dir / "model.safetensors"
    with safe_open(str(exported), "pt") as handle:
        meta = json.loads(handle.metadata()["kanvision"])
    marker = tmp_path / "payload_ran"
    meta["model_kwargs"]["act_layer"] = {"_target_": "os.system", "_args_": [f"touch {marker}"]}
    poisoned = tmp_path / "poisoned.safetensors"
    save_file(load_file(str(exported)), str(poisoned), metadata={"kanvision": json.dumps(meta)})
    expected = rf"safetensors file {poisoned}: refused to build kanvision\.model_kwargs\.act_layer\._target_"
    with pytest.raises(UnsafeConfigError, match=expected):
        kanvision.load_checkpoint(poisoned)
    node = f"act_layer={{'_target_': 'os.system', '_args_': ['touch {marker}']}}"
    with pytest.raises(SystemExit) as exit_info:
        convert_main([str(exported), str(tmp_path / "out.safetensors"), "--model=rkan_resnet18", "--model-arg", node])
    assert exit_info.value.code == 2
    assert "refused to build model_args.act_layer._target_: the _target_ 'os.system'" in capsys.readouterr().err
    assert not marker.exists()
    assert not (tmp_path / "out.safetensors").exists()


_DIGITS = "kanvision.training.data.DigitsDataModule"


@pytest.mark.parametrize(
    ("entry", "value", "key"),
    [
        ("wandb_run_id", {"_target_": "os.getcwd"}, "kanvision.wandb_run_id._target_"),  # resume puts it in a logger
        ("data_config", {"mean": {"_target_": "os.getcwd"}}, "kanvision.data_config.mean._target_"),
        ("model_kwargs", {"act_layer": {"_target_": "os.getcwd"}}, "kanvision.model_kwargs.act_layer._target_"),
        ("data", {"_target_": _DIGITS, "seed": "${oc.env:HOME}"}, "kanvision.data.seed"),  # a resolver
    ],
)
def test_metadata_names_code_only_in_the_data_config(entry, value, key):
    from kanvision.training.checkpoint import check_metadata

    meta = {"model_name": "resnet18", "model_kwargs": {"num_classes": 10}, "data": None, "wandb_run_id": None}
    with pytest.raises(UnsafeConfigError, match=re.escape(f"run.ckpt: refused to build {key}")):
        check_metadata({**meta, entry: value}, "run.ckpt")
    allowed = {**meta, "data": {"_target_": _DIGITS, "batch_size": 4}}
    assert check_metadata(allowed, "run.ckpt") == allowed
