"""kanvision-bench: baselines, the CSV it writes, and the README table generated from it (benchmarks/)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import timm
import torch

import benchmarks.readme_table as generator
from kanvision.bench import benchmark
from kanvision.bench.zoo import kanvision_models
from kanvision.utils.flops import count_forward_flops


def test_every_baseline_is_a_plain_timm_model_of_the_same_family():
    kan = set(kanvision_models())
    pairs = {name: benchmark.baseline_for(name) for name in kan}
    for name, baseline in pairs.items():
        if baseline is not None:
            assert timm.is_model(baseline) and baseline not in kan, (name, baseline)
    assert pairs["kat_tiny_patch16_224"] == "vit_tiny_patch16_224"
    assert pairs["kat_base_patch16_384"] == "vit_base_patch16_384"
    assert pairs["vit_kan_tiny_patch16_224"] == "vit_tiny_patch16_224"
    assert pairs["vit_kan_base_patch16_224"] == "vit_base_patch16_224"
    assert pairs["rkan_resnet50"] == "resnet50" and pairs["rkan_resnet18_cifar"] == "resnet18_cifar"
    assert pairs["rkan_resnext50_32x4d"] == "resnext50_32x4d" and pairs["rkan_regnety_016"] == "regnety_016"
    assert pairs["kan_resnet34_cifar"] == "resnet34_cifar" and pairs["kan_vgg11_kagn_v4"] == "vgg11_bn"
    assert pairs["kan_resnet18"] == "resnet18" and pairs["kan_kkan_mnist"] is None


@pytest.mark.parametrize("depth", [18, 34])
def test_a_cifar_rkan_is_measured_against_its_own_backbone(depth):
    """The CIFAR RKANs and KAN-ResNets have the 3x3 stride-1 stem without max pooling; timm's resnet18 would do ~15x
    fewer FLOPs at 32 px. Their baseline is the backbone itself: the same parameters but the side path's."""
    model = timm.create_model(f"rkan_resnet{depth}_cifar")
    baseline = timm.create_model(benchmark.baseline_for(f"rkan_resnet{depth}_cifar"))
    state = model.state_dict()
    backbone = {k.removeprefix("backbone."): v.shape for k, v in state.items() if k.startswith("backbone.")}
    assert backbone == {k: v.shape for k, v in baseline.state_dict().items()}
    assert isinstance(baseline.maxpool, torch.nn.Identity) and baseline.conv1.stride == (1, 1)
    with torch.device("meta"):
        x = torch.zeros(1, 3, 32, 32)
        names = [f"rkan_resnet{depth}_cifar", f"resnet{depth}_cifar", f"resnet{depth}", f"kan_resnet{depth}_cifar"]
        *flops, kan_flops = [count_forward_flops(timm.create_model(name), x) for name in names]
    assert flops[1] < flops[0] < 1.02 * flops[1]  # the side path adds little
    assert flops[2] < flops[1] / 10  # timm's ImageNet stem
    assert kan_flops > flops[1]
    assert benchmark.baseline_for(f"resnet{depth}_cifar") is None and f"resnet{depth}_cifar" not in kanvision_models()


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_pair_row_against_independent_counts(tmp_path):
    path, rows = benchmark.run(
        ["rkan_resnet18"], batch_size=2, img_size=32, rounds=3, warmup=0, out_dir=tmp_path, log=lambda _: None,
        num_classes=10,
    )  # fmt: skip
    assert path.name.startswith("zoo-cpu-") and path.with_suffix(".json").exists()
    (row,) = _rows(path)
    assert row["model"] == "rkan_resnet18" and row["baseline"] == "resnet18"
    for name, key, flops_key in (("rkan_resnet18", "params", "gflops"), ("resnet18", "baseline_params", None)):
        model = timm.create_model(name, num_classes=10)
        assert int(row[key]) == sum(p.numel() for p in model.parameters())
        if flops_key:
            flops = count_forward_flops(model.eval(), torch.zeros(1, 3, 32, 32)) / 1e9
            assert float(row[flops_key]) == pytest.approx(flops, rel=1e-3)
    assert row["input_size"] == "3x32x32" and int(row["batch_size"]) == 2
    for key in ("infer_img_s", "train_img_s", "infer_x_baseline", "train_x_baseline", "peak_mem_mib"):
        assert math.isfinite(float(row[key])) and float(row[key]) > 0, key
    assert float(row["infer_spread"]) >= 0 and float(row["train_spread"]) >= 0
    # peak memory is the weights plus the (non-negative) rise over the steps: at least the weights, for both models
    # (at 32 px the side path's extra activations are within the resident set's noise, so no order is asserted)
    peak = float(row["peak_mem_mib"])
    assert peak >= int(row["params"]) * 4 / 2**20
    assert peak / float(row["mem_x_baseline"]) >= int(row["baseline_params"]) * 4 / 2**20 * (1 - 1e-3)


