"""The plain CIFAR-stem ResNets that the CIFAR RKANs and KAN-ResNets are compared with."""

import pytest
import timm
import torch

import kanvision  # noqa: F401  (registers the models)


@pytest.mark.parametrize("depth", [18, 34])
def test_resnet_cifar_is_timm_resnet_with_the_cifar_stem(depth):
    model = timm.create_model(f"resnet{depth}_cifar")
    imagenet = timm.create_model(f"resnet{depth}", num_classes=10)
    # only the first conv differs: 7x7 -> 3x3 kernels over 3 channels, 64 filters
    stem_change = 64 * 3 * (3 * 3 - 7 * 7)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in imagenet.parameters()) + stem_change
    assert model.pretrained_cfg["input_size"] == (3, 32, 32) and model.num_classes == 10
    x = torch.randn(2, 3, 32, 32)
    assert model.forward_features(x).shape == (2, 512, 4, 4)  # stages 2-4 halve 32 px; stem and pooling do not
    assert imagenet.forward_features(x).shape == (2, 512, 1, 1)
    assert [info["reduction"] for info in model.feature_info] == [1, 1, 2, 4, 8]
    # the same computation as the RKAN backbone with its side path removed
    rkan = timm.create_model(f"rkan_resnet{depth}_cifar")
    model.load_state_dict({k.removeprefix("backbone."): v for k, v in rkan.state_dict().items() if "side" not in k})
    model.eval(), rkan.backbone.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), rkan.backbone(x), rtol=0, atol=0)


def test_resnet_cifar_refuses_features_only_and_other_backbones():
    with pytest.raises(ValueError, match="resnet18_cifar does not support features_only"):
        timm.create_model("resnet18_cifar", features_only=True)
    from kanvision.models.baselines import use_cifar_stem

    with pytest.raises(ValueError, match="defined for ResNet-family backbones, got DenseNet"):
        use_cifar_stem(timm.create_model("densenet121"))
