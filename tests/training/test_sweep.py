"""Sweeps: `kanvision-train` returns `optimized_metric`; hparams_search=digits_optuna is an Optuna search."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from kanvision.training.train import main
from kanvision.training.utils import get_metric_value
from tests.training.conftest import CONFIG_DIR

TINY = ["data=synthetic", "data.num_train=32", "data.num_val=16", "data.num_test=16", "data.batch_size=16"]


def test_the_search_composes_the_digits_experiment_with_an_optuna_sweeper():
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose("train", overrides=["hparams_search=digits_optuna"], return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "maximize"
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler" and sweeper.sampler.seed == 0
    assert set(sweeper.params) == {"model.optimizer.lr", "model.optimizer.weight_decay", "model.label_smoothing"}
    assert cfg.optimized_metric == "val/acc1" and cfg.test is False
    # the digits_kan experiment with shorter trials
    assert cfg.data._target_.endswith("DigitsDataModule") and cfg.model.name == "kan_cnn_tiny"
    assert cfg.model.optimizer.opt == "adamw" and cfg.trainer.max_epochs == 5


def test_main_returns_the_optimized_metric(make_cfg, tmp_path):
    cfg = make_cfg(*TINY, "data.img_size=8", "trainer.max_epochs=1", "trainer.limit_train_batches=1",
                   "optimized_metric=val/loss")  # fmt: skip
    value = main.__wrapped__(cfg)
    assert value == json.loads((tmp_path / "metrics.json").read_text())["val/loss"]


def test_an_unknown_optimized_metric_names_the_metrics():
    assert get_metric_value({"val/acc1": 0.5, "model": "x"}, None) is None
    with pytest.raises(ValueError, match=r"optimized_metric='val/acc99' .*\['val/acc1'\]"):
        get_metric_value({"val/acc1": 0.5, "model": "x"}, "val/acc99")


@pytest.mark.slow
def test_two_trials_of_the_digits_search(tmp_path):
    command = [
        sys.executable, "-m", "kanvision.train", "-m", "hparams_search=digits_optuna", "hydra.sweeper.n_trials=2",
        "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=2", "print_config=false",
        "callbacks.rich_progress_bar=null", "callbacks.model_summary=null", "+trainer.enable_progress_bar=false",
        f"hydra.sweep.dir={tmp_path}",
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    best = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    trials = [json.loads((tmp_path / str(n) / "metrics.json").read_text())["val/acc1"] for n in range(2)]
    assert best["best_value"] == max(trials)
    assert set(best["best_params"]) == {"model.optimizer.lr", "model.optimizer.weight_decay", "model.label_smoothing"}
    assert "Best value" in result.stdout + result.stderr