@pytest.mark.slow  # every model, KAT-L included: minutes on two cores
def test_quick_run_has_a_row_for_every_registered_model(tmp_path):
    path, _ = benchmark.run(
        ["*"], batch_size=2, img_size=64, rounds=1, warmup=0, out_dir=tmp_path, log=lambda _: None,
        baselines=False, num_classes=10,
    )  # fmt: skip
    rows = _rows(path)
    assert [r["model"] for r in rows] == kanvision_models()
    assert all(float(r["train_img_s"]) > 0 and int(r["params"]) > 0 for r in rows)


def test_readme_table_matches_the_newest_csv():
    latest = generator.latest_csv()
    text = generator.README.read_text()
    table = text.split(generator.TABLE_START, 1)[1].split(generator.TABLE_END, 1)[0].strip()
    assert table == generator.readme_table(latest)
    assert {r["model"] for r in _rows(latest)} == set(kanvision_models())


def test_update_readme_rewrites_only_the_marked_table(tmp_path):
    path, _ = benchmark.run(
        ["kan_cnn_tiny"], rounds=1, warmup=0, out_dir=tmp_path, log=lambda _: None, baselines=False
    )  # fmt: skip
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\n{generator.TABLE_START}\nold\n{generator.TABLE_END}\n\nrest\n")
    generator.update_readme(path, readme)
    text = readme.read_text()
    assert text.startswith("# title\n\n") and text.endswith("\n\nrest\n") and "old" not in text
    assert "| `kan_cnn_tiny` |" in text
    with pytest.raises(ValueError, match="markers"):
        generator.update_readme(path, _plain(tmp_path))
    with pytest.raises(ValueError, match="no kanvision model matches"):
        benchmark.run(["nope_*"], out_dir=tmp_path, log=lambda _: None)
    with pytest.raises(ValueError, match="amp must be one of"):
        benchmark.run(["kan_cnn_tiny"], amp="fp8", out_dir=tmp_path, log=lambda _: None)


def _plain(tmp_path):
    plain = tmp_path / "PLAIN.md"
    plain.write_text("no table here\n")
    return plain


def test_merge_keeps_the_other_rows_and_lists_every_run(tmp_path):
    quiet = dict(rounds=1, warmup=0, out_dir=tmp_path, log=lambda _: None, baselines=False)
    path, _ = benchmark.run(["kan_kkan_mnist", "kan_cnn_tiny"], **quiet)
    first = {r["model"]: r for r in _rows(path)}
    benchmark.run(["kan_kkan_mnist"], batch_size=3, merge=True, **quiet)
    merged = {r["model"]: r for r in _rows(path)}
    assert list(merged) == ["kan_cnn_tiny", "kan_kkan_mnist"]  # registry order
    assert merged["kan_cnn_tiny"] == first["kan_cnn_tiny"] and merged["kan_kkan_mnist"]["batch_size"] == "3"
    meta = json.loads(path.with_suffix(".json").read_text())
    assert [run["batch_size"] for run in meta["runs"]] == [2, 3] and len(meta["rows"]) == 2
    assert all(run["machine"]["cpu_threads"] == torch.get_num_threads() for run in meta["runs"])  # each run's own
    # the README table names the machines of the runs, each once
    meta["runs"][0]["machine"]["device"] = "Other CPU"
    path.with_suffix(".json").write_text(json.dumps(meta))
    device = meta["runs"][1]["machine"]["device"]
    header = generator.readme_table(path).splitlines()[0]
    assert f"on Other CPU and {device} (the JSON lists which models each run measured): batch 2" in header
    benchmark.run(["kan_kkan_mnist"], **quiet)  # without merge: a fresh file
    assert [r["model"] for r in _rows(path)] == ["kan_kkan_mnist"]


