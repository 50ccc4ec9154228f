"""KAT weight loading through timm's standard path, from files the tests write: timm ViT state dicts (.pth, .bin,
.safetensors), Google AugReg .npz (checked against timm's own npz loader), official KAT checkpoints, kanvision's
converted files; resampling, head dropping, clear errors; and the ViT reproduction of the paper's "from ViT" init."""

import argparse
import json
import logging

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import load_file, save_file
from timm.layers import resample_abs_pos_embed

import kanvision
from kanvision.training.convert import main as convert_main

SMALL = dict(img_size=32, patch_size=8, depth=2)


def randomize_(model, seed=0):
    """Non-trivial values everywhere (LayerNorm scales, biases) so that a wrong mapping cannot go unnoticed."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    return model


def small_vit(**kwargs):
    return randomize_(timm.create_model("vit_tiny_patch16_224", **{**SMALL, **kwargs}))


def kat_from(path, name="kat_tiny_patch16_224", **kwargs):
    return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), **{**SMALL, **kwargs})


def assert_vit_weights_loaded(kat, vit_state):
    kat_state = kat.state_dict()
    for key, value in vit_state.items():
        torch.testing.assert_close(kat_state[key], value, rtol=0, atol=0, msg=key)
    fresh = timm.create_model("kat_tiny_patch16_224", **SMALL).state_dict()
    rationals = [k for k in kat_state if ".act" in k]
    assert len(rationals) == 2 * 2 * SMALL["depth"]
    for key in rationals:  # new in KAT: the model's initial rationals
        torch.testing.assert_close(kat_state[key], fresh[key])


@pytest.mark.parametrize("suffix", [".pth", ".bin", ".safetensors"])
def test_timm_vit_state_dict(tmp_path, suffix):
    vit_state = small_vit().state_dict()
    path = tmp_path / f"vit{suffix}"
    if suffix == ".safetensors":
        save_file(vit_state, str(path))
    else:
        torch.save(vit_state, path)
    assert_vit_weights_loaded(kat_from(path), vit_state)


def vit_to_flax(state, num_heads):
    """Write a timm ViT state dict in Google's Flax layout (AugReg .npz names), independently of kanvision."""
    dim = state["cls_token"].shape[-1]
    head_dim = dim // num_heads
    flax = {
        "embedding/kernel": state["patch_embed.proj.weight"].permute(2, 3, 1, 0),  # OIHW -> HWIO
        "embedding/bias": state["patch_embed.proj.bias"],
        "cls": state["cls_token"],
        "Transformer/posembed_input/pos_embedding": state["pos_embed"],
        "Transformer/encoder_norm/scale": state["norm.weight"],
        "Transformer/encoder_norm/bias": state["norm.bias"],
        "head/kernel": state["head.weight"].T,
        "head/bias": state["head.bias"],
    }
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    for i in range(depth):
        src, dst = f"blocks.{i}.", f"Transformer/encoderblock_{i}/"
        for ours, theirs in (("norm1", "LayerNorm_0"), ("norm2", "LayerNorm_2")):
            flax[f"{dst}{theirs}/scale"] = state[f"{src}{ours}.weight"]
            flax[f"{dst}{theirs}/bias"] = state[f"{src}{ours}.bias"]
        attn = dst + "MultiHeadDotProductAttention_1/"
        weights = state[src + "attn.qkv.weight"].chunk(3)
        biases = state[src + "attn.qkv.bias"].chunk(3)
        for name, w, b in zip(("query", "key", "value"), weights, biases, strict=True):
            flax[f"{attn}{name}/kernel"] = w.T.reshape(dim, num_heads, head_dim)
            flax[f"{attn}{name}/bias"] = b.reshape(num_heads, head_dim)
        flax[attn + "out/kernel"] = state[src + "attn.proj.weight"].T.reshape(num_heads, head_dim, dim)
        flax[attn + "out/bias"] = state[src + "attn.proj.bias"]
        for r in (0, 1):
            flax[f"{dst}MlpBlock_3/Dense_{r}/kernel"] = state[f"{src}mlp.fc{r + 1}.weight"].T
            flax[f"{dst}MlpBlock_3/Dense_{r}/bias"] = state[f"{src}mlp.fc{r + 1}.bias"]
    return {k: v.contiguous().numpy() for k, v in flax.items()}


def test_augreg_npz_matches_timms_own_loader(tmp_path):
    vit_state = small_vit().state_dict()
    path = tmp_path / "ViT-Ti_16.npz"
    np.savez(path, **vit_to_flax(vit_state, num_heads=3))
    reference = timm.create_model(
        "vit_tiny_patch16_224", pretrained=True, pretrained_cfg_overlay=dict(file=str(path), custom_load=True), **SMALL
    ).state_dict()
    for key, value in vit_state.items():  # the test's Flax writer agrees with timm's reader
        torch.testing.assert_close(reference[key], value, msg=key)
    kat = kat_from(path)
    kat_state = kat.state_dict()
    for key, value in reference.items():
        torch.testing.assert_close(kat_state[key], value, msg=key)


