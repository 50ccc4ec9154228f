"""Rebuild a trained network from a kanvision checkpoint alone, and export it to safetensors.

Every checkpoint written by ``kanvision-train`` embeds the model name, its ``timm.create_model`` arguments and
the data config it was trained with (a lesson from torch-conv-kan, whose published ImageNet weights evaluated at
0% under a mismatched config). Loading never unpickles code: ``torch.load(weights_only=True)`` or safetensors.

    kanvision-export run/checkpoints/last.ckpt model.safetensors [--ema]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

__all__ = [
    "read_checkpoint",
    "checkpoint_metadata",
    "model_state_dict",
    "load_checkpoint",
    "export_safetensors",
    "save_safetensors",
]

_META_KEY = "kanvision"


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A Lightning ``.ckpt`` as a dict, loaded with ``weights_only=True`` (memory-mapped, on the CPU)."""
    from kanvision.training.checkpoint_io import CheckpointError, check_checkpoint_file  # imports Lightning

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    check_checkpoint_file(path, advice="it may have been cut short by a crash or a full disk")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (RuntimeError, OSError) as error:  # a zip archive that ends early; refused pickles raise other errors
        raise CheckpointError(f"checkpoint {path} cannot be read, it may be truncated ({error})") from error


def checkpoint_metadata(checkpoint: dict[str, Any] | str | os.PathLike) -> dict[str, Any]:
    """The ``kanvision`` entry (model_name, model_kwargs, data_config, has_ema, wandb_run_id) of a checkpoint."""
    source = "checkpoint"
    if not isinstance(checkpoint, dict):
        source = f"checkpoint {os.fspath(checkpoint)}"
        checkpoint = read_checkpoint(checkpoint)
    meta = checkpoint.get(_META_KEY)
    if not meta or "model_name" not in meta:
        raise ValueError(
            f"{source} has no 'kanvision' entry with the model name and kwargs; "
            "only checkpoints written by kanvision-train (ImageClassifier) can be rebuilt by name"
        )
    return meta


def model_state_dict(checkpoint: dict[str, Any], ema: bool = False) -> dict[str, torch.Tensor]:
    """The network's own state dict from a Lightning checkpoint (the raw weights, or the EMA weights)."""
    prefix = "model_ema.module." if ema else "model."
    state = {k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    if not state:
        what = "EMA weights (train with model.ema set)" if ema else "weights under 'model.'"
        raise ValueError(f"checkpoint holds no {what}")
    return {k.replace("_orig_mod.", ""): v for k, v in state.items()}


def _build(meta: dict[str, Any]) -> nn.Module:
    import kanvision  # noqa: F401  (registers kanvision's models with timm)

    model = timm.create_model(meta["model_name"], pretrained=False, **meta["model_kwargs"])
    data = meta.get("data_config") or {}
    if data and hasattr(model, "pretrained_cfg"):
        # so that timm.data.resolve_model_data_config(model) gives the trained input size and normalisation
        cfg = dict(model.pretrained_cfg)
        in_chans = meta["model_kwargs"].get("in_chans", 3)
        cfg.update(
            input_size=(in_chans, *data["img_size"]),
            mean=tuple(data["mean"]),
            std=tuple(data["std"]),
            interpolation=data["interpolation"],
            crop_pct=data["crop_pct"],
            num_classes=meta["model_kwargs"].get("num_classes", cfg.get("num_classes")),
        )
        model.pretrained_cfg = cfg
    return model


def load_checkpoint(path: str | os.PathLike, ema: bool = False, map_location: str | torch.device = "cpu") -> nn.Module:
    """The trained network (in eval mode) from a kanvision ``.ckpt`` or an exported ``.safetensors`` file.

    Args:
        path: checkpoint written by ``kanvision-train`` or file written by :func:`export_safetensors`.
        ema: take the EMA weights from a ``.ckpt`` (a ``.safetensors`` file holds the weights it was exported with).
        map_location: device to put the network on.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import safe_open
        from safetensors.torch import load_model

        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get(_META_KEY, "null") or "null")
        if not meta:
            raise ValueError(f"{path} has no 'kanvision' metadata; export it with kanvision's export_safetensors")
        model = _build(meta)
        load_model(model, str(path), strict=True)
    else:
        checkpoint = read_checkpoint(path)
        meta = checkpoint_metadata(checkpoint)
        model = _build(meta)
        model.load_state_dict(model_state_dict(checkpoint, ema=ema), strict=True)
    return model.to(map_location).eval()


def export_safetensors(
    ckpt_path: str | os.PathLike, out_path: str | os.PathLike | None = None, ema: bool = False
) -> Path:
    """Write the network of a kanvision ``.ckpt`` as ``.safetensors`` with its name, kwargs and data config.

    ``out_path`` defaults to the checkpoint path with the suffix ``.safetensors``.
    """
    ckpt_path = Path(ckpt_path)
    out_path = Path(out_path) if out_path is not None else ckpt_path.with_suffix(".safetensors")
    checkpoint = read_checkpoint(ckpt_path)
    meta = checkpoint_metadata(checkpoint)
    model = _build(meta)
    model.load_state_dict(model_state_dict(checkpoint, ema=ema), strict=True)
    return save_safetensors(model, meta, out_path, ema=ema)


def save_safetensors(model: nn.Module, meta: dict[str, Any], out_path: str | os.PathLike, ema: bool = False) -> Path:
    """Write ``model`` with the checkpoint metadata ``meta`` (model_name, model_kwargs, data_config) as safetensors."""
    from safetensors.torch import save_model

    out_path = Path(out_path)
    meta = {k: meta.get(k) for k in ("model_name", "model_kwargs", "data_config")} | {"ema": ema}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    save_model(model, str(tmp), metadata={_META_KEY: json.dumps(meta)})  # save_model de-duplicates shared tensors
    os.replace(tmp, out_path)
    return out_path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="kanvision-export", description="Export a kanvision checkpoint's network to safetensors."
    )
    parser.add_argument("checkpoint", help="a .ckpt written by kanvision-train")
    parser.add_argument("output", nargs="?", help="output .safetensors path (default: next to the checkpoint)")
    parser.add_argument("--ema", action="store_true", help="export the EMA weights")
    args = parser.parse_args(argv)
    try:
        print(export_safetensors(args.checkpoint, args.output, ema=args.ema))
    except (ValueError, OSError, RuntimeError, pickle.UnpicklingError) as error:  # a missing, broken or foreign file
        parser.exit(2, f"kanvision-export: error: {error}\n")


if __name__ == "__main__":
    main()
