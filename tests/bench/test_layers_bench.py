import json

import pytest
import torch
from torch import nn

from benchmarks import layers
from kanvision.layers import list_bases


def test_layer_benchmark_writes_rows_for_every_basis(tmp_path, capsys):
    out = tmp_path / "layers.json"
    result = layers.main(
        [
            "--device",
            "cpu",
            "--batch",
            "1",
            "--channels",
            "2",
            "--size",
            "4",
            "--reps",
            "1",
            "--warmup",
            "0",
            "--out",
            str(out),
        ]
    )
    assert json.loads(out.read_text()) == result
    names = [r["layer"] for r in result["rows"]]
    for basis in list_bases():
        assert f"KANConv2d[{basis}]" in names and f"KANConv2d[{basis}] recompute" in names
    assert {"date", "machine", "torch", "rows"} <= set(result)
    assert all(r["x_wide_conv"] > 0 for r in result["rows"] if r["layer"].startswith("KANConv2d"))
    assert "KANConv2d[chebyshev]" in capsys.readouterr().out


def test_saved_tensor_bytes_counts_what_autograd_keeps():
    conv = nn.Conv2d(3, 4, 3, bias=False)
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    assert layers.saved_tensor_bytes(conv, x) == x.numel() * 4  # conv saves its input only
    relu_twice = nn.Sequential(nn.Linear(8, 8), nn.Tanh())
    x = torch.randn(5, 8, requires_grad=True)
    assert layers.saved_tensor_bytes(relu_twice, x) == (5 * 8 + 5 * 8) * 4  # linear input + tanh output


def test_layer_benchmark_rejects_zero_reps(capsys):
    with pytest.raises(SystemExit):
        layers.main(["--device", "cpu", "--reps", "0"])
    assert "--reps must be >= 1 and --warmup >= 0, got --reps 0 --warmup 3" in capsys.readouterr().err