def test_augreg_npz_unknown_keys_are_reported(tmp_path):
    flax = vit_to_flax(small_vit().state_dict(), num_heads=3)
    flax["Transformer/encoderblock_0/MlpBlock_3/Dense_2/kernel"] = np.zeros((4, 4), dtype=np.float32)
    path = tmp_path / "odd.npz"
    np.savez(path, **flax)
    with pytest.raises(ValueError, match="not in the model: Transformer/encoderblock_0/MlpBlock_3/Dense_2/kernel"):
        kat_from(path)


def official_checkpoint(tmp_path, **extra):
    raw = randomize_(timm.create_model("kat_tiny_patch16_224", **SMALL), seed=1).state_dict()
    ema = {k: v + 1.0 for k, v in raw.items()}
    path = tmp_path / "kat_tiny_patch16_224_official.pth"
    args = argparse.Namespace(model="kat_tiny_patch16_224", lr=1e-3, drop_path=0.1, mixup=0.8, aa="rand-m9-mstd0.5")
    torch.save({"epoch": 299, "arch": "kat_tiny_patch16_224", "state_dict": raw, "state_dict_ema": ema,
                "version": 2, "args": args, **extra}, path)  # fmt: skip
    return path, raw, ema


def test_official_kat_checkpoint_with_argparse_namespace(tmp_path):
    path, raw, ema = official_checkpoint(tmp_path)
    kat_state = kat_from(path).state_dict()
    for key, value in raw.items():  # the weights the official evaluation used
        torch.testing.assert_close(kat_state[key], value, rtol=0, atol=0, msg=key)
    model = timm.create_model("kat_tiny_patch16_224", **SMALL)
    model.load_pretrained(str(path), use_ema=True)
    torch.testing.assert_close(model.state_dict()["blocks.1.mlp.act2.weight_denominator"],
                               ema["blocks.1.mlp.act2.weight_denominator"])  # fmt: skip


class NotAllowed:
    pass


def test_checkpoint_loading_stays_weights_only(tmp_path):
    path, _, _ = official_checkpoint(tmp_path, extra=NotAllowed())
    with pytest.raises(Exception, match="NotAllowed"):  # weights_only refuses any other class
        kat_from(path)


def test_kanvision_checkpoint_with_module_prefix(tmp_path):
    source = randomize_(timm.create_model("kat_tiny_patch16_224", **SMALL), seed=2)
    path = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in source.state_dict().items()}, "epoch": 3}, path)
    loaded = kat_from(path)
    for key, value in source.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0, msg=key)


def test_kanvision_checkpoint_with_ema_loads_the_raw_network(tmp_path):
    source = randomize_(timm.create_model("kat_tiny_patch16_224", **SMALL), seed=2)
    ema = randomize_(timm.create_model("kat_tiny_patch16_224", **SMALL), seed=3)
    state = {f"model.{k}": v for k, v in source.state_dict().items()}
    state |= {f"model_ema.module.{k}": v for k, v in ema.state_dict().items()}
    path = tmp_path / "lightning_ema.ckpt"
    torch.save({"state_dict": state, "epoch": 3}, path)
    loaded = kat_from(path)
    for key, value in source.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0, msg=key)


def test_position_embedding_resampled(tmp_path):
    vit = small_vit()
    path = tmp_path / "vit.pth"
    torch.save(vit.state_dict(), path)
    kat = kat_from(path, img_size=48)
    expected = resample_abs_pos_embed(vit.pos_embed.detach(), new_size=(6, 6), old_size=(4, 4), num_prefix_tokens=1)
    assert kat.pos_embed.shape == (1, 1 + 36, 192)
    torch.testing.assert_close(kat.pos_embed.detach(), expected)
    assert kat(torch.randn(1, 3, 48, 48)).shape == (1, 1000)


def test_head_dropped_with_message_when_class_count_differs(tmp_path, caplog):
    vit_state = small_vit().state_dict()
    path = tmp_path / "vit.pth"
    torch.save(vit_state, path)
    with caplog.at_level(logging.WARNING, logger="kanvision.models.kat"):
        kat = kat_from(path, num_classes=10)
    assert "Dropping the checkpoint's classifier (head.weight (1000, 192)" in caplog.text
    assert "the model's head is head.weight (10, 192), head.bias (10,) (10 classes)" in caplog.text
    assert kat.head.weight.shape == (10, 192)
    torch.testing.assert_close(kat.blocks[1].attn.qkv.weight, vit_state["blocks.1.attn.qkv.weight"])
    features_only = kat_from(path, num_classes=0)
    assert features_only(torch.randn(1, 3, 32, 32)).shape == (1, 192)


