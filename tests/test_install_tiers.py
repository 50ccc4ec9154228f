"""`pip install kanvision` (no extras): layers, models, timm registration and load_checkpoint of a safetensors
export work with the training and interpretation packages unimportable; commands name the extra they miss."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import tomllib

REPO_ROOT = Path(__file__).resolve().parents[1]
EXTRA_MODULES = ["lightning", "hydra", "omegaconf", "wandb", "torchmetrics", "rich", "sklearn", "matplotlib", "scipy"]
CORE_PARTS = ["kernels", "layers", "models", "utils", "bench"]
CORE_DISTRIBUTIONS = {"torch", "torchvision", "timm", "safetensors", "numpy", "triton"}

# A None entry in sys.modules makes `import name` (and its submodules) raise ModuleNotFoundError and
# importlib.util.find_spec(name) return None, as if the distribution were not installed.
_BLOCKER = f"""
import sys
sys.modules.update(dict.fromkeys({EXTRA_MODULES!r}))
"""


def _run_without_extras(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    script = tmp_path / "script.py"
    script.write_text(_BLOCKER + code)
    env = {"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin", "TRITON_INTERPRET": "1", "HOME": str(tmp_path)}
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300)


def test_core_install_builds_trains_and_loads_without_the_extras(tmp_path):
    code = """
import json, sys
import timm, torch
from safetensors.torch import save_model
import kanvision

torch.manual_seed(0)
for name, kwargs, size in [
    ("kat_tiny_patch16_224", dict(img_size=32, patch_size=8, depth=1), 32),
    ("rkan_resnet18_cifar", {}, 16),
    ("kan_cnn_tiny", dict(in_chans=3), 16),
    ("kan_vgg11_bottleneck", dict(cfg=[8, "M", 8]), 32),
    ("kan_resnet18_cifar", {}, 16),
]:
    model = timm.create_model(name, num_classes=3, **kwargs)
    x = torch.randn(2, 3, size, size)
    logits = model(x)
    logits.sum().backward()
    assert logits.shape == (2, 3), (name, logits.shape)
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad), name
training = [m for m in sys.modules if m.startswith("kanvision.training")]
assert not training, f"import kanvision and building models loaded {training}"

# kanvision's safetensors export: the weights plus {"kanvision": json of model_name, model_kwargs, data_config, ema}
model = timm.create_model("kan_cnn_tiny", num_classes=3, in_chans=1).eval()
meta = {"model_name": "kan_cnn_tiny", "model_kwargs": {"num_classes": 3, "in_chans": 1}, "ema": False,
        "data_config": {"img_size": [16, 16], "mean": [0.5], "std": [0.25],
                        "interpolation": "bilinear", "crop_pct": 1.0}}
save_model(model, sys.argv[0] + ".safetensors", metadata={"kanvision": json.dumps(meta)})
loaded = kanvision.load_checkpoint(sys.argv[0] + ".safetensors")
x = torch.randn(2, 1, 16, 16)
with torch.no_grad():
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
assert loaded.pretrained_cfg["input_size"] == (1, 16, 16) and loaded.pretrained_cfg["std"] == (0.25,)
print("ok")
"""
    proc = _run_without_extras(code, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "ok"


def test_the_blocker_really_blocks(tmp_path):
    proc = _run_without_extras("import lightning\n", tmp_path)
    assert proc.returncode == 1 and "ModuleNotFoundError: import of lightning halted" in proc.stderr


def test_a_command_without_its_extra_says_which_to_install(tmp_path):
    code = """
import sys
from kanvision.utils import extras
command = {"train": extras.train, "inspect": extras.inspect, "compare": extras.compare}[sys.argv[1]]
sys.argv = [sys.argv[0], "--help"]
command()
"""
    expected = {
        "train": "kanvision-train needs the training extra: pip install 'kanvision[train]'",
        "inspect": "kanvision-inspect needs the interpret extra: pip install 'kanvision[interpret]'",
        "compare": "kanvision-compare needs the training extra: pip install 'kanvision[train]'",
    }
    script = tmp_path / "script.py"
    for command, message in expected.items():
        script.write_text(_BLOCKER + code)
        env = {"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
        proc = subprocess.run([sys.executable, str(script), command], capture_output=True, text=True, env=env)
        assert proc.returncode == 1 and proc.stderr == message + "\n", (command, proc.stderr[-2000:])


def test_an_unrelated_missing_module_is_not_blamed_on_an_extra():
    from kanvision.utils.extras import missing_extra_message

    assert missing_extra_message("kanvision-train", "train", ModuleNotFoundError(name="nonexistent")) is None
    message = missing_extra_message("kanvision-inspect", "interpret", ModuleNotFoundError(name="lightning.pytorch"))
    assert message == "kanvision-inspect needs the training extra: pip install 'kanvision[train]'"


def _distribution(requirement: str) -> str:
    name = requirement.split(";")[0]
    for mark in "<>=![ ":
        name = name.split(mark)[0]
    return name.strip().lower()


def test_core_dependencies_are_the_ones_the_core_imports():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert {_distribution(r) for r in project["dependencies"]} == CORE_DISTRIBUTIONS
    extras = project["optional-dependencies"]
    assert {_distribution(r) for r in extras["dev"]} >= {"kanvision", "pytest", "ruff", "mkdocs-material"}
    assert "kanvision[train,interpret,sweep,hf,wds]" in extras["dev"]
    # every third-party module the core parts import at module level is a core dependency (or the standard library)
    modules = {"torch", "torchvision", "timm", "safetensors", "numpy", "triton", "kanvision", "PIL"}
    imported = set()
    for part in CORE_PARTS:
        for path in (REPO_ROOT / "kanvision" / part).rglob("*.py"):
            for node in ast.parse(path.read_text()).body:
                if isinstance(node, ast.Import):
                    imported |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and not node.level:
                    imported.add((node.module or "").split(".")[0])
    third_party = {m for m in imported if m not in sys.stdlib_module_names and m != "__future__"}
    assert third_party <= modules, third_party - modules
    # the extras' modules come with the extras
    train = {_distribution(r) for r in extras["train"]}
    assert {"lightning", "hydra-core", "omegaconf", "wandb", "torchmetrics", "rich", "scikit-learn"} <= train
    assert {"matplotlib", "scipy"} <= {_distribution(r) for r in extras["interpret"]}
