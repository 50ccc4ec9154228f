"""Residual KAN (RKAN) side paths in timm backbones: layers against naive formulas, parameter budgets from the
paper, every registered model trained one step, backbone checkpoints giving the backbone's exact logits.

Gradient policy (documented in kanvision.models.rkan): the side path's last BN scale starts at 0, so at
initialisation the side path is an exact no-op and every side-path parameter upstream of that BN receives a
gradient that is present but exactly zero (only that BN's scale and shift move). After one optimizer step the
scale is non-zero, and then EVERY parameter of the model (backbone and side path) gets a non-zero gradient.
"""

import copy
import math

import pytest
import timm
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf
from timm.models import group_parameters

import kanvision  # noqa: F401  (registers the rkan_* models)
from kanvision.layers import SharedKANConv2d
from kanvision.models.rkan import ResidualKANBlock, ResidualKANNet, checkpoint_filter_fn, create_rkan

REGISTERED = sorted(timm.list_models("rkan_*"))
HEAVY = {"rkan_resnet101", "rkan_densenet121", "rkan_regnety_032"}  # run at 32 px to fit the time budget
RESNET50_SIDE_PATH = 524_288 + 54 + 1_024 + 1_048_576 + 45 + 4_096  # the RKAN paper's stage-4 budget, term by term


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# -- SharedKANConv2d ----------------------------------------------------------------------------------------


def _naive_shared_kan_conv(conv: SharedKANConv2d, x: torch.Tensor, base=F.silu) -> torch.Tensor:
    """Unfold every channel's k*k patches and evaluate sum_p phi_p by the closed form T_d = cos(d acos t)."""
    n, c, h, w = x.shape
    k, s, p = conv.kernel_size, conv.stride, conv.padding
    patches = F.unfold(x.reshape(n * c, 1, h, w), k, padding=p, stride=s)  # (N*C, k*k, L)
    t = torch.tanh(patches)
    degree = conv.coefficients.shape[0] - 1
    poly = sum(
        conv.coefficients[d].reshape(-1, 1) * torch.cos(d * torch.acos(t)) for d in range(degree + 1)
    )  # (N*C, k*k, L)
    gain = patches if conv.scale_by_input else 1.0
    phi = conv.base_weight.reshape(-1, 1) * base(patches) + conv.scale.reshape(-1, 1) * gain * poly
    h_out, w_out = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    return phi.sum(1).reshape(n, c, h_out, w_out)


@pytest.mark.parametrize("stride,degree,kernel_size", [(1, 3, 3), (2, 2, 3), (2, 3, 5)])
def test_shared_kan_conv_default_is_the_newest_official_form(stride, degree, kernel_size):
    """Newest official ChebyshevKANLinear (skip_activation=True): w * x + s * sum_d c_d T_d(tanh x), float64."""
    conv = SharedKANConv2d(kernel_size, stride, basis_kwargs=dict(degree=degree)).double()
    assert conv.scale_by_input is False
    with torch.no_grad():
        conv.scale.uniform_(0.5, 1.5)
        conv.coefficients.normal_()
    x = torch.randn(2, 3, 9, 8, dtype=torch.float64) * 1.5
    expected = _naive_shared_kan_conv(conv, x, base=lambda v: v)
    torch.testing.assert_close(conv(x), expected, rtol=1e-10, atol=1e-10)
    # and the whole side path of the registered models uses it
    block = timm.create_model("rkan_resnet18").side_paths["4"]
    assert block.kan1.scale_by_input is False and block.kan1.base_activation(torch.tensor([-2.0])).item() == -2.0