def test_compiled_run_compiles_model_and_baseline(tmp_path, monkeypatch):
    compiled = []
    real_compile = torch.compile

    def spy(model, backend="inductor", **kwargs):
        if isinstance(model, torch.nn.Module):  # not kanvision's own kernels
            compiled.append((type(model).__name__, backend))
        return real_compile(model, backend=backend, **kwargs)

    monkeypatch.setattr(torch, "compile", spy)
    path, _ = benchmark.run(
        ["rkan_resnet18"], batch_size=2, img_size=32, rounds=2, warmup=1, out_dir=tmp_path, log=lambda _: None,
        num_classes=10, compile_backend="eager",
    )  # fmt: skip
    assert compiled == [("ResidualKANNet", "eager"), ("ResNet", "eager")]  # the model, then its baseline
    assert path.name.endswith("-compiled.csv") and path.name.startswith("zoo-cpu-")
    (row,) = _rows(path)
    assert row["model"] == "rkan_resnet18" and float(row["train_x_baseline"]) > 0
    assert json.loads(path.with_suffix(".json").read_text())["runs"][-1]["compile_backend"] == "eager"
    # the README's table keeps coming from the eager results
    (tmp_path / "zoo-cpu-2000-01-01.csv").write_text(path.read_text())
    assert generator.latest_csv(tmp_path).name == "zoo-cpu-2000-01-01.csv"


def test_compiled_run_needs_a_warmup_step(tmp_path):
    with pytest.raises(ValueError, match="warmup >= 1"):
        benchmark.run(["rkan_resnet18"], warmup=0, out_dir=tmp_path, log=lambda _: None, compile_backend="eager")
    assert not list(tmp_path.iterdir())


def test_compile_option_names_the_valid_backends(capsys):
    with pytest.raises(SystemExit):
        benchmark.main(["--compile", "kat_tiny_patch16_224"])  # a model name where a backend belongs
    err = capsys.readouterr().err
    assert "'kat_tiny_patch16_224' is not a torch.compile backend" in err and "inductor" in err


def test_command_writes_only_into_the_current_directory_or_out(tmp_path, monkeypatch):
    package = Path(benchmark.__file__).resolve().parents[1]
    before = {p: p.stat().st_mtime_ns for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    monkeypatch.chdir(tmp_path)
    benchmark.main(["kan_cnn_tiny", "--quick", "--no-baseline"])
    written = sorted(p.name for p in tmp_path.iterdir())
    assert [name.rsplit("-", 3)[0] for name in written] == ["zoo-cpu", "zoo-cpu"]
    assert {Path(name).suffix for name in written} == {".csv", ".json"}
    benchmark.main(["kan_cnn_tiny", "--quick", "--no-baseline", "--out", "elsewhere"])
    assert sorted(p.name for p in (tmp_path / "elsewhere").iterdir()) == written
    after = {p: p.stat().st_mtime_ns for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert after == before


@pytest.mark.parametrize(
    "args, message",
    [
        (["--batch-size", "0"], "argument --batch-size: must be an integer >= 1, got 0"),
        (["--img-size", "-8"], "argument --img-size: must be an integer >= 1, got -8"),
        (["--rounds", "0"], "argument --rounds: must be an integer >= 1, got 0"),
        (["--warmup", "-1"], "argument --warmup: must be an integer >= 0, got -1"),
        (["--num-classes", "x"], "argument --num-classes: invalid positive_int value: 'x'"),
    ],
)
def test_bad_sizes_are_usage_errors_naming_the_option(args, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        benchmark.main(["kan_cnn_tiny", "--out", str(tmp_path), *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing written
