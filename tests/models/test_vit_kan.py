"""ViT with KAN MLPs (the KAT paper's "ViT + KAN" baseline): registry, parameter counts against an independent
formula, the MLP's layers and basis, dtypes, torch.compile, ViT weight loading from a generated .safetensors file."""

import logging

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file

import kanvision  # noqa: F401  (registers the models)
from kanvision.layers import BSplineBasis, ChebyshevBasis, KANLinear, list_bases
from kanvision.models import vit_kan
from kanvision.models.vit_kan import KanMlp, VitKan

NAMES = ["vit_kan_tiny_patch16_224", "vit_kan_small_patch16_224", "vit_kan_base_patch16_224"]
VITS = ["vit_tiny_patch16_224", "vit_small_patch16_224", "vit_base_patch16_224"]
SMALL = dict(img_size=32, patch_size=8, depth=2)


def tiny(**kwargs):
    return timm.create_model("vit_kan_tiny_patch16_224", **{**SMALL, **kwargs})


def count_on_meta(name, **kwargs):
    with torch.device("meta"):
        model = timm.create_model(name, weight_init="skip", **kwargs)
    return sum(p.numel() for p in model.parameters())


def test_registered_with_timm():
    assert sorted(timm.list_models("vit_kan_*")) == sorted(NAMES)
    for name in NAMES:
        assert timm.get_pretrained_cfg(name).paper_ids == "arXiv:2409.10594"


@pytest.mark.parametrize("hidden", [None, 192])
@pytest.mark.parametrize(("name", "vit"), list(zip(NAMES, VITS, strict=True)))
def test_parameter_count_is_the_vit_with_two_kan_layers_per_block(name, vit, hidden):
    """ViT count - its Linear MLPs + 2 KANLinears of in * out * m + out, m = grid 5 + order 3 + base branch 1."""
    width = {"tiny": 192, "small": 384, "base": 768}[name.split("_")[2]]
    h = hidden or 4 * width
    linear_mlp = (width * 4 * width + 4 * width) + (4 * width * width + width)
    m = 5 + 3 + 1
    kan_mlp = (width * h * m + h) + (h * width * m + width)
    count = count_on_meta(name, **({} if hidden is None else dict(kan_hidden_features=hidden)))
    assert count == count_on_meta(vit) - 12 * linear_mlp + 12 * kan_mlp
    assert f"{count:,}" in VitKan.__doc__  # the documented counts are the real ones


def test_forward_backward_reaches_every_parameter():
    torch.manual_seed(0)
    model = tiny(num_classes=7)
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    out.square().mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, f"{pname} received a zero gradient"


def test_default_mlp_is_two_bspline_kan_linears_on_the_layer_norm_range():
    model = tiny(proj_drop_rate=0.25)
    for block in model.blocks:
        mlp = block.mlp
        assert isinstance(mlp, KanMlp) and isinstance(mlp.fc1, KANLinear) and isinstance(mlp.fc2, KANLinear)
        assert (mlp.fc1.in_features, mlp.fc1.out_features, mlp.fc2.out_features) == (192, 768, 192)
        for fc in (mlp.fc1, mlp.fc2):
            assert isinstance(fc.basis, BSplineBasis)
            assert (fc.basis.grid_size, fc.basis.spline_order, fc.basis.grid_range) == (5, 3, (-3.0, 3.0))
            assert fc.base_activation is torch.nn.functional.silu
        assert mlp.drop1.p == mlp.drop2.p == 0.25
    assert not any(isinstance(m, torch.nn.GELU) for m in model.modules())


def test_basis_hidden_width_and_base_branch_are_the_requested_ones():
    model = tiny(kan_basis="chebyshev", kan_kwargs=dict(degree=4), base_activation="none", kan_hidden_features=48)
    x = torch.randn(5, 192)
    for block in model.blocks:
        fc1, fc2 = block.mlp.fc1, block.mlp.fc2
        assert isinstance(fc1.basis, ChebyshevBasis) and fc1.basis.degree == 4 and fc1.base_activation is None
        assert fc1.weight.shape == (48, 192 * 5) and fc2.weight.shape == (192, 48 * 5)
        # KANLinear as a formula: y_j = b_j + sum_i sum_k c_jik T_k(tanh x_i), T the Chebyshev polynomials
        t = torch.tanh(x.double())
        terms = torch.stack([torch.ones_like(t), t, 2 * t**2 - 1, 4 * t**3 - 3 * t, 8 * t**4 - 8 * t**2 + 1], -1)
        expected = terms.flatten(1) @ fc1.weight.double().T + fc1.bias.double()
        torch.testing.assert_close(fc1(x).double(), expected, rtol=1e-4, atol=1e-5)
    assert model.kan_basis == "chebyshev" and model.kan_kwargs == dict(degree=4)


def test_float64_and_bf16_autocast():
    torch.manual_seed(0)
    model = tiny(kan_hidden_features=96).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = model.double()(x.double())
        assert ref.dtype == torch.float64 and torch.isfinite(ref).all()
        model.float()
        torch.testing.assert_close(model(x).double(), ref, rtol=1e-4, atol=1e-5)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    assert ((out.double() - ref).norm() / ref.norm()).item() < 0.1


