"""`kanvision-train model.name=<timm model> +model.kanify.kan=<basis>`: the real configs train a converted network,
its checkpoints rebuild it, and bad kanify values fail before anything is built."""

from __future__ import annotations

import pytest
import torch

import kanvision
from kanvision.layers import GroupKAN, GroupRational
from kanvision.training.module import ImageClassifier
from kanvision.training.train import train
from kanvision.training.validate import ConfigError, validate_config

# a ConvNeXt of four one-block stages on the digits resized to 32 px (the stem's stride 4 and three downsamplings)
TINY_CONVNEXT = [
    "model.name=convnext_atto",
    "+model.kwargs.depths=[1,1,1,1]",
    "+model.kwargs.dims=[8,16,24,32]",
    "data.img_size=32",
    "data.batch_size=32",
]


def test_train_a_kanified_convnext_and_rebuild_it_from_its_checkpoints(make_cfg, tmp_path):
    cfg = make_cfg(
        *TINY_CONVNEXT,
        "+model.kanify.kan=chebyshev",
        "+model.kanify.groups=4",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
    )
    metrics = train(cfg)
    assert metrics["global_step"] == 2
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    recipe = [{"kan": "chebyshev", "where": "act", "groups": 4, "pattern": None, "kan_kwargs": {}}]

    images = torch.randn(4, 1, 32, 32)  # the digits are grayscale
    from_ckpt = kanvision.load_checkpoint(ckpt)
    from_safetensors = kanvision.load_checkpoint(tmp_path / "model.safetensors")
    classifier = ImageClassifier.load_from_checkpoint(ckpt).eval()
    assert from_ckpt.kanify_recipe == from_safetensors.kanify_recipe == recipe
    acts = [m for m in from_ckpt.modules() if isinstance(m, GroupKAN)]
    assert len(acts) == 4 and all(a.groups == 4 and a.channel_dim == 1 for a in acts)  # conv_mlp: NCHW
    # trained: the activations left their GELU init
    assert any(not torch.equal(a.weight, GroupKAN(a.num_channels, 4, init="gelu").weight) for a in acts)
    with torch.no_grad():
        logits = from_ckpt(images)
        assert torch.equal(from_safetensors(images), logits)
        assert torch.equal(classifier.model(images), logits)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("+model.kanify.kan=cheb", r"model\.kanify\.kan='cheb' is invalid: expected 'rational' .*'chebyshev'"),
        ("+model.kanify.layers=3", r"model\.kanify: unknown keys \['layers'\]; valid: \['kan', 'where'"),
        ("+model.kanify.where=mlp", r"model\.kanify\.kan='rational' with where='mlp' is invalid"),
        ("+model.kanify={kan: rbf, groups: 0}", r"model\.kanify\.groups=0 is invalid"),
    ],
)
def test_bad_kanify_values_fail_config_validation(make_cfg, override, message):
    cfg = make_cfg(*TINY_CONVNEXT, override)
    with pytest.raises(ConfigError, match=message):
        validate_config(cfg)


def test_kanify_is_null_by_default_and_a_module_error_names_the_key():
    assert ImageClassifier("resnet18", num_classes=3).hparams.kanify is None
    with pytest.raises(ValueError, match=r"model\.kanify=.*cannot convert resnet18: kanify: ResNet has no timm"):
        ImageClassifier("resnet18", num_classes=3, kanify={"kan": "rational"})
    model = ImageClassifier(
        "vit_tiny_patch16_224",
        kwargs=dict(img_size=16, patch_size=8, depth=1, embed_dim=16, num_heads=1),
        num_classes=3,
        kanify={"kan": "rational", "groups": 2},
    )
    assert isinstance(model.model.blocks[0].mlp.act, GroupRational) and model.model.blocks[0].mlp.act.groups == 2
    assert model.hparams.kanify == {"kan": "rational", "where": "act", "groups": 2, "pattern": None, "kan_kwargs": {}}
