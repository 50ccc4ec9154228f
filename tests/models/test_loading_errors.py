"""Checkpoints that do not fit, unknown model arguments and failed weight downloads: one clear error per family."""

import re
from urllib.error import URLError

import numpy as np
import pytest
import timm
import torch
from huggingface_hub.errors import LocalEntryNotFoundError

import kanvision  # noqa: F401  (registers the models)
from kanvision.models._helpers import checkpoint_kind

NARROW_RKAN = dict(channels=(16, 16, 32, 32))


def _save(model: torch.nn.Module, path) -> str:
    torch.save(model.state_dict(), path)
    return str(path)


def test_vit_weights_into_an_rkan_name_the_file_and_what_loads_it(tmp_path):
    vit = timm.create_model("vit_tiny_patch16_224", depth=1)
    path = _save(vit, tmp_path / "vit.pth")
    with pytest.raises(ValueError) as info:
        timm.create_model("rkan_resnet18", pretrained=True, pretrained_cfg_overlay=dict(file=path), **NARROW_RKAN)
    message = str(info.value)
    assert message.startswith("Checkpoint does not fit ResidualKANNet(backbone='resnet18'")
    assert "nothing was loaded" in message
    assert "looks like a timm ViT state dict" in message and "pretrained_cfg_overlay=dict(file=PATH)" in message
    assert "missing from checkpoint: backbone.conv1.weight (64, 3, 7, 7)" in message
    assert "not in the model: backbone.cls_token (1, 1, 192)" in message


def test_a_kanvision_checkpoint_of_other_widths_lists_every_mismatch(tmp_path):
    path = _save(timm.create_model("kan_cnn_tiny", widths=(8, 16), strides=(1, 2)), tmp_path / "tiny.pth")
    with pytest.raises(ValueError) as info:
        timm.create_model("kan_cnn_tiny", pretrained=True, pretrained_cfg_overlay=dict(file=path))
    message = str(info.value)
    assert message.startswith("Checkpoint does not fit kan_cnn_tiny KANConvNet(num_classes=10); nothing was loaded.")
    assert "looks like a kanvision KAN CNN checkpoint" in message
    assert "shape mismatch (checkpoint vs model): features.0.weight (8, 5, 3, 3) vs (16, 5, 3, 3)" in message
    assert "missing from checkpoint: features.4.weight" in message  # the third KAN conv


def test_a_checkpoint_that_fits_loads_exactly_and_a_new_head_is_kept_fresh(tmp_path):
    torch.manual_seed(0)
    source = timm.create_model("kan_resnet18_cifar", channels=(8, 8, 8, 8), layers=(1, 1, 1, 1))
    path = _save(source, tmp_path / "resnet.pth")
    loaded = timm.create_model(
        "kan_resnet18_cifar", channels=(8, 8, 8, 8), layers=(1, 1, 1, 1), pretrained=True,
        pretrained_cfg_overlay=dict(file=path), num_classes=3,
    )  # fmt: skip
    for key, value in source.state_dict().items():
        if not key.startswith("head."):
            torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0)
    assert loaded.head.fc.weight.shape == (3, 8)


def test_torch_conv_kan_layout_is_recognised():
    assert checkpoint_kind({"features.0.poly_weights": torch.zeros(1)}) == "torch_conv_kan"
    assert checkpoint_kind(timm.create_model("resnet18", channels=(8, 8, 8, 8)).state_dict()) == "timm_cnn"
    assert checkpoint_kind({"blocks.0.mlp.act1.weight_numerator": torch.zeros(1), "pos_embed": torch.zeros(1)}) == "kat"
    assert checkpoint_kind({"Transformer/encoderblock_0/embedding/kernel": torch.zeros(1)}) == "flax_vit"
    assert checkpoint_kind({"something": torch.zeros(1)}) is None


@pytest.mark.parametrize(
    ("name", "kwargs", "listed"),
    [
        ("kan_resnet18_cifar", dict(stage=(3, 4)), "layers"),
        ("kan_kkan_mnist", dict(head_hiden=(10,)), "did you mean 'head_hidden'?"),
        ("kan_vgg11_bottleneck", dict(width=2), "width_scale"),
        ("kan_cnn_tiny", dict(width=(8,)), "widths"),
        ("kat_tiny_patch16_224", dict(depht=1), "did you mean 'depth'?"),
    ],
)
def test_unknown_arguments_list_the_models_own(name, kwargs, listed):
    (bad,) = kwargs
    with pytest.raises(TypeError, match=rf"{name} \(\w+\) got unknown argument\(s\) '{bad}'") as info:
        timm.create_model(name, **kwargs)
    assert listed in str(info.value) and "num_classes" in str(info.value)


