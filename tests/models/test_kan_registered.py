"""Every registered ``kan_*`` model (kanvision.models.kan_cnn, kan_resnet, kan_vgg) trains one step on CPU in
channels_last under bf16 autocast: finite logits of the right shape, and every parameter tensor gets a finite,
non-zero gradient.

The KAN-ResNets are built with ``zero_init_last=False`` here: by default their blocks' last BN scale starts at 0
(each block starts as its shortcut), which makes the gradient of everything upstream of that BN exactly zero on
the first step; that default is tested in test_kan_resnet.py.
"""

import pytest
import timm
import torch
import torch.nn.functional as F

import kanvision  # noqa: F401  (registers the kan_* models)

KAN_CNN_MODELS = sorted(timm.list_models("kan_*"))
CIFAR_STEM = {"kan_resnet18_cifar", "kan_resnet34_cifar"}
# InstanceNorm after every layer and output stride 32: a training step needs more than one pixel at the end
INSTANCE_NORM = {"kan_vgg11_kagn_v2", "kan_vgg11_kagn_v4"}


def _input_size(name: str) -> tuple[int, int, int]:
    chans, size, _ = timm.get_pretrained_cfg(name).input_size
    if name in CIFAR_STEM:  # output stride 8: 16 px keeps a 2x2 map and a quarter of the 32 px cost
        return chans, 16, 16
    if name in INSTANCE_NORM:
        return chans, 64, 64
    return chans, min(size, 32), min(size, 32)


def test_the_registered_families_are_all_present():
    expected = {
        "kan_cnn_tiny", "kan_kkan_mnist", "kan_kanc_mlp_mnist", "kan_kkan_small", "kan_kkan_medium",
        "kan_kanc_mlp_small", "kan_kanc_mlp_medium", "kan_kanc_mlp_big", "kan_kacn_simple4", "kan_kacn_simple8",
        "kan_kagn_simple8", "kan_resnet18", "kan_resnet34", "kan_resnet18_cifar", "kan_resnet34_cifar",
        "kan_vgg11_bottleneck", "kan_vgg11_kagn_v2", "kan_vgg11_kagn_v4",
    }  # fmt: skip
    assert expected <= set(KAN_CNN_MODELS)


@pytest.mark.parametrize("name", KAN_CNN_MODELS)
def test_registered_model_trains_a_step_in_channels_last_under_bf16_autocast(name):
    kwargs = dict(zero_init_last=False) if name.startswith("kan_resnet") else {}
    model = timm.create_model(name, num_classes=5, **kwargs).to(memory_format=torch.channels_last).train()
    x = torch.randn(2, *_input_size(name)).to(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x)
        loss = F.cross_entropy(logits, torch.tensor([0, 3]))
    loss.backward()
    assert logits.shape == (2, 5) and torch.isfinite(logits.float()).all()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, f"{pname} got an all-zero gradient"


@pytest.mark.slow
@pytest.mark.parametrize(
    "name,kwargs,shape",
    [
        ("kan_kkan_mnist", {}, (2, 1, 28, 28)),  # channel-shared convs and the spline-scaler parametrisation
        ("kan_kanc_mlp_small", {}, (2, 1, 28, 28)),
        ("kan_cnn_tiny", {}, (2, 1, 8, 8)),
        ("kan_resnet18_cifar", dict(channels=(8, 8, 16, 16), zero_init_last=False), (2, 3, 8, 8)),
        ("kan_vgg11_bottleneck", dict(width_scale=1), (2, 3, 32, 32)),
    ],
)
def test_family_compiles_to_the_eager_result(name, kwargs, shape):
    model = timm.create_model(name, num_classes=4, **kwargs).eval()
    x = torch.randn(*shape)
    with torch.no_grad():
        eager = model(x)
        compiled = torch.compile(model)(x)
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-4)
