"""kanvision-compare on two real tiny runs (kanvision-train's Hydra entry point, in process): table and plots."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
from PIL import Image

from kanvision.training.compare import main as compare_main
from kanvision.training.train import main as train_main

# (run name, model): a kanvision model and a timm baseline on the bundled digits, a few steps each
RUNS = [("kan", "kan_cnn_tiny"), ("timm", "resnet18")]
TINY = [
    "experiment=digits_kan",
    "trainer.max_epochs=1",
    "model.scheduler.warmup_epochs=0",
    "trainer.limit_train_batches=4",  # > ThroughputMeter's 2 skipped steps, so img/s is measured
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "++trainer.num_sanity_val_steps=0",
    "data.batch_size=32",
    "++trainer.enable_progress_bar=false",
    "callbacks=none",
    "~logger",
    "export_safetensors=false",
    "print_config=false",
]


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory, monkeypatch_module):
    base = tmp_path_factory.mktemp("runs")
    dirs = {}
    for name, model in RUNS:
        dirs[name] = base / name
        argv = ["kanvision-train", *TINY, f"model.name={model}", f"hydra.run.dir={dirs[name]}"]
        monkeypatch_module.setattr(sys, "argv", argv)
        train_main()
    return dirs


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def _metrics(path) -> dict:
    return json.loads((path / "metrics.json").read_text())


def _table(markdown: str, section: str) -> list[dict[str, str]]:
    """The rows of the markdown table under ``## section`` as dicts keyed by the header."""
    lines = markdown.splitlines()
    start = lines.index(f"## {section}") + 2
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True)))
    return rows


def _check_png(path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("L"), dtype=np.float64)
    assert min(pixels.shape) >= 200 and pixels.std() > 1.0  # a drawn figure, not a blank canvas


def test_compare_writes_table_and_plots(run_dirs, tmp_path):
    out = tmp_path / "report"
    compare_main([str(run_dirs["kan"].parent), "--out", str(out)])  # the parent: runs are found below it

    markdown = (out / "compare.md").read_text()
    rows = _table(markdown, "digits")
    assert [r["model"] for r in rows] != [] and len(rows) == 2
    metrics = {name: _metrics(path) for name, path in run_dirs.items()}
    expected_order = sorted(RUNS, key=lambda r: -metrics[r[0]]["val/acc1"])
    assert [r["model"] for r in rows] == [f"`{model}`" for _, model in expected_order]
    for (name, model), family in zip(RUNS, ("kanvision", "timm"), strict=True):
        row = next(r for r in rows if r["model"] == f"`{model}`")
        m = metrics[name]
        assert row["run"] == model  # labelled by the network, not the experiment or a timestamp
        assert row["family"] == family
        assert row["img"] == "8"
        assert row["top-1 (%)"] == f"{100 * m['val/acc1']:.2f}"
        assert row["top-5 (%)"] == f"{100 * m['val/acc5']:.2f}"
        assert row["loss"] == f"{m['val/loss']:.4f}"
        assert row["test top-1 (%)"] == f"{100 * m['test/acc1']:.2f}"
        assert float(row["train img/s"].replace(",", "")) == pytest.approx(m["train/img_per_s"], abs=0.5)
        assert row["img/s from"] == "run"
        assert row["EMA top-1 (%)"] == "–"  # digits_kan trains without EMA
        # independent reference: the network rebuilt by name, its parameters counted
        network = timm.create_model(model, num_classes=10, in_chans=1)
        assert float(row["params (M)"]) == pytest.approx(sum(p.numel() for p in network.parameters()) / 1e6, abs=0.005)

    for file in ("top1_vs_params.png", "top1_vs_img_per_s.png"):
        assert f"]({file})" in markdown
        _check_png(out / file)
    rows_json = json.loads((out / "compare.json").read_text())["runs"]
    assert {r["model"]: r["top1"] for r in rows_json} == {model: metrics[name]["val/acc1"] for name, model in RUNS}


