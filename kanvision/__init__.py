"""kanvision: a vision model zoo of Kolmogorov-Arnold network (KAN) architectures for PyTorch.

Importing the package registers every kanvision model with timm (``kat_*``, ``rkan_*``, ``kan_*``).
"""

from typing import Any

from kanvision import layers, models  # noqa: F401  (models registers with timm on import)

__version__ = "0.1.0"
__all__ = ["layers", "models", "load_checkpoint"]


def __getattr__(name: str) -> Any:
    if name == "load_checkpoint":
        # Imported on first use, so that `import kanvision` loads no training code. The reader itself needs no
        # Lightning for a .safetensors export (a Lightning .ckpt needs the train extra).
        from kanvision.training.checkpoint import load_checkpoint

        return load_checkpoint
    raise AttributeError(f"module 'kanvision' has no attribute {name!r}")
