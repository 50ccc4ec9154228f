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
            "--layer",
            "conv",
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
    assert not any(name.startswith(("Linear", "KANLinear")) for name in names) and "linear_shape" not in result


def test_layer_benchmark_linear_rows_for_every_basis(tmp_path):
    tokens, features = 6, 3
    argv = ["--device", "cpu", "--layer", "linear", "--tokens", str(tokens), "--features", str(features)]
    result = layers.main(argv + ["--reps", "2", "--warmup", "0", "--out", str(tmp_path / "linear.json")])
    assert result["linear_shape"] == [tokens, features] and "shape" not in result
    rows = {r["layer"]: r for r in result["rows"]}
    assert not any(name.startswith(("Conv2d", "KANConv2d")) for name in rows)
    x_mib = tokens * features * 4 / 2**20
    assert rows[f"Linear({features}->{features})"]["saved_MiB"] == pytest.approx(x_mib)  # nn.Linear saves its input
    for basis in list_bases():
        eager, recompute = rows[f"KANLinear[{basis}]"], rows[f"KANLinear[{basis}] recompute"]
        m = eager["m"]
        wide = result["rows"][result["rows"].index(eager) - 1]
        assert wide["layer"] == f"Linear({features}*{m}->{features})"
        assert wide["saved_MiB"] == pytest.approx(m * x_mib)
        assert eager["x_wide_linear"] == pytest.approx(eager["ms"] / wide["ms"])
        assert eager["x_wide_q1"] <= eager["x_wide_q3"] and eager["ms_q1"] <= eager["ms"] <= eager["ms_q3"]
        if basis != "kagn":  # the fused expansion saves x, the linear its (N, F * m) input
            assert eager["saved_MiB"] == pytest.approx((1 + m) * x_mib)
        assert recompute["saved_MiB"] == pytest.approx(x_mib)  # checkpointed: only the input


def test_layer_benchmark_rejects_bad_linear_shape(capsys):
    with pytest.raises(SystemExit):
        layers.main(["--device", "cpu", "--layer", "linear", "--tokens", "0"])
    assert "--tokens: must be an integer >= 1, got 0" in capsys.readouterr().err


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
