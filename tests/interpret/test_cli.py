"""kanvision-inspect on a checkpoint trained on the digits, on its safetensors export and on timm model names."""

from __future__ import annotations

import json

import pytest

from kanvision.interpret.cli import main
from kanvision.interpret.symbolic import R2_TOLERANCE
from kanvision.training.train import train
from tests.training.conftest import compose_config


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """kan_cnn_tiny trained for a few steps on the digits (the `make train` experiment, cut short)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    run_dir = tmp_path_factory.mktemp("digits_run")
    overrides = ["experiment=digits_kan", "trainer.max_epochs=1", "trainer.limit_train_batches=3"]
    overrides += ["trainer.limit_val_batches=1", "test=false"]
    try:
        train(compose_config(overrides, output_dir=run_dir))
    finally:
        torch.set_num_threads(threads)
    return run_dir


def _report(out_dir):
    report = json.loads((out_dir / "report.json").read_text())
    assert (out_dir / "report.md").is_file()
    for layer in report["layers"]:
        for plot in layer["plots"]:
            assert (out_dir / plot).stat().st_size > 1000, plot
    return report


def test_inspect_a_digits_checkpoint(digits_run, tmp_path, capsys):
    out = tmp_path / "inspect"
    main([str(digits_run / "checkpoints" / "last.ckpt"), "--data", "digits", "--top-k", "3", "--out", str(out)])
    assert "report.md" in capsys.readouterr().out
    report = _report(out)
    assert report["model"] == "kan_cnn_tiny" and report["data"] == "digits" and report["num_inputs"] > 100
    assert [layer["name"] for layer in report["layers"]] == ["features.0", "features.2", "features.4"]
    first = report["layers"][0]
    assert first["type"] == "KANConv2d" and first["function_shape"] == [16, 1, 3, 3]
    assert len(first["functions"]) == 3 and first["importance"]["per_input"][0] > 0
    importances = [fn["importance"] for fn in first["functions"]]
    assert importances == sorted(importances, reverse=True)
    for fn in first["functions"]:
        assert len(fn["fits"]) == 3 and all(-1e9 < fit["r2"] <= 1.0 for fit in fn["fits"]) and fn["fits"][0]["formula"]
    assert {p for layer in report["layers"] for p in layer["plots"]} >= {
        "features.0.functions.png",
        "features.0.importance.png",
        "features.4.importance.png",
    }


def test_inspect_the_safetensors_export_with_random_inputs(digits_run, tmp_path):
    out = tmp_path / "inspect"
    main([str(digits_run / "model.safetensors"), "--layers", "features.2", "--top-k", "2", "--out", str(out)])
    report = _report(out)
    assert report["data"] == "random normal inputs" and [layer["name"] for layer in report["layers"]] == ["features.2"]


def test_inspect_timm_model_names(tmp_path):
    out = tmp_path / "kat"
    kwargs = ["depth=2", "img_size=32", "patch_size=8", "embed_dim=48", "num_heads=3"]
    main(["kat_tiny_patch16_224", "--model-kwargs", *kwargs, "--num-samples", "4", "--top-k", "2", "--out", str(out)])
    report = _report(out)
    names = [layer["name"] for layer in report["layers"]]
    assert names == ["blocks.0.mlp.act1", "blocks.0.mlp.act2", "blocks.1.mlp.act1", "blocks.1.mlp.act2"]
    # act2 starts as swish (silu fits it exactly); on a narrow input range a simpler formula within the R^2
    # tolerance of that exact fit may come first
    act2_fits = report["layers"][1]["functions"][0]["fits"]
    assert act2_fits[0]["r2"] > 0.999999 - R2_TOLERANCE, act2_fits
    assert act2_fits[0]["name"] == "silu" or act2_fits[0]["name"] in ("x", "x^2", "abs", "relu", "x^3"), act2_fits
    assert sorted(p.name for p in out.glob("*.png")) == ["blocks.0.mlp.rationals.png", "blocks.1.mlp.rationals.png"]
    out = tmp_path / "cnn"
    main(["kan_cnn_tiny", "--num-samples", "4", "--top-k", "1", "--out", str(out)])
    assert len(_report(out)["layers"]) == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no_such_model"], "'no_such_model' is neither a .ckpt/.safetensors file nor a timm model"),
        (["kan_cnn_tiny", "--data", "nope"], "--data 'nope' is not a directory or one of the data configs"),
        (["kan_cnn_tiny", "--data", "cifar10"], "--data cifar10 reads files: give their location with --data-root"),
        (["kan_cnn_tiny", "--layers", "nothing"], "has no KAN layers, RKAN kernels or group rationals matching"),
        (["kan_cnn_tiny", "--model-kwargs", "bogus=1"], "unknown argument(s) 'bogus'"),
        (["missing.ckpt"], "checkpoint missing.ckpt does not exist"),
        (["EMPTY"], "is empty (0 bytes)"),
    ],
)
def test_inspect_reports_what_it_cannot_use_as_a_usage_error(tmp_path, capsys, args, message):
    if args == ["EMPTY"]:
        (tmp_path / "empty.ckpt").touch()
        args = [str(tmp_path / "empty.ckpt")]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("kanvision-inspect: error: ") and message in error
    assert not (tmp_path / "out" / "report.md").exists()


@pytest.mark.slow
def test_inspect_the_full_kat_tiny(tmp_path):
    main(["kat_tiny_patch16_224", "--num-samples", "2", "--top-k", "1", "--out", str(tmp_path)])
    assert len(_report(tmp_path)["layers"]) == 24
