"""kanvision.kanify on tiny timm ViT, Swin and ConvNeXt networks: what it finds, parameter counts by formula,
closeness to the original network, the checkpoint round trip and its refusals."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

import kanvision
from kanvision.layers import GroupKAN, GroupRational, KANConv2d, KANLinear
from kanvision.models._checkpoint import save_safetensors
from kanvision.utils.safe_config import check_file_config

# name, create_model kwargs, image size, [(C, hidden)] of every MLP in forward order
FAMILIES = {
    "vit": (
        "vit_tiny_patch16_224",
        dict(img_size=32, patch_size=8, depth=2, embed_dim=32, num_heads=2),
        32,
        [(32, 128)] * 2,
    ),
    "swin": (
        "swin_tiny_patch4_window7_224",
        dict(img_size=32, window_size=4, depths=(1, 1), num_heads=(1, 2), embed_dim=16),
        32,
        [(16, 64), (32, 128)],
    ),
    # conv_mlp=True: the MLPs are 1x1 convolutions on NCHW maps; False: nn.Linear on NHWC
    "convnext_conv": (
        "convnext_atto",
        dict(depths=(1, 1, 1, 1), dims=(8, 16, 24, 32), conv_mlp=True),
        32,
        [(8, 32), (16, 64), (24, 96), (32, 128)],
    ),  # fmt: skip
    "convnext_linear": (
        "convnext_atto",
        dict(depths=(1, 1, 1, 1), dims=(8, 16, 24, 32), conv_mlp=False),
        32,
        [(8, 32), (16, 64), (24, 96), (32, 128)],
    ),  # fmt: skip
}
MLP_NAMES = {
    "vit": ["blocks.0.mlp", "blocks.1.mlp"],
    "swin": ["layers.0.blocks.0.mlp", "layers.1.blocks.0.mlp"],
    "convnext_conv": [f"stages.{i}.blocks.0.mlp" for i in range(4)],
    "convnext_linear": [f"stages.{i}.blocks.0.mlp" for i in range(4)],
}
CHEBYSHEV_DEGREE = 3  # Chebyshev T_0..T_3: 4 functions


def _model(family: str) -> tuple[nn.Module, torch.Tensor]:
    name, kwargs, size, _ = FAMILIES[family]
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=5, **kwargs).eval()
    return model, torch.randn(2, 3, size, size)


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize(
    ("kan", "where"), [("chebyshev", "act"), ("rational", "act"), ("chebyshev", "mlp")], ids=["kan", "rat", "mlp"]
)
def test_kanify_converts_every_mlp_with_the_documented_parameter_count(family, kan, where):
    model, x = _model(family)
    before = _count(model)
    groups = 4
    kwargs = dict(groups=groups) if where == "act" else {}
    report = kanvision.kanify(
        model, kan=kan, where=where, kan_kwargs=dict(basis_kwargs=dict(degree=CHEBYSHEV_DEGREE)) if kan != "rational"
        else None, **kwargs,
    )  # fmt: skip
    names = MLP_NAMES[family]
    assert [r.name for r in report.replaced] == ([f"{n}.act" for n in names] if where == "act" else names)

    n = CHEBYSHEV_DEGREE + 1
    mlps = FAMILIES[family][3]
    if where == "act" and kan == "rational":
        added = len(mlps) * ((5 + 1) + groups * 4)  # shared numerator a_0..a_5, a denominator b_1..b_4 per group
    elif where == "act":
        added = len(mlps) * groups * (n + 1)  # c_g0..c_g(n-1) and the base weight w_g per group
    else:  # fc1 (C -> H) and fc2 (H -> C): out * in * (n + 1) + out each, replacing out * in + out
        added = sum(2 * c * h * (n + 1) - 2 * c * h for c, h in mlps)
    assert report.params_before == before
    assert report.params_after == _count(model) == before + added

    conv = family == "convnext_conv"
    for name in names:
        mlp = model.get_submodule(name)
        if where == "act":
            assert isinstance(mlp.act, GroupRational if kan == "rational" else GroupKAN)
            assert mlp.act.channel_dim == (1 if conv else -1) and mlp.act.init == "gelu"
        else:
            assert isinstance(mlp.act, nn.Identity)
            assert all(isinstance(fc, KANConv2d if conv else KANLinear) for fc in (mlp.fc1, mlp.fc2))

    # the timm API still works: forward, features, head, backward into the new parameters
    logits = model(x)
    assert logits.shape == (2, 5) and torch.isfinite(logits).all()
    assert model.forward_head(model.forward_features(x)).shape == (2, 5)
    logits.square().sum().backward()
    new = model.get_submodule(names[0] + (".act" if where == "act" else ".fc1"))
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in new.parameters())


@pytest.mark.parametrize("family", list(FAMILIES))
def test_rational_gelu_init_stays_close_to_the_original_network(family):
    """GroupRational's "gelu" init is a fit of GELU (max error 0.004 on [-8, 8]): the logits barely move."""
    model, x = _model(family)
    with torch.no_grad():
        reference = model(x)
        kanvision.kanify(model, kan="rational")
        converted = model(x)
    difference = float((converted - reference).abs().max())
    # measured (max |logit difference|, logits up to 0.2): vit 3.9e-4, swin 6.2e-5, convnext 7.5e-9 (layer scale 1e-6)
    assert difference < 2e-3


