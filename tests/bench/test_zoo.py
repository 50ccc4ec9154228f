"""kanvision-models: every registered kanvision model, with its parameters, FLOPs, input size, tags and paper."""

from __future__ import annotations

import importlib
import json
import pkgutil

import pytest
import timm
import torch

import kanvision.models
from kanvision.bench.zoo import ModelInfo, kanvision_models, main


def _registered_in_kanvision() -> set[str]:
    """Independent reference: the timm entry points defined in kanvision.models' modules."""
    names = set()
    for module_info in pkgutil.iter_modules(kanvision.models.__path__):
        module = importlib.import_module(f"kanvision.models.{module_info.name}")
        for name, value in vars(module).items():
            if callable(value) and timm.is_model(name) and timm.models.model_entrypoint(name) is value:
                names.add(name)
    return names


def test_lists_every_registered_model():
    listed = kanvision_models()
    baselines = {"resnet18_cifar", "resnet34_cifar"}  # kanvision.models.baselines: plain ResNets, not in the zoo
    assert set(listed) == _registered_in_kanvision() - baselines and baselines <= _registered_in_kanvision()
    assert {"kat_tiny_patch16_224", "rkan_resnet50", "kan_kkan_mnist"} <= set(listed)
    timm_own = [name for name in listed if name.startswith(("vit_", "resnet")) and not name.startswith("vit_kan_")]
    assert not timm_own  # timm's own are not kanvision's


def test_table_values(tmp_path, capsys):
    main(["kan_kkan_mnist", "kat_tiny_patch16_224", "--json", str(tmp_path / "zoo.json")])
    out = capsys.readouterr().out
    assert "kan_kkan_mnist" in out and "kat_tiny_patch16_224" in out
    written = json.loads((tmp_path / "zoo.json").read_text())
    assert [w["name"] for w in written] == ["kan_kkan_mnist", "kat_tiny_patch16_224"]
    by_name = {w["name"]: ModelInfo(**{**w, "input_size": tuple(w["input_size"])}) for w in written}
    kkan = timm.create_model("kan_kkan_mnist")
    assert by_name["kan_kkan_mnist"].params == sum(p.numel() for p in kkan.parameters()) == 94_650
    assert by_name["kan_kkan_mnist"].input_size == (1, 28, 28)
    kat = by_name["kat_tiny_patch16_224"]
    assert kat.params == 5_718_328 and kat.input_size == (3, 224, 224)
    assert set(kat.pretrained_tags) == {"in1k", "vitft_in1k"} and "2409.10594" in kat.paper
    from kanvision.utils.flops import count_forward_flops

    # the meta-device count equals a real forward's
    real = count_forward_flops(kkan, torch.zeros(1, 1, 28, 28)) / 1e9
    assert by_name["kan_kkan_mnist"].gflops == pytest.approx(real)


def test_unknown_pattern_is_an_error(capsys):
    with pytest.raises(SystemExit):
        main(["no_such_model_*"])
    assert "no kanvision model matches" in capsys.readouterr().err