def test_features_only():
    model = timm.create_model("vit_kan_tiny_patch16_224", features_only=True, out_indices=(0, 1), **SMALL)
    feats = model(torch.randn(1, 3, 32, 32))
    assert [f.shape for f in feats] == [(1, 192, 4, 4)] * 2


def test_torch_compile_matches_eager():
    torch.manual_seed(0)
    model = timm.create_model("vit_kan_tiny_patch16_224", img_size=16, patch_size=8, depth=1, embed_dim=16,
                              num_heads=2, kan_hidden_features=16).eval()  # fmt: skip
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(model, backend="aot_eager")(x), model(x), rtol=1e-5, atol=1e-6)


# -- ViT weights ---------------------------------------------------------------------------------------------------


def randomize_(model, seed=0):
    """Non-trivial values everywhere (LayerNorm scales, biases) so that a wrong mapping cannot go unnoticed."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    return model


WEIGHTS = dict(img_size=32, patch_size=4, depth=2)


def from_file(path, **kwargs):
    return timm.create_model(
        "vit_kan_tiny_patch16_224", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)),
        **{**WEIGHTS, **kwargs},
    )  # fmt: skip


def test_vit_safetensors_loads_everything_but_the_mlps(tmp_path, caplog):
    vit_state = randomize_(timm.create_model("vit_tiny_patch16_224", **WEIGHTS)).state_dict()
    path = tmp_path / "vit.safetensors"
    save_file(vit_state, str(path))
    torch.manual_seed(3)
    with caplog.at_level(logging.INFO, logger=vit_kan.__name__):
        model = from_file(path)
    torch.manual_seed(3)
    fresh = timm.create_model("vit_kan_tiny_patch16_224", **WEIGHTS).state_dict()
    state = model.state_dict()
    mlp = {k for k in state if ".mlp." in k}
    assert set(state) - mlp == {k for k in vit_state if ".mlp." not in k}
    assert any(k.startswith("blocks.1.attn.") for k in state) and "patch_embed.proj.weight" in state
    for key in set(state) - mlp:  # attention, patch embedding, position embedding, norms, head: the ViT's, exactly
        torch.testing.assert_close(state[key], vit_state[key], rtol=0, atol=0, msg=key)
    for key in mlp:  # new: the model's own initialisation
        torch.testing.assert_close(state[key], fresh[key], rtol=0, atol=0, msg=key)
    assert "keeping the model's initial KAN MLPs" in caplog.text and "blocks.0.mlp.fc1.weight (768, 192)" in caplog.text


def test_augreg_npz_loads_like_timms_vit(tmp_path):
    from tests.models.test_kat_weights import vit_to_flax  # an independent Flax writer, checked against timm there

    vit_state = randomize_(timm.create_model("vit_tiny_patch16_224", **WEIGHTS)).state_dict()
    path = tmp_path / "ViT-Ti_16.npz"
    np.savez(path, **vit_to_flax(vit_state, num_heads=3))
    state = from_file(path).state_dict()
    for key in (k for k in state if ".mlp." not in k):
        torch.testing.assert_close(state[key], vit_state[key], msg=key)


def test_own_state_dict_round_trips(tmp_path):
    source = randomize_(timm.create_model("vit_kan_tiny_patch16_224", **WEIGHTS), seed=1)
    path = tmp_path / "vit_kan.safetensors"
    save_file(source.state_dict(), str(path))
    loaded = from_file(path).state_dict()
    for key, value in source.state_dict().items():
        torch.testing.assert_close(loaded[key], value, rtol=0, atol=0, msg=key)


def test_a_vit_missing_a_tensor_is_an_error_naming_it(tmp_path):
    vit_state = timm.create_model("vit_tiny_patch16_224", **WEIGHTS).state_dict()
    del vit_state["blocks.1.attn.proj.bias"]
    vit_state["extra.weight"] = torch.zeros(3)
    path = tmp_path / "vit.safetensors"
    save_file(vit_state, str(path))
    with pytest.raises(ValueError, match=r"nothing was loaded.*blocks\.1\.attn\.proj\.bias.*extra\.weight"):
        from_file(path)


# -- arguments -----------------------------------------------------------------------------------------------------


def test_unknown_basis_names_it_and_the_valid_ones():
    with pytest.raises(ValueError, match=r"kan_basis='bsplin' is not a registered basis; valid: \[.*'bspline'") as e:
        tiny(kan_basis="bsplin")
    assert all(name in str(e.value) for name in list_bases())


def test_other_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"kan_kwargs \['degree'\] are not parameters of basis 'bspline'; valid:"):
        tiny(kan_kwargs=dict(degree=3))
    with pytest.raises(ValueError, match=r"mlp_ratio=2\.0 and kan_hidden_features=192 both set the MLP width"):
        tiny(mlp_ratio=2.0, kan_hidden_features=192)
    with pytest.raises(ValueError, match=r"kan_hidden_features must be an integer >= 1, got 0"):
        tiny(kan_hidden_features=0)
    with pytest.raises(ValueError, match="scale_mlp_norm=True is not supported"):
        tiny(scale_mlp_norm=True)
