"""Checkpoints that do not fit, unknown model arguments and failed weight downloads: one clear error per family."""

from urllib.error import URLError

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


def test_a_missing_local_file_is_not_reported_as_a_download(tmp_path):
    with pytest.raises(FileNotFoundError):
        timm.create_model(
            "kan_cnn_tiny", pretrained=True, pretrained_cfg_overlay=dict(file=str(tmp_path / "absent.pth"))
        )
