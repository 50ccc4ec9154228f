"""KAN-ResNets (kanvision.models.kan_resnet): timm ResNet topology with KAN convs, checked against timm's own
resnet18/34 (parameter counts, feature shapes), the zero-initialised blocks, every basis, and the timm API."""

import pytest
import timm
import torch
import torch.nn.functional as F

import kanvision  # noqa: F401  (registers the kan_* models)
from kanvision.layers import KANConv2d, create_basis
from kanvision.models.kan_resnet import KANBasicBlock, KANResNet

NARROW = dict(channels=(8, 8, 16, 16))  # stem width stays 64, as in timm's ResNet


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _expected_from_timm(timm_name: str, m: int, **kwargs) -> int:
    """timm's ResNet with every spatial (k > 1) conv weight counted m times: what a KAN conv with m terms holds."""
    with torch.device("meta"):
        reference = timm.create_model(timm_name, **kwargs)
    total = 0
    for p in reference.parameters():
        spatial_conv = p.dim() == 4 and p.shape[-1] > 1
        total += p.numel() * (m if spatial_conv else 1)
    return total


@pytest.mark.parametrize("depth", [18, 34])
@pytest.mark.parametrize("basis,m", [("chebyshev", 3 + 1 + 1), ("bspline", 5 + 3 + 1), ("rbf", 8 + 1)])
def test_parameter_count_is_timm_resnet_with_m_times_the_spatial_convs(depth, basis, m):
    with torch.device("meta"):
        model = timm.create_model(f"kan_resnet{depth}", basis=basis)
    assert _count(model) == _expected_from_timm(f"resnet{depth}", m)
    assert all(conv.num_terms == m for conv in model.modules() if isinstance(conv, KANConv2d))


def test_default_kan_resnet18_has_five_times_resnet18s_convs():
    with torch.device("meta"):
        model = timm.create_model("kan_resnet18")
    assert _count(model) == 55_669_032 == _expected_from_timm("resnet18", 5)


def test_feature_maps_have_timm_resnet_shapes():
    model = timm.create_model("kan_resnet18", **NARROW).eval()
    reference = timm.create_model("resnet18", features_only=True)
    x = torch.randn(1, 3, 64, 64)
    ours = timm.create_model("kan_resnet18", features_only=True, **NARROW).eval()(x)
    theirs = reference(x)
    assert [f.shape[-2:] for f in ours] == [f.shape[-2:] for f in theirs]
    assert [f.shape[1] for f in ours] == [64, 8, 8, 16, 16]
    assert model.forward_features(x).shape == (1, 16, 2, 2)
    cifar = timm.create_model("kan_resnet18_cifar", **NARROW)
    assert cifar.forward_features(torch.randn(1, 3, 32, 32)).shape == (1, 16, 4, 4)
    assert [info["reduction"] for info in cifar.feature_info] == [1, 1, 2, 4, 8]


def test_a_fresh_block_is_its_shortcut():
    x = torch.randn(2, 8, 6, 6)
    same = KANBasicBlock(8, 8).train()
    torch.testing.assert_close(same(x), x, rtol=0, atol=0)
    down = KANBasicBlock(8, 16, stride=2).train()
    torch.testing.assert_close(down(x), down.downsample(x), rtol=0, atol=0)
    # and the branch is live once the zero-initialised scale moves
    with torch.no_grad():
        same.bn2.weight.fill_(1.0)
    assert (same(x) - x).abs().max() > 1e-3


def test_blocks_have_no_activation_unless_asked():
    model = timm.create_model("kan_resnet18_cifar", **NARROW)
    assert not any(isinstance(mod, (torch.nn.ReLU, torch.nn.SiLU)) for mod in model.modules())
    with_act = timm.create_model("kan_resnet18_cifar", act_layer="silu", **NARROW)
    assert sum(isinstance(mod, torch.nn.SiLU) for mod in with_act.modules()) == 1 + 2 * 8


