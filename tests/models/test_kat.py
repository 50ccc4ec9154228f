"""KAT models: registry, parameter counts, forward/backward, timm API, inits, dtypes."""

import math

import pytest
import timm
import torch
import torch.nn.functional as F
from timm.layers import Mlp

import kanvision  # noqa: F401
from kanvision.layers import GroupRational
from kanvision.models.kat import Kat, KatMlp, mimetic_attention_init_

KAT_MODELS = [
    "kat_tiny_patch16_224",
    "kat_small_patch16_224",
    "kat_base_patch16_224",
    "kat_tiny_patch16_384",
    "kat_small_patch16_384",
    "kat_base_patch16_384",
    "kat_large_patch16_224",
]
SMALL = dict(img_size=32, patch_size=8)


def tiny_kat(**kwargs):
    return timm.create_model("kat_tiny_patch16_224", **{**SMALL, "depth": 2, **kwargs})


def test_registered_with_timm():
    assert sorted(timm.list_models("kat_*")) == sorted(KAT_MODELS)


def count_on_meta(name, **kwargs):
    with torch.device("meta"):
        model = timm.create_model(name, weight_init="skip", **kwargs)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("kat", "vit", "rounded"),
    [
        ("kat_tiny_patch16_224", "vit_tiny_patch16_224", 5.7),
        ("kat_small_patch16_224", "vit_small_patch16_224", 22.1),
        ("kat_base_patch16_224", "vit_base_patch16_224", 86.6),
        ("kat_large_patch16_224", "vit_large_patch16_224", None),
    ],
)
def test_parameter_counts_equal_official(kat, vit, rounded):
    count = count_on_meta(kat)
    depth = 24 if "large" in kat else 12
    assert count == count_on_meta(vit) + depth * 2 * 38  # ViT + two 38-parameter rationals per block
    if rounded is not None:
        assert round(count / 1e6, 1) == rounded  # the paper's table
    if kat == "kat_tiny_patch16_224":
        assert count == 5_718_328


FAST = ["kat_tiny_patch16_224", "kat_small_patch16_224", "kat_base_patch16_224"]
MODEL_PARAMS = [name if name in FAST else pytest.param(name, marks=pytest.mark.slow) for name in KAT_MODELS]


@pytest.mark.parametrize("name", MODEL_PARAMS)
def test_every_model_forward_backward(name):
    # registered widths and heads, two blocks to keep CPU time small (full depth: the parameter counts above)
    model = timm.create_model(name, num_classes=7, depth=2, **SMALL)
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    out.square().mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, f"{pname} received a zero gradient"


def test_block_layout_and_mlp_dropouts():
    model = tiny_kat(drop_rate=0.1, proj_drop_rate=0.2)
    block = model.blocks[0]
    assert isinstance(block.mlp, KatMlp)
    assert [n for n, _ in block.mlp.named_children()] == ["act1", "drop1", "fc1", "act2", "drop2", "fc2"]
    assert block.mlp.act1.num_channels == 192 and block.mlp.act2.num_channels == 768
    assert block.mlp.act1.init == "identity" and block.mlp.act2.init == "swish"
    assert block.mlp.drop1.p == 0.2 and block.mlp.drop2.p == 0.2
    assert block.norm1.eps == 1e-6 and block.attn.qkv.bias is not None and model.cls_token is not None


def test_mlp_with_identity_and_gelu_reproduces_vit_mlp():
    kan = KatMlp(16, 64, rational_init=("identity", "gelu")).double()
    mlp = Mlp(16, 64).double()
    kan.fc1.load_state_dict(mlp.fc1.state_dict())
    kan.fc2.load_state_dict(mlp.fc2.state_dict())
    x = torch.randn(32, 5, 16, dtype=torch.float64)
    ref = mlp(x)
    assert ((kan(x) - ref).norm() / ref.norm()).item() < 1e-2


