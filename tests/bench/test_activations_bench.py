"""The GroupRational-vs-GELU benchmark runs, prints its table and writes JSON."""

import json

import pytest

from benchmarks import activations


def test_activation_benchmark_writes_ratios(tmp_path, capsys):
    out = tmp_path / "activations.json"
    result = activations.main(
        ["--device", "cpu", "--tokens", "6", "--channels", "16", "--groups", "4", "--rounds", "3", "--warmup", "1"]
        + ["--steps-per-round", "2", "--reference", "--group-kan", "--out", str(out)]
    )
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    names = [row["activation"] for row in result["rows"]]
    group_kan = ["GroupKAN chebyshev", "GroupKAN rbf", "GroupKAN bspline"]
    assert names == ["GELU", "GroupRational", "GroupRational (PyTorch reference)"] + group_kan
    for row in result["rows"][1:]:
        low, high = row["x_gelu_quartiles"]
        assert row["x_gelu"] > 0 and low <= row["x_gelu"] <= high
    for row in result["rows"][3:]:
        low, high = row["x_group_rational_quartiles"]
        assert row["x_group_rational"] > 0 and low <= row["x_group_rational"] <= high
    # the fused paths save only the input: 6 x 16 float32
    saved = {row["activation"]: row["saved_MiB"] for row in result["rows"]}
    assert all(saved[name] == 6 * 16 * 4 / 2**20 for name in ["GroupRational"] + group_kan)
    assert result["shape"] == [6, 16] and result["torch"] and result["machine"]["cpu_threads"] >= 1
    assert "fastest of 2 consecutive steps" in result["timing"]
    assert "GroupRational" in capsys.readouterr().out


@pytest.mark.parametrize("option", ["--rounds", "--steps-per-round"])
def test_activation_benchmark_rejects_zero(option, capsys):
    with pytest.raises(SystemExit):
        activations.main(["--device", "cpu", option, "0"])
    assert option in capsys.readouterr().err