def test_a_group_activation_reproduces_the_activation_it_replaces():
    """On the values the activation actually sees: GroupRational 'gelu' within its fit error, GroupKAN fits too."""
    model, x = _model("vit")
    seen = {}
    model.blocks[0].mlp.act.register_forward_hook(lambda m, i, o: seen.update(x=i[0].detach()))
    model(x)
    kanvision.kanify(model, kan="rational")
    h = seen["x"].double()
    assert (model.blocks[0].mlp.act.double()(h) - F.gelu(h)).abs().max() < 4.1e-3


def test_unmatched_activation_is_fitted_by_group_kan_and_refused_by_rational():
    model = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=1, embed_dim=32, num_heads=2,
                              act_layer="gelu_tanh")  # fmt: skip
    with pytest.raises(ValueError, match=r"blocks\.0\.mlp\.act .*matches none of GroupRational's named inits"):
        kanvision.kanify(model, kan="rational")
    kanvision.kanify(model, kan="rational", kan_kwargs={"init": "gelu"})  # a named init is the user's choice
    model = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=1, embed_dim=32, num_heads=2,
                              act_layer="gelu_tanh")  # fmt: skip
    kanvision.kanify(model, kan="rbf", kan_kwargs={"basis_kwargs": {"num_centers": 16}})
    act = model.blocks[0].mlp.act
    assert act.init == "GELUTanh"
    x = torch.linspace(-3, 3, 101)[:, None].expand(-1, 128)
    tanh_gelu = F.gelu(x, approximate="tanh")
    assert (act(x) - tanh_gelu).abs().max() < 0.02  # a least-squares fit; far from GELU's erf form it is not exact


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("where", ["act", "mlp"])
def test_safetensors_round_trip_rebuilds_the_converted_network(tmp_path, family, where):
    name, kwargs, size, _ = FAMILIES[family]
    model, x = _model(family)
    kanvision.kanify(model, kan="chebyshev", where=where, **(dict(groups=8) if where == "act" else {}))
    with torch.no_grad():  # trained-looking weights: not the init that a rebuild would give anyway
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    recipe = model.kanify_recipe
    assert check_file_config(recipe, "test", allow_targets=False) == recipe
    path = save_safetensors(
        model, {"model_name": name, "model_kwargs": dict(kwargs, num_classes=5)}, tmp_path / "m.safetensors"
    )
    loaded = kanvision.load_checkpoint(path)
    assert loaded.kanify_recipe == recipe
    mlp = loaded.get_submodule(MLP_NAMES[family][0])
    if where == "act":
        assert isinstance(mlp.act, GroupKAN)
        assert mlp.act.channel_dim == (1 if family == "convnext_conv" else -1)
    else:
        assert isinstance(mlp.fc1, KANConv2d if family == "convnext_conv" else KANLinear)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_two_steps_with_patterns_replay_in_order(tmp_path):
    name, kwargs, _, _ = FAMILIES["vit"]
    model, x = _model("vit")
    first = kanvision.kanify(model, kan="rational", pattern="blocks.0.*")
    second = kanvision.kanify(model, kan="fourier", where="mlp", pattern=["blocks.1.mlp"])
    assert [r.name for r in first.replaced] == ["blocks.0.mlp.act"]
    assert [r.name for r in second.replaced] == ["blocks.1.mlp"]
    path = save_safetensors(
        model, {"model_name": name, "model_kwargs": dict(kwargs, num_classes=5)}, tmp_path / "m.safetensors"
    )
    loaded = kanvision.load_checkpoint(path)
    assert isinstance(loaded.blocks[0].mlp.act, GroupRational) and isinstance(loaded.blocks[1].mlp.fc2, KANLinear)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_mixer_token_and_channel_mlps_and_a_pattern_for_one_kind():
    from timm.models.mlp_mixer import MlpMixer

    model = MlpMixer(num_classes=5, img_size=32, patch_size=8, num_blocks=2, embed_dim=16)
    report = kanvision.kanify(model, kan="rational", groups=4, pattern="*.mlp_channels")
    assert [r.name for r in report.replaced] == ["blocks.0.mlp_channels.act", "blocks.1.mlp_channels.act"]
    report = kanvision.kanify(model, kan="chebyshev", groups=4)  # the token MLPs, the only ones left
    assert [r.name for r in report.replaced] == ["blocks.0.mlp_tokens.act", "blocks.1.mlp_tokens.act"]
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5)


