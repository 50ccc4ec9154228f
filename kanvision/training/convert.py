"""``kanvision-convert``: load a foreign checkpoint into a kanvision model and write it as safetensors.

Any file that ``timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=SRC))`` accepts works: for
KAT, timm ViT state dicts, Google AugReg ``.npz``, official KAT checkpoints and kanvision's own files. The output is
the same format as ``kanvision-export``: the model name, its arguments and data config in the safetensors metadata,
so ``kanvision.load_checkpoint(DST)`` rebuilds it alone, and ``timm.create_model(name,
pretrained_cfg_overlay=dict(file=DST))`` loads it too.

Example::

    kanvision-convert ViT-Ti_16.npz kat_tiny_from_vit.safetensors --model kat_tiny_patch16_224 \\
        --rational-init identity gelu
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import timm
from timm.data import resolve_model_data_config

import kanvision  # noqa: F401  (registers the models with timm)
from kanvision.training.checkpoint import save_safetensors
from kanvision.utils.safe_config import check_file_config

__all__ = ["convert", "main"]


def convert(source: str | Path, destination: str | Path, model_name: str, **model_args: Any) -> dict[str, str]:
    """Build ``model_name`` with ``model_args``, load ``source`` into it, write ``destination``; return the metadata."""
    source, destination = Path(source), Path(destination)
    if not source.is_file():
        raise ValueError(f"source checkpoint {str(source)!r} does not exist")
    if destination.suffix != ".safetensors":
        raise ValueError(f"destination {str(destination)!r} must end with .safetensors")
    # model arguments are data (they are stored in the output's metadata): a Hydra node is refused, by name
    check_file_config(model_args, f"kanvision-convert {source}", "model_args", allow_targets=False)
    if not timm.is_model(model_name):
        similar = timm.list_models(f"*{model_name.split('_')[0]}*")[:8]
        raise ValueError(f"unknown model {model_name!r}: not a timm or kanvision model name (similar: {similar})")
    try:
        model = timm.create_model(
            model_name, pretrained=True, pretrained_cfg_overlay=dict(file=str(source)), **model_args
        )
    except TypeError as error:
        if "unexpected keyword argument" not in str(error):
            raise
        raise ValueError(f"{model_name} does not take the arguments {sorted(model_args)}: {error}") from error
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as error:
        raise ValueError(f"cannot load {str(source)!r} into {model_name}: {error}") from error
    data = resolve_model_data_config(model)
    meta = {
        "model_name": model_name,
        "model_kwargs": dict(model_args),
        "data_config": {
            # the size the model was built for (pretrained_cfg keeps the default one)
            "img_size": list(_built_img_size(model) or data["input_size"][-2:]),
            "mean": list(data["mean"]),
            "std": list(data["std"]),
            "interpolation": data["interpolation"],
            "crop_pct": data["crop_pct"],
        },
    }
    save_safetensors(model, meta, destination)
    return {"architecture": model_name, "model_args": json.dumps(model_args, sort_keys=True), "source": source.name}


def _built_img_size(model) -> tuple[int, int] | None:
    """(height, width) that a fixed-size network (a ViT or KAT patch grid) was built for, else None."""
    patch_embed = getattr(model, "patch_embed", None)
    size = getattr(patch_embed, "img_size", None)
    return tuple(size) if size is not None and not getattr(patch_embed, "dynamic_img_size", False) else None


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="kanvision-convert", description=__doc__.splitlines()[0])
    parser.add_argument("source", help="checkpoint to read (.npz, .safetensors, .pth, .bin, ...)")
    parser.add_argument("destination", help="safetensors file to write")
    parser.add_argument("--model", default="kat_tiny_patch16_224", help="timm model name (default: %(default)s)")
    parser.add_argument("--num-classes", type=int, default=None, help="head size (default: the model's, 1000)")
    parser.add_argument("--img-size", type=int, default=None, help="input size; position embeddings are resampled")
    parser.add_argument(
        "--rational-init", nargs=2, default=None, metavar=("ACT1", "ACT2"), help="KAT rational inits for new ones"
    )
    parser.add_argument(
        "--model-arg", action="append", default=[], metavar="KEY=VALUE",
        help="any other model argument, VALUE a Python literal (e.g. depth=6, drop_path_rate=0.1); repeatable",
    )  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    model_args: dict[str, Any] = {}
    for item in args.model_arg:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            parser.error(f"--model-arg {item!r} is not KEY=VALUE")
        try:
            model_args[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            model_args[key] = value  # a plain string such as a pooling name
    if args.num_classes is not None:
        model_args["num_classes"] = args.num_classes
    if args.img_size is not None:
        model_args["img_size"] = args.img_size
    if args.rational_init is not None:
        model_args["rational_init"] = list(args.rational_init)
    try:
        metadata = convert(args.source, args.destination, args.model, **model_args)
    except ValueError as error:
        parser.exit(2, f"kanvision-convert: error: {error}\n")
    print(f"wrote {args.destination} ({metadata['architecture']}, {metadata['model_args']})")


if __name__ == "__main__":
    main()
