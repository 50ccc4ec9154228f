"""inspect_model handles every kind of function module in one model."""

from __future__ import annotations

import json

import torch
from torch import nn

from kanvision.interpret.report import inspect_model
from kanvision.layers import GroupRational, KANLinear, SharedKANConv2d
from kanvision.models.kan_cnn import ChannelSharedKANConv2d


def test_report_covers_every_function_module(tmp_path):
    model = nn.Sequential(
        ChannelSharedKANConv2d(2, padding=1),  # 1 -> 2 channels, through its inner KANConv2d
        SharedKANConv2d(3),  # RKAN's kernel, through its inner 1 -> 1 KANConv2d
        nn.Flatten(),
        KANLinear(2 * 6 * 6, 4),
        GroupRational(4, groups=2, init="gelu"),
    )
    batches = [torch.randn(8, 1, 6, 6) for _ in range(2)]
    report = inspect_model(model, batches, tmp_path, top_k=2, num_points=41)
    assert report["num_inputs"] == 16 and report["not_reached"] == []
    types = {layer["name"]: layer["type"] for layer in report["layers"]}
    assert types == {"0.conv": "KANConv2d", "1.conv": "KANConv2d", "3": "KANLinear", "4": "GroupRational"}
    shapes = {layer["name"]: layer["function_shape"] for layer in report["layers"]}
    assert shapes["1.conv"] == [1, 1, 3, 3] and shapes["4"] == [1, 2] and shapes["3"] == [4, 72]
    written = json.loads((tmp_path / "report.json").read_text())
    assert written == json.loads(json.dumps(report))
    files = sorted(p.name for p in tmp_path.glob("*.png"))
    assert files == [
        "0.conv.functions.png", "0.conv.importance.png", "1.conv.functions.png", "1.conv.importance.png",
        "3.functions.png", "3.importance.png", "4.rationals.png",
    ]  # fmt: skip
    markdown = (tmp_path / "report.md").read_text()
    assert all(f"## {name} " in markdown for name in types) and "![4.rationals.png]" in markdown
