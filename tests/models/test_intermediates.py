"""timm's intermediate-feature API on kanvision's CNN families, against features_only models of the same weights."""

import pytest
import timm
import torch

import kanvision  # noqa: F401  (registers the models)

# (model, kwargs, input): one small configuration per family with features_only
FAMILIES = [
    ("kan_resnet18", dict(basis_kwargs=dict(degree=1)), (1, 3, 64, 64)),
    ("kan_vgg11_kagn_v2", dict(basis_kwargs=dict(degree=1), width_scale=1), (1, 3, 64, 64)),
    ("kan_kkan_mnist", {}, (2, 1, 28, 28)),
    ("kan_kanc_mlp_small", {}, (2, 1, 28, 28)),
]


@pytest.mark.parametrize(("name", "kwargs", "shape"), FAMILIES)
def test_intermediates_are_the_features_only_maps(name, kwargs, shape):
    torch.manual_seed(0)
    model = timm.create_model(name, **kwargs).eval()
    torch.manual_seed(0)  # the same initial weights: features_only wraps the same network after it is built
    features = timm.create_model(name, features_only=True, **kwargs).eval()
    x = torch.randn(*shape)
    with torch.no_grad():
        final, intermediates = model.forward_intermediates(x)
        expected = features(x)
        torch.testing.assert_close(final, model.forward_features(x), rtol=0, atol=0)
        assert len(intermediates) == len(expected) == len(model.feature_info)
        for got, want in zip(intermediates, expected, strict=True):
            torch.testing.assert_close(got, want, rtol=0, atol=0)
        last_two = model.forward_intermediates(x, indices=2, intermediates_only=True)
        picked = model.forward_intermediates(x, indices=[0, -1], intermediates_only=True)
    for got, want in zip(last_two + picked, expected[-2:] + [expected[0], expected[-1]], strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert model.prune_intermediate_layers(indices=2) == [len(expected) - 2, len(expected) - 1]
    assert model.num_classes == 0
    with pytest.raises(ValueError, match="feature index 9 is out of range"):
        model.forward_intermediates(x, indices=[9])
    with pytest.raises(ValueError, match="'NHWC'"):
        model.forward_intermediates(x, output_fmt="NHWC")


def test_rkan_intermediates_carry_the_side_paths():
    torch.manual_seed(0)
    model = timm.create_model("rkan_resnet18", stages=(3, 4)).eval()
    with torch.no_grad():
        for module in model.side_paths.modules():  # side paths that are not a no-op (their last BN starts at 0)
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.fill_(1.0)
        x = torch.randn(1, 3, 64, 64)
        final, maps = model.forward_intermediates(x)
        backbone = model.backbone
        stem = backbone.act1(backbone.bn1(backbone.conv1(x)))  # timm's first ResNet feature map, before max pooling
        stage1 = backbone.layer1(backbone.maxpool(stem))
        stage2 = backbone.layer2(stage1)
        stage3 = model.side_paths["3"](stage2, backbone.layer3(stage2))
        stage4 = model.side_paths["4"](stage3, backbone.layer4(stage3))
        for got, want in zip(maps, [stem, stage1, stage2, stage3, stage4], strict=True):
            torch.testing.assert_close(got, want, rtol=0, atol=0)
        assert not torch.equal(stage4, backbone.layer4(stage3))  # the side path changed the stage's output
        torch.testing.assert_close(final, model.forward_features(x), rtol=0, atol=0)
        calls = []
        hook = backbone.layer2.register_forward_hook(lambda *_: calls.append(1))
        early = model.forward_intermediates(x, indices=[1], stop_early=True, intermediates_only=True)
        hook.remove()
        torch.testing.assert_close(early[0], stage1, rtol=0, atol=0)
        assert calls == []  # stopped after stage 1
        reference = timm.create_model("resnet18")
        assert [m.shape[-1] for m in maps] == [m.shape[-1] for m in reference.forward_intermediates(x)[1]]
    assert model.prune_intermediate_layers(indices=1) == [4]
    with torch.no_grad():
        assert model(x).shape == (1, 512, 2, 2)  # the head and its pooling are gone, as in timm