def test_compare_counts_parameters_from_the_config_and_prefers_benchmarks(run_dirs, tmp_path):
    """Without num_params in metrics.json the network is rebuilt from .hydra/config.yaml; a benchmark file's img/s
    (filtered) replaces the run's own for the models it has."""
    copied = tmp_path / "kan_no_count"
    shutil.copytree(run_dirs["kan"], copied)
    metrics = _metrics(copied)
    del metrics["num_params"]
    (copied / "metrics.json").write_text(json.dumps(metrics))
    bench = tmp_path / "bench.json"
    entries = [
        {"model": "resnet18", "img_per_s": 999.0, "compiled": True},
        {"model": "resnet18", "img_per_s": 4321.0, "compiled": False},
    ]
    bench.write_text(json.dumps({"torch": "x", "results": entries}))
    out = tmp_path / "report"
    compare_main(
        [str(copied), str(run_dirs["timm"]), "--out", str(out), "--benchmark", str(bench)]
        + ["--benchmark-filter", "compiled=false", "--metric", "test/acc1"]
    )
    rows = {r["model"]: r for r in _table((out / "compare.md").read_text(), "digits")}
    kan = timm.create_model("kan_cnn_tiny", num_classes=10, in_chans=1)
    assert float(rows["`kan_cnn_tiny`"]["params (M)"]) == pytest.approx(
        sum(p.numel() for p in kan.parameters()) / 1e6, abs=0.005
    )
    assert rows["`resnet18`"]["train img/s"] == "4,321" and rows["`resnet18`"]["img/s from"] == "benchmark"
    assert rows["`kan_cnn_tiny`"]["img/s from"] == "run"
    test_acc = _metrics(run_dirs["timm"])["test/acc1"]
    assert rows["`resnet18`"]["top-1 (%)"] == f"{100 * test_acc:.2f}"


def test_compare_rejects_a_folder_without_runs(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as exc:
        compare_main([str(tmp_path / "empty"), "--out", str(tmp_path / "out")])
    assert exc.value.code == 2
    assert "empty is not a finished run (no metrics.json)" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_searching_a_folder_skips_kanvision_eval_outputs(tmp_path):
    from kanvision.training.compare import find_run_dirs

    for name, task in (("train_run", "train"), ("eval_run", "eval")):
        (tmp_path / name / ".hydra").mkdir(parents=True)
        (tmp_path / name / ".hydra" / "config.yaml").write_text(f"task_name: {task}\n")
        (tmp_path / name / "metrics.json").write_text("{}")
    assert find_run_dirs([tmp_path]) == [tmp_path / "train_run"]
    assert find_run_dirs([tmp_path / "eval_run"]) == [tmp_path / "eval_run"]  # named explicitly: taken as given


def _fake_run(path, model, metrics, baseline=None, experiment="some_experiment", csv_rows=None):
    """A run directory as kanvision-train writes it: metrics.json, .hydra/{config,hydra}.yaml, the CSV logger file."""
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "config.yaml").write_text(
        f"task_name: train\nbaseline: {baseline or 'null'}\nmodel:\n  name: {model}\n  kwargs: {{}}\n"
        "data:\n  _target_: kanvision.training.data.CIFAR10DataModule\n  img_size: 32\n"
    )
    (path / ".hydra" / "hydra.yaml").write_text(
        f"hydra:\n  runtime:\n    choices:\n      data: cifar10\n      experiment: {experiment}\n"
    )
    (path / "metrics.json").write_text(json.dumps({"model": model, **metrics}))
    if csv_rows:
        folder = path / "csv" / "version_0"
        folder.mkdir(parents=True)
        keys = sorted({k for row in csv_rows for k in row})
        lines = [",".join(keys)] + [",".join(str(row.get(k, "")) for k in keys) for row in csv_rows]
        (folder / "metrics.csv").write_text("\n".join(lines) + "\n")
    return path


