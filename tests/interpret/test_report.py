"""inspect_model handles every kind of function module in one model."""

from __future__ import annotations

import json

import pytest
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
        "0.conv.functions.png",
        "0.conv.importance.png",
        "1.conv.functions.png",
        "3.functions.png",
        "3.importance.png",
        "4.rationals.png",
    ]  # fmt: skip  (1.conv, RKAN's shared 1 -> 1 kernel, is one cell: no heat map)
    markdown = (tmp_path / "report.md").read_text()
    assert all(f"## {name} " in markdown for name in types) and "![4.rationals.png]" in markdown
    notes = {layer["name"]: layer.get("notes") for layer in report["layers"]}
    assert "no importance heat map" in notes["1.conv"][0] and notes["0.conv"] is None
    assert notes["1.conv"][0] in markdown


def test_heat_map_fits_its_labels_and_skips_one_cell(tmp_path, monkeypatch):
    from PIL import Image

    from kanvision.interpret import plots
    from kanvision.interpret.importance import LayerImportance

    saved = []
    save = plots._save
    monkeypatch.setattr(plots, "_save", lambda figure, path: saved.append(figure) or save(figure, path))
    edges = torch.rand(5, 3, 3, 3)  # (out, in, kh, kw)
    path = plots.plot_importance_heatmap(
        LayerImportance(edges, edges.amax((0, 2, 3)), edges.amax((1, 2, 3))), tmp_path / "map.png", "conv: importance"
    )
    figure = saved[0]
    renderer = figure.canvas.get_renderer()
    tight = figure.get_tightbbox(renderer)  # inches
    texts = [t for t in figure.findobj(lambda a: hasattr(a, "get_text")) if t.get_visible() and t.get_text()]
    wanted = {"output", "input", "conv: importance", "mean |phi|, summed over kernel positions"}
    assert wanted <= {t.get_text() for t in texts}
    for text in (t for t in texts if t.get_text() in wanted):  # every label lies inside the saved area
        box = text.get_window_extent(renderer).transformed(figure.dpi_scale_trans.inverted())
        assert tight.x0 - 1e-3 <= box.x0 and box.x1 <= tight.x1 + 1e-3 and tight.y0 - 1e-3 <= box.y0, text
        assert box.y1 <= tight.y1 + 1e-3, text
    width, height = Image.open(path).size
    assert abs(width - (tight.width + 0.2) * plots.DPI) <= 2 and abs(height - (tight.height + 0.2) * plots.DPI) <= 2
    with pytest.raises(ValueError, match="1 x 1 importance matrix needs no heat map"):
        plots.plot_importance_heatmap(
            LayerImportance(torch.rand(1, 1, 3, 3), torch.rand(1), torch.rand(1)), tmp_path / "one.png"
        )
    assert not (tmp_path / "one.png").exists()
