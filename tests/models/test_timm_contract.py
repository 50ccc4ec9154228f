"""timm's model contract on every registered kanvision model, and pruning checked against timm's own models.

Each model is built small (narrow widths, one block, a small input) where its arguments allow: the contract is about
the head and the layer bookkeeping, not the size. One model per family runs in the fast tier, the rest are ``slow``.
"""

import pytest
import timm
import torch

import kanvision  # noqa: F401  (registers the models)

PREFIXES = ("kan_*", "kat_*", "katx_*", "rkan_*", "vit_kan_*")
REGISTERED = sorted({name for prefix in PREFIXES for name in timm.list_models(prefix)})

_KAT = dict(embed_dim=32, depth=1, num_heads=2, img_size=32)
_KAN_RESNET = dict(channels=(8, 8, 8, 8), stem_width=8, layers=(1, 1, 1, 1), basis_kwargs=dict(degree=1))
SMALL = {
    **{name: _KAT for name in REGISTERED if name.startswith(("kat_", "katx_"))},
    **{name: _KAT | dict(kan_hidden_features=32) for name in REGISTERED if name.startswith("vit_kan_")},
    **{name: _KAN_RESNET for name in REGISTERED if name.startswith("kan_resnet")},
    **{name: dict(cfg=(8, "M", 8), basis_kwargs=dict(degree=1)) for name in REGISTERED if name.startswith("kan_vgg")},
    **{
        name: dict(widths=(8, 8), strides=(1, 2))
        for name in ("kan_kacn_simple4", "kan_kacn_simple8", "kan_kagn_simple8")
    },
    # timm ResNets take their stage widths: RKANs around them are built narrow
    **{
        name: dict(channels=(16, 16, 32, 32)) for name in REGISTERED if name.startswith(("rkan_resnet", "rkan_resnext"))
    },
    "rkan_generic": dict(backbone="resnet18", channels=(16, 16, 32, 32)),
}
# one per family in the fast tier (RKAN builds a full timm backbone; the others are cheap when small)
FAST = {"kan_cnn_tiny", "kan_kkan_mnist", "kan_kanc_mlp_big", "kan_kacn_simple4", "kan_resnet18_cifar",
        "kan_vgg11_bottleneck", "kat_tiny_patch16_224", "rkan_resnet18", "vit_kan_tiny_patch16_224"}  # fmt: skip


def _input(name: str, batch: int = 2) -> torch.Tensor:
    cfg = timm.get_pretrained_cfg(name)
    chans, size, _ = cfg.input_size if cfg is not None else (3, 64, 64)
    if name.startswith(("kat_", "katx_", "vit_kan_")):
        size = _KAT["img_size"]
    elif cfg is None or not cfg.fixed_input_size:
        size = min(size, 32 if name.startswith("kan_") else 64)
    return torch.randn(batch, chans, size, size)


def _params(names):
    return [pytest.param(n, marks=() if n in FAST else pytest.mark.slow) for n in names]


def test_the_list_covers_every_family():
    families = {"kan_cnn_tiny", "kan_kkan_mnist", "kan_resnet18", "kan_vgg11_bottleneck", "kat_tiny_patch16_224",
                "vit_kan_tiny_patch16_224"}  # fmt: skip
    assert families | {"rkan_resnet18", "rkan_densenet121", "rkan_generic"} <= set(REGISTERED)
    assert FAST <= set(REGISTERED)


@pytest.mark.parametrize("name", _params(REGISTERED))
def test_no_classes_gives_the_pooled_pre_logit_features(name):
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=0, **SMALL.get(name, {})).eval()
    x = _input(name)
    with torch.no_grad():
        features = model(x)
        reference = model.forward_head(model.forward_features(x), pre_logits=True)
        torch.testing.assert_close(features, reference, rtol=0, atol=0)
        assert features.shape == (2, model.num_features) == (2, model.head_hidden_size)
        assert model.num_classes == 0

        torch.manual_seed(0)
        classifier = timm.create_model(name, num_classes=7, **SMALL.get(name, {})).eval()
        assert classifier(x).shape == (2, 7)
        classifier.reset_classifier(0)
        assert classifier.num_classes == 0
        pooled = classifier(x)
        assert pooled.shape == (2, classifier.num_features)
        torch.testing.assert_close(pooled, classifier.forward_head(classifier.forward_features(x), pre_logits=True))
        classifier.reset_classifier(5)
        assert classifier.num_classes == 5 and classifier(x).shape == (2, 5)


def test_small_conv_kan_without_classes_pools_as_timm_cnns_do():
    torch.manual_seed(0)
    model = timm.create_model("kan_kkan_mnist", num_classes=0).eval()
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        maps = model.forward_features(x)  # (3, 25, 5, 5)
        torch.testing.assert_close(model(x), maps.mean((2, 3)), rtol=0, atol=0)
        assert model.pre_logits.__class__ is torch.nn.Identity  # no flattening head (its size is tied to the classes)
        maxed = timm.create_model("kan_kkan_mnist", num_classes=0, global_pool="max").eval()
        maxed.load_state_dict(model.state_dict())
        torch.testing.assert_close(maxed(x), maps.amax((2, 3)), rtol=0, atol=0)
    with pytest.raises(ValueError, match="global_pool='max': SmallConvKAN's classifier flattens"):
        timm.create_model("kan_kkan_mnist", global_pool="max")