def test_timm_api():
    model = tiny_kat(num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)
    feats = model.forward_features(x)
    assert feats.shape == (2, 1 + 16, 192)
    assert model.forward_head(feats, pre_logits=True).shape == (2, 192)
    torch.testing.assert_close(model.forward_head(feats), model(x))
    final, intermediates = model.forward_intermediates(x, indices=[0, 1])
    assert len(intermediates) == 2 and intermediates[0].shape == (2, 192, 4, 4)
    torch.testing.assert_close(final, feats)
    assert model.group_matcher()["blocks"][0][0] == r"^blocks\.(\d+)"
    assert model.get_classifier().out_features == 10
    model.reset_classifier(3)
    assert model(x).shape == (2, 3)
    model.reset_classifier(0)
    assert model(x).shape == (2, 192)
    model.set_grad_checkpointing(True)
    model.train()
    torch.manual_seed(0)
    y = model(x)
    y.sum().backward()
    assert model.blocks[0].mlp.act1.weight_denominator.grad is not None


def test_grad_checkpointing_gives_same_gradients():
    model = tiny_kat()
    x = torch.randn(2, 3, 32, 32)
    model(x).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.set_grad_checkpointing(True)
    model(x).sum().backward()
    for g, p in zip(grads, model.parameters(), strict=True):
        torch.testing.assert_close(p.grad, g)


def test_in_chans_and_rational_options():
    model = tiny_kat(in_chans=1, rational_init=("gelu", "relu"), share_numerator=False, rational_groups=4)
    act = model.blocks[1].mlp.act2
    assert act.init == "relu" and act.weight_numerator.shape == (4, 6) and act.groups == 4
    assert model(torch.randn(1, 1, 32, 32)).shape == (1, 1000)


def test_bad_arguments():
    with pytest.raises(ValueError, match="rational_init must be a pair"):
        tiny_kat(rational_init="swish")
    with pytest.raises(ValueError, match="weight_init='xavier'"):
        tiny_kat(weight_init="xavier")
    with pytest.raises(ValueError, match="num_channels=20 .* groups=8"):
        tiny_kat(embed_dim=20, num_heads=2)
    with pytest.raises(ValueError, match="unknown init 'tanh'"):
        tiny_kat(rational_init=("identity", "tanh"))


def test_released_init_keeps_timm_fc_init_and_mimetic_attention():
    model = tiny_kat(embed_dim=96, num_heads=3)
    fc1 = model.blocks[0].mlp.fc1.weight
    assert fc1.std().item() == pytest.approx(0.02, rel=0.05)  # trunc-normal(0.02), as the released models
    assert model.blocks[0].mlp.fc1.bias.abs().max() == 0


@pytest.mark.parametrize("dim,heads", [(96, 3), (64, 4)])
def test_mimetic_attention_products(dim, heads):
    """Sum over heads of W_q^T W_k = 0.7 Z + 0.7 I and W_proj W_v = 0.4 Z - 0.4 I, with Var Z = 1/dim."""
    from timm.layers import Attention

    attn = Attention(dim, num_heads=heads, qkv_bias=True)
    mimetic_attention_init_(attn, generator=torch.Generator().manual_seed(0))
    w_q, w_k, w_v = attn.qkv.weight.detach().double().chunk(3)
    eye = torch.eye(dim, dtype=torch.float64)
    for product, beta, alpha in ((w_q.T @ w_k, 0.7, 0.7), (attn.proj.weight.detach().double() @ w_v, -0.4, 0.4)):
        diagonal = torch.diagonal(product)
        assert diagonal.mean().item() == pytest.approx(beta, abs=0.05)
        noise = product - beta * eye
        assert noise.std().item() == pytest.approx(alpha / math.sqrt(dim), rel=0.1)
    # each head is a rank-(dim/heads) factor, not a copy of the others
    head_dim = dim // heads
    per_head = [w_q[h * head_dim : (h + 1) * head_dim].T @ w_k[h * head_dim : (h + 1) * head_dim] for h in range(heads)]
    assert all(torch.linalg.matrix_rank(p).item() == head_dim for p in per_head)


