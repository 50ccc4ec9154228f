"""The console of kanvision-train: the config as its differences from the defaults, known noise dropped, a summary."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from kanvision.training.utils import _DropMessages, config_differences, quiet_known_noise, summary_line
from tests.training.conftest import CONFIG_DIR


def _leaves(node, prefix=""):
    if isinstance(node, dict) and node:
        return {k: v for key, value in node.items() for k, v in _leaves(value, f"{prefix}{key}.").items()}
    return {prefix[:-1]: node}


def test_the_config_print_is_what_the_experiment_changes():
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        defaults, digits = compose("train"), compose("train", overrides=["experiment=digits_kan"])
    changed = _leaves(OmegaConf.to_container(config_differences(digits, defaults)))
    experiment = yaml.safe_load((CONFIG_DIR / "experiment" / "digits_kan.yaml").read_text())
    written = _leaves({k: v for k, v in experiment.items() if k != "defaults"}) | {"trainer.accelerator": "cpu"}
    assert changed, "the experiment changes something"
    for key, value in changed.items():  # everything shown is what the experiment (and its trainer=cpu) wrote
        assert written.get(key) == value, key
    assert changed["model.optimizer.lr"] == 3.0e-3 and changed["trainer.max_epochs"] == 30
    assert not config_differences(defaults, defaults)


def test_a_removed_key_is_shown():
    cfg = OmegaConf.create({"a": {"b": 1}, "e": None})
    diff = config_differences(cfg, OmegaConf.create({"a": {"b": 1, "c": 2}, "d": 3, "e": {"f": 1}}))
    assert OmegaConf.to_container(diff) == {"a": {"~c": None}, "~d": None, "e": None}


def test_summary_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    metrics = {"val/acc1": 0.9722, "test/acc1": 0.96875, "val/loss": 0.1, "model": "kan_cnn_tiny"}
    line = summary_line("digits_kan", metrics, 41.4, tmp_path / "logs" / "run")
    assert line == f"digits_kan: val/acc1 97.2 %, test/acc1 96.9 % in 41 s -> {Path('logs/run')}"
    assert summary_line("x", {}, 1, "/elsewhere/run") == "x: no accuracy in 1 s -> /elsewhere/run"


@pytest.fixture
def quiet():
    """quiet_known_noise, with the loggers' filters and the warning filters restored afterwards."""
    with warnings.catch_warnings():
        quiet_known_noise(in_process_data=True)
        yield
    for name in ("torch.utils.cpp_extension", "lightning.pytorch.utilities.rank_zero"):
        logger = logging.getLogger(name)
        for f in [f for f in logger.filters if isinstance(f, _DropMessages)]:
            logger.removeFilter(f)


def test_known_noise_is_dropped_and_nothing_else(quiet, caplog):
    cuda = logging.getLogger("torch.utils.cpp_extension")
    tips = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    with caplog.at_level(logging.INFO):
        cuda.warning("No CUDA runtime is found, using CUDA_HOME='%s'", "/usr/local")
        cuda.warning("Error building extension 'x'")
        tips.info("💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger]")
        tips.info("`Trainer.fit` stopped: `max_epochs=1` reached.")
        logging.getLogger("other").warning("No CUDA runtime is found")
    assert [r.getMessage() for r in caplog.records] == [
        "Error building extension 'x'",
        "`Trainer.fit` stopped: `max_epochs=1` reached.",
        "No CUDA runtime is found",
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_known_noise()  # the "always" above replaced the filters
        warnings.warn_explicit(
            "`isinstance(treespec, LeafSpec)` is deprecated", FutureWarning, "_pytree.py", 21,
            module="lightning.pytorch.utilities._pytree",
        )  # fmt: skip
        warnings.warn_explicit("`isinstance(treespec, LeafSpec)` is deprecated", FutureWarning, "mine.py", 1)
    assert [w.filename for w in caught] == ["mine.py"]  # only Lightning's own call is silenced


@pytest.mark.slow
def test_make_train_console(tmp_path):
    command = [
        sys.executable, "-m", "kanvision.train", "experiment=digits_kan", "trainer.max_epochs=1",
        "trainer.limit_train_batches=4", "callbacks.rich_progress_bar=null", "+trainer.enable_progress_bar=false",
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    for noise in ("No CUDA runtime", "💡 Tip", "LeafSpec", "Trainer already configured", "TPU available: False"):
        assert noise not in out, noise
    assert "Config: overrides experiment=digits_kan" in out and "_target_" not in out
    assert re.search(r"digits_kan: val/acc1 \d+\.\d %, test/acc1 \d+\.\d % in \d+ s -> logs/train/runs/\S+\n", out)
