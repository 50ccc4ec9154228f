"""The GroupRational-vs-GELU benchmark runs, prints its table and writes JSON."""

import json

import pytest

from kanvision.bench import activations


def test_activation_benchmark_writes_ratios(tmp_path, capsys):
    out = tmp_path / "activations.json"
    result = activations.main(
        ["--device", "cpu", "--tokens", "6", "--channels", "16", "--groups", "4", "--rounds", "3", "--warmup", "1"]
        + ["--reference", "--out", str(out)]
    )
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    names = [row["activation"] for row in result["rows"]]
    assert names == ["GELU", "GroupRational", "GroupRational (PyTorch reference)"]
    for row in result["rows"][1:]:
        low, high = row["x_gelu_quartiles"]
        assert row["x_gelu"] > 0 and low <= row["x_gelu"] <= high
    assert result["shape"] == [6, 16] and result["torch"] and result["machine"]["cpu_threads"] >= 1
    assert "GroupRational" in capsys.readouterr().out


def test_activation_benchmark_rejects_zero_rounds(capsys):
    with pytest.raises(SystemExit):
        activations.main(["--device", "cpu", "--rounds", "0"])
