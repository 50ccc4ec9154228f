import datetime as dt
import json
import subprocess
import time
from pathlib import Path

import pytest
import torch

from benchmarks import gpu_check

REPO_ROOT = Path(__file__).resolve().parents[2]


def _problems(node, path="") -> list[str]:
    """Every "error"/"skipped" entry and every not-ok status anywhere in the result."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("error", "skipped") or (key == "status" and value != "ok"):
                found.append(f"{path}/{key}: {value}")
            found += _problems(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _problems(value, f"{path}[{i}]")
    return found


def test_quick_cpu_run_of_gpu_check_sh_exercises_every_section(tmp_path):
    out = tmp_path / "gpu.json"
    proc = subprocess.run(
        ["bash", "scripts/gpu_check.sh", "--device", "cpu", "--quick", "--output", str(out)]
        + ["--copy-to", str(tmp_path / "device_out")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    # --copy-to receives the same JSON
    assert json.loads((tmp_path / "device_out" / "gpu.json").read_text()) == result
    assert result["date"] == dt.date.today().isoformat() and result["quick"] is True
    assert result["versions"]["torch"] == torch.__version__ and result["versions"]["triton"]
    assert set(result["sections"]) == set(gpu_check.SECTIONS)
    assert _problems(result) == []
    sections = result["sections"]
    # a: the kernel (Triton's interpreter) against float64, fp32 and bf16, contiguous and strided.
    kernel_rows = sections["kernel"]["rows"]
    assert sections["kernel"]["ok"] and {r["dtype"] for r in kernel_rows} == {"float32", "bfloat16"}
    assert any(r["strided"] for r in kernel_rows)
    assert all(r["y_kernel_err"] < 1e-5 for r in kernel_rows if r["dtype"] == "float32")
    # b: all four timings, relative to GELU.
    act = sections["act"]["rows"]
    assert [r["name"] for r in act][:2] == ["F.gelu", "GroupRational kernel"] and len(act) == 4
    assert all(r["ms"] > 0 and r["x_gelu"] > 0 for r in act)
    # c: ViT and KAT (with the kernel), eager and compiled, with ratios and the goal flags.
    kat = sections["kat"]["rows"]
    assert [(r["label"], r["compiled"]) for r in kat] == [
        ("vit_tiny_patch16_224", False),
        ("kat_tiny", False),
        ("vit_tiny_patch16_224", True),
        ("kat_tiny", True),
    ]
    assert all("img_s_ratio" in r and "peak_memory_ratio" in r for r in kat if r["label"] == "kat_tiny")
    assert set(sections["kat"]["goals"]) >= {"kat_tiny_eager_img_s_ratio", "kat_tiny_compiled_memory_goal_met"}
    # d, e, f
    assert [r["label"] for r in sections["cnn"]["rows"]] == ["resnet18", "kan_resnet18[chebyshev]"]
    for name, suffix in (("zoo", ".csv"), ("zoo_compiled", "-compiled.csv")):
        zoo = sections[name]
        assert [(r["model"], r["baseline"]) for r in zoo["rows"]] == [("kat_tiny_patch16_224", "vit_tiny_patch16_224")]
        assert zoo["rows"][0]["train_x_baseline"] > 0 and not zoo["csv"].startswith(str(REPO_ROOT))
        assert zoo["csv"].endswith(suffix) and (name == "zoo_compiled") == zoo["csv"].endswith("-compiled.csv")
    profiled = sections["profile"]["rows"]
    assert [r["model"] for r in profiled] == ["vit_tiny_patch16_224", "kat_tiny_patch16_224"]
    for r in profiled:  # on CPU: host time only, within the wall time of the steps
        assert 0 < r["cpu_ms"] <= r["step_ms"] * 1.05 and r["device_ms"] == 0 and r["top_cpu"]
    # the Triton interpreter's kernel dominates the KAT row's host time (its custom ops), and is absent from ViT's
    assert any(op["op"].startswith("kanvision::group_rational") for op in profiled[1]["top_cpu"][:3])
    assert not any(op["op"].startswith("kanvision::") for op in profiled[0]["top_cpu"])
    assert sections["layers"]["returncode"] == 0 and sections["layers"]["result"]["rows"]
    assert [r["label"] for r in sections["kat_pt"]["rows"]] == ["vit_tiny_patch16_224", "kat_tiny[pytorch]"]
    assert "summary: " in proc.stdout


def test_guarded_records_errors_timeouts_and_skips():
    deadline = gpu_check._Deadline(60)

    def fail():
        raise ValueError("boom")

    assert gpu_check._guarded(fail, 10, deadline)["error"] == "ValueError: boom"

    def slow():
        time.sleep(5)
        return {"done": True}

    out = gpu_check._guarded(slow, 0.2, deadline, min_s=0.1)
    assert out["error"].startswith("TimeoutError") and out["seconds"] < 4
    assert "skipped" in gpu_check._guarded(lambda: {"done": True}, 10, gpu_check._Deadline(1), min_s=5)
    assert gpu_check._guarded(lambda: {"done": True}, 10, deadline)["done"]


def test_unknown_section_is_refused():
    with pytest.raises(SystemExit, match="unknown sections"):
        gpu_check.main(["--device", "cpu", "--sections", "kernel,nope"])
