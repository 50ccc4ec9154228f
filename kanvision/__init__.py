"""kanvision: a vision model zoo of Kolmogorov-Arnold network (KAN) architectures for PyTorch.

Importing the package registers every kanvision model with timm (``kat_*``, ``rkan_*``, ``kan_*``).
"""

from kanvision import layers, models  # noqa: F401  (models registers with timm on import)
from kanvision.training.checkpoint import load_checkpoint  # noqa: F401

__version__ = "0.1.0"
