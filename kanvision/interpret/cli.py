"""``kanvision-inspect``: plots, importance and symbolic fits of a model's learned functions.

    kanvision-inspect logs/train/runs/<run>/checkpoints/last.ckpt --data digits --out inspect/
    kanvision-inspect model.safetensors --layers "features.*" --top-k 4 --out inspect/
    kanvision-inspect kat_tiny_patch16_224 --pretrained --layers "blocks.0.*" --out inspect/

The model is a kanvision checkpoint (``.ckpt``), a kanvision safetensors export or a timm model name (random
weights unless ``--pretrained``). ``--data``: ``digits`` or another data config of ``kanvision/configs/data``
(``--data-root`` for those that read files), or an image folder root; without it, standard-normal inputs of the
model's input size.
"""

from __future__ import annotations

import argparse
import ast
import pickle
from collections.abc import Iterator
from pathlib import Path

import timm
import torch
from timm.data import resolve_model_data_config
from torch import Tensor, nn

from kanvision.interpret.report import inspect_model
from kanvision.models._checkpoint import CheckpointError
from kanvision.utils.cli import positive_int

__all__ = ["load_model", "input_batches", "main"]

_CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs" / "data"


def load_model(source: str, pretrained: bool = False, model_kwargs: dict | None = None) -> tuple[nn.Module, str]:
    """The model (eval mode) and its name from a ``.ckpt``/``.safetensors`` path or a timm model name (built with
    ``model_kwargs``)."""
    import kanvision  # noqa: F401  (registers kanvision's models with timm)
    from kanvision.models._checkpoint import checkpoint_metadata, load_checkpoint

    path = Path(source)
    if path.suffix in (".ckpt", ".safetensors") or path.is_file():  # other files: load_checkpoint says what they are
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {path} does not exist")
        if pretrained or model_kwargs:
            raise ValueError("--pretrained and --model-kwargs apply to timm model names, not to a checkpoint file")
        model = load_checkpoint(path)  # metadata checked as data, weights loaded strictly
        name = checkpoint_metadata(path)["model_name"] if path.suffix != ".safetensors" else path.stem
        return model, name
    if not timm.is_model(source.split(".")[0]):  # a name, or name.pretrained_tag
        raise ValueError(
            f"{source!r} is neither a .ckpt/.safetensors file nor a timm model name (see timm.list_models(), "
            "e.g. 'kat_tiny_patch16_224', 'kan_cnn_tiny', 'rkan_resnet18')"
        )
    model = timm.create_model(source, pretrained=pretrained, **(model_kwargs or {})).eval()
    if "img_size" in (model_kwargs or {}) and hasattr(model, "pretrained_cfg"):  # the inputs follow the new size
        size = model_kwargs["img_size"]
        size = (size, size) if isinstance(size, int) else tuple(size)
        channels = model.pretrained_cfg.get("input_size", (3,))[0]
        model.pretrained_cfg = {**model.pretrained_cfg, "input_size": (channels, *size)}
    return model, source


def _data_module(data: str, root: str | None):
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from kanvision.training.utils import instantiate

    path = Path(data)
    if path.is_dir():
        cfg = OmegaConf.load(_CONFIG_DIR / "imagefolder.yaml")
        cfg.root = str(path)
    else:
        valid = sorted(p.stem for p in _CONFIG_DIR.glob("*.yaml") if p.stem not in ("from_checkpoint", "imagefolder"))
        if data not in valid:
            raise ValueError(f"--data {data!r} is not a directory or one of the data configs {valid}")
        cfg = OmegaConf.load(_CONFIG_DIR / f"{data}.yaml")
        if root is not None:
            cfg.root = root
    cfg.num_workers = 0
    cfg.pin_memory = False
    cfg.pop("augment", None)
    try:
        cfg = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException:  # the default root refers to the training run's paths
        raise ValueError(f"--data {data} reads files: give their location with --data-root") from None
    return instantiate(cfg)


def input_batches(
    model: nn.Module, data: str | None, num_samples: int, batch_size: int, root: str | None = None, seed: int = 0
) -> Iterator[Tensor]:
    """Up to ``num_samples`` inputs for ``model`` in batches: a data module's validation images at the model's input
    size and normalisation, or standard-normal inputs of its input size when ``data`` is None. A bad ``data`` or
    ``root`` fails here, not at the first batch."""
    config = resolve_model_data_config(model)
    channels, height, width = config["input_size"]
    if data is None:
        generator = torch.Generator().manual_seed(seed)
        sizes = [min(batch_size, num_samples - start) for start in range(0, num_samples, batch_size)]
        return (torch.randn(size, channels, height, width, generator=generator) for size in sizes)
    module = _data_module(data, root)
    module.configure_for_model(config)
    module.eval_batch_size = batch_size
    module.setup("validate")
    return _validation_images(module, num_samples, channels)


def _validation_images(module, num_samples: int, channels: int) -> Iterator[Tensor]:
    seen = 0
    for images, _ in module.val_dataloader():
        if seen >= num_samples:
            break
        images = images[: num_samples - seen]
        if images.shape[1] == 1 and channels != 1:  # grayscale data for an RGB model
            images = images.expand(-1, channels, -1, -1)
        seen += len(images)
        yield images


def _keyword(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value  # a plain string


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="kanvision-inspect",
        description="Plot, score (pykan importance) and fit symbolic formulas to the learned functions of a model.",
    )
    parser.add_argument("model", help="a kanvision .ckpt, a kanvision .safetensors export, or a timm model name")
    parser.add_argument("--data", help="digits, another data config name, or an image folder root (default: random)")
    parser.add_argument("--data-root", help="where the files of a --data config are")
    parser.add_argument("--layers", help="comma-separated patterns of module names, e.g. 'features.*,head.*'")
    parser.add_argument("--top-k", type=positive_int, default=8, help="functions plotted and fitted per layer")
    parser.add_argument("--num-samples", type=positive_int, default=256, help="input images recorded")
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--num-points", type=positive_int, default=101, help="points per function")
    parser.add_argument("--pretrained", action="store_true", help="pretrained weights for a timm model name")
    parser.add_argument(
        "--model-kwargs", nargs="+", type=_keyword, default=[], metavar="KEY=VALUE",
        help="timm.create_model arguments for a model name, e.g. depth=2 img_size=64",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="output directory")
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    try:  # what the user named (model, file, data, layers) is reported like a bad argument, without a traceback
        model, name = load_model(args.model, args.pretrained, dict(args.model_kwargs))
        batches = input_batches(model, args.data, args.num_samples, args.batch_size, args.data_root, args.seed)
        report = inspect_model(
            model, batches, args.out, pattern=args.layers, top_k=args.top_k, num_points=args.num_points,
            model_name=name, data_name=args.data or "random normal inputs",
        )  # fmt: skip
    except (ValueError, TypeError, OSError, CheckpointError, pickle.UnpicklingError) as error:
        parser.exit(2, f"kanvision-inspect: error: {error}\n")
    print(f"{len(report['layers'])} layers, {report['num_inputs']} inputs -> {Path(args.out) / 'report.md'}")


if __name__ == "__main__":
    main()
