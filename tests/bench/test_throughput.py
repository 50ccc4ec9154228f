import pytest
import torch
import torch.nn as nn

from kanvision.bench.throughput import build_model, measure_training, time_callable


def _tiny_model(num_classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes)
    )


@pytest.mark.parametrize("amp_dtype", [None, torch.bfloat16])
def test_measure_training_trains_and_reports(amp_dtype):
    model = _tiny_model()
    before = [p.detach().clone() for p in model.parameters()]
    r = measure_training(
        model, batch_size=4, img_size=8, device="cpu", amp_dtype=amp_dtype, steps=3, warmup=1, num_classes=10
    )
    # AdamW really stepped every parameter.
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))
    assert r.img_per_s == pytest.approx(4 / (r.step_ms_median / 1e3))
    assert r.step_ms_min <= r.step_ms_median <= r.step_ms_max
    assert r.num_params == sum(p.numel() for p in model.parameters())
    assert r.memory_kind.startswith("cpu_") and r.peak_memory_gib > 0
    assert r.amp_dtype == (None if amp_dtype is None else "bfloat16")
    assert torch.isfinite(torch.tensor(r.final_loss))
    assert set(r.as_dict()) >= {"img_per_s", "peak_memory_gib", "memory_kind"}


def test_measure_training_channels_last_and_bad_args():
    r = measure_training(_tiny_model(), 2, 8, device="cpu", steps=1, warmup=0, channels_last=True, num_classes=10)
    assert r.channels_last and r.steps == 1
    with pytest.raises(ValueError, match="batch_size"):
        measure_training(_tiny_model(), 0, 8, device="cpu")


def test_build_model_img_size_only_where_accepted():
    vit = build_model("vit_tiny_patch16_224", img_size=32, num_classes=7)
    assert vit.patch_embed.img_size == (32, 32) and vit.num_classes == 7
    cnn = build_model("resnet10t", img_size=32, num_classes=7)  # ResNet takes no img_size
    assert cnn.num_classes == 7
    with pytest.raises(ValueError, match="not_a_model"):
        build_model("not_a_model", img_size=32)


def test_time_callable_counts_reps():
    calls = []
    times = time_callable(lambda: calls.append(1), "cpu", warmup=2, reps=5)
    assert len(times) == 5 and len(calls) == 7 and all(t >= 0 for t in times)