def test_small_conv_kan_keeps_its_trained_hidden_layers_when_the_classifier_changes():
    model = timm.create_model("kan_kanc_mlp_big").eval()
    hidden = model.pre_logits[1].weight.detach().clone()
    model.reset_classifier(3)
    torch.testing.assert_close(model.pre_logits[1].weight, hidden, rtol=0, atol=0)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 3)


# -- prune_intermediate_layers against timm's own ------------------------------------------------------------------

PRUNE_CASES = [
    ("kan_resnet18_cifar", _KAN_RESNET, (1, 3, 16, 16)),
    ("kan_vgg11_bottleneck", dict(cfg=(8, "M", 8, "M", 8), basis_kwargs=dict(degree=1)), (1, 3, 16, 16)),
    ("kan_cnn_tiny", {}, (1, 1, 8, 8)),
    ("kan_kkan_small", {}, (1, 1, 28, 28)),
    ("rkan_resnet18", dict(stages=(2, 3, 4), channels=(16, 16, 32, 32)), (1, 3, 64, 64)),
    ("resnet18", {}, (1, 3, 64, 64)),  # timm's own: the reference behaviour every family follows
]


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("name", "kwargs", "shape"), PRUNE_CASES)
@pytest.mark.parametrize("keep", [0, 1])
def test_pruning_removes_the_later_layers_and_the_head_as_timm_does(name, kwargs, shape, keep):
    torch.manual_seed(0)
    model = timm.create_model(name, **kwargs).eval()
    x = torch.randn(*shape)
    with torch.no_grad():
        before = model.forward_intermediates(x, intermediates_only=True)
        size = _count(model)
        assert model.prune_intermediate_layers([keep]) == [keep]
        kept = model.forward_intermediates(x, indices=[keep], intermediates_only=True)
        torch.testing.assert_close(kept[0], before[keep], rtol=0, atol=0)
        assert _count(model) < size  # the later stages (and the classifier) are gone
        # the features end at the kept map and the head passes it through unpooled, as timm's ResNet after pruning
        torch.testing.assert_close(model(x), before[keep], rtol=0, atol=0)
        assert model.num_classes == 0 and model.num_features == before[keep].shape[1]
        if name != "resnet18":  # timm's ResNet keeps its five (pruned: Identity) maps; kanvision's end at the kept one
            after = model.forward_intermediates(x, intermediates_only=True)  # the default indices: every map left
            assert len(after) == keep + 1
            for got, want in zip(after, before[: keep + 1], strict=True):
                torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.parametrize(("name", "kwargs", "shape"), PRUNE_CASES)
def test_pruning_the_head_only_keeps_every_layer(name, kwargs, shape):
    torch.manual_seed(0)
    model = timm.create_model(name, **kwargs).eval()
    x = torch.randn(*shape)
    with torch.no_grad():
        final = model.forward_features(x)
        count = len(model.forward_intermediates(x, intermediates_only=True))
        without_head = _count(model) - _count(model.get_classifier())
        assert model.prune_intermediate_layers(indices=1, prune_head=True) == [count - 1]
        assert _count(model) == without_head
        torch.testing.assert_close(model(x), final, rtol=0, atol=0)  # no pooling, no classifier
        torch.manual_seed(0)
        same = timm.create_model(name, **kwargs).eval()
        same.prune_intermediate_layers(indices=1, prune_head=False)
        assert same(x).shape == (1, same.num_classes)  # nothing pruned and prune_head=False: the classifier stays


def test_rkan_pruned_like_its_timm_backbone():
    torch.manual_seed(0)
    rkan = timm.create_model("rkan_resnet18")  # the side path sits on stage 4: pruning to stage 2 drops it
    resnet = timm.create_model("resnet18")
    rkan.prune_intermediate_layers([2])
    resnet.prune_intermediate_layers([2])
    assert _count(rkan) == _count(resnet) and len(rkan.side_paths) == 0
    assert rkan.num_features == resnet.num_features == 128


def test_out_of_range_indices_name_the_range():
    model = timm.create_model("kan_cnn_tiny")
    with pytest.raises(ValueError, match=r"indices=\[5\]: feature index 5 is out of range \(0 to 2\)"):
        model.prune_intermediate_layers([5])
    with pytest.raises(ValueError, match=r"last-n \(4\) is out of range"):
        model.forward_intermediates(torch.randn(1, 1, 8, 8), indices=4)


@pytest.mark.parametrize("indices", [True, False, [True], [0, False], 0, [-4], [1.0], "1"])
def test_bools_and_other_non_indices_are_refused_before_timm(indices, monkeypatch):
    """timm's check is an assertion (gone under ``python -O``) that takes True for 1: these fail here without it."""
    from kanvision.models import _classifier

    monkeypatch.setattr(_classifier, "feature_take_indices", lambda *a: ([2], 2))  # as timm's without its asserts
    model = timm.create_model("kan_cnn_tiny")
    with pytest.raises(ValueError, match=r"indices=.*(out of range|expected an int)"):
        model.prune_intermediate_layers(indices)
    with pytest.raises(ValueError, match=r"indices=.*(out of range|expected an int)"):
        model.forward_intermediates(torch.randn(1, 1, 8, 8), indices=indices)
