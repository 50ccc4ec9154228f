"""kanvision: a vision model zoo of Kolmogorov-Arnold network (KAN) architectures for PyTorch.

Importing the package registers every kanvision model with timm (``kat_*``, ``rkan_*``, ``kan_*``).
"""

from kanvision import layers, models  # noqa: F401  (models registers with timm on import)
from kanvision.models._checkpoint import load_checkpoint
from kanvision.models.kanification import kanify

__version__ = "0.1.0"
__all__ = ["layers", "models", "load_checkpoint", "kanify"]