def test_compare_pairs_kan_runs_with_their_baselines(tmp_path):
    kan = dict(num_params=5_700_000, gflops=1.2, peak_mem_bytes=3 * 2**30, global_step=500, epochs=2)
    base = dict(num_params=5_000_000, gflops=1.0, peak_mem_bytes=2 * 2**30, global_step=500, epochs=2)
    _fake_run(
        tmp_path / "2026-12-01_10-00-00", "kat_tiny_patch16_224",
        {**kan, "val/acc1": 0.75, "train/img_per_s": 80.0}, baseline="vit_tiny_patch16_224",
        experiment="vit_tiny_cifar10",  # the model was overridden: the label follows the model
    )  # fmt: skip
    _fake_run(
        tmp_path / "2026-12-01_11-00-00", "vit_tiny_patch16_224", {**base, "val/acc1": 0.70, "train/img_per_s": 100.0}
    )
    # stopped by max_steps between validations: no val/acc1 in metrics.json, its last logged value counts
    _fake_run(
        tmp_path / "2026-12-01_12-00-00", "rkan_resnet18_cifar", {**base, "test/acc1": 0.5},
        baseline="kat_tiny_patch16_224",
        csv_rows=[{"step": 99, "val/acc1": 0.6}, {"step": 150, "train/loss": 1.0}, {"step": 199, "val/acc1": 0.65}],
    )  # fmt: skip
    out = tmp_path / "report"
    compare_main([str(tmp_path), "--out", str(out)])
    report = json.loads((out / "compare.json").read_text())
    runs = {r["label"]: r for r in report["runs"]}
    assert set(runs) == {"kat_tiny_patch16_224", "vit_tiny_patch16_224", "rkan_resnet18_cifar"}
    assert runs["rkan_resnet18_cifar"]["top1"] == pytest.approx(0.65)
    assert runs["rkan_resnet18_cifar"]["top1_source"] == "last logged"
    pairs = {p["model"]: p for p in report["pairs"]}
    kat = pairs["kat_tiny_patch16_224"]
    assert kat["baseline"] == "vit_tiny_patch16_224"
    assert kat["delta_top1"] == pytest.approx(100 * (0.75 - 0.70))
    assert kat["params_ratio"] == pytest.approx(5.7 / 5.0)
    assert kat["gflops_ratio"] == pytest.approx(1.2)
    assert kat["img_per_s_ratio"] == pytest.approx(0.8)
    assert kat["peak_mem_ratio"] == pytest.approx(1.5)
    assert pairs["rkan_resnet18_cifar"]["delta_top1"] == pytest.approx(100 * (0.65 - 0.75))
    markdown = (out / "compare.md").read_text()
    rows = _table(markdown, "KAN models against their baselines")
    row = next(r for r in rows if r["KAN run"] == "kat_tiny_patch16_224")
    assert row["Δ top-1 (points)"] == "+5.00" and row["train img/s ×"] == "0.80" and row["peak mem ×"] == "1.50"
    assert "2026-12-01" not in markdown  # no timestamps as labels
    for file in ("top1_vs_params.png", "top1_vs_img_per_s.png"):
        _check_png(out / file)
    # --pairs overrides the experiments' field
    out2 = tmp_path / "report2"
    compare_main([str(tmp_path), "--out", str(out2), "--pairs", "vit_tiny_patch16_224=rkan_resnet18_cifar"])
    models = {p["model"] for p in json.loads((out2 / "compare.json").read_text())["pairs"]}
    assert "vit_tiny_patch16_224" in models


def test_plot_labels_do_not_overlap():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kanvision.training.compare import place_labels

    fig, ax = plt.subplots(figsize=(7, 5))
    points = [(1.0 + 0.02 * i, 70.0 + 0.05 * (i % 3)) for i in range(8)]  # a tight cluster
    ax.scatter(*zip(*points, strict=True))
    ax.set_xscale("log")
    boxes = place_labels(ax, points, [f"model_name_{i}" for i in range(8)])
    overlaps = [(i, j) for i in range(8) for j in range(i + 1, 8) if boxes[i].overlaps(boxes[j])]
    assert overlaps == []
    plt.close(fig)


def _run(model: str, params_m: float, top1: float, dataset: str = "digits"):
    from kanvision.training.compare import Run, model_family

    return Run(
        path=f"/runs/{model}", label=model, model=model, family=model_family(model), dataset=dataset, img_size=8,
        num_params=int(params_m * 1e6), top1=top1, top5=None, loss=None, ema_top1=None, test_top1=None,
        img_per_s=100.0, img_per_s_source=None, epochs=1, world_size=1,
    )  # fmt: skip