def test_variance_preserving_init_is_applied_and_preserves_variance():
    model = tiny_kat(embed_dim=128, num_heads=2, weight_init="variance")
    mlp = model.blocks[0].mlp
    alpha2 = GroupRational(8, init="swish").variance_gain()
    assert mlp.fc1.weight.std().item() == pytest.approx(math.sqrt(1.0 / 128), rel=0.05)
    assert mlp.fc2.weight.std().item() == pytest.approx(math.sqrt(alpha2 / 512), rel=0.05)
    # the property it is designed for: x ~ N(0, 1) keeps unit second moment through act -> fc
    with torch.no_grad():
        x = torch.randn(4096, 128)
        assert mlp.fc1(mlp.act1(x)).square().mean().item() == pytest.approx(1.0, rel=0.1)
        h = torch.randn(4096, 512)
        assert mlp.fc2(mlp.act2(h)).square().mean().item() == pytest.approx(1.0, rel=0.1)
    released = tiny_kat(embed_dim=128, num_heads=2)
    assert released.blocks[0].mlp.fc1.weight.std().item() == pytest.approx(0.02, rel=0.05)


def test_init_weights_resets_rationals():
    model = tiny_kat()
    act = model.blocks[0].mlp.act2
    reference = act.weight_denominator.detach().clone()
    with torch.no_grad():
        act.weight_denominator.add_(1.0)
    model.init_weights()
    torch.testing.assert_close(act.weight_denominator.detach(), reference)


def test_float64_and_bf16_autocast():
    model = tiny_kat().eval()
    x = torch.randn(2, 3, 32, 32)
    ref = model.double()(x.double())
    assert ref.dtype == torch.float64 and torch.isfinite(ref).all()
    model.float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    assert ((out.double() - ref).norm() / ref.norm()).item() < 0.1


def test_features_only():
    model = timm.create_model("kat_tiny_patch16_224", features_only=True, out_indices=(0, 1), depth=2, **SMALL)
    feats = model(torch.randn(1, 3, 32, 32))
    assert [f.shape for f in feats] == [(1, 192, 4, 4)] * 2


@pytest.mark.slow
def test_torch_compile_matches_eager():
    model = tiny_kat().eval()
    x = torch.randn(2, 3, 32, 32)
    compiled = torch.compile(model)
    torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-5)
    model.train()
    x.requires_grad_(True)
    (gx_eager,) = torch.autograd.grad(model(x).sum(), x)
    (gx_compiled,) = torch.autograd.grad(torch.compile(model)(x).sum(), x)
    torch.testing.assert_close(gx_compiled, gx_eager, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_group_rational_compiles():
    layer = GroupRational(32, groups=4, init="gelu")
    x = torch.randn(64, 32, requires_grad=True)
    compiled = torch.compile(layer)
    torch.testing.assert_close(compiled(x), layer(x))
    torch.testing.assert_close(F.gelu(x), compiled(x), atol=1e-2, rtol=0)
    (g_compiled,) = torch.autograd.grad(compiled(x).sum(), x)
    (g_eager,) = torch.autograd.grad(layer(x).sum(), x)
    torch.testing.assert_close(g_compiled, g_eager)


def test_kat_is_a_timm_vision_transformer_subclass():
    model = tiny_kat()
    assert isinstance(model, Kat) and isinstance(model, timm.models.VisionTransformer)
    assert model.pretrained_cfg["architecture"] == "kat_tiny_patch16_224"


def test_meta_device_build_then_materialise():
    with torch.device("meta"):
        model = tiny_kat(weight_init="skip")
    model.to_empty(device="cpu")
    model.init_weights("released")
    act = model.blocks[0].mlp.act2
    torch.testing.assert_close(act.weight_numerator, GroupRational(8, init="swish").weight_numerator)
    assert torch.isfinite(model(torch.randn(1, 3, 32, 32))).all()
