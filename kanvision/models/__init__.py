"""kanvision model families, registered with timm on import (one file per family)."""

from kanvision.models import (
    baselines,  # noqa: F401
    kan_cnn,  # noqa: F401
    kan_resnet,  # noqa: F401
    kan_vgg,  # noqa: F401
    kat,  # noqa: F401
    rkan,  # noqa: F401
    vit_kan,  # noqa: F401
)
from kanvision.models.kanification import KanifyReport, kanify  # noqa: F401
