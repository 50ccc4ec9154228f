"""The default experiment (`make train`): kan_cnn_tiny on the bundled 8x8 digits."""

from __future__ import annotations

import json

import pytest

from kanvision.training.evaluate import evaluate
from kanvision.training.train import train


@pytest.mark.slow
def test_digits_experiment_reaches_90_percent_and_eval_agrees(make_cfg, tmp_path):
    run_dir = tmp_path / "run"
    metrics = train(make_cfg("experiment=digits_kan", output_dir=run_dir))
    assert metrics["test/acc1"] >= 0.90, metrics
    written = json.loads((run_dir / "metrics.json").read_text())
    assert written["test/acc1"] == pytest.approx(metrics["test/acc1"])
    assert 0.9 <= written["val/acc1"] <= 1.0

    # kanvision-eval on the final checkpoint reproduces the test accuracy of the run
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    result = evaluate(make_cfg(f"ckpt_path={ckpt}", "split=test", config_name="eval", output_dir=tmp_path / "eval"))
    assert result["test/acc1"] == pytest.approx(metrics["test/acc1"], abs=1e-6)
