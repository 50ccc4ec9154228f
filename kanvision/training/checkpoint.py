"""``kanvision-export``: write a kanvision checkpoint's network as safetensors with its name, kwargs and data config.

    kanvision-export run/checkpoints/last.ckpt model.safetensors [--ema]

The readers themselves live in :mod:`kanvision.models._checkpoint` (no Lightning needed) and are re-exported here.
"""

from __future__ import annotations

import argparse
import pickle

from kanvision.models._checkpoint import (
    CheckpointError,
    check_checkpoint_file,
    check_metadata,
    check_state_dict,
    checkpoint_hparams,
    checkpoint_metadata,
    export_safetensors,
    load_checkpoint,
    model_state_dict,
    read_checkpoint,
    save_safetensors,
)

__all__ = [
    "CheckpointError",
    "check_checkpoint_file",
    "check_metadata",
    "check_state_dict",
    "checkpoint_hparams",
    "checkpoint_metadata",
    "export_safetensors",
    "load_checkpoint",
    "model_state_dict",
    "read_checkpoint",
    "save_safetensors",
    "main",
]


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
