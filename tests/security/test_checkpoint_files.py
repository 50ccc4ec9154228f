"""Loading a trained network: every route reproduces its logits exactly or fails naming the file and what differs;
foreign and malformed files are named with what they look like and how to load them."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import timm
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import kanvision
from kanvision.interpret.cli import load_model
from kanvision.interpret.cli import main as inspect_main
from kanvision.training.checkpoint import main as export_main
from kanvision.training.evaluate import evaluate
from kanvision.training.module import ImageClassifier
from tests.training.conftest import compose_config

ARCH = dict(num_classes=10, in_chans=1, stages=(3, 4))  # what the shared run trained (see conftest.RUN_OVERRIDES)


@pytest.fixture(scope="module")
def files(trained_run):
    run_dir, metrics = trained_run
    return run_dir / "checkpoints" / "last.ckpt", run_dir / "model.safetensors", metrics


@pytest.fixture(scope="module")
def reference(files):
    """The trained network rebuilt by hand: timm.create_model with the run's arguments, the 'model.' weights."""
    ckpt, _, _ = files
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    model = timm.create_model("rkan_resnet18", **ARCH)
    model.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
    batch = torch.randn(3, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return batch, model.eval()(batch)


def _logits(model, batch):
    with torch.no_grad():
        return model.eval()(batch)


@pytest.mark.slow
def test_every_route_gives_the_trained_networks_logits(files, reference, tmp_path):
    ckpt, exported, metrics = files
    batch, expected = reference
    routes = {
        "load_checkpoint(.ckpt)": kanvision.load_checkpoint(ckpt),
        "load_checkpoint(.safetensors)": kanvision.load_checkpoint(exported),
        "ImageClassifier.from_checkpoint": ImageClassifier.from_checkpoint(ckpt),
        "kanvision-inspect .ckpt": load_model(str(ckpt))[0],
        "kanvision-inspect .safetensors": load_model(str(exported))[0],
        # timm keeps a pretrained head only when the overlay's num_classes is the model's
        "timm overlay": timm.create_model(
            "rkan_resnet18", pretrained=True, pretrained_cfg_overlay=dict(file=str(exported), num_classes=10), **ARCH
        ),
        "timm overlay .safetensors": timm.create_model(
            "rkan_resnet18", pretrained=True, pretrained_cfg_overlay=dict(file=str(exported)), **ARCH
        ),
        "timm overlay .ckpt": timm.create_model(
            "rkan_resnet18", pretrained=True, pretrained_cfg_overlay=dict(file=str(ckpt)), **ARCH
        ),
    }
    for route, model in routes.items():
        assert torch.equal(_logits(model, batch), expected), route
    # the rebuilt network reports the size and normalisation it was trained with
    config = timm.data.resolve_model_data_config(routes["load_checkpoint(.safetensors)"])
    assert config["input_size"] == (1, 32, 32)
    # kanvision-eval: the same validation batch gives the run's own validation loss
    cfg = compose_config([f"ckpt_path={ckpt}", "trainer.limit_val_batches=1"], "eval", tmp_path / "eval")
    assert evaluate(cfg)["val/loss"] == pytest.approx(metrics["val/loss"], rel=1e-6)


def test_timm_overlay_without_num_classes_keeps_the_trained_head_or_fails(files, reference):
    _, exported, _ = files
    batch, expected = reference
    overlay = dict(file=str(exported))  # the file's cfg (10 classes) is not repeated in the overlay
    model = timm.create_model("rkan_resnet18", pretrained=True, pretrained_cfg_overlay=overlay, **ARCH)
    assert torch.equal(_logits(model, batch), expected)
    # without num_classes=10 timm would build (and load into) a fresh 1000-class head: refused, naming the fix
    arch = {k: v for k, v in ARCH.items() if k != "num_classes"}
    with pytest.raises(ValueError, match=re.escape("num_classes=10 in the file, 1000 here (by default)")) as error:
        timm.create_model("rkan_resnet18", pretrained=True, pretrained_cfg_overlay=overlay, **arch)
    assert "Pass num_classes=10 to timm.create_model" in str(error.value)
    assert f"kanvision.load_checkpoint('{exported}')" in str(error.value)


def _edited_checkpoint(ckpt, tmp_path, edit):
    checkpoint = dict(torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True))
    checkpoint["state_dict"] = dict(checkpoint["state_dict"])
    edit(checkpoint)
    path = tmp_path / "edited.ckpt"
    torch.save(checkpoint, path)
    return path