@pytest.mark.parametrize("sizes", [(11.14, 11.17, 11.27), (0.0053, 0.12, 11.2, 55.7)], ids=["one-decade", "decades"])
def test_plot_axes_plain_numbers_legend_per_kind_dataset_title(sizes):
    import re

    import matplotlib.pyplot as plt

    from kanvision.training.compare import figure_runs, model_kind

    models = ["resnet18", "rkan_resnet18", "resnet18_cifar", "kan_resnet18"]
    runs = [_run(model, size, 0.5 + 0.1 * i) for i, (model, size) in enumerate(zip(models, sizes, strict=False))]
    assert [model_kind(r) for r in runs] == ["baseline", "KAN", "baseline", "KAN"][: len(runs)]
    fig = figure_runs(runs, "params")
    try:
        fig.canvas.draw()
        ax = fig.axes[0]
        labels = [t.get_text() for t in ax.get_xticklabels(which="both") if t.get_text()]
        assert len(labels) >= 2 and all(re.fullmatch(r"[0-9][0-9,]*(\.[0-9]+)?", t) for t in labels), labels
        # labels on the visible axis do not overlap each other
        boxes = [t.get_window_extent() for t in ax.get_xticklabels() if t.get_text() and t.get_visible()]
        x0, x1 = ax.get_xlim()
        boxes = [b for b, t in zip(boxes, ax.get_xticklabels(), strict=False) if x0 <= t.get_position()[0] <= x1]
        assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
        assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == ["KAN", "baseline"]
        assert ax.get_title() == "dataset: digits"
        assert ax.get_xlabel() == "parameters (millions)"
    finally:
        plt.close(fig)


def _safetensors(path, meta_text: str | None) -> None:
    """A safetensors file as kanvision-export writes it: tensors and a JSON 'kanvision' metadata entry."""
    import torch
    from safetensors.torch import save_file

    save_file(
        {"fc.weight": torch.zeros(4, 4)}, str(path), metadata=None if meta_text is None else {"kanvision": meta_text}
    )


def _one_run(out) -> dict:
    return json.loads((out / "compare.json").read_text())["runs"][0]


@pytest.mark.parametrize("damage", ["truncated", "bad json", "no metadata"])
def test_a_run_with_a_broken_safetensors_file_still_gets_a_report(tmp_path, damage, caplog):
    run = _fake_run(tmp_path / "runs" / "a", "kan_cnn_tiny", {"val/acc1": 0.5})
    file = run / "model.safetensors"
    meta = {"model_name": "kan_cnn_tiny", "model_kwargs": {"num_classes": 10}, "data_config": {"img_size": 8}}
    _safetensors(file, {"bad json": "{not json", "no metadata": None}.get(damage, json.dumps(meta)))
    if damage == "truncated":
        file.write_bytes(file.read_bytes()[:-10])
    out = tmp_path / "report"
    compare_main([str(tmp_path / "runs"), "--out", str(out)])
    row = _one_run(out)
    assert row["top1"] == pytest.approx(0.5)
    assert row["img_size"] == 32  # the run's config, not the unreadable file
    assert "model.safetensors" in caplog.text  # the warning names the file


def test_img_size_comes_from_the_safetensors_metadata_and_null_data_config_falls_back(tmp_path):
    meta = {"model_name": "kan_cnn_tiny", "model_kwargs": {"num_classes": 10, "in_chans": 3}}
    for name, data_config in (("a", {"img_size": 8}), ("b", None)):
        run = _fake_run(tmp_path / "runs" / name, "kan_cnn_tiny", {"val/acc1": 0.5})
        _safetensors(run / "model.safetensors", json.dumps(meta | {"data_config": data_config}))
    out = tmp_path / "report"
    compare_main([str(tmp_path / "runs"), "--out", str(out)])
    runs = {Path(r["path"]).name: r for r in json.loads((out / "compare.json").read_text())["runs"]}
    assert runs["a"]["img_size"] == 8 and runs["b"]["img_size"] == 32
    expected = sum(p.numel() for p in timm.create_model("kan_cnn_tiny", num_classes=10, in_chans=3).parameters())
    assert runs["a"]["num_params"] == runs["b"]["num_params"] == expected


def test_model_kwargs_in_a_run_config_may_name_no_code(tmp_path, monkeypatch, caplog):
    from kanvision.training import compare

    run = _fake_run(tmp_path / "runs" / "a", "kan_cnn_tiny", {"val/acc1": 0.5})
    config = run / ".hydra" / "config.yaml"
    config.write_text(config.read_text().replace("kwargs: {}", "kwargs:\n    act_layer:\n      _target_: os.system"))
    built = []
    monkeypatch.setattr(compare, "_count_params_on_meta", lambda *args: built.append(args) or 1)
    out = tmp_path / "report"
    compare_main([str(tmp_path / "runs"), "--out", str(out)])
    assert built == [] and _one_run(out)["num_params"] is None
    assert "_target_" in caplog.text and "config.yaml" in caplog.text