def test_wrong_width_or_depth_is_a_clear_error(tmp_path):
    wide = tmp_path / "vit_small.pth"
    torch.save(timm.create_model("vit_small_patch16_224", **SMALL).state_dict(), wide)
    with pytest.raises(ValueError, match=r"shape mismatch .*cls_token \(1, 1, 384\) vs \(1, 1, 192\)"):
        kat_from(wide)
    deep = tmp_path / "vit_deep.pth"
    torch.save(timm.create_model("vit_tiny_patch16_224", **{**SMALL, "depth": 3}).state_dict(), deep)
    with pytest.raises(ValueError, match=r"not in the model: blocks\.2\.norm1\.weight \(192,\)"):
        kat_from(deep)
    shallow = tmp_path / "vit_shallow.pth"
    torch.save(timm.create_model("vit_tiny_patch16_224", **{**SMALL, "depth": 1}).state_dict(), shallow)
    with pytest.raises(ValueError, match=r"missing from checkpoint: blocks\.1\.norm1\.weight"):
        kat_from(shallow)


def test_failed_load_leaves_model_untouched(tmp_path):
    path = tmp_path / "vit_small.pth"
    torch.save(timm.create_model("vit_small_patch16_224", **SMALL).state_dict(), path)
    model = timm.create_model("kat_tiny_patch16_224", **SMALL)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="nothing was loaded"):
        model.load_pretrained(str(path))
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_convert_cli_roundtrip(tmp_path, capsys):
    vit_state = small_vit().state_dict()
    source, destination = tmp_path / "vit.safetensors", tmp_path / "out" / "kat.safetensors"
    save_file(vit_state, str(source))
    options = ["--img-size", "32", "--rational-init", "identity", "gelu", "--model-arg", "depth=2"]
    convert_main(
        [str(source), str(destination), "--model", "kat_tiny_patch16_224", *options, "--model-arg", "patch_size=8"]
    )
    assert "wrote" in capsys.readouterr().out
    converted = load_file(str(destination))
    from safetensors import safe_open

    with safe_open(str(destination), "pt") as handle:
        metadata = json.loads(handle.metadata()["kanvision"])
    assert metadata["model_name"] == "kat_tiny_patch16_224" and metadata["model_kwargs"]["rational_init"][1] == "gelu"
    assert metadata["data_config"]["img_size"] == [32, 32]  # the size it was built for, not the default 224
    for key, value in vit_state.items():
        if key.startswith(("patch_embed", "blocks.0.")):
            torch.testing.assert_close(converted[key], value)
    assert converted["blocks.1.mlp.act2.weight_numerator"].shape == (1, 6)
    reloaded = kat_from(destination, rational_init=("identity", "gelu"))  # kanvision's own file loads back
    for key, value in converted.items():
        torch.testing.assert_close(reloaded.state_dict()[key], value, rtol=0, atol=0)
    # the same file rebuilds alone through kanvision.load_checkpoint, with identical logits
    rebuilt = kanvision.load_checkpoint(destination)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), reloaded.eval()(x), rtol=0, atol=0)
    with pytest.raises(SystemExit):
        convert_main([str(tmp_path / "missing.pth"), str(destination)])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "kat_tiny_patch16_2"], "unknown model 'kat_tiny_patch16_2': not a timm or kanvision model name"),
        (["--model", "resnet18", "--img-size", "64"], "resnet18 does not take the arguments ['img_size']"),
        (["TRUNCATED"], "into kat_tiny_patch16_224: PytorchStreamReader failed"),
    ],
)
def test_convert_cli_reports_bad_arguments_and_files_without_a_traceback(tmp_path, capsys, args, message):
    source = tmp_path / "vit.pth"
    torch.save(small_vit().state_dict(), source)
    if args == ["TRUNCATED"]:
        source.write_bytes(source.read_bytes()[:2000])
        args = []
    with pytest.raises(SystemExit) as exit_info:
        convert_main([str(source), str(tmp_path / "out.safetensors"), *args])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("kanvision-convert: error: ") and message in error
    assert not (tmp_path / "out.safetensors").exists()


@pytest.mark.parametrize(
    ("kat_name", "vit_name"),
    [
        ("kat_tiny_patch16_224", "vit_tiny_patch16_224"),
        pytest.param("kat_small_patch16_224", "vit_small_patch16_224", marks=pytest.mark.slow),
    ],
)
def test_vit_reproduction(tmp_path, kat_name, vit_name):
    """Paper's "from ViT" init with act1 = identity, act2 = GELU fit: the KAT computes the ViT's function."""
    vit = timm.create_model(vit_name).eval()  # random timm weights
    path = tmp_path / f"{vit_name}.safetensors"
    save_file(vit.state_dict(), str(path))
    kat = timm.create_model(
        kat_name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), rational_init=("identity", "gelu")
    ).eval()
    if kat_name == "kat_tiny_patch16_224":
        assert sum(p.numel() for p in kat.parameters()) == 5_718_328
    images = torch.randn(4, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, got = vit(images), kat(images)
    relative = ((got - expected).norm() / expected.norm()).item()
    assert relative < 0.05, relative
    assert torch.equal(got.argmax(-1), expected.argmax(-1))
