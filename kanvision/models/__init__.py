"""kanvision model families, registered with timm on import (one file per family)."""

from kanvision.models import kan_cnn  # noqa: F401
from kanvision.models import kat  # noqa: F401
from kanvision.models import rkan  # noqa: F401
