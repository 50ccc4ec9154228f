"""kanvision-compare on two real tiny runs (kanvision-train's Hydra entry point, in process): table and plots."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
import timm
from PIL import Image

from kanvision.bench.compare import main as compare_main
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
        assert row["run"] == f"digits_kan ({name})"  # same experiment twice: told apart by the run folder
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
    rows_json = json.loads((out / "compare.json").read_text())
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
    from kanvision.bench.compare import find_run_dirs

    for name, task in (("train_run", "train"), ("eval_run", "eval")):
        (tmp_path / name / ".hydra").mkdir(parents=True)
        (tmp_path / name / ".hydra" / "config.yaml").write_text(f"task_name: {task}\n")
        (tmp_path / name / "metrics.json").write_text("{}")
    assert find_run_dirs([tmp_path]) == [tmp_path / "train_run"]
    assert find_run_dirs([tmp_path / "eval_run"]) == [tmp_path / "eval_run"]  # named explicitly: taken as given
