"""KAT-X's GroupKAN activations in kanvision.interpret: sampled like GroupRational, plotted per block."""

from __future__ import annotations

import json

import timm
import torch

import kanvision  # noqa: F401  (registers the models)
from kanvision.interpret.cli import main
from kanvision.interpret.sampling import evaluate_functions, find_function_modules, function_shape, sample_functions
from kanvision.layers import GroupKAN

TINY = ["depth=2", "img_size=32", "patch_size=8", "embed_dim=48", "num_heads=3"]


def test_inspect_writes_a_plot_per_katx_block(tmp_path):
    out = tmp_path / "katx"
    main(["katx_tiny_cheb_patch16_224", "--model-kwargs", *TINY, "--num-samples", "4", "--top-k", "1", "--out",
          str(out)])  # fmt: skip
    report = json.loads((out / "report.json").read_text())
    names = [layer["name"] for layer in report["layers"]]
    assert names == ["blocks.0.mlp.act1", "blocks.0.mlp.act2", "blocks.1.mlp.act1", "blocks.1.mlp.act2"]
    assert report["layers"][1]["plots"] == ["blocks.0.mlp.activations.png"]
    assert sorted(p.name for p in out.glob("*.png")) == ["blocks.0.mlp.activations.png", "blocks.1.mlp.activations.png"]
    assert all((out / p).stat().st_size > 1000 for p in ("blocks.0.mlp.activations.png",))


def test_sampled_values_are_the_group_functions():
    model = timm.create_model("katx_tiny_rbf_patch16_224", depth=1, img_size=32, patch_size=8, embed_dim=48)
    act = find_function_modules(model)["blocks.0.mlp.act2"]
    assert isinstance(act, GroupKAN) and function_shape(act) == (1, 8)
    with torch.no_grad():  # every group its own function
        act.weight.add_(torch.randn(act.weight.shape, generator=torch.Generator().manual_seed(0)))
    samples = sample_functions(act, x_range=(-4.0, 4.0), num_points=33)
    x = torch.linspace(-4.0, 4.0, 33, dtype=torch.float64)
    assert samples.y.shape == (1, 8, 33) and samples.y.dtype == torch.float64
    expected = act.group_functions(x[:, None].expand(-1, 8).contiguous()).detach()  # (P, groups)
    torch.testing.assert_close(samples.y[0].T, expected, rtol=0, atol=0)
    # and the layer's own forward: every channel of group g computes phi_g
    per_channel = act(x[:, None].expand(-1, act.num_channels)).detach()  # (P, C)
    torch.testing.assert_close(samples.y[0].T, per_channel[:, :: act.num_channels // 8], rtol=1e-12, atol=1e-12)
    points = torch.randn(8, 5, dtype=torch.float64)  # one row of points per group
    torch.testing.assert_close(evaluate_functions(act, points)[0], act.group_functions(points.T).detach().T)