@pytest.mark.parametrize("basis", ["bspline", "rbf"])  # every basis: test_kan_cnn.py (Bodner's family)
def test_grid_bases_train_a_step(basis):
    model = timm.create_model("kan_resnet18_cifar", basis=basis, zero_init_last=False, num_classes=3, **NARROW)
    convs = [mod for mod in model.modules() if isinstance(mod, KANConv2d)]
    assert len(convs) == 17 and all(conv.basis.registry_name == basis for conv in convs)
    m = create_basis(basis).num_functions + 1
    # timm's ResNet-18 has a 7x7 stem; ours (CIFAR stem) is 3x3: 3 * 64 * (9 - 49) fewer stem weights, m times
    expected = _expected_from_timm("resnet18", m, num_classes=3, **NARROW) + 3 * 64 * (9 - 49) * m
    assert _count(model) == expected
    loss = F.cross_entropy(model(torch.randn(2, 3, 8, 8)), torch.tensor([0, 2]))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_basis_kwargs_reach_every_kan_conv():
    model = timm.create_model("kan_resnet18", basis="bspline", basis_kwargs=dict(grid_range=(-3, 3)), **NARROW)
    ranges = {tuple(float(v) for v in c.basis.grid_range) for c in model.modules() if isinstance(c, KANConv2d)}
    assert ranges == {(-3.0, 3.0)}


def test_channels_last_grad_checkpointing_and_float64_agree():
    torch.manual_seed(0)
    model = timm.create_model("kan_resnet18_cifar", zero_init_last=False, num_classes=4, **NARROW).double().eval()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    reference = model(x)
    channels_last = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(channels_last, reference, rtol=1e-10, atol=1e-10)
    model = model.to(memory_format=torch.contiguous_format).train()
    grads = []
    for checkpointing in (False, True):
        model.set_grad_checkpointing(checkpointing)
        model.zero_grad()
        torch.manual_seed(1)
        model(x).square().sum().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_timm_api():
    model = timm.create_model("kan_resnet18", num_classes=7, **NARROW)
    x = torch.randn(2, 3, 32, 32)
    assert model(x).shape == (2, 7)
    assert model.forward_head(model.forward_features(x), pre_logits=True).shape == (2, model.num_features) == (2, 16)
    model.reset_classifier(3)
    assert model.get_classifier().out_features == 3 and model(x).shape == (2, 3)
    groups = list(timm.models.group_parameters(model, model.group_matcher()).values())
    assert sum(len(g) for g in groups) == len(list(model.parameters()))
    assert len(groups) == 1 + 8 + 1  # stem, eight blocks, the head (unmatched, last)
    assert all(name.startswith(("conv1", "bn1")) for name in groups[0])
    assert all(name.startswith("head") for name in groups[-1])


def test_bad_arguments_raise_value_errors():
    with pytest.raises(ValueError, match="stem_type"):
        KANResNet(stem_type="deep")
    with pytest.raises(ValueError, match="equally long"):
        KANResNet(layers=(2, 2), channels=(8, 8, 8))
    with pytest.raises(ValueError, match="unknown basis"):
        KANResNet(basis="legendre", **NARROW)
    with pytest.raises(ValueError, match="unknown activation 'swishy'"):
        KANResNet(act_layer="swishy", **NARROW)


def test_norm_layer_choice():
    """BatchNorm (torch-conv-kan's ResKANet), InstanceNorm with or without affine parameters, or none, everywhere."""
    kwargs = dict(layers=(1, 1), channels=(4, 8), stem_width=4, stem_type="cifar", num_classes=3)
    bn = KANResNet(**kwargs)
    inst = KANResNet(**kwargs, norm_layer="instancenorm", norm_affine=False)
    none = KANResNet(**kwargs, norm_layer=None)
    norms = [m for m in inst.modules() if isinstance(m, torch.nn.InstanceNorm2d)]
    # stem 4, block one 4 + 4, block two 8 + 8 and its projection shortcut 8
    assert len(norms) == 6 and not any(m.affine for m in norms)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in [*inst.modules(), *none.modules()])
    assert _count(bn) - _count(inst) == 2 * (4 + 4 + 4 + 8 + 8 + 8) and _count(inst) == _count(none)
    affine = KANResNet(**kwargs, norm_layer="instancenorm")
    assert torch.count_nonzero(affine.layer2[0].bn2.weight) == 0  # zero_init_last holds for any affine norm
    x = torch.randn(2, 3, 16, 16)
    for model in (bn, inst, none, affine):
        assert model(x).shape == (2, 3)
    with pytest.raises(ValueError, match="unknown norm_layer 'layernorm'"):
        KANResNet(**kwargs, norm_layer="layernorm")