def test_an_unknown_rkan_argument_lists_rkans_own():
    with pytest.raises(TypeError, match=r"\['stage'\]: not an argument of ResidualKANNet") as info:
        timm.create_model("rkan_resnet18", stage=(3, 4))
    assert "stages, combine" in str(info.value)


def _no_network(*args, **kwargs):
    raise URLError("[Errno -3] Temporary failure in name resolution")


def _no_hub(*args, **kwargs):
    raise LocalEntryNotFoundError("cannot reach the Hub and the file is not cached")


# timm's _builder is where load_pretrained looks its download functions up; patched there, nothing goes on the network
@pytest.mark.parametrize(
    ("name", "kwargs", "patched", "fake", "location"),
    [
        ("kat_tiny_patch16_224", dict(depth=1), "download_cached_file", _no_network,
         "https://github.com/Adamdad/kat/releases/download/checkpoint/kat_tiny_patch16_224_"),
        ("kan_vgg11_bottleneck", dict(cfg=(8, "M", 8)), "load_state_dict_from_hf", _no_hub,
         "https://huggingface.co/brivangl/vgg_kagn_bn11_v4/resolve/main/model.safetensors"),
        ("rkan_resnet18", NARROW_RKAN, "load_state_dict_from_hf", _no_hub,
         "https://huggingface.co/timm/resnet18.a1_in1k/resolve/main/"),
    ],
)  # fmt: skip
def test_a_failed_download_names_the_file_and_how_to_pass_it(monkeypatch, name, kwargs, patched, fake, location):
    import timm.models._builder

    monkeypatch.setattr(timm.models._builder, patched, fake)
    with pytest.raises(RuntimeError, match="could not be downloaded") as info:
        timm.create_model(name, pretrained=True, **kwargs)
    message = str(info.value)
    assert location in message
    assert f"timm.create_model('{name}', pretrained=True, pretrained_cfg_overlay=dict(file='/path/to/" in message
    assert isinstance(info.value.__cause__, (URLError, LocalEntryNotFoundError))


# -- pretrained_cfg_overlay=dict(file=...) -----------------------------------------------------------------------

SMALL_RKAN = dict(num_classes=10, in_chans=1, stages=(3, 4), channels=(8, 8, 16, 16))


def _overlay(path) -> dict:
    return dict(pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))


def _logits(model, batch):
    with torch.no_grad():
        return model.eval()(batch)


@pytest.fixture(scope="module")
def kanvision_file(tmp_path_factory):
    """A small RKAN exported by kanvision (safetensors with its model name, arguments and data config)."""
    from kanvision.models._checkpoint import save_safetensors

    torch.manual_seed(0)
    model = timm.create_model("rkan_resnet18", **SMALL_RKAN).eval()
    meta = dict(
        model_name="rkan_resnet18",
        model_kwargs=dict(SMALL_RKAN, stages=[3, 4], channels=[8, 8, 16, 16]),  # as JSON stores them
        data_config=dict(img_size=[32, 32], mean=[0.5], std=[0.25], interpolation="bilinear", crop_pct=1.0),
    )
    path = save_safetensors(model, meta, tmp_path_factory.mktemp("kanvision") / "model.safetensors")
    batch = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    return path, model, batch


def test_a_kanvision_file_built_with_its_arguments_gives_the_trained_logits(kanvision_file):
    path, model, batch = kanvision_file
    loaded = timm.create_model("rkan_resnet18", **_overlay(path), **SMALL_RKAN)
    assert torch.equal(_logits(loaded, batch), _logits(model, batch))
    # the model's cfg says how it was trained; the weights themselves are not kept in it
    config = timm.data.resolve_model_data_config(loaded)
    assert config["input_size"] == (1, 32, 32) and config["mean"] == (0.5,) and config["std"] == (0.25,)
    assert loaded.pretrained_cfg["num_classes"] == 10 and loaded.pretrained_cfg["file"] == str(path)


@pytest.mark.parametrize(
    ("dropped", "named"),
    [
        ("num_classes", "num_classes=10 in the file, 1000 here (by default)"),
        ("in_chans", "in_chans=1 in the file, 3 here (by default)"),
        ("stages", "stages=[3, 4] in the file, (4,) here (by default)"),
    ],
)
def test_a_kanvision_file_built_without_its_arguments_names_each(kanvision_file, dropped, named):
    path, _, _ = kanvision_file
    kwargs = {k: v for k, v in SMALL_RKAN.items() if k != dropped}
    with pytest.raises(ValueError, match=re.escape(f"{path} was trained as rkan_resnet18 with other arguments")) as e:
        timm.create_model("rkan_resnet18", **_overlay(path), **kwargs)
    message = str(e.value)
    assert named in message
    value = {"num_classes": "10", "in_chans": "1", "stages": "[3, 4]"}[dropped]
    assert f"Pass {dropped}={value} to timm.create_model" in message
    assert f"kanvision.load_checkpoint('{path}')" in message