def test_gated_mlps_convert_their_gate_and_refuse_where_mlp():
    model = timm.create_model("eva02_tiny_patch14_224", img_size=28, depth=1, num_classes=5)
    with pytest.raises(ValueError, match=r"where='mlp' cannot convert gated MLPs \['blocks\.0\.mlp \(GluMlp\)'\]"):
        kanvision.kanify(model, kan="chebyshev", where="mlp")
    report = kanvision.kanify(model, kan="rational")  # SwiGLU: the SiLU gate on half of fc1's outputs
    act = model.blocks[0].mlp.act
    assert report.replaced[0].name == "blocks.0.mlp.act" and act.init == "swish"
    assert act.num_channels == model.blocks[0].mlp.fc1.out_features // 2
    assert model(torch.randn(1, 3, 28, 28)).shape == (1, 5)


def test_refuses_a_network_without_mlps():
    model = timm.create_model("resnet18", num_classes=5)
    with pytest.raises(ValueError, match=r"ResNet has no timm.layers MLPs \(Mlp, .*\); nothing to convert"):
        kanvision.kanify(model)
    vit, _ = _model("vit")
    with pytest.raises(ValueError, match=r"named like pattern='head\*'.*its MLPs are \['blocks.0.mlp'"):
        kanvision.kanify(vit, pattern="head*")
    kanvision.kanify(vit)
    with pytest.raises(ValueError, match="converted already"):
        kanvision.kanify(vit)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (dict(kan="cheb"), r"kan='cheb' is invalid: expected 'rational' \(GroupRational\) or a basis \[.*'chebyshev'"),
        (dict(where="block"), r"where='block' is invalid: expected one of \['act', 'mlp'\]"),
        (dict(kan="rational", where="mlp"), "kan='rational' with where='mlp' is invalid"),
        (dict(groups=0), "groups=0 is invalid"),
        (dict(groups=2.0), "groups=2.0 is invalid"),
        (dict(kan="rbf", where="mlp", groups=4), "groups=4 does not apply to where='mlp'"),
        (dict(kan_kwargs={"num_channels": 3}), r"kan_kwargs \['num_channels'\] are not GroupRational arguments"),
        (dict(kan="rbf", kan_kwargs={"order": (3, 2)}), r"\['order'\] are not GroupKAN arguments.*'basis_kwargs'"),
        (dict(pattern=""), "pattern='' is invalid"),
    ],
)
def test_bad_arguments_are_refused_naming_the_value(arguments, message):
    model, _ = _model("vit")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises((ValueError, TypeError), match=message):
        kanvision.kanify(model, **arguments)
    assert model.state_dict().keys() == state.keys() and not hasattr(model, "kanify_recipe")


def test_groups_must_divide_every_width_and_nothing_changes_otherwise():
    model, x = _model("swin")  # hidden widths 64 and 128
    with torch.no_grad():
        before = model(x)
    with pytest.raises(ValueError, match=r"groups=48 does not divide the width 64 of layers\.0\.blocks\.0\.mlp\.act"):
        kanvision.kanify(model, groups=48)
    assert not hasattr(model, "kanify_recipe") and type(model.layers[0].blocks[0].mlp.act) is nn.GELU
    with torch.no_grad():
        assert torch.equal(model(x), before)


def test_a_recipe_that_is_not_data_is_refused_when_saved(tmp_path):
    model, _ = _model("vit")
    kanvision.kanify(model, kan="chebyshev", kan_kwargs={"init": torch.tanh})
    with pytest.raises(ValueError, match="not plain data"):
        save_safetensors(model, {"model_name": "vit_tiny_patch16_224"}, tmp_path / "m.safetensors")
    assert not (tmp_path / "m.safetensors").exists()