@pytest.mark.slow
def test_integer_weights_are_refused_by_every_loader(files, tmp_path, capsys):
    ckpt, exported, _ = files
    key = "backbone.conv1.weight"

    def to_int(checkpoint):
        checkpoint["state_dict"][f"model.{key}"] = checkpoint["state_dict"][f"model.{key}"].round().long()

    path = _edited_checkpoint(ckpt, tmp_path, to_int)
    message = f"'{key}' is torch.int64 (integer) where the network's is torch.float32"
    with pytest.raises(ValueError, match=re.escape(f"checkpoint {path} does not fit")) as error:
        kanvision.load_checkpoint(path)
    assert message in str(error.value)
    with pytest.raises(ValueError, match=re.escape(f"'model.{key}' is torch.int64 (integer)")):
        ImageClassifier.from_checkpoint(path)
    with pytest.raises(ValueError, match=re.escape(f"'model.{key}' is torch.int64")):
        evaluate(compose_config([f"ckpt_path={path}"], "eval", tmp_path / "eval"))
    for main, args in ((export_main, [str(path), str(tmp_path / "out.safetensors")]),
                       (inspect_main, [str(path), "--out", str(tmp_path / "inspect")])):  # fmt: skip
        with pytest.raises(SystemExit):
            main(args)
        assert message in capsys.readouterr().err
    assert not (tmp_path / "out.safetensors").exists()

    tensors = load_file(str(exported))
    tensors[key] = tensors[key].round().to(torch.int64)
    with safe_open(str(exported), "pt") as handle:
        metadata = handle.metadata()
    int_file = tmp_path / "int.safetensors"
    save_file(tensors, str(int_file), metadata=metadata)
    with pytest.raises(ValueError, match=re.escape(f"safetensors file {int_file} does not fit")) as error:
        kanvision.load_checkpoint(int_file)
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"stages": [4]}, "unexpected 'side_paths.3."),  # other model kwargs: keys the network does not have
        ({"num_classes": 7}, "where the network's is [7, 512]"),  # other classes
    ],
)
def test_metadata_of_another_network_is_named(files, tmp_path, change, named):
    _, exported, _ = files
    with safe_open(str(exported), "pt") as handle:
        meta = json.loads(handle.metadata()["kanvision"])
    meta["model_kwargs"].update(change)
    edited = tmp_path / "edited.safetensors"
    save_file(load_file(str(exported)), str(edited), metadata={"kanvision": json.dumps(meta)})
    with pytest.raises(ValueError, match=re.escape(f"safetensors file {edited} does not fit")) as error:
        kanvision.load_checkpoint(edited)
    assert named in str(error.value)


def test_malformed_safetensors_metadata_is_named(files, tmp_path):
    _, exported, _ = files
    broken = tmp_path / "broken.safetensors"
    save_file(load_file(str(exported)), str(broken), metadata={"kanvision": '{"model_name": "rkan_resnet18",'})
    expected = f"safetensors file {broken}: its 'kanvision' metadata is not valid JSON"
    with pytest.raises(ValueError, match=re.escape(expected)):
        kanvision.load_checkpoint(broken)


def test_foreign_files_say_what_they_are_and_how_to_load_them(files, tmp_path, capsys):
    _, exported, _ = files
    advice = "pretrained_cfg_overlay=dict(file="
    # a timm .pth (a plain state dict)
    pth = tmp_path / "resnet.pth"
    torch.save(timm.create_model("test_resnet").state_dict(), pth)
    expected = f"checkpoint {pth} has no 'kanvision' entry (model name and arguments): it is a plain state dict ("
    with pytest.raises(ValueError, match=re.escape(expected)) as error:
        kanvision.load_checkpoint(pth)
    assert advice in str(error.value) and "kanvision-convert" in str(error.value)
    with pytest.raises(SystemExit):
        export_main([str(pth)])
    assert "is a plain state dict" in capsys.readouterr().err
    with pytest.raises(ValueError, match="is a plain state dict .*pretrained_cfg_overlay"):
        evaluate(compose_config([f"ckpt_path={pth}"], "eval", tmp_path / "eval"))
    # an .npz of kanvision's own state dict
    npz = tmp_path / "weights.npz"
    np.savez(npz, **{k: v.numpy() for k, v in load_file(str(exported)).items()})
    with pytest.raises(RuntimeError, match=re.escape(f"{npz} is a NumPy .npz archive (")) as error:
        kanvision.load_checkpoint(npz)
    assert advice in str(error.value) and "kanvision-convert" in str(error.value)
    # safetensors without kanvision metadata
    bare = tmp_path / "bare.safetensors"
    save_file(load_file(str(exported)), str(bare))
    with pytest.raises(ValueError, match=re.escape(f"safetensors file {bare} holds ")) as error:
        kanvision.load_checkpoint(bare)
    assert advice in str(error.value)
    # a directory, a missing file
    with pytest.raises(RuntimeError, match=re.escape(f"checkpoint {tmp_path} is a directory")):
        kanvision.load_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match=re.escape(f"checkpoint {tmp_path / 'none.ckpt'} does not exist")):
        kanvision.load_checkpoint(tmp_path / "none.ckpt")