@pytest.mark.parametrize("scale_by_input", [True, False])
@pytest.mark.parametrize("stride,degree,kernel_size", [(1, 3, 3), (2, 2, 3), (2, 3, 5)])
def test_shared_kan_conv_matches_naive_patch_formula(scale_by_input, stride, degree, kernel_size):
    """The earlier released forms: SiLU base branch, with or without the input factor."""
    conv = SharedKANConv2d(
        kernel_size, stride, basis_kwargs=dict(degree=degree), scale_by_input=scale_by_input, base_activation="silu"
    )
    conv = conv.double()
    with torch.no_grad():  # non-trivial scales and base weights
        conv.scale.uniform_(0.5, 1.5)
        conv.coefficients.normal_()
    x = torch.randn(2, 3, 9, 8, dtype=torch.float64) * 1.5
    torch.testing.assert_close(conv(x), _naive_shared_kan_conv(conv, x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("degree,kernel_size,expected", [(3, 3, 54), (2, 3, 45), (3, 5, 150)])
def test_shared_kan_conv_parameter_count(degree, kernel_size, expected):
    # per position: degree + 1 coefficients, a base weight and a scale -> k^2 (degree + 3)
    conv = SharedKANConv2d(kernel_size, basis_kwargs=dict(degree=degree))
    assert _count(conv) == expected == kernel_size**2 * (degree + 3)


def test_shared_kan_conv_shares_one_kernel_across_channels():
    conv = SharedKANConv2d(3)
    x = torch.randn(1, 1, 6, 6)
    stacked = torch.cat([x, 2 * x, -x], 1)
    y = conv(stacked)
    torch.testing.assert_close(y[:, 1:2], conv(2 * x))
    torch.testing.assert_close(y[:, 2:3], conv(-x))


def test_shared_kan_conv_rejects_bad_input():
    with pytest.raises(ValueError, match="kernel_size"):
        SharedKANConv2d(0)
    with pytest.raises(ValueError, match="4-D"):
        SharedKANConv2d(3)(torch.randn(3, 8, 8))


# -- ResidualKANBlock ---------------------------------------------------------------------------------------


def _block_inputs(in_chs=8, out_chs=16, stride=2):
    x = torch.randn(2, in_chs, 8, 8)
    out = torch.randn(2, out_chs, 8 // stride, 8 // stride)
    return x, out


def test_block_combine_modes_match_their_formulas():
    x, out = _block_inputs()
    for combine in ("add", "gate", "se"):
        block = ResidualKANBlock(8, 16, stride=2, second_kan=True, combine=combine, zero_init_last=False).eval()
        r = block.residual(x)
        if combine == "add":
            expected = out + r
        elif combine == "gate":
            g = torch.sigmoid(F.conv2d(r, block.gate.weight, block.gate.bias))
            expected = out * g + r * (1 - g)
        else:  # squeeze-excitation of r, reduction 16 (16 -> 1 -> 16), no biases
            assert block.se.fc1.weight.shape == (1, 16, 1, 1) and block.se.fc1.bias is None
            squeezed = F.relu(F.conv2d(r.mean((2, 3), keepdim=True), block.se.fc1.weight))
            expected = out + r * torch.sigmoid(F.conv2d(squeezed, block.se.fc2.weight))
        torch.testing.assert_close(block(x, out), expected)


def test_block_residual_is_the_paper_pipeline():
    x, _ = _block_inputs()
    block = ResidualKANBlock(8, 16, stride=2, second_kan=True, zero_init_last=False).eval()
    h = block.norm1(block.kan1(F.silu(F.conv2d(x, block.reduce.weight))))
    expected = block.norm2(block.kan2(F.silu(F.conv2d(h, block.expand.weight))))
    torch.testing.assert_close(block.residual(x), expected)
    assert block.reduce.weight.shape == (4, 8, 1, 1) and block.reduce.bias is None  # reduce factor 2, no bias
    assert block.expand.bias is None
    assert (block.kan1.stride, block.kan2.stride) == (2, 1)
    assert (block.kan1.coefficients.shape[0], block.kan2.coefficients.shape[0]) == (4, 3)  # degrees 3 and 2


@pytest.mark.parametrize("combine", ["add", "se"])
def test_zero_initialised_block_is_an_exact_no_op(combine):
    x, out = _block_inputs()
    block = ResidualKANBlock(8, 16, stride=2, second_kan=True, combine=combine)
    assert torch.equal(block.train()(x, out), out)
    assert torch.equal(block.eval()(x, out), out)


def test_gate_block_starts_as_the_released_convex_mix():
    # with r = 0 at init the released gate returns out * sigmoid(bias): documented as not a no-op
    x, out = _block_inputs()
    block = ResidualKANBlock(8, 16, stride=2, combine="gate").eval()
    torch.testing.assert_close(block(x, out), out * torch.sigmoid(block.gate.bias).view(1, -1, 1, 1))


@pytest.mark.parametrize(
    "kan_conv,control,kan_params",
    [
        ("shared", False, lambda c: 54),
        ("depthwise", False, lambda c: c * 5 * 9),  # one kernel per channel: C * (degree + 2) * k^2
        ("full", False, lambda c: c * c * 5 * 9),  # dense: C * C * (degree + 2) * k^2
        ("shared", True, lambda c: c * 9),  # control: depthwise 3x3, no bias
    ],
)
def test_block_kan_conv_variants_and_control(kan_conv, control, kan_params):
    x, out = _block_inputs(8, 16, 2)
    block = ResidualKANBlock(8, 16, stride=2, kan_conv=kan_conv, control=control, zero_init_last=False)
    assert _count(block.kan1) == kan_params(4)
    assert block(x, out).shape == out.shape
    assert block.kan1(torch.randn(2, 4, 8, 8)).shape == (2, 4, 4, 4)


def test_inverted_bottleneck_rkan_l():
    for expansion in (2, 4, 6):
        block = ResidualKANBlock(8, 16, stride=2, inverted_expansion=expansion)
        mid = 8 * expansion
        assert block.mid_chs == mid
        assert _count(block) == 8 * mid + 54 + 2 * mid + mid * 16 + 2 * 16


def test_block_rejects_bad_arguments():
    with pytest.raises(ValueError, match="combine"):
        ResidualKANBlock(8, 16, combine="mult")
    with pytest.raises(ValueError, match="kan_conv"):
        ResidualKANBlock(8, 16, kan_conv="spline")
    with pytest.raises(ValueError, match="reduction"):
        ResidualKANBlock(8, 16, reduction=16)
    with pytest.raises(ValueError, match="degree"):
        ResidualKANBlock(8, 16, degrees=(3, -1))


def test_block_float64_and_compile():
    x, out = _block_inputs()
    block = ResidualKANBlock(8, 16, stride=2, second_kan=True, combine="se", zero_init_last=False).eval()
    expected = block(x, out)
    torch.testing.assert_close(block.double()(x.double(), out.double()).float(), expected, rtol=1e-5, atol=1e-5)
    block.float()
    compiled = torch.compile(block, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(x, out), expected)


# -- parameter budgets --------------------------------------------------------------------------------------


def test_rkan_resnet50_parameter_count_reproduces_the_paper():
    model = timm.create_model("rkan_resnet50", device="meta")
    side = model.side_paths["4"]
    assert (side.in_chs, side.mid_chs, side.out_chs, side.stride) == (1024, 512, 2048, 2)
    assert [_count(m) for m in (side.reduce, side.kan1, side.norm1, side.expand, side.kan2, side.norm2)] == [
        524_288, 54, 1_024, 1_048_576, 45, 4_096,
    ]  # fmt: skip
    assert _count(model.side_paths) == RESNET50_SIDE_PATH == 1_578_083
    assert _count(model.backbone) == _count(timm.create_model("resnet50", device="meta")) == 25_557_032
    assert _count(model) == 27_135_115


def test_rkan_densenet_parameter_counts():
    model = timm.create_model("rkan_densenet121", device="meta")
    side = model.side_paths["4"]
    assert (side.in_chs, side.out_chs, side.stride) == (512, 1024, 1)  # after transition 3, around norm5
    assert _count(side) == 512 * 256 + 54 + 2 * 256 + 256 * 1024 + 45 + 2 * 1024 == 395_875
    # RKAN-DenseNet-169 on ImageNet, the paper's table: 14.15M -> 14.89M
    rkan169 = create_rkan("densenet169", device="meta")
    assert round(_count(rkan169.backbone) / 1e6, 2) == 14.15 and round(_count(rkan169) / 1e6, 2) == 14.89


def test_rkanet101_cifar100_parameter_count():
    model = timm.create_model("rkan_resnet101", num_classes=100, device="meta")
    baseline = _count(timm.create_model("resnet101", num_classes=100, device="meta"))
    assert round(baseline / 1e6, 2) == 42.71  # the paper's ResNet-101 on CIFAR-100
    assert _count(model) == baseline + 1_578_083
    assert round(_count(model) / 1e6, 2) == 44.28


def test_control_has_same_shapes_and_the_stated_parameter_difference():
    kan = timm.create_model("rkan_resnet50", device="meta")
    control = timm.create_model("rkan_resnet50", control=True, device="meta")
    # two KAN kernels (54 + 45) become depthwise 3x3 convs over 512 and 2048 channels
    assert _count(control) - _count(kan) == 9 * (512 + 2048) - (54 + 45) == 22_941
    kan, control = timm.create_model("rkan_resnet18"), timm.create_model("rkan_resnet18", control=True)
    x = torch.randn(2, 3, 64, 64)
    stage_in = torch.randn(2, 256, 4, 4)
    for a, b in ((kan, control),):
        sa, sb = a.side_paths["4"], b.side_paths["4"]
        assert sa.kan1(torch.randn(2, 128, 4, 4)).shape == sb.kan1(torch.randn(2, 128, 4, 4)).shape == (2, 128, 2, 2)
        assert sa.kan2(torch.randn(2, 512, 2, 2)).shape == sb.kan2(torch.randn(2, 512, 2, 2)).shape
        assert sa.residual(stage_in).shape == sb.residual(stage_in).shape == (2, 512, 2, 2)
        assert a(x).shape == b(x).shape == (2, 1000)
    assert isinstance(control.side_paths["4"].kan1[0], torch.nn.Conv2d)
    assert control.side_paths["4"].kan1[0].groups == 128


# -- every registered model -----------------------------------------------------------------------------------


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


@pytest.mark.parametrize("name", REGISTERED)
def test_registered_model_trains_in_fp32_channels_last_and_bf16(name):
    # rkan_generic defaults to resnet50 (= rkan_resnet50); a small backbone keeps this test cheap
    kwargs = dict(backbone="regnetx_002") if name == "rkan_generic" else {}
    model = timm.create_model(name, num_classes=10, **kwargs)
    assert isinstance(model, ResidualKANNet)
    cfg = model.pretrained_cfg  # its head and stem names resolve (pretrained loading adapts them)
    assert model.get_submodule(cfg["classifier"]) is model.get_classifier()
    assert model.get_submodule(cfg["first_conv"]).in_channels == 3
    x, target = torch.randn(2, 3, 32, 32), torch.tensor([1, 7])
    with torch.no_grad():  # fresh side paths are exact no-ops: the wrapped model IS its backbone
        reference = model.eval()(x)
        assert torch.equal(reference, model.backbone(x))

    # channels_last (fp32: the same logits) and bf16 autocast (finite, close to fp32, gradients everywhere)
    model = model.to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        torch.testing.assert_close(model(x_cl), reference, rtol=1e-4, atol=1e-5)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert _relative_error(model(x_cl), reference) < 0.1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model.train()(x_cl)
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits).all()
    F.cross_entropy(logits.float(), target).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    model.zero_grad(set_to_none=True)

    # fp32 training: at init only the zero-initialised BN of each side path moves; after one step, everything
    model = model.to(memory_format=torch.contiguous_format)
    F.cross_entropy(model(x), target).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        if pname.startswith("side_paths.") and ".norm2." not in pname:
            assert not p.grad.any(), f"{pname} should see the zero-initialised BN scale"
    assert all(block.norm2.weight.grad.any() for block in model.side_paths.values())
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # batch-2 BN at 1x1 (32 px) has huge gradients
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    model.zero_grad(set_to_none=True)
    logits = model(x)
    assert torch.isfinite(logits).all() and logits.shape == (2, 10)
    F.cross_entropy(logits, target).backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not no_grad, f"parameters without a non-zero gradient after one step: {no_grad}"


def test_generic_default_is_rkan_resnet50():
    generic, named = timm.create_model("rkan_generic", device="meta"), timm.create_model("rkan_resnet50", device="meta")
    assert [(k, v.shape) for k, v in generic.state_dict().items()] == [
        (k, v.shape) for k, v in named.state_dict().items()
    ]


# -- backbone checkpoints -----------------------------------------------------------------------------------


def _perturbed_backbone(name: str) -> torch.nn.Module:
    """A timm backbone with non-trivial BN statistics and scales (no zero-initialised block scales)."""
    torch.manual_seed(1)
    model = timm.create_model(name)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def test_pretrained_backbone_checkpoint_gives_the_backbone_logits_exactly(tmp_path):
    path = tmp_path / "resnet50.pth"
    torch.save(_perturbed_backbone("resnet50").state_dict(), path)
    plain = timm.create_model("resnet50", pretrained=True, pretrained_cfg_overlay=dict(file=str(path))).eval()
    rkan = timm.create_model("rkan_resnet50", pretrained=True, pretrained_cfg_overlay=dict(file=str(path))).eval()
    saved = torch.load(path, weights_only=True)
    assert set(rkan.state_dict()) == {f"backbone.{k}" for k in saved} | {
        k for k in rkan.state_dict() if k.startswith("side_paths.4.")
    }
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(rkan(x), plain(x))
        assert torch.equal(rkan.train()(x), plain.train()(x))
        assert not torch.equal(timm.create_model("rkan_resnet50").eval()(x), plain.eval()(x))  # not vacuous


def test_pretrained_backbone_with_a_new_head_and_rkan_checkpoint_roundtrip(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(_perturbed_backbone("resnet18").state_dict(), path)
    plain = timm.create_model("resnet18", pretrained=True, pretrained_cfg_overlay=dict(file=str(path))).eval()
    rkan = timm.create_model(
        "rkan_resnet18", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), num_classes=5
    ).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(rkan.forward_features(x), plain.forward_features(x))
        assert rkan(x).shape == (2, 5)
    # an RKAN checkpoint (side paths trained, non-zero) passes the filter unchanged and reloads exactly
    with torch.no_grad():
        rkan.side_paths["4"].norm2.weight.fill_(0.7)
    full = tmp_path / "rkan_resnet18.pth"
    torch.save(rkan.state_dict(), full)
    assert checkpoint_filter_fn(torch.load(full, weights_only=True), rkan).keys() == rkan.state_dict().keys()
    overlay = dict(file=str(full), num_classes=5)  # the checkpoint's own head: keep it
    again = timm.create_model("rkan_resnet18", pretrained=True, pretrained_cfg_overlay=overlay, num_classes=5).eval()
    with torch.no_grad():
        assert torch.equal(again(x), rkan(x))


def test_default_cfgs_point_at_the_backbone_weights():
    names = timm.list_pretrained("rkan_*")
    cifar = {name for name in REGISTERED if name.endswith("_cifar")}  # 32 px networks: no published weights
    assert {name.partition(".")[0] for name in names} == set(REGISTERED) - {"rkan_generic"} - cifar
    for name in cifar:
        cfg = timm.models.get_pretrained_cfg(name)
        assert not (cfg.hf_hub_id or cfg.url or cfg.file) and cfg.input_size == (3, 32, 32)
    for name in names:
        cfg = timm.models.get_pretrained_cfg(name)
        arch, _, tag = name.partition(".")
        source = timm.models.get_pretrained_cfg(f"{arch.removeprefix('rkan_')}.{tag}")
        assert (cfg.hf_hub_id, cfg.url, cfg.mean, cfg.std, cfg.crop_pct, cfg.input_size) == (
            source.hf_hub_id, source.url, source.mean, source.std, source.crop_pct, source.input_size,
        )  # fmt: skip
        assert cfg.classifier == f"backbone.{source.classifier}" and cfg.first_conv == f"backbone.{source.first_conv}"


# -- the wrapper and the generic factory ----------------------------------------------------------------------


def test_unsupported_backbone_is_rejected_with_the_supported_families():
    with pytest.raises(ValueError, match="ResNet.*RegNet.*DenseNet") as info:
        create_rkan("mobilenetv3_small_050")
    assert "MobileNetV3" in str(info.value)
    with pytest.raises(ValueError, match="ResNet.*RegNet.*DenseNet"):
        create_rkan("not_a_model_name")
    with pytest.raises(ValueError, match="features_only"):
        timm.create_model("rkan_resnet18", features_only=True)


@pytest.mark.parametrize(
    "backbone", ["wide_resnet50_2", "seresnext26d_32x4d", "resnet50d", "regnetx_002", "regnetv_040"]
)
def test_side_path_channels_follow_the_backbone(backbone):
    model = create_rkan(backbone, stages=(3, 4), device="meta")
    info = model.backbone.feature_info
    for stage in (3, 4):
        side = model.side_paths[str(stage)]
        assert (side.in_chs, side.out_chs, side.stride) == (info[stage - 1]["num_chs"], info[stage]["num_chs"], 2)
    assert model.side_paths["4"].out_chs == model.num_features


@pytest.mark.parametrize("stages", [0, 5, (4, 4), (), (2.0,)])
def test_invalid_stages_are_rejected(stages):
    with pytest.raises(ValueError, match=r"stages must be distinct stage numbers in 1\.\.4"):
        create_rkan("resnet18", stages=stages, device="meta")


def test_combine_per_stage_must_match_the_stages():
    with pytest.raises(ValueError, match="combine"):
        create_rkan("resnet18", stages=(3, 4), combine=("add",), device="meta")
    model = create_rkan("resnet18", stages=(3, 4), combine=("se", "gate"), device="meta")
    assert (model.side_paths["3"].combine, model.side_paths["4"].combine) == ("se", "gate")


def test_generic_factory_any_backbone_and_stages():
    model = create_rkan("resnext50_32x4d", stages=(3, 4), device="meta")
    s3, s4 = model.side_paths["3"], model.side_paths["4"]
    assert (s3.in_chs, s3.mid_chs, s3.out_chs, s3.stride) == (512, 256, 1024, 2)
    assert isinstance(s3.kan2, torch.nn.Identity) and isinstance(s4.kan2, SharedKANConv2d)  # last stage only
    assert model.pretrained_cfg["classifier"] == "backbone.fc"
    # the same through timm.create_model and through Hydra (a YAML list for stages)
    via_timm = timm.create_model("rkan_generic", backbone="regnetx_002", stages=[2, 4], num_classes=3)
    cfg = OmegaConf.create(
        {"_target_": "kanvision.models.rkan.create_rkan", "backbone": "regnetx_002", "stages": [2, 4], "num_classes": 3}
    )
    via_hydra = instantiate(cfg)
    for model in (via_timm, via_hydra):
        assert model.stages == (2, 4) and isinstance(model.backbone, timm.models.RegNet)
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 3)


def test_densenet_side_paths_on_odd_stage_sizes():
    # 80 px: stage 3 sees 5x5 and its transition floors to 2x2, the stride-2 KAN conv gives 3x3 -> cropped
    model = create_rkan("densenet121", stages=(1, 2, 3, 4), num_classes=4, zero_init_last=False).eval()
    strides = [model.side_paths[str(s)].stride for s in (1, 2, 3, 4)]
    assert strides == [2, 2, 2, 1]
    with torch.no_grad():
        assert model(torch.randn(1, 3, 80, 80)).shape == (1, 4)


def test_timm_model_api():
    model = timm.create_model("rkan_resnet18", num_classes=7)
    x = torch.randn(2, 3, 64, 64)
    assert model.num_classes == 7 and model.num_features == 512 and model.get_classifier().out_features == 7
    assert model.forward_head(model.forward_features(x), pre_logits=True).shape == (2, 512)
    model.reset_classifier(3)
    assert model(x).shape == (2, 3) and model.num_classes == 3
    model.reset_classifier(0)
    assert model(x).shape == (2, 512)
    groups = group_parameters(model, model.group_matcher())
    named = [n for names in groups.values() for n in names]
    assert sorted(named) == sorted(n for n, _ in model.named_parameters())
    layer_of = {n: i for i, names in groups.items() for n in names}
    assert layer_of["backbone.conv1.weight"] == 0
    assert layer_of["side_paths.4.reduce.weight"] > layer_of["backbone.layer4.1.conv2.weight"]


def test_grad_checkpointing_gives_the_same_outputs_and_gradients():
    model = timm.create_model("rkan_resnet18", num_classes=5, zero_init_last=False)
    x = torch.randn(2, 3, 64, 64)
    reference = copy.deepcopy(model)
    model.set_grad_checkpointing(True)
    y, y_ref = model(x), reference(x)
    y.square().sum().backward()
    y_ref.square().sum().backward()
    torch.testing.assert_close(y, y_ref)
    for (name, p), p_ref in zip(model.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p.grad, p_ref.grad, msg=name)


def test_float64_model():
    model = timm.create_model("rkan_regnety_008", num_classes=5, zero_init_last=False).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        y32 = model(x)
        y64 = model.double()(x.double())
    assert y64.dtype == torch.float64
    torch.testing.assert_close(y64.float(), y32, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_full_model_compiles():
    model = timm.create_model("rkan_resnet18", num_classes=5, zero_init_last=False).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(model)(x), model(x), rtol=1e-4, atol=1e-4)


def test_chebyshev_reference_identity():
    # the naive reference's closed form agrees with the recurrence the layer uses (guards the reference)
    t = torch.linspace(-0.99, 0.99, 11, dtype=torch.float64)
    assert torch.allclose(torch.cos(3 * torch.acos(t)), 4 * t**3 - 3 * t)
    assert math.isclose(float(torch.cos(2 * torch.acos(torch.tensor(0.5, dtype=torch.float64)))), -0.5)


def test_cifar_stem_variant():
    """rkan_resnet18_cifar: the ResNet CIFAR stem (3x3 stride 1, no max pooling) and the stage-4 side path."""
    model = timm.create_model("rkan_resnet18_cifar", num_classes=100)
    baseline = timm.create_model("resnet18", num_classes=100)
    stem_change = -64 * 3 * 7 * 7 + 64 * 3 * 3 * 3  # the 7x7 conv becomes a 3x3 one
    side_path = 99_683  # rkan_resnet18's documented stage-4 side path
    assert (
        sum(p.numel() for p in model.parameters())
        == sum(p.numel() for p in baseline.parameters()) + stem_change + side_path
    )
    conv1 = model.backbone.conv1
    assert (conv1.kernel_size, conv1.stride, conv1.padding) == ((3, 3), (1, 1), (1, 1))
    assert isinstance(model.backbone.maxpool, torch.nn.Identity)
    assert model.forward_features(torch.randn(2, 3, 32, 32)).shape == (2, 512, 4, 4)  # 32 / 8: stages 2-4 halve
    assert model.pretrained_cfg["input_size"] == (3, 32, 32)
    with pytest.raises(ValueError, match="the CIFAR stem is defined for ResNet-family backbones"):
        timm.create_model("rkan_densenet121", stem="cifar")


def test_side_path_options_per_stage_and_basis():
    model = timm.create_model("rkan_resnet18", stages=(3, 4), reduction=(4, 2), basis="gram", base_activation="silu")
    assert model.side_paths["3"].mid_chs == 128 // 4 and model.side_paths["4"].mid_chs == 256 // 2
    assert model.side_paths["4"].kan1.basis.registry_name == "gram"
    with pytest.raises(ValueError, match="reduction must be one factor or one per stage"):
        timm.create_model("rkan_resnet18", stages=(3, 4), reduction=(4, 2, 2))
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


def test_scale_by_input_is_refused_where_it_would_be_ignored():
    from kanvision.models.rkan import ResidualKANBlock

    with pytest.raises(ValueError, match="scale_by_input=True applies to kan_conv='shared' only, got kan_conv='full'"):
        ResidualKANBlock(8, 8, 1, kan_conv="full", scale_by_input=True)
    with pytest.raises(ValueError, match="with control=True"):
        ResidualKANBlock(8, 8, 1, control=True, scale_by_input=True)
    assert ResidualKANBlock(8, 8, 1, scale_by_input=True).kan1.scale_by_input
