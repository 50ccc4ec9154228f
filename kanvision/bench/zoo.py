"""``kanvision-models [PATTERN]``: every kanvision model registered with timm, with its size and provenance.

    kanvision-models              # the whole zoo
    kanvision-models 'kat_*'      # fnmatch pattern(s), as timm.list_models
    kanvision-models --json zoo.json

For each model: parameters and forward GFLOPs per image at its default input size (counted on the meta device, so
no memory is allocated and nothing is downloaded; :func:`kanvision.utils.flops.count_forward_flops`), the default
input size, its pretrained tags and the paper it reproduces.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import timm
import torch

import kanvision  # noqa: F401  (registers the models)
from kanvision.utils.flops import count_forward_flops

__all__ = ["ModelInfo", "kanvision_models", "model_info", "main"]

_ARXIV = re.compile(r"arXiv[: ]?(\d{4}\.\d{4,5})")


@dataclass
class ModelInfo:
    name: str
    params: int
    gflops: float
    input_size: tuple[int, int, int]
    pretrained_tags: list[str]
    paper: str


def kanvision_models(patterns: Sequence[str] | str = "*") -> list[str]:
    """Names of the models kanvision registers with timm, matching ``patterns``."""
    names = timm.list_models(patterns if patterns else "*")
    modules = {n: timm.models.model_entrypoint(n).__module__ for n in names}
    return [n for n in names if modules[n].startswith("kanvision.") and modules[n] != "kanvision.models.baselines"]


def _paper(name: str, pretrained_cfg) -> str:
    ids = getattr(pretrained_cfg, "paper_ids", None) if pretrained_cfg is not None else None
    if ids:
        return ", ".join(ids) if isinstance(ids, (list, tuple)) else str(ids)
    module = sys.modules[timm.models.model_entrypoint(name).__module__]
    found = _ARXIV.findall(module.__doc__ or "")
    return ", ".join(f"arXiv:{i}" for i in dict.fromkeys(found)) or "–"


def model_info(name: str) -> ModelInfo:
    """Parameters, forward FLOPs at the default size (meta device), input size, tags and paper of ``name``."""
    pretrained_cfg = timm.get_pretrained_cfg(name)
    input_size = tuple(pretrained_cfg.input_size) if pretrained_cfg is not None else (3, 224, 224)
    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False)
        params = sum(p.numel() for p in model.parameters())
        flops = count_forward_flops(model, torch.zeros(1, *input_size))
    tags = [t.partition(".")[2] for t in timm.list_pretrained(f"{name}.*")]
    return ModelInfo(name, params, flops / 1e9, input_size, tags, _paper(name, pretrained_cfg))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="kanvision-models", description=__doc__.splitlines()[0])
    parser.add_argument("patterns", nargs="*", default=["*"], help="fnmatch patterns of model names (default: all)")
    parser.add_argument("--json", type=Path, default=None, help="also write the table as JSON to this file")
    args = parser.parse_args(argv)
    names = kanvision_models(args.patterns)
    if not names:
        parser.error(f"no kanvision model matches {args.patterns}; all of them: kanvision-models")
    infos = [model_info(n) for n in names]
    header = f"{'model':<32} {'params (M)':>11} {'GFLOPs':>9} {'input':>13}  {'pretrained tags':<28} paper"
    print(header)
    print("-" * len(header))
    for info in infos:
        size = "x".join(str(s) for s in info.input_size)
        tags = ", ".join(info.pretrained_tags) or "–"
        print(f"{info.name:<32} {info.params / 1e6:>11.3f} {info.gflops:>9.3f} {size:>13}  {tags:<28} {info.paper}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(i) for i in infos], indent=2) + "\n")


if __name__ == "__main__":
    main()