def test_a_kanvision_file_of_another_model_names_both(kanvision_file):
    path, _, _ = kanvision_file
    with pytest.raises(ValueError, match=re.escape(f"{path} holds the weights of a rkan_resnet18 (its kanvision")):
        timm.create_model("rkan_resnet34", **_overlay(path), **SMALL_RKAN)


def test_a_new_num_classes_passed_on_purpose_resets_the_head_only(kanvision_file, caplog):
    path, model, _ = kanvision_file
    loaded = timm.create_model("rkan_resnet18", **_overlay(path), **dict(SMALL_RKAN, num_classes=5))
    assert loaded.backbone.fc.weight.shape == (5, 16)
    assert "adapting the weights of" in caplog.text and "num_classes=5 (trained with 10)" in caplog.text
    trained = model.state_dict()
    for key, value in loaded.state_dict().items():
        if not key.startswith("backbone.fc."):
            assert torch.equal(value, trained[key]), key


def _small(name: str) -> dict:
    return {
        "rkan_resnet18": SMALL_RKAN,
        "kan_cnn_tiny": dict(widths=(8, 16), strides=(1, 2)),
        "kan_resnet18_cifar": dict(channels=(8, 8, 8, 8), layers=(1, 1, 1, 1)),
        "kan_vgg11_bottleneck": dict(cfg=(8, "M", 8), num_classes=7),
        "kat_tiny_patch16_224": dict(depth=1, img_size=32, num_classes=5),
    }[name]


@pytest.mark.parametrize(
    "name", ["rkan_resnet18", "kan_cnn_tiny", "kan_resnet18_cifar", "kan_vgg11_bottleneck", "kat_tiny_patch16_224"]
)
def test_an_npz_of_a_state_dict_loads_into_every_family(tmp_path, name):
    torch.manual_seed(0)
    source = timm.create_model(name, **_small(name))
    path = tmp_path / "weights.npz"
    np.savez(path, **{k: v.numpy() for k, v in source.state_dict().items()})
    loaded = timm.create_model(name, **_overlay(path), **_small(name))
    expected = source.state_dict()
    assert loaded.state_dict().keys() == expected.keys()
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, expected[key]), key
    assert "state_dict" not in loaded.pretrained_cfg  # the arrays are not kept alive by the model's cfg


def test_an_npz_that_does_not_fit_is_refused_like_any_checkpoint(tmp_path):
    source = timm.create_model("kan_cnn_tiny", widths=(8, 16), strides=(1, 2)).state_dict()
    path = tmp_path / "weights.npz"
    np.savez(path, **{k: v.numpy().astype(np.int64) if k == "features.0.weight" else v.numpy()
                      for k, v in source.items()})  # fmt: skip
    with pytest.raises(ValueError, match=r"dtype mismatch \(checkpoint vs model\): features.0.weight torch.int64"):
        timm.create_model("kan_cnn_tiny", **_overlay(path), widths=(8, 16), strides=(1, 2))
    np.savez(path, **{k: v.numpy() for k, v in source.items() if k != "features.0.weight"})
    with pytest.raises(ValueError, match="missing from checkpoint: features.0.weight"):
        timm.create_model("kan_cnn_tiny", **_overlay(path), widths=(8, 16), strides=(1, 2))


def test_a_garbage_npz_names_the_file_and_what_loads(tmp_path):
    path = tmp_path / "garbage.npz"
    path.write_bytes(b"not an archive at all")
    with pytest.raises(ValueError, match=re.escape(f"{path} is not a NumPy .npz archive (21 bytes, not a zip")) as e:
        timm.create_model("rkan_resnet18", **_overlay(path), **SMALL_RKAN)
    assert "np.savez(path, **{k: v.numpy()" in str(e.value) and ".safetensors" in str(e.value)
    # arrays of Python objects are never unpickled
    np.savez(path, weight=np.array([object()], dtype=object))
    with pytest.raises(ValueError, match=re.escape(f"{path} cannot be read as an .npz of arrays")):
        timm.create_model("rkan_resnet18", **_overlay(path), **SMALL_RKAN)


def test_a_directory_or_a_missing_overlay_file_is_named(tmp_path):
    with pytest.raises(IsADirectoryError, match=re.escape(f"pretrained_cfg_overlay file {tmp_path} is a directory")):
        timm.create_model("kan_cnn_tiny", **_overlay(tmp_path))
    absent = tmp_path / "absent.pth"
    with pytest.raises(FileNotFoundError, match=re.escape(f"pretrained_cfg_overlay file {absent} does not exist")):
        timm.create_model("kan_cnn_tiny", **_overlay(absent))
