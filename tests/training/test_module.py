"""ImageClassifier pieces that need no Trainer: weight-decay groups, switches, argument validation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kanvision.layers import GroupRational
from kanvision.training.module import ImageClassifier
from kanvision.training.optim import build_param_groups


class _Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, 4, 8))
        self.fc = nn.Linear(8, 8)
        self.norm = nn.LayerNorm(8)
        self.act = GroupRational(8, groups=2)

    def no_weight_decay(self):
        return {"pos_embed"}


def _decay_of(groups, model):
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: g["weight_decay"] for g in groups for p in g["params"]}


def test_weight_decay_groups():
    model = _Toy()
    decay = _decay_of(build_param_groups(model, 0.05), model)
    assert decay == {
        "pos_embed": 0.0,  # the model's no_weight_decay()
        "fc.weight": 0.05,
        "fc.bias": 0.0,
        "norm.weight": 0.0,
        "norm.bias": 0.0,
        "act.weight_numerator": 0.05,  # 2-D: decayed, as in the official KAT runs
        "act.weight_denominator": 0.05,
    }
    no_rational = _decay_of(build_param_groups(model, 0.05, decay_rational=False, no_weight_decay=("fc.*",)), model)
    assert no_rational["act.weight_numerator"] == no_rational["act.weight_denominator"] == 0.0
    assert no_rational["fc.weight"] == 0.0


def test_optimizer_groups_are_decided_by_name_before_any_wrapping():
    module = ImageClassifier(
        "kan_cnn_tiny", num_classes=10, in_chans=1, scheduler=None,
        optimizer=dict(_target_="timm.optim.create_optimizer_v2", _partial_=True, opt="sgd", lr=0.1, weight_decay=0.1),
    )  # fmt: skip
    expected = {n: (0.0 if p.ndim <= 1 else 0.1) for n, p in module.model.named_parameters()}
    assert sorted(set(expected.values())) == [0.0, 0.1]

    class Wrapper(nn.Module):  # FSDP-like: a prefix in every name, parameters flattened to 1-D shards
        def __init__(self, inner):
            super().__init__()
            self._fsdp_wrapped_module = inner

    module.model.features = Wrapper(module.model.features)
    for param in module.model.parameters():
        param.data = param.data.flatten()
    optimizer = module.configure_optimizers()["optimizer"]
    names = {id(p): n.replace("_fsdp_wrapped_module.", "") for n, p in module.model.named_parameters()}
    got = {names[id(p)]: group["weight_decay"] for group in optimizer.param_groups for p in group["params"]}
    assert got == expected
    assert type(optimizer).__name__ == "SGD" and optimizer.param_groups[0]["lr"] == 0.1


def _net(**kwargs):
    torch.manual_seed(0)
    return ImageClassifier("kan_cnn_tiny", num_classes=10, in_chans=1, **kwargs)


def test_grad_checkpointing_and_channels_last_compute_the_same():
    x = torch.randn(4, 1, 8, 8)
    ref = _net()
    for module in (_net(grad_checkpointing=True), _net(channels_last=True)):
        module.load_state_dict(ref.state_dict())
        out, out_ref = module(x), ref(x)
        torch.testing.assert_close(out, out_ref, rtol=1e-5, atol=1e-5)
        out.sum().backward()
        out_ref.sum().backward()
        for (name, p), p_ref in zip(module.model.named_parameters(), ref.model.parameters(), strict=True):
            torch.testing.assert_close(p.grad, p_ref.grad, rtol=1e-4, atol=1e-5, msg=name)
        ref.zero_grad()
    assert _net(grad_checkpointing=True).model.grad_checkpointing
    assert _net(channels_last=True).model.features[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_mixup_and_ema_switches():
    assert _net().mixup is None and _net().model_ema is None
    assert _net(mixup=dict(mixup_alpha=0.0, cutmix_alpha=0.0)).mixup is None
    assert _net(mixup=dict(mixup_alpha=0.8, cutmix_alpha=1.0)).mixup is not None
    assert _net(ema=dict(enabled=False, decay=0.9)).model_ema is None
    module = _net(ema=dict(enabled=True, decay=0.9))
    assert module.model_ema is not None
    assert not any(p.requires_grad for p in module.model_ema.parameters())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(name="no_such_model_xyz", num_classes=10), "no_such_model_xyz"),
        (dict(name="kan_cnn_tiny", num_classes=None), "num_classes"),
        (dict(name="kan_cnn_tiny", num_classes=10, kwargs=dict(num_classes=5)), "model.num_classes"),
        (dict(name="kan_cnn_tiny", num_classes=10, label_smoothing=1.5), "label_smoothing"),
        (dict(name="kan_cnn_tiny", num_classes=10, scheduler=dict(name="step")), "cosine"),
        (dict(name="kan_cnn_tiny", num_classes=10, optimizer=dict(layer_decay=0.7)), "layer_decay"),
        (dict(name="kan_cnn_tiny", num_classes=10, optimizer=dict(_target_="torch.optim.SGD", lr=0.1)), "_partial_"),
        (
            dict(name="kan_cnn_tiny", num_classes=10, optimizer=dict(_target_="torch.optim.NoSuch", _partial_=True)),
            "model.optimizer: cannot build _target_ 'torch.optim.NoSuch'",
        ),
        (dict(name="kan_cnn_tiny", num_classes=10, param_groups=dict(decay_bias=True)), "decay_bias"),
        (dict(name="kan_cnn_tiny", num_classes=10, scheduler_interval="batch"), "scheduler_interval"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ImageClassifier(**kwargs)


def test_fixed_size_networks_report_their_size_and_reject_other_data_sizes():
    vit = ImageClassifier("vit_tiny_patch16_224", num_classes=3, kwargs=dict(img_size=32, patch_size=8, depth=1))
    assert tuple(vit.model_data_config()["input_size"]) == (3, 32, 32)  # pretrained_cfg says 224
    vit.check_input_size({"img_size": [32, 32]})
    with pytest.raises(ValueError, match=r"data.img_size=\[16, 16\] but vit_tiny_patch16_224 was built for \[32, 32\]"):
        vit.check_input_size({"img_size": [16, 16]})
    cnn = _net()
    assert cnn.fixed_input_size() is None
    cnn.check_input_size({"img_size": [13, 17]})  # any size goes through a convolutional network
